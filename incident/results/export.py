"""Analyst-ready copies of a result's reports, optionally with keyed pseudonyms for the IDs.

`export_result` reads a scan result's users, developers, endpoints and misdeliveries and
writes them in any table format of `incident.report`: CSV or TSV for spreadsheets (UTF-8 with
a byte-order mark, long IDs kept as text, no formula runs; see `incident.report.tables`),
JSON Lines or Parquet for programs.

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
import stat
from enum import StrEnum
from pathlib import Path

import polars as pl

from incident.config import ReportFormat
from incident.errors import ConfigError, IncidentError
from incident.outputs import (
    check_directory,
    check_new_file,
    check_outside,
    staged_directory,
    staged_file,
)
from incident.report import FORMATS, TABLE_FORMATS
from incident.results.read import Table, check_result, has_report, read_report

MIN_KEY_BYTES = 32
# A key is a few dozen random bytes: a larger file is not a key (and /dev/urandom is endless).
MAX_KEY_BYTES = 1 << 20
PSEUDONYM_HEX_DIGITS = 32
MAPPING_SUFFIX = ".mapping.csv"
EXPORT_FORMATS = TABLE_FORMATS


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
EXPORTED = (Table.USERS, Table.DEVELOPERS, Table.ENDPOINTS, Table.MISDELIVERIES)


def read_key(path: Path) -> bytes:
    """The pseudonymisation key: every byte of the regular file `path`, at least
    `MIN_KEY_BYTES` and at most `MAX_KEY_BYTES` of them; `ConfigError` otherwise."""
    expected = (
        f"expected a file of at least {MIN_KEY_BYTES} random bytes, "
        f"e.g. made with: head -c {MIN_KEY_BYTES} /dev/urandom > {path}"
    )
    try:
        with path.open("rb") as stream:
            if not stat.S_ISREG(Path(stream.name).stat().st_mode):
                raise ConfigError(f"--key-file {path}: not a regular file; {expected}")
            key = stream.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"--key-file {path}: no such file; {expected}") from None
    except OSError as error:
        raise ConfigError(
            f"--key-file {path}: cannot be read ({error.strerror}); {expected}"
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"--key-file {path}: {len(key)} bytes; {expected}")
    if len(key) > MAX_KEY_BYTES:
        raise ConfigError(f"--key-file {path}: more than {MAX_KEY_BYTES:,} bytes; {expected}")
    return key


def pseudonym(key: bytes, kind: IdKind, value: str) -> str:
    """The pseudonym of one ID: a prefix for its kind and 128 bits of HMAC-SHA256 in hex."""
    message = f"{kind.value}\x00{value}".encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return PREFIXES[kind] + digest[:PSEUDONYM_HEX_DIGITS]


def _rows_sorted(frame: pl.DataFrame) -> pl.DataFrame:
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
        report: _rows_sorted(
            frame.with_columns(
                replace(name, dtype).alias(name)
                for name, dtype in frame.schema.items()
                if name in PSEUDONYMIZED
            )
        )
        for report, frame in tables.items()
    }
    return pseudonymized, mapping


def default_mapping(to: Path) -> Path:
    """Where the mapping goes by default: `<to>.mapping.csv`, beside the export directory."""
    target = to if to.name not in ("", ".", "..") else to.resolve()
    return target.with_name(target.name + MAPPING_SUFFIX)


def _check_destinations(result: Path, to: Path, mapping: Path | None) -> None:
    check_directory(to, "--to")
    check_outside(to, "--to", result, "the result", "choose a directory outside")
    if mapping is None:
        return
    shared = "keep the re-identification mapping out of the folder that is shared"
    check_outside(mapping, "--mapping", to, "--to", shared)
    check_outside(mapping, "--mapping", result, "the result")
    check_new_file(mapping, "--mapping", "it may be the only way back from an earlier export")


def _write_mapping(mapping: pl.DataFrame, path: Path) -> None:
    """The mapping, as exact plain CSV (no BOM, no formulas: it is read back by programs),
    readable by its owner only, written whole or not at all."""
    with staged_file(path, "--mapping", private=True) as staging:
        mapping.sort("kind", "id").write_csv(staging, line_terminator="\n")


def _tables(result: Path) -> dict[str, pl.DataFrame]:
    # Misdeliveries first: every result has them, and a CSV report is checked against them.
    misdeliveries = read_report(result, Table.MISDELIVERIES)
    return {
        table.value: misdeliveries if table is Table.MISDELIVERIES else read_report(result, table)
        for table in EXPORTED
        # A result written before attribution has no endpoints report.
        if table is not Table.ENDPOINTS or has_report(result, table)
    }


def export_result(
    result: Path,
    to: Path,
    fmt: ReportFormat,
    key: bytes | None = None,
    mapping: Path | None = None,
) -> list[Path]:
    """Write the users, developers, endpoints and misdeliveries of the scan result `result` to
    the new (or empty) directory `to` in table format `fmt`. With `key`, user and developer IDs
    become keyed pseudonyms and the mapping is written to `mapping` (default
    `<to>.mapping.csv`).

    Returns the files written, the mapping last. Raises `InputError` when `result` is not a
    scan result, `ConfigError` for a `to` or `mapping` that cannot be used.
    """
    spec = FORMATS[ReportFormat(fmt)]
    if spec.write is None:
        raise ConfigError(f"--format {fmt}: not a table format; expected one of {EXPORT_FORMATS}")
    if key is None and mapping is not None:
        raise ConfigError(f"--mapping {mapping}: only with a key (--pseudonymize --key-file)")
    if key is not None and len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"key: {len(key)} bytes; expected at least {MIN_KEY_BYTES}")
    check_result(result)
    mapping_path = (mapping or default_mapping(to)) if key is not None else None
    _check_destinations(result, to, mapping_path)
    tables = _tables(result)
    pairs = None
    if key is not None:
        tables, pairs = pseudonymize(tables, key)
    mapping_written = False
    try:
        with staged_directory(to, "--to") as staging:
            for name, frame in tables.items():
                spec.write(frame, staging / f"{name}.{spec.extension}")
            if pairs is not None and mapping_path is not None:
                _write_mapping(pairs, mapping_path)
                mapping_written = True
    except BaseException:
        # Without its export the mapping re-identifies nothing, and blocks the next try.
        if mapping_written and mapping_path is not None:
            mapping_path.unlink(missing_ok=True)
        raise
    written = [to / f"{name}.{spec.extension}" for name in tables]
    return [*written, mapping_path] if mapping_path is not None else written
