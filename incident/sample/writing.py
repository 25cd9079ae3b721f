"""Writing: the numeric data set as the Parquet files `incident scan DIR` reads.

Deliveries go one file per UTC day (`deliveries/day=YYYY-MM-DD/part-0.parquet`), formatted
from indices to strings day by day on two threads, so the string columns of 40 M rows never
exist at once; authorizations.parquet and apps.parquet are single files. The write options
keep a small sample's hundreds of tiny files compact and are reused by bench/run.py, which
rewrites generated parts the same way; the schemas fix every column's type and order so the
files are identical from run to run.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from incident.sample.constants import DAY, EVENT_TYPES, I64, N_BACKEND_HOSTS, NO_END, NULL_ID
from incident.sample.grants import _Grants
from incident.sample.population import _Population

UTC_US = pa.timestamp("us", tz="UTC")
DELIVERY_SCHEMA = pa.schema(
    [
        ("delivery_id", pa.string()),
        ("event_id", pa.int64()),
        ("delivered_at", UTC_US),
        ("app_id", pa.int64()),
        ("for_user_id", pa.int64()),
        ("event_type", pa.string()),
        ("sender_id", pa.int64()),
        ("recipient_id", pa.int64()),
        ("webhook_url", pa.string()),
        ("resolved_ip", pa.string()),
        ("backend_host", pa.string()),
        ("http_status", pa.int32()),
    ]
)

TABLE_WRITE_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "store_schema": False,  # the Parquet logical types already carry UTC; saves ~1 kB a file
}
# A small sample has ~600 day files of a few dozen rows, where footers and statistics
# dominate the size; these settings keep it compact and cost nothing on big partitions.
DELIVERY_WRITE_OPTIONS: dict[str, object] = {
    **TABLE_WRITE_OPTIONS,
    "row_group_size": 1 << 20,
    "use_dictionary": ["event_type", "webhook_url", "resolved_ip", "backend_host"],
    "write_statistics": ["delivered_at"],
    "column_encoding": {
        "delivery_id": "DELTA_BYTE_ARRAY",
        "delivered_at": "DELTA_BINARY_PACKED",
        "app_id": "DELTA_BINARY_PACKED",
    },
}


def _delivery_ids(rows: I64, width: int) -> pa.Array:
    """'d' + zero-padded 1-based row number."""
    digits = pc.utf8_lpad(pc.cast(pa.array(rows + 1), pa.string()), width, "0")
    return pc.binary_join_element_wise("d", digits, "")


def _nullable(values: I64) -> pa.Array:
    return pa.array(values, mask=values == NULL_ID)


# Rewrites a day's table: (table, its first row in the data set, its app indices, its times).
DayEdit = Callable[[pa.Table, int, I64, I64], pa.Table]


def _write_deliveries(
    deliveries: pl.DataFrame, apps: pl.DataFrame, directory: Path, edit: DayEdit | None = None
) -> None:
    """One file per UTC day of delivered_at, rows in delivery order, no `day` column; each
    day's table goes through `edit` first when given (realistic.py)."""
    c = {name: deliveries[name].to_numpy() for name in deliveries.columns}
    width = max(9, len(str(deliveries.height)))
    url = pa.array(apps["webhook_url"].to_list(), pa.string())
    ip = pa.array(apps["resolved_ip"].to_list(), pa.string())
    type_names = pa.array(EVENT_TYPES, pa.string())
    hosts = pa.array(
        [f"aaa-web-{i + 1:03d}.dc{i % 2 + 1}.example.net" for i in range(N_BACKEND_HOSTS)],
        pa.string(),
    )
    day = c["delivered_at"] // DAY
    first_day, last_day = int(day[0]), int(day[-1])
    bounds = np.searchsorted(day, np.arange(first_day, last_day + 2))

    def write_day(d: int) -> None:
        a, b = int(bounds[d - first_day]), int(bounds[d - first_day + 1])
        if a == b:
            return
        s = slice(a, b)
        app = pa.array(c["app"][s])
        table = pa.Table.from_arrays(
            [
                _delivery_ids(np.arange(a, b, dtype=np.int64), width),
                pa.array(c["event_id"][s]),
                pa.array(c["delivered_at"][s]).cast(UTC_US),
                pa.array(c["app_id"][s]),
                pa.array(c["for_user_id"][s]),
                type_names.take(pa.array(c["event_type"][s])),
                _nullable(c["sender_id"][s]),
                _nullable(c["recipient_id"][s]),
                url.take(app),
                ip.take(app),
                hosts.take(pa.array(c["host"][s])),
                pa.array(c["http_status"][s]),
            ],
            schema=DELIVERY_SCHEMA,
        )
        if edit is not None:
            table = edit(table, a, c["app"][s], c["delivered_at"][s])
        name = datetime.fromtimestamp(d * 86_400, tz=UTC).strftime("%Y-%m-%d")
        part = directory / f"day={name}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, part / "part-0.parquet", **DELIVERY_WRITE_OPTIONS)

    # pyarrow releases the GIL while encoding; each day is its own file, so order is moot.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(write_day, range(first_day, last_day + 1)))


def _write_frame(frame: pl.DataFrame, schema: pa.Schema, path: Path) -> None:
    pq.write_table(frame.to_arrow().cast(schema), path, **TABLE_WRITE_OPTIONS)


UTC_POLARS = pl.Datetime("us", "UTC")
AUTHORIZATION_SCHEMA = pa.schema(
    [
        ("for_user_id", pa.int64()),
        ("app_id", pa.int64()),
        ("granted_at", UTC_US),
        ("revoked_at", UTC_US),
    ]
)
APP_SCHEMA = pa.schema(
    [("app_id", pa.int64())]
    + [
        (name, pa.string())
        for name in ("developer_id", "app_name", "developer_name", "webhook_url", "resolved_ip")
    ]
)
TRUTH_SCHEMA = pa.schema(
    [
        ("delivery_id", pa.string()),
        ("event_id", pa.int64()),
        ("for_user_id", pa.int64()),
        ("app_id", pa.int64()),
        ("delivered_at", UTC_US),
        ("event_type", pa.string()),
        ("reason", pa.string()),
        ("cause", pa.string()),
        ("intended_app_id", pa.int64()),
    ]
)


def _authorizations_frame(pop: _Population, grants: _Grants) -> pl.DataFrame:
    """The grant rows with their ids and UTC times; an active grant's revoked_at is null."""
    return pl.DataFrame(
        {
            "for_user_id": pop.user_ids[grants.user],
            "app_id": pop.app_ids[grants.app],
            "granted_at": pl.Series(grants.start).cast(UTC_POLARS),
            "end": grants.end,
        }
    ).select(
        "for_user_id",
        "app_id",
        "granted_at",
        revoked_at=pl.when(pl.col("end") != NO_END).then(pl.col("end")).cast(UTC_POLARS),
    )


def _registry_frame(pop: _Population, app_strings: pl.DataFrame) -> pl.DataFrame:
    """apps.parquet: the registered apps with their developers and webhook evidence."""
    return (
        app_strings.with_columns(app_id=pl.Series(pop.app_ids))
        .filter(pl.Series(pop.registered))
        .select(APP_SCHEMA.names)
    )
