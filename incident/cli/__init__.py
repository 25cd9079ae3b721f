"""Command line: parse flags, call the library, map its errors to exit codes, render on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from incident.api import ScanResult, scan
from incident.cli.diff import diff_command
from incident.cli.export import export_command
from incident.cli.notify import notify_command
from incident.cli.report import report_command
from incident.cli.terminal import render_summary
from incident.config import (
    DEFAULT_FORMATS,
    Attribution,
    ColumnMap,
    RejectLimit,
    ReportFormat,
    ScanConfig,
    Window,
    parse_duration,
    parse_instant,
)
from incident.errors import ConfigError, ExitCode, IncidentError, VerificationError
from incident.results.manifest import verify
from incident.version import __version__

# Messages, progress and tables go to stderr; stdout carries only what the user asked for.
console = Console(stderr=True, highlight=False)


def _one_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class IncidentGroup(click.Group):
    """Maps library errors to exit codes in one place, for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IncidentError as error:
            click.echo(f"error: {_one_line(error)}", err=True)
            ctx.exit(error.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:
            click.echo(
                f"internal error (a bug in incident {__version__}, please report it): "
                f"{type(error).__name__}: {_one_line(error)}",
                err=True,
            )
            ctx.exit(ExitCode.INTERNAL_ERROR)


@click.group(cls=IncidentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="incident")
def cli() -> None:
    """Exact impact analysis for data-exposure incidents."""


def _instant(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ConfigError as error:
        raise click.BadParameter(str(error), param=param) from None


def _reject_limit(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return RejectLimit()
    try:
        return RejectLimit.parse(value)
    except ConfigError as error:
        raise click.BadParameter(str(error), param=param) from None


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_duration(value, f"--{param.name or 'duration'}".replace("_", "-"))
    except ConfigError as error:
        raise click.BadParameter(str(error), param=param) from None


def _input_paths(
    directory: Path | None,
    deliveries: str | None,
    authorizations: str | None,
    apps: str | None,
) -> tuple[str, str, str | None]:
    """Inputs from `DIR` by convention, each overridden by its explicit flag."""
    if directory is not None:
        if deliveries is None:
            folder = directory / "deliveries"
            deliveries = str(folder if folder.exists() else directory / "deliveries.parquet")
        if authorizations is None:
            authorizations = str(directory / "authorizations.parquet")
        if apps is None and (directory / "apps.parquet").exists():
            apps = str(directory / "apps.parquet")
    if deliveries is None or authorizations is None:
        raise click.UsageError("give a DIR, or both --deliveries and --authorizations")
    return deliveries, authorizations, apps


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A spinner naming the current stage, on a terminal only: it costs nothing per row."""
    if quiet or not console.is_terminal:
        yield lambda _stage: None
        return
    with console.status("starting") as status:
        yield lambda stage: status.update(f"{stage}…")


@cli.command("scan")
@click.argument(
    "directory",
    required=False,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="[DIR]",
)
@click.option("--deliveries", help="Deliveries: Parquet file, directory or glob.")
@click.option("--authorizations", help="Authorizations (grants): Parquet file, directory or glob.")
@click.option("--apps", help="Optional apps registry (app_id -> developer_id).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("incident-report"),
    show_default=True,
    help="Directory for the reports; replaced atomically if it holds an earlier result.",
)
@click.option(
    "--since",
    callback=_instant,
    help="Window start, inclusive (ISO-8601; no offset means UTC) [default: 2017-05-01T00:00:00Z].",
)
@click.option(
    "--until",
    callback=_instant,
    help="Window end, exclusive (ISO-8601; no offset means UTC) [default: 2018-09-11T00:00:00Z].",
)
@click.option(
    "--fail-on-findings", is_flag=True, help="Exit 3 when any delivery was misdelivered (for CI)."
)
@click.option(
    "--max-rejected",
    callback=_reject_limit,
    metavar="N|P%",
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
    type=click.Choice([f.value for f in ReportFormat]),
    help="parquet, csv: the users, developers and endpoints reports; html: also report.html, "
    "the whole result on one page. Repeatable [default: parquet and csv].",
)
@click.option(
    "--collision-window",
    callback=_duration,
    metavar="DURATION",
    help="A misdelivery is a shared-endpoint collision when the receiving app had its own "
    "traffic from the same backend within this time, e.g. 6m or 90s [default: 6m].",
)
@click.option(
    "--revocation-grace",
    callback=_duration,
    metavar="DURATION",
    help="A delivery this soon after its grant was revoked is revocation lag [default: 5m].",
)
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No summary or progress on stderr.")
def scan_command(
    directory: Path | None,
    deliveries: str | None,
    authorizations: str | None,
    apps: str | None,
    out: Path,
    since: Any,
    until: Any,
    fail_on_findings: bool,
    max_rejected: RejectLimit,
    mappings: tuple[str, ...],
    config_file: Path | None,
    formats: tuple[str, ...],
    collision_window: Any,
    revocation_grace: Any,
    as_json: bool,
    quiet: bool,
) -> None:
    """Find misdeliveries and write impact reports.

    Reads DIR/deliveries/ (or DIR/deliveries.parquet), DIR/authorizations.parquet and, if
    present, DIR/apps.parquet; or the explicit --deliveries/--authorizations/--apps.
    """
    deliveries, authorizations, apps = _input_paths(directory, deliveries, authorizations, apps)
    default = Window()
    columns = ColumnMap.from_toml(config_file) if config_file else ColumnMap()
    config = ScanConfig(
        deliveries=deliveries,
        authorizations=authorizations,
        apps=apps,
        out=out,
        window=Window(since or default.since, until or default.until),
        columns=ColumnMap.parse(mappings, base=columns),
        max_rejected=max_rejected,
        formats=_formats(formats),
        attribution=Attribution(
            **{
                name: value
                for name, value in (
                    ("collision_window", collision_window),
                    ("revocation_grace", revocation_grace),
                )
                if value is not None  # 0s is a value
            }
        ),
    )
    with _progress(quiet) as progress:
        result = scan(config, progress=progress)
    _finish(result, quiet=quiet, as_json=as_json)
    if fail_on_findings and result.has_findings:
        sys.exit(ExitCode.FINDINGS)


def _formats(names: tuple[str, ...]) -> tuple[ReportFormat, ...]:
    # The tables are what every other command reads: html alone comes with the default ones.
    chosen = tuple(dict.fromkeys(ReportFormat(n) for n in names))
    if not any(f in (ReportFormat.PARQUET, ReportFormat.CSV) for f in chosen):
        chosen = DEFAULT_FORMATS + chosen
    return chosen


def _finish(result: ScanResult, quiet: bool, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
    if not quiet:
        render_summary(console, result)


@cli.command("sample")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write the synthetic logs to.",
)
@click.option("--deliveries", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def sample_command(out: Path, deliveries: int, seed: int) -> None:
    """Write synthetic logs with known misdeliveries (truth.parquet) for tests and benchmarks."""
    from incident.sample import generate_sample

    summary = generate_sample(out, deliveries=deliveries, seed=seed)
    console.print(
        f"wrote {summary.deliveries:,} deliveries, {summary.authorizations:,} authorizations, "
        f"{summary.apps:,} apps and {summary.injected_misdeliveries:,} injected misdeliveries "
        f"to {out}"
    )


@cli.command("verify")
@click.argument(
    "result", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="RESULT_DIR"
)
def verify_command(result: Path) -> None:
    """Check that a result's inputs and outputs still match its manifest.json.

    Exits 6 naming every mismatch; input paths are read as recorded (relative to where the
    scan ran).
    """
    problems = verify(result)
    for problem in problems:
        click.echo(f"mismatch: {problem}", err=True)
    if problems:
        raise VerificationError(f"{result}: {len(problems)} mismatches with its manifest.json")
    console.print(f"verified: {result} matches its manifest.json", markup=False)


for command in (export_command, notify_command, report_command, diff_command):
    cli.add_command(command)


def main() -> None:
    """Entry point of the `incident` command."""
    cli(prog_name="incident")
