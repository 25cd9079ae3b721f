"""`incident notify RESULT_DIR [--to FILE]`: the notification list as CSV."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click

from incident.cli.messages import printable_lines
from incident.cli.params import LocationType, storage_option
from incident.outputs import check_outside, staged_file
from incident.results.notify import notification_list, write_notifications
from incident.results.remote import local_result
from incident.storage.locations import StorageOptions


@click.command("notify")
@click.argument(
    "result",
    type=LocationType(click.Path(exists=True, file_okay=False, path_type=Path)),
    metavar="RESULT_DIR",
)
@click.option(
    "--to",
    "to",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the CSV to FILE [default: stdout].",
)
@storage_option
def notify_command(result: Path | str, to: Path | None, storage: StorageOptions) -> None:
    """Write the notification list: one row per exposed user, with the categories and counts
    of what was exposed, the period, the number of developers, and a sentence for a mail merge.
    RESULT_DIR may be an object-storage prefix (s3://, gs://, az://).
    """
    # Checked first: a list written into the result would no longer be a result.
    if to is not None and isinstance(result, Path):
        check_outside(to, "--to", result, "the result", "write the list elsewhere")
    with local_result(result, storage) as copy:
        notices = notification_list(copy)
    if to is None:
        buffer = io.BytesIO()
        write_notifications(notices, buffer)
        data = buffer.getvalue()
        if sys.stdout.isatty():
            # On a screen, no value can drive the terminal; a pipe or a file gets exact bytes.
            data = printable_lines(data.decode("utf-8")).encode("utf-8")
        click.echo(data, nl=False)  # bytes: UTF-8 whatever the locale
        return
    with staged_file(to, "--to") as staging:
        write_notifications(notices, staging)
    click.echo(f"wrote {notices.height} users to {to}", err=True)
