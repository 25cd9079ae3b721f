"""`incident report RESULT_DIR --html FILE`: the HTML report of an earlier scan."""

from __future__ import annotations

from pathlib import Path

import click

from incident.cli.params import LocationType, storage_option
from incident.outputs import check_outside
from incident.report.html import render_html, write_html
from incident.results.remote import local_result
from incident.storage.locations import StorageOptions


@click.command("report")
@click.argument("result", type=LocationType(click.Path(path_type=Path)), metavar="RESULT_DIR")
@click.option(
    "--html",
    "html",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the report as one self-contained HTML file (no scripts, no network).",
)
@storage_option
def report_command(result: Path | str, html: Path, storage: StorageOptions) -> None:
    """Write a report of the scan result in RESULT_DIR: headline figures, a daily timeline,
    breakdowns, the top developers and users, the row accounting and the GDPR Art. 33(3)(a)
    figures. RESULT_DIR may be an object-storage prefix (s3://, gs://, az://)."""
    with local_result(result, storage) as copy:
        document = render_html(copy)
    # A result is sealed by its manifest (`scan --format html` writes report.html into it).
    if isinstance(result, Path):
        check_outside(html, "--html", result, "the result directory")
    write_html(document, html)
    click.echo(f"wrote {html}", err=True)
