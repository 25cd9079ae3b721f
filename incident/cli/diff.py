"""`incident diff OLD_RESULT NEW_RESULT [--json]`: what changed between two results."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import polars as pl

from incident.cli.messages import printable
from incident.cli.params import LocationType, storage_option
from incident.results.diff import Change, ChangeCounts, ResultDiff, diff_results
from incident.results.remote import local_result
from incident.storage.locations import StorageOptions

_RESULT = LocationType(click.Path(exists=True, file_okay=False, path_type=Path))

# IDs listed per section in the text report; --json lists every one.
LISTED = 20


def _counts_line(label: str, counts: ChangeCounts) -> str:
    return (
        f"{label:<11}{counts.added} added, {counts.removed} removed, {counts.changed} changed "
        f"({counts.old_rows} -> {counts.new_rows})"
    )


def _number(value: int | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+}" if signed and value else str(value)


def _totals(totals: pl.DataFrame) -> list[str]:
    rows = [("total", "old", "new", "change")] + [
        (row["name"], _number(row["old"]), _number(row["new"]), _number(row["change"], True))
        for row in totals.iter_rows(named=True)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        f"{name:<{widths[0]}}  {old:>{widths[1]}}  {new:>{widths[2]}}  {change:>{widths[3]}}"
        for name, old, new, change in rows
    ]


def _listing(label: str, changes: pl.DataFrame, key: str) -> list[str]:
    lines = []
    for change in Change:
        rows = changes.filter(pl.col("change") == change.value)
        if not rows.height:
            continue
        lines.append(f"{label} {change.value} ({rows.height}):")
        for row in rows.head(LISTED).iter_rows(named=True):
            columns = f": {', '.join(row['columns'])}" if row["columns"] else ""
            lines.append(f"  {row[key]}{columns}")
        if rows.height > LISTED:
            lines.append(f"  ... and {rows.height - LISTED} more (--json lists all)")
    return lines


def render_text(diff: ResultDiff) -> str:
    """The concise plain-text report: counts, totals, then the differing IDs."""
    lines = [f"old: {diff.old}", f"new: {diff.new}"]
    if not diff.has_differences:
        return "\n".join([*lines, "no differences", ""])
    if diff.settings:
        # First: results scanned differently differ for that reason before any other.
        lines.append("scanned with different settings:")
        lines += [f"  {name}: {old} -> {new}" for name, (old, new) in diff.settings.items()]
        lines.append("")
    lines += [
        _counts_line("users", diff.user_counts),
        _counts_line("developers", diff.developer_counts),
        "",
        *_totals(diff.totals),
    ]
    for label, changes, key in (
        ("users", diff.users, "user_id"),
        ("developers", diff.developers, "developer_id"),
    ):
        listing = _listing(label, changes, key)
        if listing:
            lines += ["", *listing]
    # IDs and column values come from the data: no control character reaches the terminal.
    return "\n".join([*(printable(line) for line in lines), ""])


@click.command("diff")
@click.argument("old", type=_RESULT, metavar="OLD_RESULT")
@click.argument("new", type=_RESULT, metavar="NEW_RESULT")
@click.option("--json", "as_json", is_flag=True, help="Print the difference as JSON, in full.")
@storage_option
def diff_command(old: Path | str, new: Path | str, as_json: bool, storage: StorageOptions) -> None:
    """Compare two results: users and developers added, removed or changed, and the totals.

    Either may be an object-storage prefix (s3://, gs://, az://). Exits 0 whether or not
    they differ; 4 when either is not an incident result.
    """
    with local_result(old, storage) as old_copy, local_result(new, storage) as new_copy:
        diff = replace(diff_results(old_copy, new_copy), old=old, new=new)
    if as_json:
        click.echo(json.dumps(diff.to_dict(), indent=2))
    else:
        click.echo(render_text(diff), nl=False)
