"""A scan result directory, read back.

Every command that reads an earlier result (`diff`, `export`, `notify`, `report`) reads it
here, so that each refuses a directory that is not a result with the same words, and reads a
table the same way: from its Parquet file, or, for the users, developers and endpoints
reports of a scan run with `--format csv` only, from its CSV, every cell decoded as written
(`incident.report.tables`) and parsed back to the type the Parquet report holds (IDs stay
text, `;`-joined lists become lists, times end in `Z`).

Every error is an `InputError` that names the directory or the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import polars as pl

from incident.errors import InputError
from incident.report import FORMATS, TABLE_FORMATS
from incident.report.tables import ISO_UTC, LIST_SEPARATOR, decoded_cell
from incident.schema import DEVELOPERS_SCHEMA, ENDPOINTS_SCHEMA, TIMESTAMP, USERS_SCHEMA
from incident.summary import TOOL, Summary

SUMMARY = "summary.json"
SUMMARY_MARKDOWN = "summary.md"
MANIFEST = "manifest.json"
HTML_REPORT = "report.html"
# Report columns added after the first results were written: read as null from older ones.
ADDED_LATER = frozenset({"intended_developer_ids"})
# A list and the column that counts its IDs: a CSV list split wrong would not match.
_COUNTED_LISTS = {"app_ids": "apps", "developer_ids": "developers"}
_LIST_IDS = {
    "developer_ids": "developer_id",
    "app_ids": "app_id",
    "intended_developer_ids": "intended_developer_id",
}


class Table(StrEnum):
    """The tables of a result, named as their files are."""

    USERS = "users"
    DEVELOPERS = "developers"
    ENDPOINTS = "endpoints"
    MISDELIVERIES = "misdeliveries"
    REJECTED = "rejected"

    @property
    def schema(self) -> dict[str, pl.DataType] | None:
        """Column names and types, for the reports a scan may write as CSV only; None for the
        reports always written as Parquet, read with the columns they have."""
        return SCHEMAS.get(self)


SCHEMAS: dict[Table, dict[str, pl.DataType]] = {
    Table.USERS: USERS_SCHEMA,
    Table.DEVELOPERS: DEVELOPERS_SCHEMA,
    Table.ENDPOINTS: ENDPOINTS_SCHEMA,
}
# The per-entity reports and their ID column: one row per value.
KEYS: dict[Table, str] = {Table.USERS: "user_id", Table.DEVELOPERS: "developer_id"}
# The reports a scan writes in every table format asked for; the others are always Parquet.
REPORTS = (Table.USERS, Table.DEVELOPERS, Table.ENDPOINTS)
ALWAYS_PARQUET = (Table.MISDELIVERIES, Table.REJECTED, "rejected_authorizations")
# Every file a result may hold: an --out directory with anything else is not replaced.
RESULT_FILES = frozenset(
    {f"{table}.{FORMATS[f].extension}" for table in REPORTS for f in TABLE_FORMATS}
    | {f"{name}.parquet" for name in ALWAYS_PARQUET}
    | {HTML_REPORT, SUMMARY, SUMMARY_MARKDOWN, MANIFEST}
)


def _not_a_result(result: Path, why: str) -> InputError:
    return InputError(f"{result}: not an incident result ({why})")


def _incomplete(result: Path, why: str) -> InputError:
    return InputError(f"{result}: incomplete incident result ({why})")


def _detail(error: Exception) -> str:
    """The first line of an error, without the hints polars adds below it."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _summary_document(result: Path) -> dict[str, Any]:
    """The parsed `summary.json` of a directory that incident wrote; `InputError` otherwise."""
    result = Path(result)
    if not result.is_dir():
        raise _not_a_result(result, "not a directory" if result.exists() else "does not exist")
    path = result / SUMMARY
    if not path.is_file():
        raise _not_a_result(result, f"no {SUMMARY}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise _not_a_result(result, f"{SUMMARY} unreadable: {_detail(error)}") from None
    tool = document.get("tool") if isinstance(document, dict) else None
    if not isinstance(tool, dict) or tool.get("name") != TOOL:
        raise _not_a_result(result, f"{SUMMARY} not written by incident")
    return document  # type: ignore[no-any-return]


def check_result(result: Path) -> None:
    """Raise `InputError` naming the directory unless it is an incident result: a directory
    whose `summary.json` incident wrote."""
    _summary_document(result)


def is_result(directory: Path) -> bool:
    """True for an incident result holding nothing but the files a result holds."""
    try:
        check_result(directory)
    except InputError:
        return False
    return {p.name for p in directory.iterdir()} <= RESULT_FILES


def holds_only_result_files(names: Iterable[str]) -> bool:
    """True when every name is one a result's files have: a prefix in object storage with
    nothing else may be replaced by a new result (an interrupted upload left no manifest)."""
    return set(names) <= RESULT_FILES


def read_summary(result: Path) -> Summary:
    """The result's summary; `InputError` naming the directory when it is not a result, or
    naming `summary.json` when a section is missing or malformed."""
    document = _summary_document(result)
    return Summary.from_json(document, origin=str(Path(result) / SUMMARY))


def report_path(result: Path, report: Table) -> Path:
    """The report's Parquet file, else its CSV (users, developers, endpoints of a scan run with
    `--format csv` only); `InputError` naming the directory when it has neither."""
    extensions = ("parquet", "csv") if report.schema is not None else ("parquet",)
    for extension in extensions:
        path = Path(result) / f"{report.value}.{extension}"
        if path.is_file():
            return path
    files = " or ".join(f"{report.value}.{extension}" for extension in extensions)
    raise _incomplete(Path(result), f"no {files}")


def has_report(result: Path, report: Table) -> bool:
    """True when the result holds the report, in Parquet or CSV."""
    try:
        report_path(result, report)
    except InputError:
        return False
    return True


def _check_columns(
    path: Path, report: Table, present: Iterable[str], needed: Iterable[str]
) -> None:
    have = set(present)
    missing = [f"'{name}'" for name in needed if name not in have]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        raise InputError(f"{path}: missing {noun} {', '.join(missing)} of the {report} report")


def _read_parquet(path: Path, report: Table, columns: Sequence[str] | None) -> pl.DataFrame:
    frame = pl.scan_parquet(path, glob=False)
    try:
        if columns is None:
            return frame.collect()
        present = frame.collect_schema().names()
        _check_columns(path, report, present, (c for c in columns if c not in ADDED_LATER))
        return frame.select(c for c in columns if c in present).collect()
    except (OSError, pl.exceptions.PolarsError) as error:
        raise InputError(f"{path}: not a readable {report} report ({_detail(error)})") from None


def _read_csv(path: Path, report: Table, columns: Sequence[str]) -> pl.DataFrame:
    # Every cell is read as text, to be parsed back by `_typed`: no guessing that would round
    # long numeric IDs or drop their leading zeros.
    try:
        text = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as error:
        raise InputError(f"{path}: not a readable {report} report ({_detail(error)})") from None
    _check_columns(path, report, text.columns, (c for c in columns if c not in ADDED_LATER))
    return text.select(decoded_cell(c) for c in columns if c in text.columns)


def _check_lists_split(result: Path, path: Path, schema: dict[str, pl.DataType]) -> None:
    """Refuse a CSV report whose `;`-joined ID lists are ambiguous: an ID holds a `;`."""
    for list_column, id_column in _LIST_IDS.items():
        if list_column not in schema:
            continue
        ids = read_report(result, Table.MISDELIVERIES, columns=[id_column])[id_column]
        if ids.cast(pl.String).str.contains(LIST_SEPARATOR, literal=True).any():
            raise InputError(
                f"{path}: a {id_column} contains {LIST_SEPARATOR!r}, so the {list_column} "
                "lists cannot be split; re-run the scan with --format parquet"
            )


def _typed(name: str, dtype: pl.DataType, from_text: bool) -> pl.Expr:
    """A column in the type of the Parquet report; from CSV text, parsed as the scan wrote it."""
    column = pl.col(name)
    if not from_text:
        return column.cast(dtype)
    if isinstance(dtype, pl.List):
        # An empty list is written as an empty cell, not as a list of one empty ID.
        empty = pl.lit([], dtype)
        return pl.when(column == "").then(empty).otherwise(column.str.split(LIST_SEPARATOR))
    if dtype == TIMESTAMP:
        return column.str.to_datetime(ISO_UTC, time_unit="ns", time_zone="UTC")
    return column.cast(dtype)


def read_report(result: Path, report: Table, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """One report of a result: users and developers in the Parquet report's schema (its
    columns, in its order and types), from the CSV report when there is no Parquet one; the
    others as written, only `columns` when given.

    Raises `InputError` naming the file when it is missing, unreadable, lacks a column, holds
    values of another type, or (users, developers) repeats an ID; and for a CSV report whose
    `;`-joined ID lists cannot be split because an ID contains `;`."""
    result = Path(result)
    path = report_path(result, report)
    schema = report.schema
    if schema is None:
        return _read_parquet(path, report, columns)
    from_text = path.suffix == ".csv"
    if from_text:
        frame = _read_csv(path, report, list(schema))
        _check_lists_split(result, path, schema)
    else:
        frame = _read_parquet(path, report, list(schema))
    try:
        frame = frame.select(
            _typed(name, dtype, from_text).alias(name)
            if name in frame.columns
            else pl.lit(None, dtype).alias(name)  # a result written before the column was
            for name, dtype in schema.items()
        )
    except pl.exceptions.PolarsError as error:
        raise InputError(
            f"{path}: unexpected values in the {report} report ({_detail(error)})"
        ) from None
    key = KEYS.get(report)
    if key is not None and frame[key].is_duplicated().any():
        raise InputError(f"{path}: {key} is not unique; not a report written by incident")
    for lists, count in _COUNTED_LISTS.items():
        if {lists, count} <= set(frame.columns) and (frame[lists].list.len() != frame[count]).any():
            raise InputError(
                f"{path}: {lists} do not match {count}; an ID holds {LIST_SEPARATOR!r}, so the "
                "lists cannot be split; re-run the scan with --format parquet"
            )
    return frame.select(columns) if columns is not None else frame
