"""Read Parquet inputs into canonical lazy frames: IDs as text, UTC timestamps, bad rows apart.

Each input may be a file, a directory (read recursively) or a glob. Files are grouped by their
Parquet schema so that logs whose column types changed over time can still be read together:
each group is normalised on its own and the canonical frames are stacked.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from incident.config import ColumnMap
from incident.errors import InputError
from incident.schema import COLUMNS, ID, TIMESTAMP, Input, Kind

SOURCE_FILE = "source_file"
REJECT_REASON = "reject_reason"

# Epoch milliseconds that fit in a nanosecond timestamp (years 1677 to 2262).
_MAX_EPOCH_MS = (2**63 - 1) // 1_000_000
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


@dataclass(frozen=True)
class InputSource:
    """One input as found on disk: the path the user gave and the Parquet files under it."""

    input: Input
    path: str
    files: tuple[str, ...]
    rows: int


@dataclass(frozen=True)
class LoadedInput:
    """An input normalised to canonical columns, with the rows that could not be used."""

    source: InputSource
    valid: pl.LazyFrame
    rejected: pl.LazyFrame


def find_files(input_: Input, path: str) -> tuple[str, ...]:
    """The Parquet files of an input path: a file, a directory tree, or a glob, in sorted order."""
    if os.path.isdir(path):
        files = [
            os.path.join(root, name)
            for root, dirs, names in os.walk(path)
            for name in names
            # Hidden files and markers such as _SUCCESS or _metadata are not data.
            if not name.startswith((".", "_"))
            and not any(part.startswith((".", "_")) for part in Path(root).relative_to(path).parts)
        ]
    elif os.path.isfile(path):
        files = [path]
    elif glob.has_magic(path):
        files = [f for f in glob.glob(path, recursive=True) if os.path.isfile(f)]
    else:
        raise InputError(f"{path}: {input_.value} input not found")
    if not files:
        raise InputError(f"{path}: no Parquet files found for {input_.value}")
    return tuple(sorted(files))


def _read_schema(path: str) -> tuple[pa.Schema, int]:
    try:
        metadata = pq.read_metadata(path)
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"{path}: not a readable Parquet file ({error})") from None
    return metadata.schema.to_arrow_schema().remove_metadata(), metadata.num_rows


def _hive_values(path: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"[/\\]([^/\\=]+)=[^/\\]*(?=[/\\])", path)}


def _id(raw: pl.Expr, dtype: pl.DataType, file: str, column: str) -> pl.Expr:
    """Normalise an ID to stripped text; integral floats lose their `.0`; empty is null."""
    if dtype.is_integer():
        return raw.cast(ID)
    if dtype.is_float():
        integral = raw.is_finite() & (raw == raw.floor()) & (raw.abs() < 2.0**63)
        return (
            pl.when(integral)
            .then(raw.cast(pl.Int64, strict=False).cast(ID))
            .otherwise(raw.cast(ID))
        )
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = raw.cast(ID).str.strip_chars()
        return pl.when(text.str.len_bytes() > 0).then(text)
    if isinstance(dtype, pl.Decimal):
        return _id(raw.cast(pl.Float64), pl.Float64(), file, column)
    raise InputError(f"{file}: column {column!r} is {dtype}: expected an integer or string ID")


def _timestamp(raw: pl.Expr, dtype: pl.DataType, file: str, column: str) -> pl.Expr:
    """Normalise a timestamp to nanoseconds UTC; values that do not parse or fit become null."""
    if isinstance(dtype, pl.Datetime):
        utc = (
            raw.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else raw.dt.convert_time_zone("UTC")
        )
        return utc.cast(TIMESTAMP, strict=False)
    if isinstance(dtype, pl.Date):
        return raw.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    if dtype.is_integer():
        in_range = raw.cast(pl.Int64, strict=False).abs() <= _MAX_EPOCH_MS
        nanos = raw.cast(pl.Int64, strict=False) * 1_000_000
        return pl.when(in_range).then(nanos.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC"))
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return _iso_timestamp(raw.cast(pl.String).str.strip_chars())
    raise InputError(
        f"{file}: column {column!r} is {dtype}: expected a timestamp, "
        "epoch milliseconds or an ISO-8601 string"
    )


def _iso_timestamp(text: pl.Expr) -> pl.Expr:
    for pattern, replacement in _ISO_REWRITES:
        text = text.str.replace(pattern, replacement)
    text = text.str.strip_chars()
    strict = pl.when(text.str.contains(_ISO_STRICT)).then(text)
    with_offset = strict.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="ns", time_zone="UTC", strict=False
    )
    naive = strict.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="ns", strict=False)
    return pl.coalesce(with_offset, naive.dt.replace_time_zone("UTC"))


def _text(raw: pl.Expr, dtype: pl.DataType, file: str, column: str) -> pl.Expr:
    if isinstance(dtype, pl.List | pl.Struct | pl.Array | pl.Binary):
        raise InputError(f"{file}: column {column!r} is {dtype}: expected text")
    text = raw.cast(pl.String).str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)


def _int(raw: pl.Expr, dtype: pl.DataType, file: str, column: str) -> pl.Expr:
    return raw.cast(pl.Int64, strict=False)


_NORMALISERS: dict[Kind, Callable[[pl.Expr, pl.DataType, str, str], pl.Expr]] = {
    Kind.ID: _id,
    Kind.TIMESTAMP: _timestamp,
    Kind.TEXT: _text,
    Kind.INT: _int,
}
_DTYPES: dict[Kind, pl.DataType] = {
    Kind.ID: ID(),
    Kind.TIMESTAMP: TIMESTAMP,
    Kind.TEXT: pl.String(),
    Kind.INT: pl.Int64(),
}
_PROBLEMS = {
    Kind.ID: "not an ID",
    Kind.TIMESTAMP: "not a timestamp",
    Kind.TEXT: "empty",
    Kind.INT: "not an integer",
}


def _scan_group(
    source: InputSource, files: list[str], schema: pa.Schema, columns: ColumnMap
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Normalise one group of files that share a Parquet schema."""
    spec = COLUMNS[source.input]
    present = set(schema.names)
    hive = False
    for canonical, column in spec.items():
        name = columns.source(source.input, canonical)
        if name in present:
            continue
        if name in _hive_values(files[0]):
            hive = True  # a partition column was named in a mapping: read it from the path
        elif column.required:
            mapped = "" if name == canonical else f" (mapped to {source.input.value}.{canonical})"
            raise InputError(
                f"{files[0]}: missing required column {name!r}{mapped}; "
                f"map another column with --map {source.input.value}.{canonical}=NAME"
            )
    raw = pl.scan_parquet(files, hive_partitioning=hive, include_file_paths=SOURCE_FILE)
    raw_schema = raw.collect_schema()

    canonical_exprs: list[pl.Expr] = []
    problems: list[tuple[pl.Expr, str]] = []
    sources: set[str] = set()
    for canonical, column in spec.items():
        name = columns.source(source.input, canonical)
        if name not in raw_schema:
            continue
        sources.add(name)
        raw_value = pl.col(name)
        dtype = raw_schema[name]
        value = (
            raw_value.cast(_DTYPES[column.kind])  # a column with only nulls
            if dtype == pl.Null
            else _NORMALISERS[column.kind](raw_value, dtype, files[0], name)
        )
        canonical_exprs.append(value.alias(canonical))
        # Blank text is a null value, not an unreadable one.
        blank = (
            raw_value.cast(pl.String).str.strip_chars().str.len_bytes() == 0
            if dtype in (pl.String, pl.Categorical)
            else pl.lit(False)
        )
        if not column.nullable:
            problems.append((raw_value.is_null(), f"{canonical}: null"))
            problems.append((blank, f"{canonical}: empty"))
        if column.required:
            # Rule 1 judges a row by its required columns; an optional value that does not
            # parse is read as null.
            problems.append(
                (
                    raw_value.is_not_null() & blank.not_() & value.is_null(),
                    f"{canonical}: {_PROBLEMS[column.kind]}",
                )
            )
    extras = [
        pl.col(name)
        for name in raw_schema
        if name not in sources and name not in spec and name != SOURCE_FILE
    ]
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for failed, text in reversed(problems):
        reason = pl.when(failed).then(pl.lit(text)).otherwise(reason)
    marked = raw.with_columns(reason.alias(REJECT_REASON))
    valid = marked.filter(pl.col(REJECT_REASON).is_null()).select(
        *canonical_exprs, *extras, pl.col(SOURCE_FILE)
    )
    rejected = marked.filter(pl.col(REJECT_REASON).is_not_null()).select(
        pl.all().exclude(REJECT_REASON).cast(pl.String), pl.col(REJECT_REASON)
    )
    return valid, rejected


