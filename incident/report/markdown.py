"""`summary.md`: a short summary to paste into an incident ticket."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from incident.config import format_instant
from incident.schema import FULL_EVIDENCE, Cause
from incident.summary import Summary

TOP_DEVELOPERS = 10


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    aligns = tuple("---" if i == 0 else "---:" for i in range(len(headers)))
    return [line(headers), line(aligns), *(line(r) for r in rows)]


def summary_markdown(summary: Summary, developers: pl.DataFrame) -> str:
    """The window, the row accounting, the totals, breakdowns and the top developers."""
    window, totals = summary.window, summary.totals
    accounting = vars(summary.accounting)
    lines = [
        "# Misdelivery scan",
        "",
        f"Window: {format_instant(window.since)} to {format_instant(window.until)} "
        "(end exclusive).",
        "",
        f"- **{totals.events_misdelivered:,}** events misdelivered "
        f"({totals.deliveries_misdelivered:,} deliveries)",
        f"- **{totals.users_exposed:,}** users exposed",
        f"- **{totals.developers_exposed:,}** developers received data",
        "",
        "## Row accounting",
        "",
        *_markdown_table(("rows", "count"), [(str(k), f"{v:,}") for k, v in accounting.items()]),
    ]
    for title, breakdown, label in (
        ("By cause", summary.by_cause, "cause"),
        ("By event type", summary.by_event_type, "event type"),
        ("By reason", summary.by_reason, "reason"),
    ):
        # Unexplained misdeliveries first: they are the ones a responder must look into.
        counts = sorted(breakdown.items(), key=lambda item: item[0] != Cause.UNEXPLAINED)
        rows = [(name, f"{c.events:,}", f"{c.deliveries:,}") for name, c in counts]
        if rows:
            lines += [
                "",
                f"## {title}",
                "",
                *_markdown_table((label, "events", "deliveries"), rows),
            ]
    note = summary.overcount_note()
    if note:
        lines += ["", note]
    lines += _evidence_lines(summary)
    top = developers.sort(["events", "developer_id"], descending=[True, False]).head(TOP_DEVELOPERS)
    if top.height:
        rows = [
            (r["developer_id"], f"{r['events']:,}", f"{r['users_exposed']:,}")
            for r in top.iter_rows(named=True)
        ]
        lines += [
            "",
            f"## Top {TOP_DEVELOPERS} developers",
            "",
            *_markdown_table(("developer", "events", "users exposed"), rows),
        ]
    if summary.warnings:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in summary.warnings)]
    return "\n".join(lines) + "\n"


def _evidence_lines(summary: Summary) -> list[str]:
    """The misdeliveries per evidence level, `full` first; none for results without them."""
    by_evidence = summary.attribution.by_evidence if summary.attribution else {}
    if not by_evidence:
        return []
    levels = sorted(by_evidence.items(), key=lambda item: (item[0] != FULL_EVIDENCE, item[0]))
    rows = [(level, f"{count:,}") for level, count in levels]
    return ["", "## By evidence", "", *_markdown_table(("evidence", "deliveries"), rows)]
