"""`incident export`: analyst-ready copies of a result's reports, optionally pseudonymised."""

from __future__ import annotations

from pathlib import Path

import click

from incident.cli.messages import say
from incident.cli.params import LocationType, storage_option
from incident.config import ReportFormat
from incident.report import FORMATS
from incident.results.export import EXPORT_FORMATS, export_result, read_key
from incident.results.remote import local_result
from incident.storage.locations import StorageOptions


@click.command("export")
@click.argument("result", type=LocationType(click.Path(path_type=Path)), metavar="RESULT_DIR")
@click.option(
    "--to",
    type=click.Path(path_type=Path),
    required=True,
    help="New (or empty) directory for users, developers, endpoints and misdeliveries.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in EXPORT_FORMATS]),
    default=ReportFormat.CSV.value,
    show_default=True,
    help="; ".join(f"{f}: {FORMATS[f].description}" for f in EXPORT_FORMATS) + ".",
)
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="Replace user and developer IDs by keyed HMAC-SHA256 pseudonyms (needs --key-file).",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    help="Secret key for --pseudonymize: a file of at least 32 random bytes.",
)
@click.option(
    "--mapping",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write ID -> pseudonym, outside --to [default: <to>.mapping.csv].",
)
@storage_option
def export_command(
    result: Path | str,
    to: Path,
    fmt: str,
    pseudonymize: bool,
    key_file: Path | None,
    mapping: Path | None,
    storage: StorageOptions,
) -> None:
    """Copy a scan result's reports to --to in a table format (CSV by default) for analysts.

    RESULT_DIR may be an object-storage prefix (s3://, gs://, az://)."""
    if pseudonymize and key_file is None:
        raise click.UsageError("--pseudonymize needs --key-file FILE")
    if not pseudonymize and (key_file is not None or mapping is not None):
        raise click.UsageError("--key-file and --mapping go with --pseudonymize")
    key = read_key(key_file) if key_file is not None else None
    with local_result(result, storage) as copy:
        written = export_result(copy, to, ReportFormat(fmt), key=key, mapping=mapping)
    for path in written:
        say(f"wrote {path}")
    if key is not None:
        say(f"keep {written[-1]} apart from {to}: it re-identifies the export")
