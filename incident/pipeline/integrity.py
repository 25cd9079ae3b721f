"""A Parquet file's structure checked before any reader trusts it.

polars allocates by the counts a file declares (its footer's, and each page header's), and an
impossible allocation, such as a negative count read as a huge one, aborts the process;
pyarrow aborts on some damaged column chunk metadata too (an exception thrown where none may
be). Neither can be caught, so the footer and the page headers are decoded here, in Python,
and checked: row groups, column chunks and pages must agree with each other and lie within
the file. Page contents are not read: a page's header is all a reader sizes anything by.

The footer's statistics, decoded here too (pyarrow aborts on some damaged ones), tell which of
rule 1's checks no row of a column can fail (`Checked.proofs`): no null, no blank text.

Footer and page headers are Thrift's compact protocol: a struct is a run of (field id, type)
headers and values, ended by a zero byte. Only the fields checked are kept; the rest are
skipped, with every length held against the bytes that remain.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

MAGIC = b"PAR1"
# Counts beyond what a 32-bit row index can number are damage, not data.
MAX_COUNT = 2**32
_MAX_DEPTH = 64
_REPEATED = 2  # FieldRepetitionType.REPEATED
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
# A page header is read in steps of this many bytes (it is usually far shorter).
_HEADER_READ = 256
# A column chunk up to this long is read whole, to find its page headers with one read.
_WHOLE_CHUNK = 2**20


class ParquetDamage(ValueError):
    """A file whose footer or page headers do not decode, or contradict each other."""


class _Truncated(ParquetDamage):
    """Bytes that end inside a value: more may be read, where there are more."""


# What is kept of a struct: its fields of interest, each with how it is read (`INT`, `TEXT`,
# a struct's plan, or a list of one `[plan]`). Everything else is skipped, not built.
Plan = dict[int, Any]
INT, TEXT, BYTES = "int", "text", "bytes"
# FileMetaData: 2 schema (below), 3 rows, 4 row groups (1 column
# chunks with 3 their metadata: 1 physical type, 5 values, 6 and 7 bytes uncompressed and
# compressed, 9 data and 11 dictionary page offsets, 12 statistics: 3 nulls, 5 and 6 the
# greatest and least value; 3 rows).
_COLUMN_META: Plan = {
    1: INT,
    5: INT,
    6: INT,
    7: INT,
    9: INT,
    11: INT,
    12: {3: INT, 5: BYTES, 6: BYTES},
}
# LogicalType, a union: each member by its field id, its fields skipped; TIMESTAMP (8) keeps
# its unit (2: 1 millis, 2 micros, 3 nanos).
_LOGICAL_TYPE: Plan = {member: {} for member in range(1, 19)} | {8: {2: {1: {}, 2: {}, 3: {}}}}
# SchemaElement: 1 physical type, 3 repetition, 4 name, 5 children, 6 converted type,
# 10 logical type.
_FILE_META: Plan = {
    2: [{1: INT, 3: INT, 4: TEXT, 5: INT, 6: INT, 10: _LOGICAL_TYPE}],
    3: INT,
    4: [{1: [{3: _COLUMN_META}], 3: INT}],
}
# PageHeader: 1 type, 2 and 3 bytes uncompressed and compressed; the values of 5 a data page,
# 7 a dictionary page, 8 a data page v2 (with 2 nulls, 3 rows, 5 and 6 level bytes).
_PAGE_HEADER: Plan = {
    1: INT,
    2: INT,
    3: INT,
    5: {1: INT},
    7: {1: INT},
    8: {1: INT, 2: INT, 3: INT, 5: INT, 6: INT},
}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned varint at `at`, and where the next value starts."""
    value = shift = 0
    while True:
        byte = data[at]  # an IndexError here is read as _Truncated by the caller
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ParquetDamage("an integer of more than 64 bits")


def _collection(data: bytes, at: int) -> tuple[int, int, int]:
    """A list's size and element type, held against the bytes left, and where it starts."""
    header = data[at]
    size, at = (header >> 4, at + 1) if header >> 4 != 15 else _varint(data, at + 1)
    if size > len(data) - at:  # every element takes a byte at least
        raise _Truncated("declares more elements than it has bytes")
    return size, header & 0x0F, at


