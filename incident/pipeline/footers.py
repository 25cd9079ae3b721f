"""What the Parquet footers of an input tell without reading a row: the null values of each
canonical column and the time range its time columns cover, from the statistics of every row
group. A fact some footer cannot give (no statistics, a partition column, a value that does
not normalise) is unknown, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from incident.pipeline.load import LoadedInput, SourceGroup
from incident.schema import COLUMNS, Kind
from incident.storage import objects

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
