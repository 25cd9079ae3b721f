"""Analyst-ready copies of a result's reports, optionally with keyed pseudonyms for the IDs.

`export_result` reads a scan result's users, developers and misdeliveries and writes them as
CSV or TSV for spreadsheet programs, or as JSON Lines for programs:

- **CSV/TSV** are UTF-8 *with* a byte-order mark. Excel opens a double-clicked `.csv` in the
  system's legacy code page (Windows-1252 and the like) unless the file starts with a UTF-8 BOM,
  which would turn `café` into `cafÃ©`; LibreOffice, Google Sheets, Numbers, polars, pandas and
  Python's `utf-8-sig` all accept the BOM. Fields are quoted only when they must be (separator,
  quote or line break inside), quotes doubled (RFC 4180); lines end with `\\n`.
- **IDs kept as text**: a spreadsheet reads a cell of digits as a number. Excel keeps 15
  significant digits (`12345678901234567` becomes `12345678901234500`), shows 12 or more digits
  in scientific notation (and writes that rounded display back when the sheet is saved as CSV),
  and drops leading zeros (`0042` becomes `42`, another ID). So a text or integer cell that is
  all digits and has 12 or more of them, or a leading zero, is written as the formula
  `="…"`, which Excel, LibreOffice and Google Sheets evaluate to exactly that text. Other
  cells, short IDs and counts among them, are written as they are, so that programs reading the
  file see plain values. A program that reads the CSV strips the `="` and `"` around such cells.
- **Formula injection**: a text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
  return would run as a formula when opened (OWASP "CSV injection"); webhook URLs and carried
  input columns come from the parties under investigation. Such a cell is prefixed with `'`.
- **JSON Lines** (`.jsonl`): one object per row in column order, without a BOM (RFC 8259),
  IDs as strings, counts as numbers, lists as arrays, nulls as `null`.
- Timestamps everywhere are UTC ISO-8601 with `Z`, fractional seconds only when non-zero; lists
  in CSV/TSV are `;`-joined, as in the scan's CSV reports.

With a key, user IDs (`user_id`, `for_user_id`, `sender_id`, `recipient_id`) and developer IDs
(`developer_id`, `developer_ids`, `intended_developer_id`, `intended_developer_ids`) are
replaced by keyed pseudonyms: `u_` or `d_` and the first 32 hex digits (128 bits) of
HMAC-SHA256(key, kind NUL id). The same key gives the same pseudonyms in every export, so
exports can be joined; without the key they cannot be computed or linked to the IDs. At 128
bits a collision among even 10^12 IDs has a probability below 10^-14, and one is checked for
anyway. Rows and lists are re-sorted by pseudonym, so that their
order does not betray the original IDs. The mapping (kind, id, pseudonym) goes to a file of its
own outside the export directory, readable by its owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path

import polars as pl

from incident.errors import ConfigError, IncidentError
from incident.pipeline.load import _as_text
from incident.report import ISO_UTC
from incident.results.read import LIST_SEPARATOR, Report, has_report, read_report, read_summary

MIN_KEY_BYTES = 32
PSEUDONYM_HEX_DIGITS = 32
MAPPING_SUFFIX = ".mapping.csv"
# Cells a spreadsheet would turn into a number it cannot give back: 12+ digits, or a leading 0.
_NUMBER_LOST = r"^(?:0[0-9]+|[0-9]{12,})$"
# Cells a spreadsheet would run as a formula (OWASP, "CSV injection").
_FORMULA_START = r"^[=+\-@\t\r]"


class ExportFormat(StrEnum):
    """File formats of an export."""

    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"


class IdKind(StrEnum):
    """Whose ID a column holds, for pseudonymisation."""

    USER = "user"
    DEVELOPER = "developer"


# The columns holding user or developer IDs, or lists of them, in any report.
PSEUDONYMIZED: dict[str, IdKind] = {
    "user_id": IdKind.USER,
    "for_user_id": IdKind.USER,
    "sender_id": IdKind.USER,
    "recipient_id": IdKind.USER,
    "developer_id": IdKind.DEVELOPER,
    "developer_ids": IdKind.DEVELOPER,
    "intended_developer_id": IdKind.DEVELOPER,
    "intended_developer_ids": IdKind.DEVELOPER,
}
PREFIXES: dict[IdKind, str] = {IdKind.USER: "u_", IdKind.DEVELOPER: "d_"}

# The reports exported, in order.
EXPORTED = (Report.USERS, Report.DEVELOPERS, Report.ENDPOINTS, Report.MISDELIVERIES)


def read_key(path: Path) -> bytes:
    """The pseudonymisation key: every byte of `path`, at least `MIN_KEY_BYTES` of them."""
    expected = (
        f"expected a file of at least {MIN_KEY_BYTES} random bytes, "
        f"e.g. made with: head -c {MIN_KEY_BYTES} /dev/urandom > {path}"
    )
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"--key-file {path}: no such file; {expected}") from None
    except OSError as error:
        raise ConfigError(
            f"--key-file {path}: cannot be read ({error.strerror}); {expected}"
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"--key-file {path}: {len(key)} bytes; {expected}")
    return key


def pseudonym(key: bytes, kind: IdKind, value: str) -> str:
    """The pseudonym of one ID: a prefix for its kind and 128 bits of HMAC-SHA256 in hex."""
    message = f"{kind.value}\x00{value}".encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return PREFIXES[kind] + digest[:PSEUDONYM_HEX_DIGITS]


def _sorted_rows(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [name for name, dtype in frame.schema.items() if not dtype.is_nested()]
    return frame.sort(keys, nulls_last=True, maintain_order=True)


def _ids(tables: dict[str, pl.DataFrame], kind: IdKind) -> pl.Series:
    """Every distinct ID of one kind in the tables, lists flattened, sorted."""
    parts = [
        frame.select(pl.col(name).explode() if dtype.is_nested() else pl.col(name))
        .to_series()
        .cast(pl.String)
        .rename("id")
        for frame in tables.values()
        for name, dtype in frame.schema.items()
        if PSEUDONYMIZED.get(name) is kind
    ]
    if not parts:
        return pl.Series("id", [], dtype=pl.String)
    return pl.concat(parts).drop_nulls().unique().sort()


def pseudonymize(
    tables: dict[str, pl.DataFrame], key: bytes
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Replace user and developer IDs by keyed pseudonyms; return the tables, re-sorted, and the
    mapping (`kind`, `id`, `pseudonym`). Only distinct IDs are hashed; rows are joined."""
    parts = []
    for kind in IdKind:
        ids = _ids(tables, kind).to_list()
        parts.append(
            pl.DataFrame(
                {
                    "kind": [kind.value] * len(ids),
                    "id": ids,
                    "pseudonym": [pseudonym(key, kind, value) for value in ids],
                },
                schema={"kind": pl.String, "id": pl.String, "pseudonym": pl.String},
            )
        )
    mapping = pl.concat(parts)
    if mapping["pseudonym"].n_unique() != mapping.height:
        raise IncidentError("internal error: two IDs have the same pseudonym; use another key")

    def replace(name: str, dtype: pl.DataType) -> pl.Expr:
        ids = mapping.filter(pl.col("kind") == PSEUDONYMIZED[name].value)
        column = pl.col(name).cast(pl.List(pl.String) if dtype.is_nested() else pl.String)
        if dtype.is_nested():
            return column.list.eval(
                pl.element().replace_strict(ids["id"], ids["pseudonym"])
            ).list.sort()
        return column.replace_strict(ids["id"], ids["pseudonym"])

    pseudonymized = {
        report: _sorted_rows(
            frame.with_columns(
                replace(name, dtype).alias(name)
                for name, dtype in frame.schema.items()
                if name in PSEUDONYMIZED
            )
        )
        for report, frame in tables.items()
    }
    return pseudonymized, mapping