def _skip(data: bytes, at: int, kind: int, depth: int) -> int:
    """Where the value of compact type `kind` at `at` ends."""
    if kind in (4, 5, 6):
        while data[at] & 0x80:
            at += 1
        return at + 1
    if kind == 8:
        size, at = _varint(data, at)
        return at + size
    if kind == 12:
        return _struct(data, at, {}, depth + 1)[1]
    if kind in (1, 2):  # a boolean field carries its value in its type
        return at
    if kind == 3:
        return at + 1
    if kind == 7:
        return at + 8
    if depth > _MAX_DEPTH:
        raise ParquetDamage("values nested too deep")
    if kind in (9, 10):
        size, element, at = _collection(data, at)
        for _ in range(size):
            # In a collection, a boolean is a byte of its own.
            at = at + 1 if element in (1, 2) else _skip(data, at, element, depth + 1)
        return at
    if kind == 11:
        size, at = _varint(data, at)
        if 2 * size > len(data) - at:
            raise _Truncated("declares more elements than it has bytes")
        if size:
            types = data[at]
            at += 1
            for _ in range(2 * size):
                element = types >> 4 if _ % 2 == 0 else types & 0x0F
                at = at + 1 if element in (1, 2) else _skip(data, at, element, depth + 1)
        return at
    raise ParquetDamage(f"a value of unknown type {kind}")


def _read(data: bytes, at: int, kind: int, plan: Any, depth: int) -> tuple[Any, int]:
    """A value kept by its `plan`, and where it ends; a value of another type is damage."""
    if plan == INT and kind in (4, 5, 6):
        raw, at = _varint(data, at)
        return (raw >> 1) ^ -(raw & 1), at  # zigzag
    if plan in (TEXT, BYTES) and kind == 8:
        size, at = _varint(data, at)
        value = bytes(data[at : at + size])
        return value.decode("utf-8", "replace") if plan == TEXT else value, at + size
    if isinstance(plan, dict) and kind == 12:
        return _struct(data, at, plan, depth + 1)
    if isinstance(plan, list) and kind in (9, 10):
        size, element, at = _collection(data, at)
        values = []
        for _ in range(size):
            value, at = _read(data, at, element, plan[0], depth + 1)
            values.append(value)
        return values, at
    raise ParquetDamage(f"a value of type {kind} where another is expected")


def _struct(data: bytes, at: int, plan: Plan, depth: int = 0) -> tuple[dict[int, Any], int]:
    """The fields of the struct at `at` named in `plan`, and where the struct ends."""
    if depth > _MAX_DEPTH:
        raise ParquetDamage("values nested too deep")
    found: dict[int, Any] = {}
    field = 0
    while True:
        header = data[at]
        at += 1
        if not header:
            return found, at
        kind = header & 0x0F
        if header >> 4:
            field += header >> 4
        else:
            raw, at = _varint(data, at)
            field = (raw >> 1) ^ -(raw & 1)
        if field in plan:
            found[field], at = _read(data, at, kind, plan[field], depth)
        else:
            at = _skip(data, at, kind, depth)


def _decode(data: bytes, plan: Plan) -> tuple[dict[int, Any], int]:
    """A whole struct from `data`; `_Truncated` when `data` ends inside it."""
    try:
        found, end = _struct(data, 0, plan)
    except IndexError:
        raise _Truncated("ends inside a value") from None
    if end > len(data):
        raise _Truncated("ends inside a value")
    return found, end


