"""The `incident` command group: every command, and the one place where library errors
become exit codes and one-line messages."""

from __future__ import annotations

from typing import Any

import click
import polars as pl

from incident.cli.configuration import config_group
from incident.cli.diff import diff_command
from incident.cli.export import export_command
from incident.cli.ingest import ingest_command
from incident.cli.messages import one_line, say
from incident.cli.notify import notify_command
from incident.cli.params import redact
from incident.cli.report import report_command
from incident.cli.sample import sample_command
from incident.cli.scan import scan_command
from incident.cli.validate import validate_command
from incident.cli.verify import verify_command
from incident.errors import ExitCode, IncidentError
from incident.version import __version__


class IncidentGroup(click.Group):
    """Maps library errors to exit codes in one place, for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IncidentError as error:
            say(f"error: {redact(ctx, one_line(error))}")
            _notes(ctx, error)
            ctx.exit(error.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except (Exception, pl.exceptions.PanicException) as error:
            # A panic of polars' Rust code derives from BaseException: still a bug of ours.
            say(
                f"internal error (a bug in incident {__version__}, please report it): "
                f"{type(error).__name__}: {redact(ctx, one_line(error))}"
            )
            _notes(ctx, error)
            ctx.exit(ExitCode.INTERNAL_ERROR)


def _notes(ctx: click.Context, error: BaseException) -> None:
    """What went wrong as well, after the error (a staging area that could not be removed)."""
    for note in getattr(error, "__notes__", ()):
        say(f"also: {redact(ctx, one_line(note))}")


@click.group(cls=IncidentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="incident")
def cli() -> None:
    """Exact impact analysis for data-exposure incidents."""


for command in (
    scan_command,
    sample_command,
    verify_command,
    export_command,
    notify_command,
    report_command,
    diff_command,
    validate_command,
    config_group,
    ingest_command,
):
    cli.add_command(command)
