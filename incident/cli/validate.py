"""`incident validate`: what a scan would make of its inputs, in seconds, before a long scan."""

from __future__ import annotations

import json

import click

from incident.cli.messages import printable
from incident.cli.options import input_options, note_origins, project_config
from incident.config import format_instant
from incident.validate import SAMPLE_ROWS, InputReport, Validation, validate


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({count:,})" for name, count in counts.items())


def _many(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _input_lines(report: InputReport, full: bool) -> list[str]:
    """The lines of one input: where, columns, nulls, time range, rows checked and rejected."""
    lines = [
        f"{report.input.value}: {report.path}: {_many(report.files, 'file')}, "
        f"{_many(report.rows, 'row')}",
        "  columns: "
        + ", ".join(
            f"{c.name}"
            + (f" (from {c.source})" if c.source not in (None, c.name) else "")
            + f" {'/'.join(c.types)}"
            for c in report.columns
            if c.source is not None
        ),
    ]
    missing = [c.name for c in report.columns if c.source is None]
    if missing:
        lines.append(f"  absent (optional, read as null): {', '.join(missing)}")
    if report.extra_columns:
        lines.append(f"  other columns, carried along: {', '.join(report.extra_columns)}")
    nulls = [f"{c.name} {c.nulls:,} ({c.nulls_basis})" for c in report.columns if c.nulls]
    lines.append(f"  nulls: {', '.join(nulls) if nulls else 'none'}")
    for span in report.time_ranges:
        first = format_instant(span.first) if span.first else "?"
        last = format_instant(span.last) if span.last else "?"
        lines.append(f"  {span.column}: {first} to {last} ({span.basis})")
    checked = "every row" if full else "a sample"
    figures = [f"{report.rejected:,} would be rejected"]
    if report.in_window is not None:
        figures.append(f"{report.in_window:,} valid in the window")
    if report.duplicates is not None:
        figures.append(f"{report.duplicates:,} copies of another row")
    lines.append(f"  {checked}, {report.rows_checked:,} rows: {'; '.join(figures)}")
    if report.reasons:
        lines.append(f"  rejected for: {_counts(report.reasons)}")
    if report.problems != report.reasons:
        lines.append(f"  every problem: {_counts(report.problems)}")
    return lines


def render(validation: Validation) -> str:
    """The validation as text for people, control characters escaped."""
    mode = "every row read" if validation.full else "footers and a sample; --full reads every row"
    window = validation.window
    lines = [
        f"validation ({mode})",
        f"window: {format_instant(window.since)} to {format_instant(window.until)}",
    ]
    for report in validation.inputs:
        lines += _input_lines(report, validation.full)
    lines += [f"warning: {warning}" for warning in validation.warnings]
    lines.append("inputs readable: a scan can read them")
    return "\n".join(printable(line) for line in lines)


@click.command("validate")
@input_options
@click.option("--full", is_flag=True, help="Read every row, not footers and a sample.")
@click.option(
    "--sample-rows",
    type=click.IntRange(min=1),
    default=SAMPLE_ROWS,
    show_default=True,
    help="Rows of each input a sample reads.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the validation as JSON to stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr but errors.")
@click.pass_context
def validate_command(
    ctx: click.Context, /, full: bool, sample_rows: int, as_json: bool, quiet: bool, **_: object
) -> None:
    """Check the inputs of a scan, in seconds: schema, types, nulls, duplicates, values that
    do not parse, the time range covered and the rows a scan would reject.

    Takes the inputs as scan does (DIR, or --deliveries/--authorizations/--apps, --map,
    --config, incident.toml). Reads the Parquet footers and a sample of rows, or every row
    with --full. Exits 4 when an input cannot be read (naming file and column), else 0.
    """
    project = project_config(ctx)
    if not quiet:
        note_origins(project)
    validation = validate(project.scan_config(), full=full, sample_rows=sample_rows)
    if as_json:
        click.echo(json.dumps(validation.to_json(), indent=2))
    if not quiet:
        click.echo(render(validation), err=True)