# What the statistics of a column chunk prove of its values.
NO_NULLS = "no nulls"
NO_BLANKS = "no blank text"
# The first bytes of the UTF-8 of every character that polars' `strip_chars` strips (Unicode
# White_Space; tests/test_load.py checks every character): a text that is not empty and
# starts with another byte is not blank.
BLANK_FIRST_BYTES = frozenset({0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xC2, 0xE1, 0xE2, 0xE3})
_INT32, _INT64, _BYTE_ARRAY = 1, 2, 6
# Bounds of a row group's integers: the least and greatest, little-endian as Parquet writes
# them; their sign is the column's type's (`Checked.bounds`).
Bounds = tuple[bytes, bytes]
# How a column stores the integers whose bounds are kept: plain (or annotated as integers)
# 32- or 64-bit, days (DATE), or a timestamp's units.
INT32, INT64, DATE = "int32", "int64", "date"
TIMESTAMP_UNITS = {1: "ms", 2: "us", 3: "ns"}
# Converted types (the older annotation): 6 DATE, 9 and 10 TIMESTAMP_MILLIS and _MICROS,
# 11 to 18 UINT_8 to INT_64 (plain integers: ""); any other is `_OTHER`.
_CONVERTED = {6: DATE, 9: "timestamp[ms]", 10: "timestamp[us]"} | dict.fromkeys(range(11, 19), "")
_OTHER = "other"


@dataclass(frozen=True)
class Checked:
    """A file whose structure is checked: its rows, and per top-level column what the
    statistics of every row group prove (`NO_NULLS`, `NO_BLANKS`); a column they do not tell
    of, or a nested one, is absent. `bounds` holds, per top-level integer column (timestamps
    and dates among them) whose every row group's statistics give them, how it stores them
    and each row group's least and greatest value."""

    rows: int
    proofs: dict[str, frozenset[str]]
    # Per column: how it stores its integers (`storage`), and each row group's bounds.
    bounds: dict[str, tuple[str, list[Bounds]]] = field(default_factory=dict)


def _not_blank(low: bytes, high: bytes) -> bool:
    """True when no text between `low` and `high` (bytewise) can be blank: every one starts
    with a byte from low's first to high's first, and none of those starts a blank. Bounds out
    of order (a writer that compared bytes as signed) prove nothing."""
    if not low or low > high:
        return False
    return not BLANK_FIRST_BYTES & set(range(low[0], high[0] + 1))


def _chunk_proofs(meta: dict[int, Any]) -> set[str]:
    """What one column chunk's statistics prove (nothing without them)."""
    statistics = meta.get(12, {})
    proofs = set()
    if statistics.get(3) == 0:
        proofs.add(NO_NULLS)
    low, high = statistics.get(6), statistics.get(5)
    if (
        meta.get(1) == _BYTE_ARRAY
        and low is not None
        and high is not None
        and _not_blank(low, high)
    ):
        proofs.add(NO_BLANKS)
    return proofs


def _own_columns(columns: list[tuple[str, bool, bool]]) -> list[tuple[int, str]]:
    """(index, path) of the leaf columns read by their own name: top-level, not repeated, and
    alone with that name (a nested one is read through its parent)."""
    paths = Counter(path for path, _, _ in columns)
    return [
        (index, path)
        for index, (path, repeats, top) in enumerate(columns)
        if top and not repeats and paths[path] == 1
    ]


def _proofs(
    footer: dict[int, Any], columns: list[tuple[str, bool, bool]]
) -> dict[str, frozenset[str]]:
    """Per top-level column, what the statistics of all its row groups prove."""
    proofs = {}
    for index, path in _own_columns(columns):
        found = {NO_NULLS, NO_BLANKS}  # no row group: no row, nothing to check
        for group in footer.get(4, []):
            found &= _chunk_proofs(group[1][index].get(3, {}))
        proofs[path] = frozenset(found)
    return proofs


def storage(element: dict[int, Any]) -> str | None:
    """How the schema leaf `element` stores integers: `INT32` or `INT64` (plain, or annotated
    as integers), `DATE`, `timestamp[UNIT]`; None for anything else (text, a decimal, a time
    of day, INT96, a timestamp in 32 bits, an annotation not known here), whose bounds are not
    kept."""
    physical = {_INT32: INT32, _INT64: INT64}.get(element.get(1, -1))
    logical, converted = element.get(10), element.get(6)
    if logical is not None:  # the newer annotation, which a writer of both keeps in step
        kind = _logical(logical)
    elif converted is not None:
        kind = _CONVERTED.get(converted, _OTHER)
    else:
        kind = ""
    if physical is None or kind == _OTHER:
        return None
    if kind == "":
        return physical
    return kind if physical == (INT32 if kind == DATE else INT64) else None


