"""`incident scan`: find misdeliveries and write the impact reports."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.markup import escape

from incident.api import scan
from incident.cli.options import input_options, note_origins, project_config, scan_options
from incident.cli.terminal import console, render_summary
from incident.errors import ExitCode

_DONE = re.compile(r"(\d+) of (\d+) ")
_BAR = 20


def _with_bar(stage: str) -> str:
    """`stage`, with a bar of the tasks done when it counts them ("3 of 8 partitions …")."""
    counted = _DONE.search(stage)
    if not counted or not int(counted[2]):
        return f"{stage}…"
    filled = _BAR * int(counted[1]) // int(counted[2])
    return f"{stage} [{'━' * filled}{' ' * (_BAR - filled)}]"


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A spinner naming the current stage, with a bar of the detection tasks done, on a
    terminal only: it costs nothing per row."""
    if quiet or not console.is_terminal:
        yield lambda _stage: None
        return
    with console.status("starting") as status:
        yield lambda stage: status.update(escape(_with_bar(stage)))


@click.command("scan")
@input_options
@scan_options
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No summary or progress on stderr.")
@click.pass_context
def scan_command(ctx: click.Context, /, as_json: bool, quiet: bool, **_flags: object) -> None:
    """Find misdeliveries and write impact reports.

    Reads DIR/deliveries/ (or DIR/deliveries.parquet), DIR/authorizations.parquet and, if
    present, DIR/apps.parquet; or the explicit --deliveries/--authorizations/--apps. Settings
    not given as flags come from INCIDENT_* variables, then from incident.toml (--config).
    """
    project = project_config(ctx)
    if not quiet:
        note_origins(project)
    config = project.scan_config()
    with _progress(quiet) as progress:
        result = scan(config, progress=progress)
    if as_json:
        click.echo(json.dumps(result.summary.to_json(), indent=2))
    if not quiet:
        render_summary(console, result)
    if project.value("scan.fail_on_findings") and result.has_findings:
        sys.exit(ExitCode.FINDINGS)
