"""Independent DuckDB-SQL oracle for `incident scan` (DESIGN.md rules 1-6, docs/decisions.md).

It does not import the `incident` package. Every normalisation (IDs to text, timestamps to
UTC epoch nanoseconds) is done in SQL; the SQL expression for each column is chosen from the
column's DuckDB type (``DESCRIBE``), file by file, so that a directory whose files disagree on
a column's type (integer IDs in one file, strings in another) is still read exactly.

Timestamps are carried as BIGINT epoch nanoseconds throughout (DuckDB's TIMESTAMPTZ is only
microseconds), and turned into ``Datetime("ns", "UTC")`` on the polars side.

Entry point: :func:`oracle_scan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

__all__ = ["Expected", "oracle_scan"]

DM = "direct_message"
PROTECTED = "protected_tweet"

REQUIRED_DELIVERY = ("event_id", "delivered_at", "app_id", "for_user_id", "event_type")
OPTIONAL_DELIVERY = ("sender_id", "recipient_id")
AUTH_COLUMNS = ("for_user_id", "app_id", "granted_at", "revoked_at")

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Unicode White_Space (what polars' / Rust's `trim` strips), spelled with chr() so the SQL
# text itself holds no control characters.
_WHITESPACE_CODEPOINTS = (
    *(0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680),
    *range(0x2000, 0x200B),
    *(0x2028, 0x2029, 0x202F, 0x205F, 0x3000),
)
_WS_SQL = " || ".join(f"chr({cp})" for cp in _WHITESPACE_CODEPOINTS)

# ISO-8601: date, optional time (HH:MM[:SS[.f{1,9}]]) with optional Z / +HH[[:]MM] offset.
_ISO_PATTERN = (
    "^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    "(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    "(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?$"
)
_ISO_GROUPS = ["y", "mo", "d", "h", "mi", "s", "frac", "z", "sign", "oh", "om"]

_INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
_FLOAT_TYPES = {"FLOAT", "DOUBLE"}
_STRING_TYPES = {"VARCHAR"}
_TS_NS_TYPES = {"TIMESTAMP_NS", "TIMESTAMPTZ_NS", "TIMESTAMP_NS WITH TIME ZONE"}
_TS_COARSE_TYPES = {
    "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMP_MS", "TIMESTAMP_S",
}  # fmt: skip


@dataclass(frozen=True)
class Expected:
    users: pl.DataFrame
    developers: pl.DataFrame
    misdeliveries: pl.DataFrame
    accounting: dict[str, int]


# --------------------------------------------------------------------------------------------
# SQL snippets
# --------------------------------------------------------------------------------------------


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_MACROS = f"""
CREATE OR REPLACE MACRO ns_in_range(v) AS
    CASE WHEN v BETWEEN {_INT64_MIN}::HUGEINT AND {_INT64_MAX}::HUGEINT THEN v::BIGINT END;

CREATE OR REPLACE MACRO iso_parts_ns(m) AS
    CASE WHEN
        coalesce(nullif(m.h, '')::INTEGER, 0) <= 23
        AND coalesce(nullif(m.mi, '')::INTEGER, 0) <= 59
        AND coalesce(nullif(m.s, '')::INTEGER, 0) <= 59
        AND coalesce(nullif(m.oh, '')::INTEGER, 0) <= 23
        AND coalesce(nullif(m.om, '')::INTEGER, 0) <= 59
        AND try_cast(m.y || '-' || m.mo || '-' || m.d AS DATE) IS NOT NULL
    THEN
        (try_cast(m.y || '-' || m.mo || '-' || m.d AS DATE) - DATE '1970-01-01')::HUGEINT
            * 86400000000000
        + coalesce(nullif(m.h, '')::HUGEINT, 0) * 3600000000000
        + coalesce(nullif(m.mi, '')::HUGEINT, 0) * 60000000000
        + coalesce(nullif(m.s, '')::HUGEINT, 0) * 1000000000
        + coalesce(rpad(nullif(m.frac, ''), 9, '0')::HUGEINT, 0)
        - (CASE m.sign WHEN '-' THEN -1 ELSE 1 END)
            * (coalesce(nullif(m.oh, '')::HUGEINT, 0) * 3600
               + coalesce(nullif(m.om, '')::HUGEINT, 0) * 60)
            * 1000000000
    END;