def _logical(logical: dict[int, Any]) -> str:
    """The kind of integers a LogicalType union holds: `DATE`, `timestamp[UNIT]`, "" for
    INTEGER (10), `_OTHER` for any other member, or none known here."""
    if set(logical) == {6}:
        return DATE
    if set(logical) == {8}:
        unit = set(logical[8].get(2, {}))
        return f"timestamp[{TIMESTAMP_UNITS[unit.pop()]}]" if len(unit) == 1 else _OTHER
    return "" if set(logical) == {10} else _OTHER


def _bounds(
    footer: dict[int, Any], columns: list[tuple[str, bool, bool]]
) -> dict[str, tuple[str, list[Bounds]]]:
    """Per top-level integer column, how it stores them and each row group's least and
    greatest value, where every row group's statistics give both (a file without row groups
    holds no value: no bounds)."""
    leaves = [e for i, e in enumerate(footer.get(2, [])) if i and not e.get(5, 0)]
    bounds = {}
    for index, path in _own_columns(columns):
        kind = storage(leaves[index])
        if kind is None:
            continue
        found = []
        for group in footer.get(4, []):
            meta = group[1][index].get(3, {})
            statistics = meta.get(12, {})
            low, high = statistics.get(6), statistics.get(5)
            width = {_INT32: 4, _INT64: 8}.get(meta.get(1, -1))
            if width is None or low is None or high is None or {len(low), len(high)} != {width}:
                break
            found.append((low, high))
        else:
            if found:
                bounds[path] = (kind, found)
    return bounds


def check_parquet(path: str) -> Checked:
    """The rows of a Parquet file and what its statistics prove; `ParquetDamage` when its
    footer or a page header cannot be decoded, or a count or extent contradicts another or the
    file: rows in the row groups and the file, values in each column chunk (one per row where
    nothing repeats) and its pages, and where the pages lie."""
    with open(path, "rb", buffering=0) as file:
        return check_stream(file)


def check_stream(file: BinaryIO) -> Checked:
    """`check_parquet` of a file already open, unbuffered (a local file or an object in a
    store: one request per read)."""
    size = file.seek(0, os.SEEK_END)
    if size < 12:
        raise ParquetDamage(f"{size} bytes, too short for a Parquet file")

    def read(at: int, length: int) -> bytes:
        # One call per read, without the buffer a seek would throw away each time.
        file.seek(at)
        return file.read(length) or b""

    return _check_file(read, size)


def _check_file(read: Callable[[int, int], bytes], size: int) -> Checked:
    footer = _footer(read, size)
    columns = _leaf_columns(footer.get(2, []))
    rows = 0
    for index, group in enumerate(footer.get(4, [])):
        group_rows = group.get(3, -1)
        if not 0 <= group_rows < MAX_COUNT:
            raise ParquetDamage(f"row group {index} has {group_rows} rows")
        rows += group_rows
        chunks = group.get(1, [])
        if len(chunks) != len(columns):
            raise ParquetDamage(f"row group {index} has {len(chunks)} of {len(columns)} columns")
        for chunk, (name, repeats, _) in zip(chunks, columns, strict=True):
            try:
                _check_chunk(read, chunk.get(3, {}), group_rows, repeats, size)
            except ParquetDamage as error:
                raise ParquetDamage(f"column {name!r} of row group {index}: {error}") from None
    if rows != footer.get(3, -1):
        raise ParquetDamage(f"{footer.get(3)} rows, but its row groups have {rows}")
    return Checked(rows, _proofs(footer, columns), _bounds(footer, columns))


def _footer(read: Callable[[int, int], bytes], size: int) -> dict[int, Any]:
    tail = read(size - 8, 8)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != MAGIC:
        raise ParquetDamage("no Parquet footer (PAR1) at its end")
    if length > size - 12:
        raise ParquetDamage(f"a footer of {length} bytes in a {size}-byte file")
    try:
        return _decode(read(size - 8 - length, length), _FILE_META)[0]
    except ParquetDamage as error:
        raise ParquetDamage(f"footer: {error}") from None


