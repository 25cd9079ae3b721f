"""Which traffic attribution reads back: every row that can place a candidate on the endpoint
a misdelivery went to, found however the app IDs are written, and no more."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import patch

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from incident import ScanConfig, scan
from incident.config import ColumnMap
from incident.pipeline import cause
from incident.pipeline.endpoints import ENDPOINT_SCHEMA, near_received_ip, received_ips
from incident.pipeline.integrity import check_parquet
from incident.pipeline.load import load_input
from incident.pipeline.values import stored_between, stored_bounds
from incident.schema import TIMESTAMP, Input
from tests.conftest import ScanFn, delivery, grant, utc, write
from tests.test_cause import (
    APPS,
    GRANTS,
    IP,
    MINUTE,
    OTHER_IP,
    SECOND,
    T,
    collision,
    explained,
    sent,
)

WINDOW = 6 * 60 * 10**9  # ns
DAY = timedelta(days=1)
FAR = 2**62  # apps this far apart take the slot test off its packed integer


def ids_as(rows: list[dict[str, Any]], how: str) -> pl.DataFrame:
    """`rows` with their app_id written `how`: a Parquet int64, uint64 beyond int64, int64
    values too far apart to pack with the time slot, or text."""
    frame = pl.DataFrame(rows, infer_schema_length=None)
    app = pl.col("app_id")
    written = {
        "int64": app.cast(pl.Int64),
        "uint64": app.cast(pl.UInt64) + 2**63,
        "far apart": pl.when(app == 20).then(app + FAR).otherwise(app).cast(pl.Int64),
        "text": app.cast(pl.String),
    }[how]
    return frame.with_columns(written.alias("app_id"))


@pytest.mark.parametrize("how", ["int64", "uint64", "far apart", "text"])
def test_the_traffic_is_found_however_the_app_ids_are_written(run_scan: ScanFn, how: str) -> None:
    # The collision needs the receiving app's own traffic two minutes earlier: found only if
    # the slot test matches the app's rows.
    result = run_scan(ids_as(collision(), how), ids_as(GRANTS, how), ids_as(APPS, how))
    (row,) = explained(result)
    intended = ids_as([{"app_id": 10}], how)["app_id"].cast(pl.String)[0]
    assert (row["cause"], row["intended_app_id"]) == ("shared_endpoint_collision", intended)


def seen(*rows: tuple[str, Any, str | None]) -> pl.LazyFrame:
    """Sightings: (app_id, delivered_at, ip)."""
    return pl.LazyFrame(
        rows, schema={"app_id": pl.String, "delivered_at": TIMESTAMP, "ip": pl.String}, orient="row"
    )


def test_only_candidates_seen_on_or_registered_at_the_misdeliverys_ip_are_read_whole() -> None:
    wanted = pl.LazyFrame(
        {"_m": [0, 0, 0, 0, 0], "app_id": ["a", "b", "c", "d", "e"], "delivered_at": [T] * 5},
        schema_overrides={"_m": pl.UInt32, "delivered_at": TIMESTAMP},
    )
    ips = pl.LazyFrame({"_m": [0], "ip": [IP]}, schema_overrides={"_m": pl.UInt32})
    sightings = seen(
        ("a", T + 6 * MINUTE, IP),  # on the IP, at the edge of the window
        ("b", T - 6 * MINUTE - SECOND, IP),  # on the IP, too early
        ("c", T, OTHER_IP),  # elsewhere, right then
        ("d", T, None),  # without an IP
    )
    registered = pl.DataFrame(
        {"app_id": ["d", "c"], "ip": [IP, OTHER_IP], "path": ["/hook", "/hook"]},
        schema=ENDPOINT_SCHEMA,
    )
    near = near_received_ip(wanted, ips, sightings, registered, WINDOW).collect()
    assert sorted(near["app_id"]) == ["a", "d"]


def test_no_row_is_read_whole_when_no_candidate_was_near_the_ip(run_scan: ScanFn) -> None:
    # App 40 is authorized but listened on another IP: its rows and the receiving app's are
    # not needed whole, and no file is read a second time for nothing.
    refuse = AssertionError("the files were read whole for no row")
    with patch("incident.pipeline.context.stack", side_effect=refuse):
        result = run_scan(collision(intended=40), [grant(1, 40), grant(2, 20)], APPS)
    assert [r["cause"] for r in explained(result)] == ["unexplained"]


def test_the_ips_a_misdelivery_may_have_gone_to() -> None:
    found = pl.DataFrame(
        {
            "_m": [0, 1, 2],
            "app_id": ["r", "r", "s"],
            "delivered_at": [T, T, T],
            "resolved_ip": [" 192.0.2.9 ", "192.0.2.1", None],
            "webhook_url": ["https://r.example/hook", None, None],
        },
        schema_overrides={"_m": pl.UInt32, "delivered_at": TIMESTAMP},
    )
    sightings = seen(("r", T + MINUTE, "203.0.113.5"), ("r", T + 7 * MINUTE, "203.0.113.6"))
    registered = pl.DataFrame(
        {"app_id": ["s"], "ip": [OTHER_IP], "path": ["/hook"]}, schema=ENDPOINT_SCHEMA
    )
    ips = received_ips(found, sightings, registered, WINDOW).collect()
    # 0: its own, in one form; 1: no URL, so its app's traffic within the window (its own IP
    # alone is no endpoint); 2: nothing seen, so the registry.
    assert sorted(ips.rows()) == [(0, IP), (1, "203.0.113.5"), (2, OTHER_IP)]


def test_a_url_missing_everywhere_is_named_alone(run_scan: ScanFn) -> None:
    rows = [{k: v for k, v in row.items() if k != "webhook_url"} for row in collision()]
    registry = [{"app_id": r["app_id"], "developer_id": r["developer_id"]} for r in APPS]
    result = run_scan(rows, GRANTS, registry)
    assert [r["cause"] for r in explained(result)] == ["unexplained"]
    assert result.summary.to_json()["attribution"]["evidence_missing"] == ["deliveries.webhook_url"]


def times_as(rows: list[dict[str, Any]], how: str) -> pl.DataFrame:
    """`rows` with their delivered_at written `how`: a Parquet timestamp of a unit and zone,
    epoch milliseconds, or ISO-8601 text."""
    frame = pl.DataFrame(rows, infer_schema_length=None)
    at = pl.col("delivered_at")
    written = {
        "ns UTC": at.cast(pl.Datetime("ns", "UTC")),
        "ms UTC": at.cast(pl.Datetime("ms", "UTC")),
        "us naive": at.dt.replace_time_zone(None),
        "us Tokyo": at.dt.convert_time_zone("Asia/Tokyo"),
        "epoch ms": at.dt.epoch("ms"),
        "epoch ms uint64": at.dt.epoch("ms").cast(pl.UInt64),
        "text": at.dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
    }[how]
    return frame.with_columns(written.alias("delivered_at"))


@pytest.mark.parametrize("side", [-1, 1])
@pytest.mark.parametrize(
    "how", ["ns UTC", "ms UTC", "us naive", "us Tokyo", "epoch ms", "epoch ms uint64", "text"]
)
def test_a_chunk_reads_all_the_traffic_of_its_time_however_the_times_are_written(
    run_scan: ScanFn, how: str, side: int
) -> None:
    # Explained one at a time, a misdelivery reads only the stored times its slots span: the
    # receiving app's own traffic a whole window earlier, or later, must still be read, and
    # the other misdelivery, a day later, must find its own.
    window = timedelta(minutes=6)
    first = collision(trigger_at=T + SECOND + side * window)
    later = [
        {**row, "event_id": row["event_id"] + 10, "delivered_at": row["delivered_at"] + DAY}
        for row in collision()
    ]
    deliveries = times_as(first + later, how)
    one_at_a_time = patch("incident.pipeline.cause.explain", partial(cause.explain, chunk_rows=1))
    with one_at_a_time:
        result = run_scan(deliveries, GRANTS, APPS)
    assert [(r["event_id"], r["cause"]) for r in explained(result)] == [
        ("101", "shared_endpoint_collision"),
        ("111", "shared_endpoint_collision"),
    ]


@pytest.mark.parametrize(
    ("dtype", "low", "high", "kept"),
    [
        # A stored value is a whole number of its unit: ms 2 is 2,000,000 ns.
        (pl.Datetime("ms", "UTC"), 1_500_000, 2_500_000, [2]),
        (pl.Int64(), 1_000_000, 3_000_000, [1, 2, 3]),
        # A bound the type cannot hold bounds nothing on its side.
        (pl.UInt8(), -5 * 10**6, 2 * 10**6, [0, 1, 2]),
        (pl.Int8(), 10**6, 10**12, [1, 2, 3, 4]),
        (pl.Date(), 0, 1, [0]),
    ],
)
def test_stored_times_are_bounded_to_the_instants(
    dtype: pl.DataType, low: int, high: int, kept: list[int]
) -> None:
    frame = pl.DataFrame({"at": [0, 1, 2, 3, 4]}).with_columns(pl.col("at").cast(dtype))
    bounds = stored_bounds(dtype, low, high)
    assert bounds is not None
    bounded = stored_between("at", dtype, *bounds)
    assert bounded is not None
    assert frame.filter(bounded)["at"].cast(pl.Int64).to_list() == kept


def test_text_times_are_not_bounded() -> None:
    assert stored_bounds(pl.String(), 0, 1) is None
    assert stored_between("at", pl.String(), 0, 1) is None


@pytest.mark.parametrize("how", ["ms UTC", "us Tokyo", "epoch ms", "epoch ms uint64", "text"])
def test_a_chunk_reads_the_files_of_its_time(tmp_path: Path, how: str) -> None:
    # The receiving app's own traffic, a whole window before the first misdelivery, sits in
    # a file of its own, and the second misdelivery a day later in another: explained one at
    # a time, each misdelivery must read the file its traffic is in.
    window = timedelta(minutes=6)
    trigger, *first = collision(trigger_at=T + SECOND - window)
    later = [
        {**row, "event_id": row["event_id"] + 10, "delivered_at": row["delivered_at"] + DAY}
        for row in collision()
    ]
    folder = tmp_path / "deliveries"
    for name, rows in {"a-trigger": [trigger], "b-first": first, "c-later": later}.items():
        write(times_as(rows, how), folder / f"{name}.parquet")
    config = ScanConfig(
        deliveries=str(folder),
        authorizations=str(write(GRANTS, tmp_path / "authorizations.parquet")),
        apps=str(write(APPS, tmp_path / "apps.parquet")),
        out=tmp_path / "out",
    )
    with patch("incident.pipeline.cause.explain", partial(cause.explain, chunk_rows=1)):
        result = scan(config)
    assert [(r["event_id"], r["cause"]) for r in explained(result)] == [
        ("101", "shared_endpoint_collision"),
        ("111", "shared_endpoint_collision"),
    ]


def test_the_files_of_a_time_are_told_by_their_footers(tmp_path: Path) -> None:
    folder = tmp_path / "deliveries"
    hours = {"early": [1, 2], "late": [5]}
    for name, each in hours.items():
        rows = [delivery(event_id=h, delivered_at=utc(2018, 3, 1, h)) for h in each]
        write(rows, folder / f"{name}.parquet")
    # A file whose footer has no statistics may hold any time: it is always read.
    frame = pl.DataFrame([delivery(delivered_at=utc(2018, 3, 1, 3))])
    frame.write_parquet(folder / "unknown.parquet", statistics=False)
    (group,) = load_input(Input.DELIVERIES, str(folder), ColumnMap()).groups
    dtype = group.raw_schema["delivered_at"]

    def files(low_hour: int, high_hour: int) -> list[str]:
        low, high = (int(utc(2018, 3, 1, h).timestamp()) * 10**9 for h in (low_hour, high_hour))
        bounds = stored_bounds(dtype, low, high)
        assert bounds is not None
        return [Path(f).stem for f in group.overlapping("delivered_at", *bounds).files]

    assert files(0, 1) == ["early", "unknown"]
    assert files(2, 4) == ["early", "unknown"]
    assert files(3, 4) == ["unknown"]
    assert files(5, 9) == ["late", "unknown"]
    assert files(0, 9) == ["early", "late", "unknown"]


def test_unsigned_bounds_are_read_unsigned(tmp_path: Path) -> None:
    folder = tmp_path / "deliveries"
    for name, count in {"small": 5, "huge": 2**63 + 5}.items():
        frame = pl.DataFrame([delivery()]).with_columns(count=pl.lit(count, pl.UInt64))
        write(frame, folder / f"{name}.parquet")
    (group,) = load_input(Input.DELIVERIES, str(folder), ColumnMap()).groups
    assert [Path(f).stem for f in group.overlapping("count", 2**63, None).files] == ["huge"]
    assert [Path(f).stem for f in group.overlapping("count", None, 10).files] == ["small"]


def test_a_date64_time_bounds_no_file_by_its_days(tmp_path: Path) -> None:
    # Arrow's date64 is written as days (a Parquet DATE) and read back as milliseconds: the
    # footer's days must not be taken for milliseconds, or every file but one is left out.
    def written(rows: list[dict[str, Any]]) -> pa.Table:
        table = pa.Table.from_pylist(rows)
        millis = [int(row["delivered_at"].timestamp() * 1000) for row in rows]
        days = pa.array(millis, pa.int64()).cast(pa.date64())
        return table.set_column(table.schema.get_field_index("delivered_at"), "delivered_at", days)

    midnight = utc(2018, 3, 1)
    folder = tmp_path / "deliveries"
    folder.mkdir()
    pq.write_table(written([sent(1, utc(2018, 2, 1), 10, 1)]), folder / "a.parquet")
    collision = [sent(100, midnight, 20, 2, event_type="tweet"), sent(101, midnight, 10, 1)]
    pq.write_table(written([*collision, sent(101, midnight, 20, 1)]), folder / "b.parquet")
    config = ScanConfig(
        deliveries=str(folder),
        authorizations=str(write(GRANTS, tmp_path / "authorizations.parquet")),
        apps=str(write(APPS, tmp_path / "apps.parquet")),
        out=tmp_path / "out",
    )
    assert [(r["event_id"], r["cause"]) for r in explained(scan(config))] == [
        ("101", "shared_endpoint_collision")
    ]


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        (pa.int32(), "int32"),
        (pa.int64(), "int64"),
        (pa.uint64(), "int64"),
        (pa.date32(), "date"),
        (pa.date64(), "date"),
        (pa.timestamp("ms", tz="UTC"), "timestamp[ms]"),
        (pa.timestamp("us"), "timestamp[us]"),
        (pa.timestamp("ns", tz="Asia/Tokyo"), "timestamp[ns]"),
        (pa.time64("us"), None),
        (pa.decimal128(12, 2), None),
        (pa.string(), None),
    ],
)
def test_a_footer_says_how_a_column_stores_its_integers(
    tmp_path: Path, written: pa.DataType, stored: str | None
) -> None:
    path = tmp_path / "one.parquet"
    if written == pa.decimal128(12, 2):
        values = pa.array([Decimal("1.00"), Decimal("2.00")], written)
    else:
        plain = pa.int32() if written == pa.date32() else pa.int64()
        values = pa.array([1, 2], plain).cast(written)
    pq.write_table(pa.table({"v": values}), path)
    bounds = check_parquet(str(path)).bounds
    assert (bounds["v"][0] if "v" in bounds else None) == stored
