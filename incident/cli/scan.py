"""`incident scan`: find misdeliveries and write the impact reports."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import click

from incident.api import scan
from incident.cli.params import DURATION, INSTANT, REJECT_LIMIT, LocationType, storage_option
from incident.cli.terminal import console, render_summary
from incident.config import (
    DEFAULT_FORMATS,
    Attribution,
    ColumnMap,
    RejectLimit,
    ReportFormat,
    ScanConfig,
    Window,
)
from incident.errors import ExitCode
from incident.report import FORMATS
from incident.storage.locations import StorageOptions


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A spinner naming the current stage, on a terminal only: it costs nothing per row."""
    if quiet or not console.is_terminal:
        yield lambda _stage: None
        return
    with console.status("starting") as status:
        yield lambda stage: status.update(f"{stage}…")


def _config(
    directory: Path | None,
    inputs: dict[str, str | None],
    columns: ColumnMap,
    **options: object,
) -> ScanConfig:
    """The scan's configuration: `DIR` by convention, each input overridden by its flag."""
    if directory is not None:
        return ScanConfig.from_directory(directory, **inputs, columns=columns, **options)
    if inputs["deliveries"] is None or inputs["authorizations"] is None:
        raise click.UsageError("give a DIR, or both --deliveries and --authorizations")
    return ScanConfig(**inputs, columns=columns, **options)  # type: ignore[arg-type]


_FORMAT_HELP = "; ".join(f"{name}: {spec.description}" for name, spec in FORMATS.items())


@click.command("scan")
@click.argument(
    "directory",
    required=False,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="[DIR]",
)
@click.option(
    "--deliveries",
    help="Deliveries: Parquet file, directory or glob; or an s3://, gs://, az:// URL.",
)
@click.option("--authorizations", help="Authorizations (grants): Parquet file, directory or glob.")
@click.option("--apps", help="Optional apps registry (app_id -> developer_id).")
@click.option(
    "--out",
    type=LocationType(click.Path(file_okay=False, path_type=Path)),
    default=Path("incident-report"),
    show_default=True,
    help="Directory or object-storage prefix for the reports; replaced whole if it holds an "
    "earlier result.",
)
@click.option(
    "--since",
    type=INSTANT,
    help="Window start, inclusive (ISO-8601; no offset means UTC) [default: 2017-05-01T00:00:00Z].",
)
@click.option(
    "--until",
    type=INSTANT,
    help="Window end, exclusive (ISO-8601; no offset means UTC) [default: 2018-09-11T00:00:00Z].",
)
@click.option(
    "--fail-on-findings", is_flag=True, help="Exit 3 when any delivery was misdelivered (for CI)."
)
@click.option(
    "--max-rejected",
    type=REJECT_LIMIT,
    default=RejectLimit(),
    show_default=False,
    help="Exit 5 when more delivery rows are rejected, e.g. 100 or 0.5% [default: no limit].",
)
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="INPUT.COLUMN=SOURCE",
    help="Read a canonical column from another name, e.g. deliveries.delivered_at=ts. Repeatable.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='TOML file with column mappings: [map.deliveries] delivered_at = "ts".',
)
@click.option(
    "--format",
    "formats",
    multiple=True,
    type=click.Choice([f.value for f in FORMATS]),
    help=f"{_FORMAT_HELP}. Tables are the users, developers and endpoints reports. "
    "Repeatable [default: parquet and csv; without parquet or csv, they are added].",
)
@click.option(
    "--collision-window",
    type=DURATION,
    help="A misdelivery is a shared-endpoint collision when the receiving app had its own "
    "traffic from the same backend within this time, e.g. 6m or 90s [default: 6m].",
)
@click.option(
    "--revocation-grace",
    type=DURATION,
    help="A delivery this soon after its grant was revoked is revocation lag [default: 5m].",
)
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No summary or progress on stderr.")
def scan_command(
    directory: Path | None,
    deliveries: str | None,
    authorizations: str | None,
    apps: str | None,
    out: Path | str,
    since: datetime | None,
    until: datetime | None,
    fail_on_findings: bool,
    max_rejected: RejectLimit,
    mappings: tuple[str, ...],
    config_file: Path | None,
    formats: tuple[str, ...],
    collision_window: timedelta | None,
    revocation_grace: timedelta | None,
    storage: StorageOptions,
    as_json: bool,
    quiet: bool,
) -> None:
    """Find misdeliveries and write impact reports.

    Reads DIR/deliveries/ (or DIR/deliveries.parquet), DIR/authorizations.parquet and, if
    present, DIR/apps.parquet; or the explicit --deliveries/--authorizations/--apps.
    """
    default_window, default_attribution = Window(), Attribution()
    base = ColumnMap.from_toml(config_file) if config_file else ColumnMap()
    config = _config(
        directory,
        {"deliveries": deliveries, "authorizations": authorizations, "apps": apps},
        ColumnMap.parse(mappings, base=base),
        out=out,
        window=Window(since or default_window.since, until or default_window.until),
        max_rejected=max_rejected,
        formats=tuple(ReportFormat(f) for f in formats) or DEFAULT_FORMATS,
        attribution=Attribution(
            # 0s is a value: only a missing flag takes the default.
            default_attribution.collision_window if collision_window is None else collision_window,
            default_attribution.revocation_grace if revocation_grace is None else revocation_grace,
        ),
        storage=storage,
    )
    with _progress(quiet) as progress:
        result = scan(config, progress=progress)
    if as_json:
        click.echo(json.dumps(result.summary.to_json(), indent=2))
    if not quiet:
        render_summary(console, result)
    if fail_on_findings and result.has_findings:
        sys.exit(ExitCode.FINDINGS)
