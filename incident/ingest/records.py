"""Lines of a source file as raw rows: whitelisted values by canonical column, each with the
line it came from, or the reason the line cannot be used.

Three layouts: the webhook JSON lines of deliveries (`envelope`), flat JSON lines (one object
per line with the input's columns, for authorizations and apps), and CSV with a header line.
Column names come through `ColumnMap`, as for `scan`. Nothing but the canonical columns is
read, and a line that cannot be parsed is kept only as its number and a reason that holds
no byte of it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from incident.config import ColumnMap
from incident.errors import InputError
from incident.ingest import sources
from incident.ingest.envelope import Scalar, flatten, scalar
from incident.ingest.sources import Line
from incident.schema import COLUMNS, Input, Kind


@dataclass
class RawRow:
    """One row as read: its line (from 1), its event's place in the payload (webhook lines),
    its whitelisted values, and a problem found before normalising (then it is rejected)."""

    line: int
    values: dict[str, Scalar]
    problem: str | None = None
    event: int | None = None


@dataclass
class LineCounts:
    """Lines read from one file, and how many of them were blank (no row)."""

    lines: int = 0
    blank: int = 0
    columns_ignored: tuple[str, ...] = field(default=())


def _decoded(line: Line) -> str | RawRow:
    """The text of a line, or the row that rejects it; a byte-order mark on line 1 is dropped."""
    if line.too_long:
        return RawRow(line.number, {}, f"line longer than {sources.MAX_LINE_BYTES:,} bytes")
    try:
        text = line.data.decode("utf-8")
    except UnicodeDecodeError as error:
        return RawRow(line.number, {}, f"not UTF-8 text (at byte {error.start})")
    return text.removeprefix("\ufeff") if line.number == 1 else text


def _parsed(line: Line) -> object | RawRow | None:
    """A line's JSON value; None for a blank line; a rejecting row when it is not JSON."""
    text = _decoded(line)
    if isinstance(text, RawRow):
        return text
    if not text.strip():
        return None
    try:
        parsed: object = json.loads(text)
        return parsed
    except json.JSONDecodeError as error:
        # Its message names what was expected and where, never the text itself.
        return RawRow(line.number, {}, f"not JSON ({error.msg})")
    except RecursionError:
        return RawRow(line.number, {}, "not JSON (nested too deeply)")
    except ValueError:
        return RawRow(line.number, {}, "not JSON (a number too long to read)")


def json_rows(
    lines: Iterable[Line], input_: Input, columns: ColumnMap, counts: LineCounts
) -> Iterator[RawRow]:
    """Rows of JSON lines: webhook deliveries flattened per event, or flat objects."""
    for line in lines:
        counts.lines += 1
        parsed = _parsed(line)
        if parsed is None:
            counts.blank += 1
        elif isinstance(parsed, RawRow):
            yield parsed
        elif input_ is Input.DELIVERIES:
            rows = flatten(parsed, columns)
            if isinstance(rows, str):
                yield RawRow(line.number, {}, rows)
            else:
                yield from (RawRow(line.number, r.values, r.problem, r.index) for r in rows)
        elif isinstance(parsed, dict):
            yield RawRow(
                line.number,
                {c: scalar(parsed.get(columns.source(input_, c))) for c in COLUMNS[input_]},
            )
        else:
            yield RawRow(line.number, {}, "expected a JSON object")


# Cells as a spreadsheet or pandas writes numbers: a float ID (`123.0`, `1e20`) is read as the
# number it writes and so checked like a Parquet float; digits alone are epoch milliseconds.
_FLOAT = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


def csv_cell(text: str, kind: Kind) -> Scalar:
    """A CSV cell as the value it writes, by the kind of its column."""
    if kind is Kind.ID and _FLOAT.match(text) and not _INTEGER.match(text):
        return float(text)
    if kind in (Kind.TIMESTAMP, Kind.INT) and _INTEGER.match(text):
        return int(text)
    return text


def _header(names: list[str], path: str, input_: Input, columns: ColumnMap) -> dict[str, int]:
    """Where each canonical column is in a CSV header; a missing required one, or one named
    twice, is an input error naming the file and the column, as in `scan`."""
    names = [name.strip() for name in names]
    positions: dict[str, int] = {}
    for canonical, column in COLUMNS[input_].items():
        name = columns.source(input_, canonical)
        if names.count(name) > 1:
            raise InputError(f"{path}: column {name!r} appears twice in the header")
        if name in names:
            positions[canonical] = names.index(name)
        elif column.required:
            mapped = "" if name == canonical else f" (mapped to {input_.value}.{canonical})"
            raise InputError(
                f"{path}: missing required column {name!r}{mapped}; "
                f"map another column with --map {input_.value}.{canonical}=NAME"
            )
    return positions


def _text_lines(lines: Iterable[Line], bad: dict[int, str]) -> Iterator[str]:
    """The lines as text for the CSV parser, one per line read, so that its line count is the
    line number; a line that is not UTF-8 or too long is noted in `bad` and given empty."""
    for line in lines:
        text = _decoded(line)
        if isinstance(text, RawRow):
            bad[line.number] = text.problem or ""
            text = ""
        yield text + "\n"


def csv_rows(
    lines: Iterable[Line], path: str, input_: Input, columns: ColumnMap, counts: LineCounts
) -> Iterator[RawRow]:
    """Rows of a CSV file with a header line; a record spanning a bad line is rejected."""
    bad: dict[int, str] = {}
    reader = csv.reader(_text_lines(lines, bad), strict=True)
    csv.field_size_limit(sources.MAX_LINE_BYTES)  # a long text column is not the problem here
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}: empty; expected a header line of column names") from None
    except csv.Error as error:
        raise InputError(f"{path}: header line is not CSV ({error})") from None
    positions = _header(header, path, input_, columns)
    used = set(positions.values())
    counts.columns_ignored = tuple(n for i, n in enumerate(header) if i not in used)
    kinds = {c: COLUMNS[input_][c].kind for c in positions}
    first = reader.line_num + 1
    while True:
        try:
            record = next(reader)
            problem = next((bad[n] for n in range(first, reader.line_num + 1) if n in bad), None)
        except StopIteration:
            break
        except csv.Error as error:
            record, problem = [], f"not CSV ({error})"
        if not record and problem is None:
            counts.blank += 1
        elif problem is not None:
            yield RawRow(first, {}, problem)
        elif len(record) != len(header):
            yield RawRow(first, {}, f"expected {len(header)} fields, found {len(record)}")
        else:
            yield RawRow(first, {c: csv_cell(record[i], kinds[c]) for c, i in positions.items()})
        first = reader.line_num + 1
    counts.lines = reader.line_num