def _leaf_columns(schema: list[dict[int, Any]]) -> list[tuple[str, bool, bool]]:
    """(dotted path, whether it or a parent repeats, whether it is top-level) of each leaf
    column, in order."""
    leaves: list[tuple[str, bool, bool]] = []
    # The groups open around the next element: (path, repeats, children still to come).
    stack: list[tuple[str, bool, int]] = []
    for index, element in enumerate(schema):
        name = element.get(4, "")
        children = element.get(5, 0)
        if index == 0:
            stack.append(("", False, children))
            continue
        while stack and stack[-1][2] <= 0:
            stack.pop()
        if not stack:
            raise ParquetDamage("its schema has more columns than its groups hold")
        parent, parent_repeats, left = stack.pop()
        stack.append((parent, parent_repeats, left - 1))
        path = f"{parent}.{name}" if parent else name
        repeats = parent_repeats or element.get(3) == _REPEATED
        if children:
            stack.append((path, repeats, children))
        else:
            leaves.append((path, repeats, not parent))
    return leaves


def _check_chunk(
    read: Callable[[int, int], bytes], meta: dict[int, Any], rows: int, repeats: bool, size: int
) -> None:
    """A column chunk's counts and extent, then each of its page headers."""
    values = meta.get(5, -1)
    if not (rows <= values < MAX_COUNT if repeats else values == rows):
        raise ParquetDamage(f"{values} values in {rows} rows")
    start = meta.get(9, -1)
    dictionary = meta.get(11)
    if dictionary:  # some writers put 0 for "none"
        start = min(start, dictionary)
    length = meta.get(7, -1)
    if start < 4 or length < 0 or meta.get(6, -1) < 0 or start + length > size:
        raise ParquetDamage(f"pages at {start}, {length} bytes long, in a {size}-byte file")
    if length <= _WHOLE_CHUNK:  # one read for all its pages, rather than one per page
        whole = read(start, length)
        read = lambda at, n: whole[at - start : at - start + n]  # noqa: E731
    in_pages = 0
    at, end = start, start + length
    while at < end:
        header, header_size = _page_header(read, at, end)
        body = header.get(3, -1)
        if body < 0 or header.get(2, -1) < 0 or at + header_size + body > end:
            raise ParquetDamage(f"a page at {at} of {body} bytes, beyond its column chunk")
        in_pages += _page_values(header, body)
        at += header_size + body
    if in_pages != values:
        raise ParquetDamage(f"{in_pages} values in its pages, {values} in the footer")


def _page_header(read: Callable[[int, int], bytes], at: int, end: int) -> tuple[Plan, int]:
    """The header of the page at `at` and its size in bytes, read in growing steps."""
    step = _HEADER_READ
    while True:
        data = read(at, min(step, end - at))
        try:
            return _decode(data, _PAGE_HEADER)
        except _Truncated:
            if len(data) >= end - at:
                raise ParquetDamage(f"a page header at {at} runs past its column chunk") from None
            step *= 16
        except ParquetDamage as error:
            raise ParquetDamage(f"page header at {at}: {error}") from None


def _page_values(header: dict[int, Any], body: int) -> int:
    """The values a data page holds (0 for another page), checked against what it can hold."""
    kind = header.get(1)
    if kind == _DICTIONARY_PAGE:
        counts = [header.get(7, {}).get(1, -1)]
    elif kind == _DATA_PAGE:
        counts = [header.get(5, {}).get(1, -1)]
    elif kind == _DATA_PAGE_V2:
        page = header.get(8, {})
        counts = [page.get(k, -1) for k in (1, 2, 3, 5, 6)]
        if page.get(5, 0) + page.get(6, 0) > body:
            raise ParquetDamage("a data page whose levels are longer than the page")
    else:
        return 0  # an index page, or a kind from a later format: its bytes are skipped
    if not all(0 <= count < MAX_COUNT for count in counts):
        raise ParquetDamage(f"a page with counts {counts}")
    return 0 if kind == _DICTIONARY_PAGE else counts[0]
