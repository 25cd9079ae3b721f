"""`incident notify RESULT_DIR [--to FILE]`: the notification list as CSV."""

from __future__ import annotations

from pathlib import Path

import click

from incident.errors import ConfigError
from incident.results.notify import notification_csv, notification_list


@click.command("notify")
@click.argument(
    "result", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="RESULT_DIR"
)
@click.option(
    "--to",
    "to",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the CSV to FILE [default: stdout].",
)
def notify_command(result: Path, to: Path | None) -> None:
    """Write the notification list: one row per exposed user, with the categories and counts
    of what was exposed, the period, the number of developers, and a sentence for a mail merge.
    """
    # Checked first: a list written into the result would no longer be a result.
    if to is not None and to.resolve().is_relative_to(result.resolve()):
        raise ConfigError(f"--to {to}: is inside the result {result}; write the list elsewhere")
    notices = notification_list(result)
    text = notification_csv(notices)
    if to is None:
        click.echo(text.encode("utf-8"), nl=False)  # bytes: UTF-8 whatever the locale
        return
    try:
        to.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"--to {to}: cannot write: {error.strerror}") from None
    click.echo(f"wrote {notices.height} users to {to}", err=True)