def load_input(input_: Input, path: str, columns: ColumnMap) -> LoadedInput:
    """Find, check and normalise one input; raise `InputError` naming the file and column."""
    files = find_files(input_, path)
    groups: dict[pa.Schema, list[str]] = {}
    rows = 0
    for file in files:
        schema, count = _read_schema(file)
        rows += count
        groups.setdefault(schema, []).append(file)
    source = InputSource(input_, path, files, rows)
    scanned = [_scan_group(source, group, schema, columns) for schema, group in groups.items()]
    valid = pl.concat([v for v, _ in scanned], how="diagonal_relaxed")
    rejected = pl.concat([r for _, r in scanned], how="diagonal_relaxed")
    # Optional columns absent from every file still exist downstream, as nulls.
    present = valid.collect_schema()
    valid = valid.with_columns(
        pl.lit(None, dtype=_DTYPES[column.kind]).alias(name)
        for name, column in COLUMNS[input_].items()
        if name not in present
    )
    if input_ is Input.AUTHORIZATIONS:
        valid, rejected = _split_inverted_grants(valid, rejected)
    return LoadedInput(source, valid, rejected)


def _split_inverted_grants(
    grants: pl.LazyFrame, rejected: pl.LazyFrame
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """A grant revoked before it was granted is a data error, not an empty interval."""
    inverted = pl.col("revoked_at") < pl.col("granted_at")
    rejected_grants = grants.filter(inverted).select(
        pl.all().cast(pl.String),
        pl.lit("revoked_at: before granted_at").alias(REJECT_REASON),
    )
    return (
        grants.filter(inverted.not_() | pl.col("revoked_at").is_null()),
        pl.concat([rejected, rejected_grants], how="diagonal_relaxed"),
    )


def app_registry(apps: LoadedInput) -> pl.DataFrame:
    """app_id -> developer_id (null when unknown); an app with two developers is an input error."""
    registry = (
        apps.valid.select("app_id", "developer_id")
        .unique()
        # A row without a developer adds nothing when another row of the app names one.
        .filter(pl.col("developer_id").is_not_null() | (pl.len().over("app_id") == 1))
        .collect()
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
