"""A result directory's files, written from a scan's outcome: the reports in every format
asked for, the findings in Parquet, `summary.json`, `summary.md` and, with html, the page."""

from __future__ import annotations

import json
from pathlib import Path

from incident.config import ReportFormat
from incident.pipeline.run import Outcome
from incident.report import FORMATS
from incident.report.html import html_report
from incident.report.markdown import summary_markdown
from incident.report.tables import sink_parquet, write_parquet
from incident.results.read import HTML_REPORT, SUMMARY, SUMMARY_MARKDOWN, Table


def write_result(directory: Path, outcome: Outcome, formats: tuple[ReportFormat, ...]) -> None:
    """Write every file of a result for `outcome` into `directory` (a staging directory).
    The misdeliveries are streamed from their files, never held whole."""
    reports = {
        Table.USERS: outcome.users,
        Table.DEVELOPERS: outcome.developers,
        Table.ENDPOINTS: outcome.endpoints,
    }
    for report_format in formats:
        spec = FORMATS[report_format]
        if spec.write is None:
            continue  # html: the page below
        for table, frame in reports.items():
            spec.write(frame, directory / f"{table}.{spec.extension}")
    sink_parquet(outcome.misdeliveries, directory / f"{Table.MISDELIVERIES}.parquet")
    write_parquet(outcome.rejected, directory / f"{Table.REJECTED}.parquet")
    write_parquet(outcome.rejected_grants, directory / "rejected_authorizations.parquet")
    document = json.dumps(outcome.summary.to_json(), indent=2) + "\n"
    (directory / SUMMARY).write_text(document, encoding="utf-8")
    markdown = summary_markdown(outcome.summary, outcome.developers)
    (directory / SUMMARY_MARKDOWN).write_text(markdown, encoding="utf-8")
    if ReportFormat.HTML in formats:
        page = html_report(
            outcome.summary, outcome.users, outcome.developers, outcome.misdeliveries
        )
        (directory / HTML_REPORT).write_text(page, encoding="utf-8")
