"""Read Parquet inputs into canonical lazy frames: IDs as text, UTC timestamps, bad rows apart.

Each input may be a file, a directory (read recursively) or a glob (`files`). Files are
grouped by their Parquet schema so that logs whose column types changed over time can still
be read together: each group is normalised on its own (`values`) and the canonical frames
are stacked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import polars as pl
import pyarrow as pa

from incident.config import ColumnMap
from incident.errors import InputError
from incident.pipeline.files import (
    READ_ERRORS,
    distinct_files,
    find_files,
    first_line,
    read_schema,
)
from incident.pipeline.integrity import DATE, INT32, INT64, NO_BLANKS, NO_NULLS, Bounds, Checked
from incident.pipeline.values import (
    DTYPES,
    NORMALISERS,
    PROBLEMS,
    after_representable_time,
    as_text,
    is_blank,
    not_an_id,
)
from incident.schema import (
    ATTRIBUTION_COLUMNS,
    COLUMNS,
    REASON,
    Column,
    Input,
    Kind,
)
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url

_FOOTER_READERS = 8


SOURCE_FILE = "source_file"
REJECT_REASON = "reject_reason"
# Columns the reports add; an input column of the same name would be ambiguous.
RESERVED = frozenset(
    {
        SOURCE_FILE,
        REJECT_REASON,
        "developer_id",
        REASON,
        *ATTRIBUTION_COLUMNS,
        "_row",
        "_status",
    }
)


@dataclass(frozen=True)
class InputSource:
    """One input as found on disk: the path the user gave and the Parquet files under it."""

    input: Input
    path: str
    files: tuple[str, ...]
    file_rows: tuple[int, ...]  # from each file's Parquet footer
    # (copy, original): files with the same bytes as one read, not read again.
    copies: tuple[tuple[str, str], ...] = ()

    @property
    def rows(self) -> int:
        """Rows in all the files."""
        return sum(self.file_rows)


@dataclass(frozen=True)
class LoadedInput:
    """An input normalised to canonical columns, with the rows that could not be used, and the
    groups of files it is read from."""

    source: InputSource
    valid: pl.LazyFrame
    rejected: pl.LazyFrame
    groups: tuple[SourceGroup, ...]


def _hive_values(path: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"[/\\]([^/\\=]+)=[^/\\]*(?=[/\\])", path)}


ROW = "_row"
# A polars row index is 32-bit: a group of files is split before it reaches this many rows.
_MAX_GROUP_ROWS = 2**32 - 1


@dataclass(frozen=True, eq=False)
class SourceGroup:
    """Files of one input that share a Parquet schema, and how to read them canonically.

    `scan()` numbers the rows (`_row`) in file order, the same way on every call, so that a
    first pass can find rows by a few columns and a second pass fetch just those rows whole.
    """

    files: tuple[str, ...]
    hive: bool
    raw_schema: pl.Schema
    canonical: tuple[pl.Expr, ...]
    extras: tuple[pl.Expr, ...]
    problems: tuple[tuple[pl.Expr, str], ...]
    sources: dict[str, str]
    file_rows: tuple[int, ...]  # from each file's Parquet footer
    storage: StorageOptions = NO_OPTIONS  # for files in object storage
    # Problems (by their text) that the footers of every file prove no row has: `is_valid`
    # need not look for them. True of any subset of the files too.
    needless: frozenset[str] = frozenset()
    # Per file, the least and greatest stored value of its integer columns (timestamps among
    # them) where its footer's statistics give them: a file outside a range holds no row in it.
    ranges: tuple[dict[str, tuple[int, int]], ...] = ()

    def scan(self) -> pl.LazyFrame:
        """The raw rows, numbered, with the file each came from."""
        return _scan_files(self.files, self.hive, self.storage)

    def holding(self, rows: pl.Series) -> tuple[SourceGroup, pl.Series]:
        """The group of just the files that hold the numbered `rows`, and those rows numbered
        as its `scan()` numbers them: a few rows to fetch need not all files read. No rows:
        the whole group (a group has a file), which a caller then need not read at all."""
        if rows.is_empty():
            return self, rows
        ends = pl.Series(self.file_rows, dtype=pl.Int64).cum_sum()
        file = ends.search_sorted(rows, side="right")
        kept = set(file.unique().to_list())
        # A kept file's rows move down by the rows of the files left out before it.
        shifts, left_out = [], 0
        for index, size in enumerate(self.file_rows):
            shifts.append(left_out)
            left_out += 0 if index in kept else size
        return self.files_at(kept), (rows - pl.Series(shifts).gather(file)).cast(rows.dtype)

    def overlapping(self, column: str, first: int | None, last: int | None) -> SourceGroup:
        """The group of just the files that may hold a stored value of the source `column`
        within [`first`, `last`] (None: unbounded), by their footers' statistics; a file
        without them is kept. Its rows are numbered anew by its `scan()`. At least one file is
        kept, so that a scan of it has the group's schema."""
        if not self.ranges:
            return self
        kept = {
            index
            for index, ranges in enumerate(self.ranges)
            if column not in ranges
            or (
                (first is None or ranges[column][1] >= first)
                and (last is None or ranges[column][0] <= last)
            )
        }
        return self.files_at(kept or {0})

    def files_at(self, kept: Iterable[int]) -> SourceGroup:
        """The group of the files at the indexes `kept`, in their order, with what is known of
        each file (rows, footer ranges)."""
        kept = set(kept)
        return replace(
            self,
            files=tuple(f for i, f in enumerate(self.files) if i in kept),
            file_rows=tuple(n for i, n in enumerate(self.file_rows) if i in kept),
            ranges=tuple(r for i, r in enumerate(self.ranges) if i in kept),
        )

    def is_valid(self) -> pl.Expr:
        """True for a row whose required columns are all present and parseable (rule 1)."""
        # A check costs a pass over every value (a blank check strips every text): only the
        # ones the footers do not rule out are made.
        needed = [failed for failed, text in self.problems if text not in self.needless]
        if not needed:
            return pl.lit(True)
        return pl.any_horizontal(failed.fill_null(False) for failed in needed).not_()

    def reject_reason(self) -> pl.Expr:
        """The first problem of a row, as `column: problem`; null for a valid row."""
        reason: pl.Expr = pl.lit(None, dtype=pl.String)
        for failed, text in reversed(self.problems):
            reason = pl.when(failed.fill_null(False)).then(pl.lit(text)).otherwise(reason)
        return reason.alias(REJECT_REASON)

    def column(self, canonical: str) -> pl.Expr:
        """One canonical column, normalised."""
        return next(e for e in self.canonical if e.meta.output_name() == canonical)

    def integer(self, canonical: str) -> bool:
        """True when the source column of `canonical` holds integers."""
        source = self.sources.get(canonical)
        return source is not None and self.raw_schema[source].is_integer()

    def normalised(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """Valid raw rows -> canonical columns, extra columns, `source_file` and `_row`."""
        return frame.select(*self.canonical, *self.extras, pl.col(SOURCE_FILE), pl.col(ROW))

    def as_read(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """Rejected raw rows -> every column as text, `source_file` and `reject_reason`."""
        return frame.select(
            *(
                as_text(name, dtype)
                for name, dtype in self.raw_schema.items()
                if name not in (ROW, SOURCE_FILE)
            ),
            pl.col(SOURCE_FILE),
            self.reject_reason(),
        )

    def valid(self, where: pl.Expr | None = None) -> pl.LazyFrame:
        """The valid rows, canonical; with `where`, only the rows it keeps, tested on the raw
        columns before any row is normalised."""
        rows = self.scan() if where is None else self.scan().filter(where)
        return self.normalised(rows.filter(self.is_valid())).drop(ROW)

    def rejected(self) -> pl.LazyFrame:
        """The rejected rows, as read."""
        return self.as_read(self.scan().filter(self.is_valid().not_()))

    def damage(self, engine: Literal["auto", "streaming"] = "streaming") -> str | None:
        """What keeps one of the files from being read, as `FILE: column 'C': …`, found by
        reading each file alone, in every way a scan reads it; None when each file reads."""
        for index, file in enumerate(self.files):
            single = self.files_at([index])
            error = single._fails(single._readings(), engine)
            if error is None:
                continue
            columns = [c for c in self.raw_schema if c not in (ROW, SOURCE_FILE)]
            culprit = next((c for c in columns if single._fails(single._readings(c), engine)), None)
            where = f"column {culprit!r}: " if culprit else ""
            return (
                f"{file}: {where}cannot be read ({self.storage.redact(first_line(error))}); "
                "expected Parquet data that polars can read"
            )
        return None

    def _readings(self, column: str | None = None) -> list[pl.Expr]:
        """Every expression a scan evaluates on the raw columns (on `column` alone, if named):
        as read, as text, normalised, and its problems."""
        names = [
            name
            for name in self.raw_schema
            if name not in (ROW, SOURCE_FILE) and column in (None, name)
        ]
        derived = [*self.canonical, *self.extras, *(failed for failed, _ in self.problems)]
        return [
            *map(pl.col, names),
            *(as_text(name, self.raw_schema[name]) for name in names),
            *(e for e in derived if column is None or column in e.meta.root_names()),
        ]

    def _fails(
        self, readings: list[pl.Expr], engine: Literal["auto", "streaming"]
    ) -> BaseException | None:
        """The error that reading `readings` of every row raises, if any."""
        try:
            aliased = [e.alias(f"_{i}") for i, e in enumerate(readings)]
            self.scan().select(*aliased).collect(engine=engine)
        except READ_ERRORS as error:
            return error
        return None


def collect_input(
    queries: list[pl.LazyFrame],
    inputs: list[LoadedInput],
    engine: Literal["auto", "streaming"] = "streaming",
) -> list[pl.DataFrame]:
    """Run queries that read the files of `inputs` (see `collect_groups`)."""
    return collect_groups(queries, [group for loaded in inputs for group in loaded.groups], engine)


def collect_groups(
    queries: list[pl.LazyFrame],
    groups: Sequence[SourceGroup],
    engine: Literal["auto", "streaming"] = "streaming",
) -> list[pl.DataFrame]:
    """Run queries that read the files of `groups`.

    A failure is an `InputError` naming the file and column that cause it, found by reading
    each file alone (only then: a large scan is not slowed). A failure that no file causes
    alone is not the input's: it is raised as it is, and a panic as a `RuntimeError`.
    """
    try:
        return pl.collect_all(queries, engine=engine)
    except READ_ERRORS as error:
        for group in groups:
            damage = group.damage(engine)
            if damage:
                raise InputError(damage) from None
        if isinstance(error, pl.exceptions.PanicException):
            raise RuntimeError(f"polars panicked: {first_line(error)}") from None
        raise


def _needless(
    sources: dict[str, str], raw_schema: pl.Schema, proofs: list[dict[str, frozenset[str]]]
) -> frozenset[str]:
    """The problems of canonical columns read from `sources` that the footers' `proofs` (one
    per file) rule out in every file."""
    needless = set()
    for canonical, name in sources.items():
        proven = frozenset.intersection(*(file.get(name, frozenset()) for file in proofs))
        text = raw_schema[name] in (pl.String, pl.Categorical)
        # The null check of text stays: it is what decodes a column that detection reads for
        # nothing else (`event_type`), so that a value that is not UTF-8 is still found.
        if NO_NULLS in proven and not text:
            needless.add(f"{canonical}: null")
        if NO_BLANKS in proven and text:
            needless.add(f"{canonical}: empty")
    return frozenset(needless)


def _scan_group(
    source: InputSource,
    files: list[str],
    file_rows: tuple[int, ...],
    schema: pa.Schema,
    columns: ColumnMap,
    storage: StorageOptions,
    checked: list[Checked],
) -> SourceGroup:
    """Check one group of files that share a Parquet schema (`checked`: their footers), and
    plan its normalisation."""
    spec = COLUMNS[source.input]
    hive = _check_columns(source.input, files[0], set(schema.names), columns)
    raw_schema = _raw_schema(files, hive, storage)
    canonical: list[pl.Expr] = []
    problems: list[tuple[pl.Expr, str]] = []
    sources: dict[str, str] = {}
    for name, column in spec.items():
        raw_name = columns.source(source.input, name)
        if raw_name in raw_schema:
            sources[name] = raw_name
            value, found = _plan_column(name, column, raw_name, raw_schema[raw_name], files[0])
            canonical.append(value)
            problems += found
    if source.input is Input.AUTHORIZATIONS:
        problems += _inverted_grants(canonical)
    # Partition columns are read only for the mapping that names one; the others stay out.
    partitions = _hive_values(files[0]) - set(schema.names) if hive else set()
    extras = [
        as_text(name, dtype) if dtype.is_nested() else pl.col(name)
        for name, dtype in raw_schema.items()
        if name not in {*sources.values(), *spec, SOURCE_FILE, ROW, *partitions}
    ]
    return SourceGroup(
        tuple(files),
        hive,
        raw_schema,
        tuple(canonical),
        tuple(extras),
        tuple(problems),
        sources,
        file_rows,
        storage,
        # With hive partitioning a directory's value replaces the file's column of the same
        # name: the file's footer then proves nothing about what is read.
        _needless(sources, raw_schema, [c.proofs for c in checked])
        if files and not hive
        else frozenset(),
        () if hive else tuple(_ranges(raw_schema, c.bounds) for c in checked),
    )


def _ranges(
    raw_schema: pl.Schema, bounds: dict[str, tuple[str, list[Bounds]]]
) -> dict[str, tuple[int, int]]:
    """A file's least and greatest stored value of each integer column its footer bounds, where
    the file stores the values as polars reads them (a date64 is written as days and read as
    milliseconds: its days bound nothing read), with the sign of the column's type."""
    ranges = {}
    for name, (stored, groups) in bounds.items():
        dtype = raw_schema.get(name)
        if dtype is None or stored != _storage_read(dtype):
            continue
        signed = not dtype.is_unsigned_integer()
        lows = [int.from_bytes(low, "little", signed=signed) for low, _ in groups]
        highs = [int.from_bytes(high, "little", signed=signed) for _, high in groups]
        ranges[name] = (min(lows), max(highs))
    return ranges


def _storage_read(dtype: pl.DataType) -> str | None:
    """The `integrity.storage` of a column that polars reads as `dtype` value for value."""
    if isinstance(dtype, pl.Datetime):
        return f"timestamp[{dtype.time_unit}]"
    if isinstance(dtype, pl.Date):
        return DATE
    if dtype in (pl.Int64, pl.UInt64):
        return INT64
    return INT32 if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.UInt8, pl.UInt16, pl.UInt32) else None


def _check_columns(input_: Input, file: str, present: set[str], columns: ColumnMap) -> bool:
    """Check that a file has every required column (as mapped) and none named like a column
    the reports add; True when a mapping names a hive partition column, read from the path."""
    spec = COLUMNS[input_]
    hive = False
    for canonical, column in spec.items():
        name = columns.source(input_, canonical)
        if name in present:
            continue
        if name in _hive_values(file):
            hive = True
        elif column.required:
            mapped = "" if name == canonical else f" (mapped to {input_.value}.{canonical})"
            raise InputError(
                f"{file}: missing required column {name!r}{mapped}; "
                f"map another column with --map {input_.value}.{canonical}=NAME"
            )
    canonical_sources = {columns.source(input_, c) for c in spec}
    for name in sorted(present & RESERVED - canonical_sources):
        raise InputError(
            f"{file}: column {name!r} has the name of a column the reports add; "
            f"expected it renamed, or mapped to a canonical column with --map"
        )
    return hive


def _scan_files(files: Sequence[str], hive: bool, storage: StorageOptions) -> pl.LazyFrame:
    """The raw rows of `files`, numbered, with the file each came from."""
    return pl.scan_parquet(
        list(files),
        glob=False,  # found files: a `[` or `*` in a name is part of the name
        hive_partitioning=hive,
        include_file_paths=SOURCE_FILE,
        row_index_name=ROW,
        storage_options=storage.for_polars(files[0]),
    )


def _raw_schema(files: list[str], hive: bool, storage: StorageOptions) -> pl.Schema:
    """The columns polars reads from a group of files, with `source_file` and `_row`."""

    def schema(paths: list[str]) -> pl.Schema:
        return _scan_files(paths, hive, storage).collect_schema()

    try:
        return schema(files)
    except READ_ERRORS as error:
        culprit, problem = files[0], error
    for file in files:  # which file, when one alone fails
        try:
            schema([file])
        except READ_ERRORS as error:
            culprit, problem = file, error
            break
    raise InputError(
        f"{culprit}: cannot read its schema ({storage.redact(first_line(problem))}); "
        "expected a Parquet file of the types polars reads"
    )


def _plan_column(
    canonical: str, column: Column, name: str, dtype: pl.DataType, file: str
) -> tuple[pl.Expr, list[tuple[pl.Expr, str]]]:
    """How the source column `name` becomes the canonical column, and the problems that
    reject a row for it, as (true when the row has it, `canonical: problem`)."""
    raw = pl.col(name)
    value = (
        raw.cast(DTYPES[column.kind])  # a column with only nulls
        if dtype == pl.Null
        else NORMALISERS[column.kind](raw, dtype, file, name)
    )
    if column.open_ended:
        # A revocation beyond representable time never happens within it: still active.
        never = after_representable_time(raw, dtype)
        value = pl.when(never.not_() | never.is_null()).then(value)
        raw = pl.when(never.not_() | never.is_null()).then(raw)
    problems = []
    # Blank text is a null value, not an unreadable one.
    text = dtype in (pl.String, pl.Categorical)
    blank = is_blank(raw) if text else pl.lit(False)
    if not column.nullable:
        problems.append((raw.is_null(), f"{canonical}: null"))
        if text:
            problems.append((blank, f"{canonical}: empty"))
    unread = raw.is_not_null() & blank.not_() & value.is_null()
    if column.kind is Kind.ID and dtype.is_float():
        # Even an optional ID: read as null, it would hide a person the row exposes.
        problems.append((unread, f"{canonical}: {not_an_id(dtype)}"))
    elif column.required and not (dtype == pl.Null or _always_parses(column.kind, dtype)):
        # Rule 1 judges a row by its required columns; an optional value that does not
        # parse is read as null.
        problems.append((unread, f"{canonical}: {PROBLEMS[column.kind]}"))
    return value.alias(canonical), problems


def _inverted_grants(canonical: list[pl.Expr]) -> list[tuple[pl.Expr, str]]:
    """A grant revoked before it was granted is a data error, not an empty interval."""
    values = {e.meta.output_name(): e for e in canonical}
    if not {"granted_at", "revoked_at"} <= values.keys():
        return []
    return [(values["revoked_at"] < values["granted_at"], "revoked_at: before granted_at")]


def _always_parses(kind: Kind, dtype: pl.DataType) -> bool:
    """Types whose every non-null value normalises: no parse check is needed per row."""
    if kind is Kind.ID:
        # Text IDs only fail by being blank, which is checked apart.
        return dtype.is_integer() or dtype in (pl.String, pl.Categorical)
    return kind is Kind.TEXT


def _chunks(files: list[str], rows: dict[str, int]) -> list[list[str]]:
    """Split files into runs of at most `_MAX_GROUP_ROWS` rows, so row numbers fit."""
    chunks: list[list[str]] = [[]]
    total = 0
    for file in files:
        if chunks[-1] and total + rows[file] > _MAX_GROUP_ROWS:
            chunks.append([])
            total = 0
        chunks[-1].append(file)
        total += rows[file]
    return chunks


def stack(frames: list[pl.LazyFrame], input_: Input) -> pl.LazyFrame:
    """Stack canonical frames of several groups; an extra column whose type differs between
    them becomes text, and optional columns absent from all of them are added as nulls."""
    schemas = [frame.collect_schema() for frame in frames]
    conflicting = {
        name
        for schema in schemas
        for name, dtype in schema.items()
        if any(name in other and other[name] != dtype for other in schemas)
    } - set(COLUMNS[input_])
    stacked = pl.concat(
        [
            frame.with_columns(pl.col(c).cast(pl.String) for c in conflicting if c in schema)
            for frame, schema in zip(frames, schemas, strict=True)
        ],
        how="diagonal_relaxed",
    )
    present = stacked.collect_schema()
    return stacked.with_columns(
        pl.lit(None, dtype=DTYPES[column.kind]).alias(name)
        for name, column in COLUMNS[input_].items()
        if name not in present
    )


def load_input(
    input_: Input, path: str, columns: ColumnMap, storage: StorageOptions = NO_OPTIONS
) -> LoadedInput:
    """Find, check and plan the reading of one input (a local path or a URL, reached with
    `storage`); raise `InputError` naming the file and column. Nothing but Parquet footers
    is read here."""
    read_from_paths = frozenset(columns.source(input_, c) for c in COLUMNS[input_])
    # The columns whose blank text rejects a row (`_plan_column`): their dictionaries may
    # prove the check needless.
    blank_checked = frozenset(
        columns.source(input_, c) for c, column in COLUMNS[input_].items() if not column.nullable
    )
    found = find_files(input_, path, storage)
    files, copies = distinct_files(found, read_from_paths, storage)
    by_schema: dict[pa.Schema, list[str]] = {}
    rows: dict[str, int] = {}
    checks: dict[str, Checked] = {}
    # Objects in a store are a request or two each: their footers are read side by side.
    with ThreadPoolExecutor(max_workers=_FOOTER_READERS if is_url(path) else 1) as pool:
        footers = pool.map(lambda file: read_schema(file, storage, blank_checked), files)
        for file, (schema, checked) in zip(files, footers, strict=True):
            by_schema.setdefault(schema, []).append(file)
            rows[file], checks[file] = checked.rows, checked
    source = InputSource(input_, path, files, tuple(rows[f] for f in files), copies)
    groups = tuple(
        _scan_group(
            source,
            chunk,
            tuple(rows[f] for f in chunk),
            schema,
            columns,
            storage,
            [checks[f] for f in chunk],
        )
        for schema, group in by_schema.items()
        for chunk in _chunks(group, rows)
    )
    valid = stack([g.valid() for g in groups], input_)
    rejected = pl.concat([g.rejected() for g in groups], how="diagonal_relaxed")
    return LoadedInput(source, valid, rejected, groups)


def app_registry(apps: LoadedInput) -> pl.DataFrame:
    """app_id -> developer_id (null when unknown); an app with two developers is an input error."""
    # Every canonical column is read here, small as the registry is, so that a damaged file
    # is named now rather than when attribution reads the apps' endpoints.
    _, registry = collect_input(
        [
            apps.valid.select(pl.col(c).null_count() for c in COLUMNS[Input.APPS]),
            apps.valid.select("app_id", "developer_id")
            .unique()
            # A row without a developer adds nothing when another row of the app names one.
            .filter(pl.col("developer_id").is_not_null() | (pl.len().over("app_id") == 1)),
        ],
        [apps],
        engine="auto",
    )
    conflicts = registry.filter(pl.col("app_id").is_duplicated()).sort("app_id", "developer_id")
    if conflicts.height:
        app_id = conflicts["app_id"][0]
        developers = ", ".join(
            repr(d) for d in conflicts.filter(pl.col("app_id") == app_id)["developer_id"]
        )
        raise InputError(
            f"{apps.source.path}: column 'developer_id': app {app_id!r} is registered to "
            f"several developers ({developers}); expected one developer per app"
        )
    return registry
