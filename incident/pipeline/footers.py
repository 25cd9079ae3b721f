"""What the Parquet footers of an input tell without reading a row: the null values of each
canonical column and the time range its time columns cover, from the statistics of every row
group (for `validate`); and, for the scan's first pass, the rule-1 checks of text columns that
no row of a file can fail, from the dictionaries their values are written with, where neither
the statistics nor the small dictionary pages that `integrity` reads ruled them out (a
dictionary too large for it, a codec whose stream does not say its size, values written plain
after the dictionary grew too large). A
fact some footer cannot give (no statistics, a partition column, a value that does not
normalise) is unknown, never guessed.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from incident.pipeline.values import is_blank
from incident.schema import COLUMNS, Kind
from incident.storage import objects
from incident.storage.locations import is_url

if TYPE_CHECKING:  # load reads the proofs below: only its types are needed here
    from incident.pipeline.load import LoadedInput, SourceGroup

# What decoding a footer's statistics can raise on a damaged but readable file.
_FOOTER_ERRORS = (OSError, ValueError, LookupError, ArithmeticError, pa.ArrowException)
_UNITS = {"milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}


@dataclass(frozen=True)
class FooterFacts:
    """Per canonical column, its null values over every file (None: unknown); per time
    column, the earliest and latest value, normalised (None: unknown)."""

    nulls: dict[str, int | None]
    ranges: dict[str, tuple[datetime, datetime] | None]


class _Unknown(Exception):
    """A footer that does not give the fact asked for."""


def _bound(statistics: Any, dtype: pl.DataType, minimum: bool) -> Any:
    """A row group's least or greatest value as the integer polars stores for `dtype`."""
    if isinstance(dtype, pl.Datetime | pl.Date):
        return statistics.min_raw if minimum else statistics.max_raw
    return statistics.min if minimum else statistics.max


def _orderable(column: Any, dtype: pl.DataType) -> bool:
    """True when the statistics of `column` order its values as instants: integers, dates and
    timestamps stored in the unit polars reads (never text, whose offsets reorder it)."""
    if isinstance(dtype, pl.Datetime):
        logical = json.loads(column.logical_type.to_json())
        unit = _UNITS.get(str(logical.get("timeUnit")))
        return bool(column.physical_type == "INT64" and unit == dtype.time_unit)
    if isinstance(dtype, pl.Date):
        return bool(column.physical_type == "INT32")
    return dtype.is_integer()


def _file_facts(
    group: SourceGroup, file: str, times: set[str]
) -> tuple[dict[str, int | None], dict[str, list[Any] | None]]:
    """Null counts and time bounds (raw) of one file, per canonical column."""
    # Through the scan's storage options: an object is read from the store the user named.
    with objects.open_input(file, group.storage) as stream:
        metadata = pq.read_metadata(stream)
    index = {metadata.schema.column(i).path: i for i in range(metadata.num_columns)}
    nulls: dict[str, int | None] = {}
    bounds: dict[str, list[Any] | None] = {}
    for canonical, source in group.sources.items():
        nulls[canonical], bounds[canonical] = 0, []
        position = index.get(source)
        for number in range(metadata.num_row_groups):
            row_group = metadata.row_group(number)
            statistics = None if position is None else row_group.column(position).statistics
            if statistics is None or not statistics.has_null_count:
                nulls[canonical] = None
                bounds[canonical] = None
                break
            nulls[canonical] = (nulls[canonical] or 0) + statistics.null_count
            found = bounds[canonical]
            if canonical not in times or found is None:
                continue
            if statistics.has_min_max:
                found += [_bound(statistics, group.raw_schema[source], m) for m in (True, False)]
            elif statistics.null_count != row_group.num_rows:
                bounds[canonical] = None
    return nulls, bounds


def _normalised_range(group: SourceGroup, canonical: str, values: list[Any]) -> Any:
    """The least and greatest of raw bounds, normalised; unknown when one does not normalise
    (an extreme value stored for "never", say)."""
    source = group.sources[canonical]
    dtype = group.raw_schema[source]
    physical = pl.Int32 if isinstance(dtype, pl.Date) else pl.Int64
    raw = pl.Series(source, values).cast(physical).cast(dtype)
    normalised = pl.DataFrame([raw]).select(group.column(canonical)).to_series()
    if normalised.null_count() or not len(normalised):
        raise _Unknown
    return normalised.min(), normalised.max()


def _add(total: int | None, count: int | None) -> int | None:
    return None if total is None or count is None else total + count


