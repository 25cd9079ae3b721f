"""Benchmark job (a), the floor: a bare polars streaming scan of the five required columns.

    python bench/floor.py DATA_DIR

reads ``event_id``, ``delivered_at``, ``app_id``, ``for_user_id`` and ``event_type`` of every
file under ``DATA_DIR/deliveries/`` (hive partitions ignored) and aggregates each of them per
event type, so that every value of every column is decoded: no answer can come from the Parquet
statistics alone. Prints the total row count as JSON on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl

REQUIRED = ["event_id", "delivered_at", "app_id", "for_user_id", "event_type"]


def floor_query(data: Path) -> pl.LazyFrame:
    """Per event type: rows, delivered_at range, and the largest event, app and user ids."""
    return (
        pl.scan_parquet(data / "deliveries", hive_partitioning=False)
        .select(REQUIRED)
        .group_by("event_type")
        .agg(
            pl.len().alias("rows"),
            pl.col("delivered_at").min().alias("first"),
            pl.col("delivered_at").max().alias("last"),
            pl.col("event_id").max(),
            pl.col("app_id").max(),
            pl.col("for_user_id").max(),
        )
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python bench/floor.py DATA_DIR", file=sys.stderr)
        return 2
    result = floor_query(Path(argv[0])).collect(engine="streaming")
    print(json.dumps({"rows": int(result["rows"].sum()), "event_types": result.height}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
