"""A Parquet file's structure checked before any reader trusts it.

polars allocates by the counts a file declares (its footer's, and each page header's), and an
impossible allocation, such as a negative count read as a huge one, aborts the process;
pyarrow aborts on some damaged column chunk metadata too (an exception thrown where none may
be). Neither can be caught, so the footer and the page headers are decoded here, in Python,
and checked: row groups, column chunks and pages must agree with each other and lie within
the file. Page contents are not read: a page's header is all a reader sizes anything by,
except a small dictionary page of a column whose blank text rejects a row (`dictionary`).

The footer's statistics, decoded here too (pyarrow aborts on some damaged ones), tell which of
rule 1's checks no row of a column can fail (`Checked.proofs`): no null, no blank text; so
does a dictionary page without a blank entry, when every data page of its chunk points into it.

Footer and page headers are Thrift's compact protocol (`thrift`): only the fields checked are
decoded.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from incident.pipeline.dictionary import BLANK_FIRST_BYTES, DICTIONARY_ENCODINGS, no_blank_entry
from incident.pipeline.thrift import BYTES, INT, TEXT, ParquetDamage, Plan, Truncated, decode

MAGIC = b"PAR1"
# Counts beyond what a 32-bit row index can number are damage, not data.
MAX_COUNT = 2**32
_REPEATED = 2  # FieldRepetitionType.REPEATED
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
# A page header is read in steps of this many bytes (it is usually far shorter).
_HEADER_READ = 256
# A column chunk of an object in a store up to this long is read whole, to find its page
# headers with one request.
_WHOLE_CHUNK = 2**20


# FileMetaData: 2 schema (below), 3 rows, 4 row groups (1 column
# chunks with 3 their metadata: 1 physical type, 4 codec, 5 values, 6 and 7 bytes
# uncompressed and compressed, 9 data and 11 dictionary page offsets, 12 statistics: 3 nulls,
# 5 and 6 the greatest and least value; 3 rows).
_COLUMN_META: Plan = {
    1: INT,
    4: INT,
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
# PageHeader: 1 type, 2 and 3 bytes uncompressed and compressed; the values and encoding of
# 5 a data page (1, 2), 7 a dictionary page (1, 2), 8 a data page v2 (1 values, 2 nulls,
# 3 rows, 4 encoding, 5 and 6 level bytes).
_PAGE_HEADER: Plan = {
    1: INT,
    2: INT,
    3: INT,
    5: {1: INT, 2: INT},
    7: {1: INT, 2: INT},
    8: {1: INT, 2: INT, 3: INT, 4: INT, 5: INT, 6: INT},
}


# What the statistics of a column chunk prove of its values.
NO_NULLS = "no nulls"
NO_BLANKS = "no blank text"
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
    statistics (or, for blank text, the dictionary pages) of every row group prove
    (`NO_NULLS`, `NO_BLANKS`); a column they do not tell of, or a nested one, is absent.
    `bounds` holds, per top-level integer column (timestamps and dates among them) whose every
    row group's statistics give them, how it stores them and each row group's least and
    greatest value."""

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
    footer: dict[int, Any],
    columns: list[tuple[str, bool, bool]],
    by_dictionary: set[tuple[int, int]],
) -> dict[str, frozenset[str]]:
    """Per top-level column, what the statistics of all its row groups prove, or for blank
    text the dictionary pages of the (row group, column) pairs in `by_dictionary`."""
    proofs = {}
    for index, path in _own_columns(columns):
        found = {NO_NULLS, NO_BLANKS}  # no row group: no row, nothing to check
        for number, group in enumerate(footer.get(4, [])):
            chunk = _chunk_proofs(group[1][index].get(3, {}))
            if (number, index) in by_dictionary:
                chunk.add(NO_BLANKS)
            found &= chunk
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


def check_parquet(path: str, blank_checked: frozenset[str] = frozenset()) -> Checked:
    """The rows of a Parquet file and what its statistics prove; `ParquetDamage` when its
    footer or a page header cannot be decoded, or a count or extent contradicts another or the
    file: rows in the row groups and the file, values in each column chunk (one per row where
    nothing repeats) and its pages, and where the pages lie. The dictionary pages of the
    top-level text columns named in `blank_checked` are read for blank text too."""
    with open(path, "rb", buffering=0) as file:
        # A read of a local file is a system call: cheaper than copying the pages between
        # their headers.
        return _check_open(file, blank_checked, whole_chunk=0)


def check_stream(file: BinaryIO, blank_checked: frozenset[str] = frozenset()) -> Checked:
    """`check_parquet` of an object in a store, open unbuffered: one request per read, so a
    column chunk up to `_WHOLE_CHUNK` bytes is read whole, its page headers with one request."""
    return _check_open(file, blank_checked, _WHOLE_CHUNK)


def _check_open(file: BinaryIO, blank_checked: frozenset[str], whole_chunk: int) -> Checked:
    size = file.seek(0, os.SEEK_END)
    if size < 12:
        raise ParquetDamage(f"{size} bytes, too short for a Parquet file")

    def read(at: int, length: int) -> bytes:
        # One call per read, without the buffer a seek would throw away each time.
        file.seek(at)
        return file.read(length) or b""

    return _check_file(read, size, blank_checked, whole_chunk)


