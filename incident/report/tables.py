"""Tables written as files: Parquet for programs, CSV and TSV for spreadsheets, JSON Lines.

Every CSV or TSV the tool writes goes through `write_delimited`, with one spreadsheet policy:

- UTF-8 *with* a byte-order mark: without it Excel opens a double-clicked CSV in the system's
  legacy code page (`Zoë` shows as `ZoÃ«`); LibreOffice, Google Sheets, polars and pandas
  accept the mark. Fields are quoted only when they must be (RFC 4180); lines end with `\\n`.
- IDs kept as text: a text or integer cell that is all digits and has 12 or more of them, or a
  leading zero, is written as `="…"`, which spreadsheets evaluate to exactly that text. Excel
  would otherwise round it to 15 digits, show it in scientific notation (and save that back),
  or drop the zero (`0042` becomes `42`, another ID).
- No formula runs: a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return
  (OWASP "CSV injection"), or with `'`, is prefixed with `'`. IDs, URLs and carried columns
  come from the parties under investigation.
- Timestamps UTC ISO-8601 with `Z` (fractional seconds only when non-zero); lists `;`-joined.

Both encodings are undone exactly by `decoded_cell`, so a CSV report reads back as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import polars as pl

from incident.pipeline.values import as_text

# ISO-8601 UTC with `Z`; `%.f` prints fractional seconds only when they are not zero.
ISO_UTC = "%Y-%m-%dT%H:%M:%S%.fZ"
LIST_SEPARATOR = ";"
# Cells a spreadsheet would turn into a number it cannot give back: 12+ digits, or a leading 0.
_NUMBER_LOST = r"^(?:0[0-9]+|[0-9]{12,})$"
# Cells a spreadsheet would run as a formula, and the escape itself (so that it reads back).
_GUARDED_START = r"^[=+\-@\t\r']"
_AS_TEXT = r'^="[0-9]*"$'

Destination = Path | IO[bytes]


def iso_timestamps(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps as UTC ISO-8601 text with `Z`; a naive one is UTC, as the scan reads it."""
    return frame.with_columns(
        (pl.col(name).dt.convert_time_zone("UTC") if dtype.time_zone is not None else pl.col(name))
        .dt.strftime(ISO_UTC)
        .alias(name)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime)
    )


def _plain_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """Text that polars keeps in other types (categories, enums) as plain text, and bytes as
    hex: every writer handles them alike, and the spreadsheet guard sees them as text."""
    if dtype in (pl.Categorical,) or isinstance(dtype, pl.Enum):
        return pl.col(name).cast(pl.String)
    if dtype == pl.Binary:
        return pl.col(name).bin.encode("hex")
    return pl.col(name)


def _flat(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as one cell per row: lists `;`-joined, other nesting as JSON."""
    if isinstance(dtype, pl.List) and not dtype.inner.is_nested():
        return pl.col(name).list.eval(pl.element().cast(pl.String)).list.join(LIST_SEPARATOR)
    if dtype.is_nested():
        return as_text(name, dtype)
    return _plain_text(name, dtype)


def _spreadsheet_cell(name: str, dtype: pl.DataType) -> pl.Expr:
    """A flat column as spreadsheet-safe text: no formula runs, no ID turns into a number."""
    if dtype == pl.String:
        text = pl.col(name)
        text = pl.when(text.str.contains(_GUARDED_START)).then("'" + text).otherwise(text)
    elif dtype.is_integer():
        text = pl.col(name).cast(pl.String)
    else:
        return pl.col(name)
    return (
        pl.when(text.str.contains(_NUMBER_LOST))
        .then(pl.format('="{}"', text))
        .otherwise(text)
        .alias(name)
    )


def decoded_cell(name: str) -> pl.Expr:
    """A text cell of a CSV written by `write_delimited`, as the value it encodes."""
    cell = pl.col(name)
    return (
        pl.when(cell.str.starts_with("'"))
        .then(cell.str.slice(1))
        .when(cell.str.contains(_AS_TEXT))
        .then(cell.str.slice(2).str.head(-1))
        .otherwise(cell)
        .alias(name)
    )


def write_delimited(frame: pl.DataFrame, destination: Destination, separator: str) -> None:
    """Write `frame` as CSV (`,`) or TSV (tab) under the spreadsheet policy above."""
    flat = iso_timestamps(frame).select(_flat(name, dtype) for name, dtype in frame.schema.items())
    cells = flat.select(_spreadsheet_cell(name, dtype) for name, dtype in flat.schema.items())
    cells.write_csv(
        destination,
        separator=separator,
        include_bom=True,
        line_terminator="\n",
        quote_style="necessary",
    )


def write_csv(frame: pl.DataFrame, destination: Destination) -> None:
    """CSV for spreadsheets."""
    write_delimited(frame, destination, ",")


def write_tsv(frame: pl.DataFrame, destination: Destination) -> None:
    """TSV: for spreadsheets in locales where Excel expects `;` between CSV fields."""
    write_delimited(frame, destination, "\t")


def write_jsonl(frame: pl.DataFrame, destination: Destination) -> None:
    """JSON Lines for programs: one object per row, IDs as strings, lists as arrays."""
    plain = frame.select(_plain_text(name, dtype) for name, dtype in frame.schema.items())
    iso_timestamps(plain).write_ndjson(destination)


# Rows per row group of every Parquet file written: a fixed option, as all of them are.
ROW_GROUP = 512 * 1024


def write_parquet(frame: pl.DataFrame, destination: Destination) -> None:
    """Parquet, with fixed options so that a re-run on the same input writes the same bytes."""
    frame.write_parquet(destination, compression="zstd", statistics=True, row_group_size=ROW_GROUP)


def sink_parquet(frame: pl.LazyFrame, destination: Path) -> None:
    """`write_parquet` for a frame that need not fit in memory: streamed in order, with the
    same options."""
    frame.sink_parquet(
        destination,
        compression="zstd",
        statistics=True,
        row_group_size=ROW_GROUP,
        engine="streaming",
    )
