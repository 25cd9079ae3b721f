"""Which traffic attribution reads back: every row that can place a candidate on the endpoint
a misdelivery went to, found however the app IDs are written, and no more."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from incident.pipeline.endpoints import ENDPOINT_SCHEMA, near_received_ip, received_ips
from incident.schema import TIMESTAMP
from tests.conftest import ScanFn
from tests.test_cause import APPS, GRANTS, IP, MINUTE, OTHER_IP, SECOND, T, collision, explained

WINDOW = 6 * 60 * 10**9  # ns
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
