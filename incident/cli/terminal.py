"""The scan summary for people: rich tables on a terminal, plain lines anywhere else."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from incident.api import ScanResult
from incident.schema import Cause

TOP_DEVELOPERS = 10


Section = tuple[str, list[tuple[str, ...]], tuple[str, ...]]


def _sections(result: ScanResult) -> list[Section]:
    summary: dict[str, Any] = result.summary
    accounting = summary["accounting"]
    totals = summary["totals"]
    rows: list[tuple[str, ...]] = [
        *((name, f"{value:,}") for name, value in accounting.items()),
        *((name, f"{value:,}") for name, value in totals.items()),
    ]
    by_type: list[tuple[str, ...]] = [
        (name, f"{c['events']:,}", f"{c['deliveries']:,}")
        for name, c in summary["by_event_type"].items()
    ]
    # Unexplained misdeliveries first: they are the ones a responder must look into.
    causes = sorted(summary["by_cause"].items(), key=lambda item: item[0] != Cause.UNEXPLAINED)
    by_cause: list[tuple[str, ...]] = [
        (name, f"{c['events']:,}", f"{c['deliveries']:,}") for name, c in causes
    ]
    by_reason: list[tuple[str, ...]] = [
        (name, f"{c['events']:,}", f"{c['deliveries']:,}")
        for name, c in summary["by_reason"].items()
    ]
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
        ("By event type", by_type, ("event type", "events", "deliveries")),
        ("By reason", by_reason, ("reason", "events", "deliveries")),
        (f"Top {TOP_DEVELOPERS} developers", developers, ("developer", "events", "users")),
    ]


def render_summary(console: Console, result: ScanResult) -> None:
    """Print the window, the row accounting, totals, breakdowns and the top developers."""
    window = result.summary["window"]
    console.print(f"window {window['since']} .. {window['until']} (end exclusive)", soft_wrap=True)
    for title, rows, headers in _sections(result):
        if not rows:
            continue
        if console.is_terminal:
            table = Table(title=title, title_justify="left", show_header=any(headers))
            for index, header in enumerate(headers):
                table.add_column(header, justify="left" if index == 0 else "right")
            for row in rows:
                table.add_row(*(Text(cell) for cell in row))  # IDs are data, not markup
            console.print(table)
        else:
            console.print(f"{title}:", soft_wrap=True)
            lines = [headers, *rows] if any(headers) else rows
            widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
            for line in lines:
                cells = [line[0].ljust(widths[0])]
                cells += [
                    cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
                ]
                console.print("  " + "  ".join(cells).rstrip(), markup=False, soft_wrap=True)
    for warning in result.summary["warnings"]:
        console.print(f"warning: {warning}", markup=False, style="yellow", soft_wrap=True)
    console.print(f"reports written to {result.out}", markup=False, soft_wrap=True)
