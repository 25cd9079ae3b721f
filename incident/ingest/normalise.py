"""A batch of raw rows normalised as `scan` normalises a Parquet column, and the rows that
rule 1 rejects set apart with their reason.

A JSON field may hold a string in one line and a number in the next, so each column of a
batch is split by the type of its values (text, integer, float, boolean) and every part goes
through the scan's own normaliser for that type (`incident.pipeline.values`): IDs as exact
text (a float only when it is an exact integer below 2^53), times as UTC nanoseconds from
ISO-8601 or epoch milliseconds, blank text as null. The problems that reject a row are the
scan's, in its order (`incident.pipeline.load`): a required column null, empty or
unparseable; an ID that is not exact, even in an optional column; a grant revoked before it
was granted. An optional value that does not parse is null.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from incident.errors import InputError
from incident.ingest.envelope import Nested, Scalar
from incident.ingest.records import RawRow
from incident.pipeline.values import (
    DTYPES,
    NORMALISERS,
    PROBLEMS,
    after_representable_time,
    not_an_id,
)
from incident.schema import COLUMNS, Column, Input, Kind

# The bookkeeping columns of a quarantined row, before its values as text.
SOURCE_FILE, LINE, EVENT, REJECT_REASON = "source_file", "line", "event_index", "reject_reason"
PROBLEM = "_problem"
_INT64 = range(-(2**63), 2**63)
_TYPES: tuple[tuple[type, pl.DataType], ...] = (
    (str, pl.String()),
    (bool, pl.Boolean()),  # before int: a bool is an int in Python
    (int, pl.Int64()),
    (float, pl.Float64()),
)


@dataclass(frozen=True)
class Batch:
    """A batch normalised: the valid rows in canonical columns, and the rejected rows with
    their file, line, event, reason and whitelisted values as text."""

    valid: pl.DataFrame
    rejected: pl.DataFrame


def _typed(name: str, values: list[Scalar], kind: Kind) -> dict[str, pl.Series]:
    """The values of one column split by type, one series per type that occurs; values that
    no type holds (nested, an integer beyond 64 bits where a number is needed) are marked
    `unreadable`."""
    parts: dict[str, list[object]] = {}
    unreadable = [False] * len(values)
    for row, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
            if kind in (Kind.ID, Kind.TEXT):
                value = str(value)  # an ID beyond 64 bits is still exact as text
            else:
                unreadable[row] = True
                continue
        dtype = next((d for t, d in _TYPES if isinstance(value, t)), None)
        if dtype is None or isinstance(value, Nested):
            unreadable[row] = True
            continue
        if str(dtype) not in parts:
            parts[str(dtype)] = [None] * len(values)
        parts[str(dtype)][row] = value
    found = {
        f"{name}|{d}": pl.Series(f"{name}|{d}", parts[str(d)], dtype=d)
        for _, d in _TYPES
        if str(d) in parts
    }
    if any(unreadable):
        found[f"{name}|unreadable"] = pl.Series(f"{name}|unreadable", unreadable)
    return found


def _plan(
    name: str, column: Column, parts: dict[str, pl.DataType], file: str
) -> tuple[pl.Expr, list[tuple[pl.Expr, str]]]:
    """The normalised column, and the problems that reject a row for it (scan's order)."""
    values: list[pl.Expr] = []
    present: list[pl.Expr] = []
    never: list[pl.Expr] = []
    blank, floats = pl.lit(False), pl.lit(False)
    for key, dtype in parts.items():
        raw = pl.col(key)
        if key.endswith("|unreadable"):
            present.append(raw)
            continue
        present.append(raw.is_not_null())
        try:
            value = NORMALISERS[column.kind](raw, dtype, file, name)
        except InputError:  # a type this kind never takes (a float time, a boolean ID)
            value = pl.lit(None, dtype=DTYPES[column.kind])
        if column.open_ended:
            later = after_representable_time(raw, dtype).fill_null(False)
            value, never = pl.when(later.not_()).then(value), [*never, later]
        values.append(value)
        if dtype == pl.String:
            blank = raw.str.strip_chars().str.len_bytes() == 0
        if dtype == pl.Float64:
            floats = raw.is_not_null()
    value = pl.coalesce(values) if values else pl.lit(None, dtype=DTYPES[column.kind])
    # Computed once as `NAME|value`: the problems below read it rather than normalise again.
    value = value.cast(DTYPES[column.kind]).alias(f"{name}|value")
    is_present = pl.any_horizontal(present) if present else pl.lit(False)
    later = pl.any_horizontal(never) if never else pl.lit(False)
    done = pl.col(f"{name}|value").is_null()
    unread = is_present & blank.fill_null(False).not_() & done & later.not_()
    problems: list[tuple[pl.Expr, str]] = []
    if not column.nullable:
        problems += [
            (is_present.not_(), f"{name}: null"),
            (blank.fill_null(False), f"{name}: empty"),
        ]
    if column.kind is Kind.ID:
        # Even an optional ID: read as null, it would hide a person the row exposes.
        problems += [
            (unread & floats.fill_null(False), f"{name}: {not_an_id(pl.Float64())}"),
            (unread, f"{name}: {PROBLEMS[Kind.ID]}"),
        ]
    elif column.required:
        problems.append((unread, f"{name}: {PROBLEMS[column.kind]}"))
    return value, problems


def _reason(problems: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """The first problem of a row; a problem found while reading it comes first."""
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for failed, text in reversed(problems):
        reason = pl.when(failed).then(pl.lit(text)).otherwise(reason)
    return pl.coalesce(pl.col(PROBLEM), reason).alias(REJECT_REASON)


def as_text(value: Scalar) -> str | None:
    """A whitelisted value as the quarantine keeps it: scalars as written, nested values
    (whose contents are never kept) as null."""
    if value is None or isinstance(value, Nested):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


def raw_frame(rows: list[RawRow], input_: Input) -> pl.DataFrame:
    """Rows as read, column-wise: their line and event, the problem found while reading, each
    canonical column split by type (`NAME|String`, `NAME|Int64`, …, `NAME|unreadable`) and
    as the quarantine keeps it (`NAME|text`). `blocks` builds the same frame column-wise."""
    series: list[pl.Series] = [
        pl.Series(LINE, [r.line for r in rows], dtype=pl.Int64),
        pl.Series(EVENT, [r.event for r in rows], dtype=pl.Int64),
        pl.Series(PROBLEM, [r.problem for r in rows], dtype=pl.String),
    ]
    for name, column in COLUMNS[input_].items():
        values = [r.values.get(name) for r in rows]
        series += _typed(name, values, column.kind).values()
        series.append(pl.Series(f"{name}|text", [as_text(v) for v in values], dtype=pl.String))
    return pl.DataFrame(series, height=len(rows))


def normalise(rows: list[RawRow], input_: Input, file: str) -> Batch:
    """Normalise a batch of rows of one file (see `normalise_frame`)."""
    return normalise_frame(raw_frame(rows, input_), input_, file)


def normalise_frame(frame: pl.DataFrame, input_: Input, file: str) -> Batch:
    """Normalise a `raw_frame` of one file: rows that pass rule 1 in canonical columns, the
    others with their reason, for the quarantine."""
    spec = COLUMNS[input_]
    plans: dict[str, tuple[pl.Expr, list[tuple[pl.Expr, str]]]] = {}
    for name, column in spec.items():
        parts = {
            key: dtype
            for key, dtype in frame.schema.items()
            if key.startswith(f"{name}|") and key != f"{name}|text"
        }
        plans[name] = _plan(name, column, parts, file)
    problems = [p for _, found in plans.values() for p in found]
    if input_ is Input.AUTHORIZATIONS:
        granted, revoked = pl.col("granted_at|value"), pl.col("revoked_at|value")
        problems.append((revoked < granted, "revoked_at: before granted_at"))
    problems = [(failed.fill_null(False), text) for failed, text in problems]
    frame = frame.with_columns(value for value, _ in plans.values()).with_columns(_reason(problems))
    bad = pl.col(REJECT_REASON).is_not_null()
    values = (pl.col(f"{name}|value").alias(name) for name in spec)
    valid = frame.filter(bad.not_()).select(values)
    rejected = frame.filter(bad).select(
        pl.lit(file, dtype=pl.String).alias(SOURCE_FILE),
        LINE,
        EVENT,
        REJECT_REASON,
        *(pl.col(f"{c}|text").alias(c) for c in spec),
    )
    return Batch(valid, rejected)


def quarantine_schema(input_: Input) -> dict[str, pl.DataType]:
    """The columns of the quarantine of an input."""
    return {
        SOURCE_FILE: pl.String(),
        LINE: pl.Int64(),
        EVENT: pl.Int64(),
        REJECT_REASON: pl.String(),
        **{c: pl.String() for c in COLUMNS[input_]},
    }