def _iso_utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps as UTC ISO-8601 text with `Z`; a naive one is UTC, as the scan reads it."""
    return frame.with_columns(
        (pl.col(name).dt.convert_time_zone("UTC") if dtype.time_zone is not None else pl.col(name))
        .dt.strftime(ISO_UTC)
        .alias(name)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime)
    )


def _flat(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as one spreadsheet cell per row: lists `;`-joined, other nesting as JSON."""
    if isinstance(dtype, pl.List) and not dtype.inner.is_nested():
        return pl.col(name).list.eval(pl.element().cast(pl.String)).list.join(LIST_SEPARATOR)
    if dtype.is_nested():
        return _as_text(name, dtype)
    return pl.col(name)


def _spreadsheet_cell(name: str, dtype: pl.DataType) -> pl.Expr:
    """A flat column as spreadsheet-safe text: no formula runs, no ID turns into a number."""
    if dtype == pl.String:
        text = pl.col(name)
        text = pl.when(text.str.contains(_FORMULA_START)).then("'" + text).otherwise(text)
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


def _write_delimited(frame: pl.DataFrame, path: Path, separator: str) -> None:
    flat = _iso_utc(frame).select(_flat(name, dtype) for name, dtype in frame.schema.items())
    cells = flat.select(_spreadsheet_cell(name, dtype) for name, dtype in flat.schema.items())
    cells.write_csv(
        path,
        separator=separator,
        include_bom=True,
        line_terminator="\n",
        quote_style="necessary",
    )


