"""Values normalised to their canonical form: IDs as exact text, instants as UTC nanoseconds,
text stripped, integers; and any value as text, for rows kept as read.

Each normaliser builds a polars expression for one column of one group of files, from the
column's Parquet type; a type that cannot hold the value is an `InputError` at planning time,
a value that does not parse is null (and rejects its row when the column is required).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import reduce

import polars as pl

from incident.errors import InputError
from incident.schema import ID, TIMESTAMP, Kind

# Epoch milliseconds that fit in a nanosecond timestamp (years 1677 to 2262).
_MAX_EPOCH_MS = (2**63 - 1) // 1_000_000
# Whole years inside that range; ISO strings outside them are not read as timestamps.
_FIRST_YEAR, _LAST_YEAR = 1678, 2261
# ISO-8601 as found in logs, rewritten step by step into one strict form before parsing:
# YYYY-MM-DD[(T|t| )HH:MM[:SS[(.|,)fraction]][Z|z|+HH[[:]MM]]]; a date alone is midnight.
_ISO_REWRITES = (
    (r"^(\d{4}-\d{2}-\d{2})$", "${1}T00:00:00"),
    (r"^(\d{4}-\d{2}-\d{2})[Tt ]", "${1}T"),
    (r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})([^:\d]|$)", "${1}:00${2}"),
    (r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}),", "${1}."),
    (r"[zZ]$", "+00:00"),
    (r"([+-]\d{2})$", "${1}:00"),
    (r"([+-]\d{2})(\d{2})$", "${1}:${2}"),
)
_ISO_STRICT = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?([+-]\d{2}:\d{2})?$"


def _id(raw: pl.Expr, dtype: pl.DataType, file: str, column: str) -> pl.Expr:
    """Normalise an ID to stripped text; integral floats lose their `.0`; empty is null."""
    if dtype.is_integer():
        return raw.cast(ID)
    if dtype.is_float():
        # Only a float below 2**53 (2**24 in 32 bits) is surely the integer that was written:
        # 2**53 + 1 is stored as 2**53. Any other value is not an ID, and rejects its row.
        exact = raw.is_finite() & (raw == raw.floor()) & (raw.abs() < _exact_float(dtype))
        return pl.when(exact).then(raw.cast(pl.Int64, strict=False).cast(ID))
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = raw.cast(ID).str.strip_chars()
        return pl.when(text.str.len_bytes() > 0).then(text)
    if isinstance(dtype, pl.Decimal) and dtype.scale == 0:
        return raw.cast(ID)  # exact: a float would round IDs beyond 2**53
    raise InputError(f"{file}: column {column!r} is {dtype}: expected an integer or string ID")


def is_blank(text: pl.Expr) -> pl.Expr:
    """True for text that is empty or only whitespace: a null value, not an unreadable one."""
    return text.cast(pl.String).str.strip_chars().str.len_bytes() == 0


def _exact_float(dtype: pl.DataType) -> int:
    """2**bits of the significand of a float type: every integer below it is exact."""
    if dtype == pl.Float16:
        return 2**11
    return 2**24 if dtype == pl.Float32 else 2**53


def not_an_id(dtype: pl.DataType) -> str:
    bits = _exact_float(dtype).bit_length() - 1
    return (
        f"not an exact integer ID (a {dtype} that is fractional, not finite, "
        f"or beyond ±(2^{bits}-1))"
    )


def _timestamp(raw: pl.Expr, dtype: pl.DataType, file: str, column: str) -> pl.Expr:
    """Normalise a timestamp to nanoseconds UTC; values that do not parse or fit become null."""
    if isinstance(dtype, pl.Datetime | pl.Date):
        return _instant(raw, dtype)
    if dtype.is_integer():
        in_range = raw.cast(pl.Int64, strict=False).is_between(-_MAX_EPOCH_MS, _MAX_EPOCH_MS)
        nanos = raw.cast(pl.Int64, strict=False) * 1_000_000
        return pl.when(in_range).then(nanos.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return _iso_timestamp(raw.cast(pl.String).str.strip_chars())
    raise InputError(
        f"{file}: column {column!r} is {dtype}: expected a timestamp, "
        "epoch milliseconds or an ISO-8601 string"
    )


# Nanoseconds per unit of a Parquet timestamp or date.
_NANOS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "d": 86_400 * 10**9}
_MAX_NS = 2**63 - 1


def _units(raw: pl.Expr, dtype: pl.DataType) -> tuple[pl.Expr, str]:
    """A Datetime or Date column as the 64-bit integers it stores (UTC, or naive taken as
    UTC), and their unit: integers, because polars panics when it writes as text, or takes
    the year of, a value beyond its calendar (int64's largest, which some systems write for
    "never")."""
    unit = "d" if isinstance(dtype, pl.Date) else str(getattr(dtype, "time_unit", "us"))
    return raw.to_physical().cast(pl.Int64), unit


def _stored(dtype: pl.DataType) -> tuple[int, pl.DataType] | None:
    """How a timestamp column of type `dtype` stores an instant: nanoseconds per unit, and the
    integer type of the units; None for text."""
    if isinstance(dtype, pl.Datetime):
        return _NANOS[dtype.time_unit or "us"], pl.Int64()
    if isinstance(dtype, pl.Date):
        return _NANOS["d"], pl.Int32()
    return (_NANOS["ms"], dtype) if dtype.is_integer() else None


def stored_bounds(dtype: pl.DataType, low: int, high: int) -> tuple[int | None, int | None] | None:
    """The least and greatest stored value of a timestamp column of type `dtype` whose instant,
    as `_timestamp` reads it, is within [`low`, `high`] (nanoseconds UTC); None on a side whose
    bound the stored type cannot hold (it bounds nothing there), and for text, whose order is
    not the instants'."""
    stored = _stored(dtype)
    if stored is None:
        return None
    nanos, units = stored
    # A stored value is a whole number of units.
    first, last = pl.Series([-(-low // nanos), high // nanos]).cast(units, strict=False)
    return first, last


def stored_between(
    name: str, dtype: pl.DataType, first: int | None, last: int | None
) -> pl.Expr | None:
    """A test that the stored value of the timestamp column `name` (of type `dtype`) is within
    [`first`, `last`] (`stored_bounds`; None bounds nothing). A plain comparison of the column
    with constants, it lets the Parquet reader skip the row groups whose statistics lie
    outside. None when nothing is bounded."""
    stored = _stored(dtype)
    if stored is None:
        return None
    units = stored[1]
    tests = []
    if first is not None:
        tests.append(pl.col(name) >= pl.lit(first, units).cast(dtype))
    if last is not None:
        tests.append(pl.col(name) <= pl.lit(last, units).cast(dtype))
    return reduce(operator.and_, tests) if tests else None


def _instant(raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A Datetime or Date as nanoseconds UTC; null outside the nanosecond range."""
    if isinstance(dtype, pl.Date):
        return raw.cast(pl.Datetime("ns"), strict=False).dt.replace_time_zone("UTC")
    utc = (
        raw.dt.replace_time_zone("UTC")
        if getattr(dtype, "time_zone", None) is None
        else raw.dt.convert_time_zone("UTC")
    )
    # Both only relabel the stored integers; the cast checks its multiplication: a value
    # beyond the nanosecond range (int64's largest in ms, say) becomes null, not a panic.
    return utc.cast(TIMESTAMP, strict=False)


def _iso_text(text: pl.Expr) -> pl.Expr:
    """The strict form of an ISO-8601 string, or null when it is not one."""
    for pattern, replacement in _ISO_REWRITES:
        text = text.str.replace(pattern, replacement)
    return pl.when(text.str.contains(_ISO_STRICT)).then(text)


def _iso_year(text: pl.Expr) -> pl.Expr:
    return _iso_text(text).str.slice(0, 4).cast(pl.Int32)


def _iso_timestamp(text: pl.Expr) -> pl.Expr:
    # The parser wraps around outside the nanosecond range instead of failing: check the year.
    strict = pl.when(_iso_year(text).is_between(_FIRST_YEAR, _LAST_YEAR)).then(_iso_text(text))
    with_offset = strict.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="ns", time_zone="UTC", strict=False
    )
    naive = strict.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="ns", strict=False)
    return pl.coalesce(with_offset, naive.dt.replace_time_zone("UTC"))


def after_representable_time(raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """True for a timestamp later than the nanosecond range, such as the `9999-12-31` that some
    systems write for "never": later than any delivery can be."""
    if isinstance(dtype, pl.Datetime | pl.Date):
        units, unit = _units(raw, dtype)
        return units > _MAX_NS // _NANOS[unit]
    if dtype.is_integer():
        return raw.cast(pl.Int64, strict=False) > _MAX_EPOCH_MS
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return _iso_year(raw.cast(pl.String).str.strip_chars()) > _LAST_YEAR
    return pl.lit(False)


def _plain(dtype: pl.DataType) -> bool:
    """Types whose values read as text: text itself, numbers, booleans."""
    text = dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)
    return text or dtype.is_numeric() or dtype in (pl.Boolean, pl.Null)


def _text(raw: pl.Expr, dtype: pl.DataType, file: str, column: str) -> pl.Expr:
    if not _plain(dtype):
        raise InputError(f"{file}: column {column!r} is {dtype}: expected text")
    text = raw.cast(pl.String).str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)


def _int(raw: pl.Expr, dtype: pl.DataType, file: str, column: str) -> pl.Expr:
    if not _plain(dtype):
        raise InputError(f"{file}: column {column!r} is {dtype}: expected an integer")
    return raw.cast(pl.Int64, strict=False)


NORMALISERS: dict[Kind, Callable[[pl.Expr, pl.DataType, str, str], pl.Expr]] = {
    Kind.ID: _id,
    Kind.TIMESTAMP: _timestamp,
    Kind.TEXT: _text,
    Kind.INT: _int,
}
DTYPES: dict[Kind, pl.DataType] = {
    Kind.ID: ID(),
    Kind.TIMESTAMP: TIMESTAMP,
    Kind.TEXT: pl.String(),
    Kind.INT: pl.Int64(),
}
PROBLEMS = {
    Kind.ID: "not an ID",
    Kind.TIMESTAMP: "not a timestamp",
    Kind.TEXT: "empty",
    Kind.INT: "not an integer",
}


def as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as text: nested values (lists, structs) as JSON."""
    if dtype.is_nested():
        return (
            pl.struct(pl.col(name).alias("v"))
            .struct.json_encode()
            .str.slice(5)
            .str.head(-1)
            .alias(name)
        )
    if isinstance(dtype, pl.Datetime | pl.Date | pl.Duration):
        return _time_as_text(pl.col(name), dtype).alias(name)
    return pl.col(name).cast(pl.String)


# The calendar polars can write: about ±255,000 years, in seconds.
_SHOWN_SECONDS = 8 * 10**12


def _time_as_text(raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A time as polars writes it; outside its calendar, and for a duration, which polars
    does not write as text, the integer stored and its unit (`9223372036854775807 ms`)."""
    if isinstance(dtype, pl.Duration):
        units, unit = raw.to_physical().cast(pl.Int64), str(dtype.time_unit)
        return units.cast(pl.String) + f" {unit}"
    units, unit = _units(raw, dtype)
    limit = _SHOWN_SECONDS * 10**9 // _NANOS[unit]
    inside = units.is_between(-limit, limit)
    # Outside values are replaced, not just masked: polars formats the values under nulls too.
    shown = pl.when(inside).then(units).otherwise(0).cast(dtype)
    calendar = pl.when(inside).then(shown.cast(pl.String))
    return calendar.fill_null(units.cast(pl.String) + f" {unit}")