def _check_file(
    read: Callable[[int, int], bytes], size: int, blank_checked: frozenset[str], whole_chunk: int
) -> Checked:
    footer = _footer(read, size)
    columns = _leaf_columns(footer.get(2, []))
    rows = 0
    by_dictionary = set()  # (row group, column) whose dictionary proves no blank text
    for index, group in enumerate(footer.get(4, [])):
        group_rows = group.get(3, -1)
        if not 0 <= group_rows < MAX_COUNT:
            raise ParquetDamage(f"row group {index} has {group_rows} rows")
        rows += group_rows
        chunks = group.get(1, [])
        if len(chunks) != len(columns):
            raise ParquetDamage(f"row group {index} has {len(chunks)} of {len(columns)} columns")
        for column, (chunk, (name, repeats, top)) in enumerate(zip(chunks, columns, strict=True)):
            blanks = top and not repeats and name in blank_checked
            try:
                meta = chunk.get(3, {})
                if _check_chunk(read, meta, group_rows, repeats, size, blanks, whole_chunk):
                    by_dictionary.add((index, column))
            except ParquetDamage as error:
                raise ParquetDamage(f"column {name!r} of row group {index}: {error}") from None
    if rows != footer.get(3, -1):
        raise ParquetDamage(f"{footer.get(3)} rows, but its row groups have {rows}")
    proofs = _proofs(footer, columns, by_dictionary)
    return Checked(rows, proofs, _bounds(footer, columns))


def _footer(read: Callable[[int, int], bytes], size: int) -> dict[int, Any]:
    tail = read(size - 8, 8)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != MAGIC:
        raise ParquetDamage("no Parquet footer (PAR1) at its end")
    if length > size - 12:
        raise ParquetDamage(f"a footer of {length} bytes in a {size}-byte file")
    try:
        return decode(read(size - 8 - length, length), _FILE_META)[0]
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
    read: Callable[[int, int], bytes],
    meta: dict[int, Any],
    rows: int,
    repeats: bool,
    size: int,
    blank_checked: bool,
    whole_chunk: int,
) -> bool:
    """A column chunk's counts and extent, then each of its page headers (with one read when
    it is `whole_chunk` bytes long at most); with `blank_checked`, whether its dictionary page
    proves it holds no blank text."""
    values = meta.get(5, -1)
    if not (rows <= values < MAX_COUNT if repeats else values == rows):
        raise ParquetDamage(f"{values} values in {rows} rows")
    start = meta.get(9, -1)
    dictionary = meta.get(11)
    if dictionary:  # some writers put 0 for "none"
        # A dictionary comes first in its chunk. Past the data pages, pyarrow would read the
        # chunk from the data pages and polars from the dictionary: two answers.
        if dictionary > start:
            raise ParquetDamage(f"a dictionary page at {dictionary}, after the data at {start}")
        start = dictionary
    length = meta.get(7, -1)
    if start < 4 or length < 0 or meta.get(6, -1) < 0 or start + length > size:
        raise ParquetDamage(f"pages at {start}, {length} bytes long, in a {size}-byte file")
    if length <= whole_chunk:  # one read for all its pages, rather than one per page
        whole = read(start, length)
        read = lambda at, n: whole[at - start : at - start + n]  # noqa: E731
    in_pages = 0
    at, end = start, start + length
    pages = []  # (where its body starts, its header)
    while at < end:
        header, header_size = _page_header(read, at, end)
        body = header.get(3, -1)
        if body < 0 or header.get(2, -1) < 0 or at + header_size + body > end:
            raise ParquetDamage(f"a page at {at} of {body} bytes, beyond its column chunk")
        in_pages += _page_values(header, body)
        at += header_size + body
        pages.append((at - body, header))
    if in_pages != values:
        raise ParquetDamage(f"{in_pages} values in its pages, {values} in the footer")
    return blank_checked and meta.get(1) == _BYTE_ARRAY and _no_blank_entry(read, meta, pages)


def _no_blank_entry(
    read: Callable[[int, int], bytes], meta: dict[int, Any], pages: list[tuple[int, Plan]]
) -> bool:
    """True when a text chunk's first page is its dictionary, every other page a data page
    that points into it (so every value is an entry), and no entry is blank."""
    if not pages or pages[0][1].get(1) != _DICTIONARY_PAGE:
        return False
    for _, header in pages[1:]:
        kind = header.get(1)
        data = header.get(5, {}) if kind == _DATA_PAGE else header.get(8, {})
        encoding = data.get(2) if kind == _DATA_PAGE else data.get(4)
        if kind not in (_DATA_PAGE, _DATA_PAGE_V2) or encoding not in DICTIONARY_ENCODINGS:
            return False
    at, header = pages[0]
    page, compressed = header.get(7, {}), header.get(3, -1)
    return no_blank_entry(
        meta.get(4, -1),
        page.get(2, -1),
        page.get(1, -1),
        header.get(2, -1),
        compressed,
        lambda: read(at, compressed),
    )


def _page_header(read: Callable[[int, int], bytes], at: int, end: int) -> tuple[Plan, int]:
    """The header of the page at `at` and its size in bytes, read in growing steps."""
    step = _HEADER_READ
    while True:
        data = read(at, min(step, end - at))
        try:
            return decode(data, _PAGE_HEADER)
        except Truncated:
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