def _write_jsonl(frame: pl.DataFrame, path: Path) -> None:
    _iso_utc(frame).write_ndjson(path)


@dataclass(frozen=True)
class FormatSpec:
    """How one export format is written: its file extension and writer."""

    extension: str
    write: Callable[[pl.DataFrame, Path], None]


FORMATS: dict[ExportFormat, FormatSpec] = {
    ExportFormat.CSV: FormatSpec("csv", partial(_write_delimited, separator=",")),
    ExportFormat.TSV: FormatSpec("tsv", partial(_write_delimited, separator="\t")),
    ExportFormat.JSONL: FormatSpec("jsonl", _write_jsonl),
}


def default_mapping(to: Path) -> Path:
    """Where the mapping goes by default: `<to>.mapping.csv`, beside the export directory."""
    target = to if to.name not in ("", ".", "..") else to.resolve()
    return target.with_name(target.name + MAPPING_SUFFIX)


def _check_destinations(result: Path, to: Path, mapping: Path | None) -> None:
    target = to.resolve()
    if target in (Path.cwd(), Path(target.anchor)):
        raise ConfigError(f"--to {to}: name a directory of its own for the export")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--to {to}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise ConfigError(f"--to {to}: directory is not empty; choose a new or empty directory")
    if target.is_relative_to(result.resolve()):
        raise ConfigError(f"--to {to}: is inside the result {result}; choose a directory outside")
    if mapping is None:
        return
    if mapping.resolve().is_relative_to(target):
        raise ConfigError(
            f"--mapping {mapping}: is inside --to {to}; keep the re-identification mapping "
            "out of the folder that is shared"
        )
    if mapping.resolve().is_relative_to(result.resolve()):
        raise ConfigError(f"--mapping {mapping}: is inside the result {result}")
    if mapping.exists() or mapping.is_symlink():
        raise ConfigError(
            f"--mapping {mapping}: exists; move it away or choose another --mapping "
            "(it may be the only way back from an earlier export)"
        )


def _write_mapping(mapping: pl.DataFrame, path: Path) -> None:
    """The mapping, as exact plain CSV (no BOM, no formulas: it is read back by programs),
    readable by its owner only, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".partial", dir=path.parent
    )  # mkstemp creates it with mode 0600
    os.close(descriptor)
    try:
        mapping.sort("kind", "id").write_csv(partial_name, line_terminator="\n")
        os.replace(partial_name, path)
    finally:
        if os.path.exists(partial_name):
            os.unlink(partial_name)


def _staging(to: Path) -> Path:
    target = to.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; an export is meant to be shared
    return staging


def export_result(
    result: Path,
    to: Path,
    fmt: ExportFormat,
    key: bytes | None = None,
    mapping: Path | None = None,
) -> list[Path]:
    """Write the users, developers, endpoints and misdeliveries of the scan result `result` to
    the new (or empty) directory `to` in format `fmt`. With `key`, user and developer IDs become
    keyed pseudonyms and the mapping is written to `mapping` (default `<to>.mapping.csv`).

    Returns the files written, the mapping last. Raises `InputError` when `result` is not a
    scan result, `ConfigError` for a `to` or `mapping` that cannot be used.
    """
    spec = FORMATS[ExportFormat(fmt)]
    if key is None and mapping is not None:
        raise ConfigError(f"--mapping {mapping}: only with a key (--pseudonymize --key-file)")
    if key is not None and len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"key: {len(key)} bytes; expected at least {MIN_KEY_BYTES}")
    read_summary(result)
    mapping_path = (mapping or default_mapping(to)) if key is not None else None
    _check_destinations(result, to, mapping_path)

    # Misdeliveries first: every result has them, and a CSV report is checked against them.
    misdeliveries = read_report(result, Report.MISDELIVERIES)
    tables = {
        report.value: misdeliveries
        if report is Report.MISDELIVERIES
        else read_report(result, report)
        for report in EXPORTED
        # A result written before attribution has no endpoints report.
        if report is not Report.ENDPOINTS or has_report(result, report)
    }
    pairs = None
    if key is not None:
        tables, pairs = pseudonymize(tables, key)
    staging = _staging(to)
    mapping_written = False
    try:
        for name, frame in tables.items():
            spec.write(frame, staging / f"{name}.{spec.extension}")
        if pairs is not None and mapping_path is not None:
            _write_mapping(pairs, mapping_path)
            mapping_written = True
        os.replace(staging, to.resolve())  # onto a missing or empty directory
    except BaseException:
        if mapping_written and mapping_path is not None:
            mapping_path.unlink()
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    written = [to / f"{name}.{spec.extension}" for name in tables]
    return [*written, mapping_path] if mapping_path is not None else written
