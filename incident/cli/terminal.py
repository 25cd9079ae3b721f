"""The scan summary for people: rich tables on a terminal, plain lines anywhere else."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table
from rich.text import Text

from incident.api import ScanResult
from incident.cli.messages import printable, say
from incident.config import format_instant
from incident.schema import FULL_EVIDENCE, Cause
from incident.summary import Counts, Summary

TOP_DEVELOPERS = 10
# Tables and the spinner; plain messages go through `say`, which never wraps.
console = Console(stderr=True, highlight=False)


Section = tuple[str, list[tuple[str, ...]], tuple[str, ...]]


def _counts_rows(counts: Mapping[str, Counts]) -> list[tuple[str, ...]]:
    return [(name, f"{c.events:,}", f"{c.deliveries:,}") for name, c in counts.items()]


def _evidence_rows(summary: Summary) -> list[tuple[str, ...]]:
    """Misdeliveries per evidence level, `full` first; none for results without them."""
    by_evidence = summary.attribution.by_evidence if summary.attribution else {}
    levels = sorted(by_evidence.items(), key=lambda item: (item[0] != FULL_EVIDENCE, item[0]))
    return [(level, f"{count:,}") for level, count in levels]


def _sections(result: ScanResult) -> list[Section]:
    summary = result.summary
    rows: list[tuple[str, ...]] = [
        *((name, f"{value:,}") for name, value in vars(summary.accounting).items()),
        *((name, f"{value:,}") for name, value in vars(summary.totals).items()),
    ]
    # Unexplained misdeliveries first: they are the ones a responder must look into.
    causes = dict(sorted(summary.by_cause.items(), key=lambda item: item[0] != Cause.UNEXPLAINED))
    by_cause, by_type = _counts_rows(causes), _counts_rows(summary.by_event_type)
    by_reason = _counts_rows(summary.by_reason)
    top = result.developers.sort(["events", "developer_id"], descending=[True, False]).head(
        TOP_DEVELOPERS
    )
    developers: list[tuple[str, ...]] = [
        (row["developer_id"], f"{row['events']:,}", f"{row['users_exposed']:,}")
        for row in top.iter_rows(named=True)
    ]
    return [
        ("Scan", rows, ("", "")),
        ("By cause", by_cause, ("cause", "events", "deliveries")),
        ("By evidence", _evidence_rows(summary), ("evidence", "deliveries")),
        ("By event type", by_type, ("event type", "events", "deliveries")),
        ("By reason", by_reason, ("reason", "events", "deliveries")),
        (f"Top {TOP_DEVELOPERS} developers", developers, ("developer", "events", "users")),
    ]


def _plain_lines(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> list[str]:
    lines = [headers, *rows] if any(headers) else rows
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return [
        "  "
        + "  ".join(
            [line[0].ljust(widths[0])]
            + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        ).rstrip()
        for line in lines
    ]


def _table(title: str, rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", show_header=any(headers))
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # IDs are data, not markup
    return table


def render_summary(console: Console, result: ScanResult) -> None:
    """Print the window, the row accounting, totals, breakdowns and the top developers: rich
    tables on a terminal, plain lines that never wrap elsewhere. Values from the data are
    shown with their control characters escaped."""
    window = result.summary.window
    say(f"window {format_instant(window.since)} .. {format_instant(window.until)} (end exclusive)")
    for title, rows, headers in _sections(result):
        if not rows:
            continue
        rows = [tuple(printable(cell) for cell in row) for row in rows]
        if console.is_terminal:
            console.print(_table(title, rows, headers))
        else:
            say(f"{title}:")
            for line in _plain_lines(rows, headers):
                say(line)
    note = result.summary.overcount_note()
    if note:
        say(note)
    for warning in result.summary.warnings:
        if console.is_terminal:
            console.print(Text(f"warning: {printable(warning)}", style="yellow"))
        else:
            say(f"warning: {warning}")
    say(f"reports written to {result.location}")
