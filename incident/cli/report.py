"""`incident report RESULT_DIR --html FILE`: the HTML report of an earlier scan."""

from __future__ import annotations

from pathlib import Path

import click

from incident.errors import ConfigError
from incident.report.html import render_html, write_html


def _check_destination(result: Path, html: Path) -> None:
    # A result is sealed by its manifest (`scan --format html` writes report.html into it).
    if html.resolve().is_relative_to(result.resolve()):
        raise ConfigError(
            f"--html {html}: inside the result directory {result}, which its manifest seals; "
            "write the report elsewhere, or scan with --format html"
        )


@click.command("report")
@click.argument("result", type=click.Path(path_type=Path), metavar="RESULT_DIR")
@click.option(
    "--html",
    "html",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the report as one self-contained HTML file (no scripts, no network).",
)
def report_command(result: Path, html: Path) -> None:
    """Write a report of the scan result in RESULT_DIR: headline figures, a daily timeline,
    breakdowns, the top developers and users, the row accounting and the GDPR Art. 33(3)(a)
    figures."""
    document = render_html(result)
    _check_destination(result, html)
    write_html(document, html)
    click.echo(f"wrote {html}", err=True)
