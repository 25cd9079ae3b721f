"""The findings on disk: sorted a range of `event_id` at a time, the copies set apart, exactly
as the whole frame sorted in memory would be (DESIGN rule 1, the stable order)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from incident import ScanConfig, scan
from incident.pipeline import cause
from incident.pipeline.findings import order
from incident.schema import DELIVERY_COLUMNS, TIMESTAMP
from tests.conftest import utc

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"


def _misdelivered(seed: int, rows: int) -> pl.DataFrame:
    """Rows in no order with few distinct values, so that many tie, repeat or share an ID:
    copies with and without a delivery_id, IDs shared by different deliveries, and a nested
    column that takes no part in the order."""
    rng = np.random.default_rng(seed)

    def pick(values: list[str | None]) -> list[str | None]:
        return [values[i] for i in rng.integers(0, len(values), rows)]

    start = utc(2018, 1, 1)
    return pl.DataFrame(
        {
            "event_id": pick([f"e{i}" for i in range(12)]),
            "delivered_at": [start + timedelta(minutes=int(m)) for m in rng.integers(0, 3, rows)],
            "app_id": pick(["1", "2"]),
            "for_user_id": pick(["7", "8"]),
            "event_type": pick(["tweet", "direct_message"]),
            "delivery_id": pick([None, "d1", "d2", "d3"]),
            "sender_id": pick([None, "9"]),
            "tags": [[int(t)] for t in rng.integers(0, 3, rows)],
            "developer_id": pick(["dev"]),
            "reason": pick(["no_grant"]),
        },
        schema_overrides={"delivered_at": TIMESTAMP},
    )


def _in_memory(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The reference: the whole frame sorted, its copies found over all of it, and the IDs
    that name different deliveries."""
    keys = [name for name, dtype in frame.schema.items() if not dtype.is_nested()]
    ordered = frame.sort(keys, nulls_last=True, maintain_order=True)
    values = [c for c in ordered.columns if c not in ("developer_id", "reason")]
    attempt = ["delivery_id", *(c for c, column in DELIVERY_COLUMNS.items() if column.required)]
    has_id = pl.col("delivery_id").is_not_null()
    copy = (
        pl.when(has_id)
        .then(pl.struct(attempt).is_first_distinct().not_())
        .otherwise(pl.struct(values).is_first_distinct().not_())
    )
    copies = ordered.select(copy)[:, 0]
    attempts = pl.struct(attempt).n_unique().over("delivery_id")
    clashing = ordered.filter(has_id & (attempts > 1))["delivery_id"].n_unique()
    return ordered.filter(copies.not_()), ordered.filter(copies), clashing


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("range_rows", [1, 7, 40, 10_000])
def test_ranges_in_order_are_the_whole_frame_sorted_without_copies(
    tmp_path: Path, seed: int, range_rows: int
) -> None:
    frame = _misdelivered(seed, 200)
    kept, copies, clashing = _in_memory(frame)
    assert copies.height and clashing  # the frame exercises both
    found = order(frame.lazy(), frame.height, tmp_path, range_rows)
    assert found.misdeliveries.collect().equals(kept)
    assert found.copies.height == copies.height
    assert found.copies["reject_reason"].unique().to_list() == ["duplicate"]
    assert sorted(found.copies["delivery_id"].to_list(), key=str) == sorted(
        copies["delivery_id"].to_list(), key=str
    )
    assert found.delivery_id_clashes == clashing


def test_no_misdelivery_leaves_an_empty_file_with_the_columns(tmp_path: Path) -> None:
    frame = _misdelivered(1, 10).clear()
    found = order(frame.lazy(), 0, tmp_path, 3)
    assert found.misdeliveries.collect().equals(frame)
    assert (found.copies.height, found.delivery_id_clashes) == (0, 0)


def test_a_misdelivery_lost_after_detection_is_a_bug_not_a_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explain = cause.explain

    def losing_one(*args: Any, **kwargs: Any) -> Any:
        explained = explain(*args, **kwargs)
        return replace(explained, misdeliveries=explained.misdeliveries.slice(1))

    monkeypatch.setattr(cause, "explain", losing_one)
    with pytest.raises(RuntimeError, match="misdeliveries explained of"):
        scan(ScanConfig.from_directory(SAMPLE, out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()