def footer_facts(loaded: LoadedInput) -> FooterFacts:
    """The facts the footers of `loaded`'s files give about its canonical columns."""
    columns = COLUMNS[loaded.source.input]
    times = {c for c, column in columns.items() if column.kind is Kind.TIMESTAMP}
    nulls: dict[str, int | None] = dict.fromkeys(columns, 0)
    ranges: dict[str, tuple[datetime, datetime] | None] = {}
    for group in loaded.groups:
        for canonical in set(columns) - set(group.sources):
            # Absent from these files: every row is null.
            nulls[canonical] = _add(nulls[canonical], sum(group.file_rows))
        bounds: dict[str, list[Any] | None] = {c: [] for c in times & set(group.sources)}
        for file in group.files:
            try:
                file_nulls, file_bounds = _file_facts(group, file, times)
            except _FOOTER_ERRORS:
                file_nulls, file_bounds = dict.fromkeys(group.sources), dict.fromkeys(bounds)
            for canonical, count in file_nulls.items():
                nulls[canonical] = _add(nulls[canonical], count)
            for canonical, found in bounds.items():
                more = file_bounds[canonical]
                bounds[canonical] = None if found is None or more is None else found + more
        for canonical, values in bounds.items():
            ranges[canonical] = _merge(ranges, canonical, group, values)
    return FooterFacts(nulls, ranges)


def _merge(
    ranges: dict[str, tuple[datetime, datetime] | None],
    canonical: str,
    group: SourceGroup,
    values: list[Any] | None,
) -> tuple[datetime, datetime] | None:
    """The range so far of `canonical` widened by one group's raw bounds."""
    if values is None or (canonical in ranges and ranges[canonical] is None):
        return None
    if not values:
        return ranges.get(canonical)
    try:
        low, high = _normalised_range(group, canonical, values)
    except (_Unknown, pl.exceptions.PolarsError):
        return None
    if not isinstance(low, datetime) or not isinstance(high, datetime):
        return None
    earlier = ranges.get(canonical)
    return (min(low, earlier[0]), max(high, earlier[1])) if earlier else (low, high)


def _dictionaries(
    group: SourceGroup, file: str, columns: list[str]
) -> dict[str, list[pa.Array] | None]:
    """Per text column of a file, the dictionaries every value of it points to, read with the
    indices but no value decoded; None when a row group holds the column without a dictionary
    (it would be encoded value by value: no cheaper than the check)."""
    found: dict[str, list[pa.Array] | None] = {column: [] for column in columns}
    with objects.open_input(file, group.storage) as stream:
        # A local file by its path: pyarrow reads it without going through Python.
        parquet = pq.ParquetFile(stream if is_url(file) else file, read_dictionary=columns)
        schema = parquet.metadata.schema
        index = {schema.column(i).path: i for i in range(parquet.metadata.num_columns)}
        for number in range(parquet.num_row_groups):
            chunks = parquet.metadata.row_group(number)
            for column in columns:
                if not chunks.column(index[column]).has_dictionary_page:
                    found[column] = None
            read = [column for column in columns if found[column] is not None]
            if not read:
                break
            table = parquet.read_row_group(number, columns=read, use_threads=False)
            for column in read:
                entries = found[column]
                if entries is not None:
                    entries += [chunk.dictionary for chunk in table.column(column).chunks]
    return found


def _any_blank(dictionaries: list[pa.Array]) -> bool:
    """The scan's own test of blank text, on the entries of dictionaries instead of every value;
    true when they cannot be read as text."""
    try:
        entries = pa.chunked_array([d.cast(pa.large_string()) for d in dictionaries])
        return bool(pl.DataFrame({"v": entries}).select(is_blank(pl.col("v")).any()).item())
    except (*_FOOTER_ERRORS, pl.exceptions.PolarsError):
        return True


def with_dictionary_proofs(group: SourceGroup) -> SourceGroup:
    """`group` with the blank checks of its text columns that no statistics ruled out made
    needless where the dictionaries of every file rule them out: reading a dictionary's
    indices costs a fraction of stripping every value."""
    checks = {text for _, text in group.problems} - group.needless
    wanted = {
        source: canonical
        for canonical, source in group.sources.items()
        if group.raw_schema[source] in (pl.String, pl.Categorical)
        and f"{canonical}: empty" in checks
    }
    # A hive directory's value replaces the file's column of the same name (see `load`).
    if not wanted or group.hive:
        return group
    entries: dict[str, list[pa.Array] | None] = {source: [] for source in wanted}
    # pyarrow decodes without the GIL: the files are read side by side.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        try:
            for found in pool.map(lambda file: _dictionaries(group, file, [*wanted]), group.files):
                for source, arrays in found.items():
                    kept = entries[source]
                    entries[source] = None if arrays is None or kept is None else kept + arrays
        except _FOOTER_ERRORS:
            return group  # unreadable here: the scan reads it, and names what is wrong
    needless = {
        f"{wanted[source]}: empty"
        for source, arrays in entries.items()
        if arrays and not _any_blank(arrays)
    }
    return replace(group, needless=group.needless | needless)
