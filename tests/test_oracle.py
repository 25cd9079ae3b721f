"""Cross-check: on generated data in every input form, the scan equals an independent DuckDB
SQL implementation, and finds exactly the misdeliveries the generator injected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from incident import ScanConfig, ScanResult, Window, scan
from incident.sample import generate_sample
from tests.oracle import oracle_scan
from tests.reference import diff_expected
from tests.test_properties import as_expected

WINDOW = Window()
ID_COLUMNS = ["event_id", "app_id", "for_user_id", "sender_id", "recipient_id"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    generate_sample(out, deliveries=60_000, seed=11)
    return out


def _deliveries(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "deliveries", hive_partitioning=False)


def as_generated(root: Path, _work: Path) -> tuple[str, str, str | None]:
    return (
        str(root / "deliveries"),
        str(root / "authorizations.parquet"),
        str(root / "apps.parquet"),
    )


def text_ids_and_iso_offsets(root: Path, work: Path) -> tuple[str, str, str | None]:
    """Deliveries with text IDs and ISO strings in +09:00; grants in epoch milliseconds."""
    deliveries = _deliveries(root).with_columns(
        pl.col(ID_COLUMNS).cast(pl.String),
        pl.col("delivered_at")
        .dt.convert_time_zone("Asia/Tokyo")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z"),
    )
    deliveries.write_parquet(work / "deliveries.parquet")
    grants = pl.read_parquet(root / "authorizations.parquet").with_columns(
        pl.col("granted_at", "revoked_at").dt.epoch("ms")
    )
    grants.write_parquet(work / "authorizations.parquet")
    return str(work / "deliveries.parquet"), str(work / "authorizations.parquet"), None


def mixed_files_and_bad_rows(root: Path, work: Path) -> tuple[str, str, str | None]:
    """Two delivery files that disagree on types (naive ns vs text), plus quarantined rows;
    grants with text IDs and Tokyo timestamps; an apps registry with integral float IDs."""
    deliveries = _deliveries(root)
    half = deliveries.height // 2
    (work / "deliveries").mkdir()
    deliveries.head(half).with_columns(
        pl.col("delivered_at").dt.replace_time_zone(None).dt.cast_time_unit("ns")
    ).write_parquet(work / "deliveries" / "a.parquet")
    tail = deliveries.tail(deliveries.height - half).with_columns(
        pl.col(ID_COLUMNS).cast(pl.String),
        pl.col("delivered_at").dt.strftime("%Y-%m-%d %H:%M:%S%.fZ"),
    )
    bad = tail.head(5).with_columns(
        pl.Series("delivered_at", ["garbage", None, "2018-13-01T00:00:00Z", "", "2018-01-01"]),
        pl.Series("event_id", ["x1", None, "x3", "x4", " "]),
    )
    pl.concat([tail, bad]).write_parquet(work / "deliveries" / "b.parquet")
    grants = pl.read_parquet(root / "authorizations.parquet").with_columns(
        pl.col("for_user_id", "app_id").cast(pl.String),
        pl.col("granted_at", "revoked_at")
        .dt.convert_time_zone("Asia/Tokyo")
        .dt.cast_time_unit("ms"),
    )
    grants.write_parquet(work / "authorizations.parquet")
    apps = pl.read_parquet(root / "apps.parquet").with_columns(pl.col("app_id").cast(pl.Float64))
    apps.write_parquet(work / "apps.parquet")
    return (
        str(work / "deliveries"),
        str(work / "authorizations.parquet"),
        str(work / "apps.parquet"),
    )


Form = Callable[[Path, Path], tuple[str, str, str | None]]


def run(paths: tuple[str, str, str | None], out: Path) -> ScanResult:
    deliveries, authorizations, apps = paths
    return scan(ScanConfig(deliveries, authorizations, apps, out=out, window=WINDOW))


@pytest.mark.parametrize("form", [as_generated, text_ids_and_iso_offsets, mixed_files_and_bad_rows])
def test_scan_equals_duckdb_oracle(generated: Path, tmp_path: Path, form: Form) -> None:
    paths = form(generated, tmp_path)
    result = run(paths, tmp_path / "out")
    expected = oracle_scan(*paths, since=WINDOW.since, until=WINDOW.until)
    assert diff_expected(as_expected(result), expected) == []
    assert result.accounting.rows_misdelivered > 0


def test_scan_finds_exactly_the_injected_misdeliveries(generated: Path, tmp_path: Path) -> None:
    result = run(as_generated(generated, tmp_path), tmp_path / "out")
    truth = pl.read_parquet(generated / "truth.parquet")
    found = result.misdeliveries.collect().select("delivery_id", "reason").sort("delivery_id")
    assert found.equals(truth.select("delivery_id", "reason").sort("delivery_id"))
    assert set(truth["reason"]) == {"no_grant", "after_revocation", "before_grant"}