CREATE OR REPLACE MACRO iso_ns(s) AS
    CASE WHEN regexp_full_match(s, {_lit(_ISO_PATTERN)})
    THEN ns_in_range(iso_parts_ns(regexp_extract(s, {_lit(_ISO_PATTERN)},
                                                 {_ISO_GROUPS!r})))
    END;
"""


def _id_expr(col: str, dtype: str, path: str) -> str:
    """SQL for an ID column normalised to text (NULL when null, empty or not an ID)."""
    c = _q(col)
    base = dtype.split("(")[0]
    if dtype in ("NULL", '"NULL"'):  # an all-null column
        return "NULL::VARCHAR"
    if dtype in _STRING_TYPES:
        return f"nullif(trim({c}, {_WS_SQL}), '')"
    if dtype in _INTEGER_TYPES:
        return f"CAST({c} AS VARCHAR)"
    if dtype in _FLOAT_TYPES:
        # integral and within the int64 range (what pandas makes of an integer column with
        # nulls); NaN / inf / fractional / huge -> not an ID
        return (
            f"CASE WHEN isfinite({c}::DOUBLE) AND {c}::DOUBLE = trunc({c}::DOUBLE)"
            f" AND {c}::DOUBLE >= -9223372036854775808.0"
            f" AND {c}::DOUBLE < 9223372036854775808.0"
            f" THEN CAST(CAST({c}::DOUBLE AS HUGEINT) AS VARCHAR) END"
        )
    if base == "DECIMAL":
        return f"CASE WHEN {c} = trunc({c}) THEN CAST(CAST(trunc({c}) AS HUGEINT) AS VARCHAR) END"
    raise TypeError(f"{path}: column {col!r} has type {dtype}, expected an integer or string ID")


def _ts_expr(col: str, dtype: str, path: str) -> str:
    """SQL for a timestamp column as BIGINT UTC epoch nanoseconds (NULL when not a timestamp)."""
    c = _q(col)
    if dtype in ("NULL", '"NULL"'):  # an all-null column
        return "NULL::BIGINT"
    if dtype in _TS_NS_TYPES:
        return f"epoch_ns({c})"
    if dtype in _TS_COARSE_TYPES:
        return f"CASE WHEN isfinite({c}) THEN ns_in_range(epoch_us({c})::HUGEINT * 1000) END"
    if dtype in _INTEGER_TYPES:  # epoch milliseconds
        return f"ns_in_range({c}::HUGEINT * 1000000)"
    if dtype in _STRING_TYPES:
        return f"iso_ns(nullif(trim({c}, {_WS_SQL}), ''))"
    raise TypeError(
        f"{path}: column {col!r} has type {dtype}, expected a timestamp, "
        "integer epoch milliseconds or an ISO-8601 string"
    )


def _raw_null_expr(col: str, dtype: str) -> str:
    """True when the raw value is null, or (for text) empty after trimming white space."""
    c = _q(col)
    if dtype in _STRING_TYPES:
        return f"nullif(trim({c}, {_WS_SQL}), '') IS NULL"
    return f"{c} IS NULL"


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _files(con: duckdb.DuckDBPyConnection, path: str | Path) -> list[str]:
    p = Path(path)
    if p.is_file():
        return [str(p)]
    pattern = str(p / "**" / "*.parquet") if p.is_dir() else str(path)
    rows = con.execute("SELECT file FROM glob(?) ORDER BY file", [pattern]).fetchall()
    files = [str(r[0]) for r in rows]
    if not files:
        raise FileNotFoundError(f"{path}: no parquet files")
    return files


def _describe(con: duckdb.DuckDBPyConnection, file: str) -> dict[str, str]:
    rows = con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({_lit(file)}, hive_partitioning = false)"
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _normalised_select(
    con: duckdb.DuckDBPyConnection,
    file: str,
    id_cols: tuple[str, ...],
    ts_cols: tuple[str, ...],
    optional_ids: tuple[str, ...] = (),
) -> str:
    types = _describe(con, file)
    parts: list[str] = []
    for col in id_cols + ts_cols:
        if col not in types:
            raise KeyError(f"{file}: missing required column {col!r}")
    for col in id_cols:
        parts.append(f"{_id_expr(col, types[col], file)} AS {_q(col)}")
    for col in optional_ids:
        expr = _id_expr(col, types[col], file) if col in types else "NULL::VARCHAR"
        parts.append(f"{expr} AS {_q(col)}")
    for col in ts_cols:
        parts.append(f"{_ts_expr(col, types[col], file)} AS {_q(col)}")
        # keep whether the raw value was null, to tell "null" from "not parseable"
        parts.append(f"{_raw_null_expr(col, types[col])} AS {_q(col + '__raw_null')}")
    return f"SELECT {', '.join(parts)} FROM read_parquet({_lit(file)}, hive_partitioning = false)"


def _load(
    con: duckdb.DuckDBPyConnection,
    table: str,
    path: str | Path,
    id_cols: tuple[str, ...],
    ts_cols: tuple[str, ...],
    optional_ids: tuple[str, ...] = (),
) -> None:
    selects = [
        _normalised_select(con, f, id_cols, ts_cols, optional_ids) for f in _files(con, path)
    ]
    con.execute(f"CREATE OR REPLACE TABLE {table} AS " + " UNION ALL ".join(selects))


def _since_until_ns(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


# --------------------------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------------------------


def _ns_to_datetime(*cols: str) -> list[pl.Expr]:
    return [
        pl.col(c).cast(pl.Int64).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC").alias(c)
        for c in cols
    ]


def _to_polars(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    df = pl.from_arrow(con.sql(sql).to_arrow_table())
    assert isinstance(df, pl.DataFrame)
    return df


def oracle_scan(
    deliveries: str | Path,
    authorizations: str | Path,
    apps: str | Path | None,
    since: datetime,
    until: datetime,
) -> Expected:
    con = duckdb.connect()
    try:
        return _scan(con, deliveries, authorizations, apps, since, until)
    finally:
        con.close()


def _scan(
    con: duckdb.DuckDBPyConnection,
    deliveries: str | Path,
    authorizations: str | Path,
    apps: str | Path | None,
    since: datetime,
    until: datetime,
) -> Expected:
    con.execute("SET TimeZone = 'UTC'")
    con.execute(_MACROS)

    # ---- inputs, normalised ----------------------------------------------------------------
    _load(
        con,
        "d_raw",
        deliveries,
        ("event_id", "app_id", "for_user_id", "event_type"),
        ("delivered_at",),
        OPTIONAL_DELIVERY,
    )
    _load(con, "a_raw", authorizations, ("for_user_id", "app_id"), ("granted_at", "revoked_at"))
    if apps is not None:
        _load(con, "apps_raw", apps, ("app_id", "developer_id"), ())
        conflicts = con.execute(
            """SELECT app_id FROM apps_raw WHERE app_id IS NOT NULL GROUP BY app_id
               HAVING count(DISTINCT developer_id) > 1 ORDER BY app_id"""
        ).fetchall()
        if conflicts:
            raise ValueError(
                f"{apps}: app {conflicts[0][0]!r} is registered with different developer_ids"
            )
        con.execute(
            """CREATE TABLE registry AS
               SELECT app_id, max(developer_id) AS developer_id
               FROM apps_raw WHERE app_id IS NOT NULL GROUP BY app_id"""
        )
        developer_sql = "coalesce(r.developer_id, 'unknown:' || d.app_id)"
        registry_join = "LEFT JOIN registry r ON r.app_id = d.app_id"
    else:
        developer_sql = "d.app_id"
        registry_join = ""

    since_ns = _since_until_ns(since)
    until_ns = _since_until_ns(until)

    # ---- rule 1: valid rows; rule 2: window ------------------------------------------------
    con.execute(
        """CREATE TABLE valid AS SELECT * FROM d_raw
           WHERE event_id IS NOT NULL AND delivered_at IS NOT NULL AND app_id IS NOT NULL
             AND for_user_id IS NOT NULL AND event_type IS NOT NULL"""
    )
    con.execute(
        f"""CREATE TABLE in_window AS SELECT * FROM valid
            WHERE {since_ns}::HUGEINT <= delivered_at AND delivered_at < {until_ns}::HUGEINT"""
    )

    # ---- grants (rejected authorization rows excluded) ------------------------------------
    con.execute(
        """CREATE TABLE grants AS
           SELECT for_user_id AS "user", app_id AS app, granted_at, revoked_at FROM a_raw
           WHERE for_user_id IS NOT NULL AND app_id IS NOT NULL AND granted_at IS NOT NULL
             AND (revoked_at IS NOT NULL OR "revoked_at__raw_null")
             AND (revoked_at IS NULL OR revoked_at >= granted_at)"""
    )

    # ---- rule 3: misdeliveries via anti join, with reasons --------------------------------
    con.execute(
        f"""CREATE TABLE mis AS
            WITH m AS (
                SELECT d.* FROM in_window d
                ANTI JOIN grants g
                  ON d.for_user_id = g."user" AND d.app_id = g.app
                 AND g.granted_at <= d.delivered_at
                 AND (g.revoked_at IS NULL OR d.delivered_at < g.revoked_at)
            )
            SELECT d.event_id, d.delivered_at, d.app_id, d.for_user_id, d.event_type,
                   d.sender_id, d.recipient_id,
                   {developer_sql} AS developer_id,
                   CASE
                     WHEN NOT EXISTS (SELECT 1 FROM grants g
                                      WHERE g."user" = d.for_user_id AND g.app = d.app_id)
                       THEN 'no_grant'
                     WHEN EXISTS (SELECT 1 FROM grants g
                                  WHERE g."user" = d.for_user_id AND g.app = d.app_id
                                    AND g.revoked_at IS NOT NULL
                                    AND g.revoked_at <= d.delivered_at)
                       THEN 'after_revocation'
                     ELSE 'before_grant'
                   END AS reason
            FROM m d {registry_join}"""
    )

    # ---- rule 4: exposures -----------------------------------------------------------------
    con.execute(
        f"""CREATE TABLE exposures AS
            WITH e AS (
                SELECT for_user_id AS user_id, 'subscriber' AS role, * FROM mis
                UNION ALL
                SELECT sender_id, 'sender', * FROM mis WHERE event_type = '{DM}'
                UNION ALL
                SELECT recipient_id, 'recipient', * FROM mis WHERE event_type = '{DM}'
                UNION ALL
                SELECT sender_id, 'author', * FROM mis WHERE event_type = '{PROTECTED}'
            )
            SELECT user_id, role, event_id, event_type, developer_id, delivered_at
            FROM e WHERE user_id IS NOT NULL"""
    )

    # ---- rule 5: counting ------------------------------------------------------------------
    users = _to_polars(
        con,
        f"""SELECT user_id,
                   list(DISTINCT role) AS roles,
                   count(DISTINCT event_id) AS events,
                   count(DISTINCT event_id) FILTER (WHERE event_type = '{DM}')
                       AS direct_messages,
                   count(DISTINCT event_id) FILTER (WHERE event_type = '{PROTECTED}')
                       AS protected_tweets,
                   count(DISTINCT developer_id) AS developers,
                   list(DISTINCT developer_id) AS developer_ids,
                   min(delivered_at) AS first_exposed_at,
                   max(delivered_at) AS last_exposed_at
            FROM exposures GROUP BY user_id""",
    )
    developers = _to_polars(
        con,
        f"""WITH per_dev AS (
                SELECT developer_id,
                       list(DISTINCT app_id) AS app_ids,
                       count(DISTINCT event_id) AS events,
                       count(*) AS deliveries,
                       count(DISTINCT event_id) FILTER (WHERE event_type = '{DM}')
                           AS direct_messages,
                       count(DISTINCT event_id) FILTER (WHERE event_type = '{PROTECTED}')
                           AS protected_tweets,
                       min(delivered_at) AS first_received_at,
                       max(delivered_at) AS last_received_at
                FROM mis GROUP BY developer_id
            ), dev_users AS (
                SELECT developer_id, count(DISTINCT user_id) AS users_exposed
                FROM exposures GROUP BY developer_id
            )
            SELECT p.developer_id, p.app_ids, p.events, p.deliveries, p.direct_messages,
                   p.protected_tweets, coalesce(u.users_exposed, 0) AS users_exposed,
                   p.first_received_at, p.last_received_at
            FROM per_dev p LEFT JOIN dev_users u USING (developer_id)""",
    )
    misdeliveries = _to_polars(
        con,
        """SELECT event_id, delivered_at, app_id, for_user_id, event_type, developer_id, reason
           FROM mis""",
    )

    # ---- rule 6: accounting ----------------------------------------------------------------
    row = con.execute(
        """SELECT
              (SELECT count(*) FROM d_raw),
              (SELECT count(*) FROM d_raw) - (SELECT count(*) FROM valid),
              (SELECT count(*) FROM valid) - (SELECT count(*) FROM in_window),
              (SELECT count(*) FROM in_window) - (SELECT count(*) FROM mis),
              (SELECT count(*) FROM mis),
              (SELECT count(DISTINCT event_id) FROM mis),
              (SELECT count(DISTINCT user_id) FROM exposures),
              (SELECT count(DISTINCT developer_id) FROM mis)"""
    ).fetchone()
    assert row is not None
    keys = (
        "rows_read", "rows_rejected", "rows_outside_window", "rows_authorized",
        "rows_misdelivered", "events_misdelivered", "users_exposed", "developers_exposed",
    )  # fmt: skip
    accounting = {k: int(v) for k, v in zip(keys, row, strict=True)}
    assert accounting["rows_read"] == (
        accounting["rows_rejected"]
        + accounting["rows_outside_window"]
        + accounting["rows_authorized"]
        + accounting["rows_misdelivered"]
    )

    return Expected(
        users=_shape_users(users),
        developers=_shape_developers(developers),
        misdeliveries=_shape_misdeliveries(misdeliveries),
        accounting=accounting,
    )


# --------------------------------------------------------------------------------------------
# Exact output dtypes and order
# --------------------------------------------------------------------------------------------

_USERS_SCHEMA: dict[str, Any] = {
    "user_id": pl.String,
    "roles": pl.List(pl.String),
    "events": pl.Int64,
    "direct_messages": pl.Int64,
    "protected_tweets": pl.Int64,
    "developers": pl.Int64,
    "developer_ids": pl.List(pl.String),
    "first_exposed_at": pl.Int64,
    "last_exposed_at": pl.Int64,
}
_DEVELOPERS_SCHEMA: dict[str, Any] = {
    "developer_id": pl.String,
    "app_ids": pl.List(pl.String),
    "events": pl.Int64,
    "deliveries": pl.Int64,
    "direct_messages": pl.Int64,
    "protected_tweets": pl.Int64,
    "users_exposed": pl.Int64,
    "first_received_at": pl.Int64,
    "last_received_at": pl.Int64,
}
_MIS_SCHEMA: dict[str, Any] = {
    "event_id": pl.String,
    "delivered_at": pl.Int64,
    "app_id": pl.String,
    "for_user_id": pl.String,
    "event_type": pl.String,
    "developer_id": pl.String,
    "reason": pl.String,
}


def _conform(df: pl.DataFrame, schema: dict[str, Any]) -> pl.DataFrame:
    if df.height == 0:
        return pl.DataFrame(schema=schema)
    return df.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def _shape_users(df: pl.DataFrame) -> pl.DataFrame:
    return (
        _conform(df, _USERS_SCHEMA)
        .with_columns(
            pl.col("roles").list.sort(),
            pl.col("developer_ids").list.sort(),
            *_ns_to_datetime("first_exposed_at", "last_exposed_at"),
        )
        .sort("user_id")
    )


def _shape_developers(df: pl.DataFrame) -> pl.DataFrame:
    return (
        _conform(df, _DEVELOPERS_SCHEMA)
        .with_columns(
            pl.col("app_ids").list.sort(),
            *_ns_to_datetime("first_received_at", "last_received_at"),
        )
        .sort("developer_id")
    )


def _shape_misdeliveries(df: pl.DataFrame) -> pl.DataFrame:
    return (
        _conform(df, _MIS_SCHEMA)
        .with_columns(*_ns_to_datetime("delivered_at"))
        .sort(list(_MIS_SCHEMA))
    )
