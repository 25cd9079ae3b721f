"""Output formats, one registry: each format is a small spec, and every command that writes a
table (scan, export, notify) finds its writer here. Adding a format is one entry.

`html` is the one format that is not a table: it renders a whole result as one page
(`incident.report.html`). The CLI builds its `--format` choices from this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from incident.config import ReportFormat
from incident.report.tables import (
    Destination,
    write_csv,
    write_jsonl,
    write_parquet,
    write_tsv,
)


@dataclass(frozen=True)
class FormatSpec:
    """How one format is written: its file extension, and the writer of one table (None for
    a format that renders a whole result rather than a table)."""

    extension: str
    write: Callable[[pl.DataFrame, Destination], None] | None
    description: str


FORMATS: dict[ReportFormat, FormatSpec] = {
    ReportFormat.PARQUET: FormatSpec("parquet", write_parquet, "Parquet, for programs"),
    ReportFormat.CSV: FormatSpec("csv", write_csv, "CSV for spreadsheets (UTF-8 with BOM)"),
    ReportFormat.TSV: FormatSpec("tsv", write_tsv, "TSV for spreadsheets (UTF-8 with BOM)"),
    ReportFormat.JSONL: FormatSpec("jsonl", write_jsonl, "JSON Lines, for programs"),
    ReportFormat.HTML: FormatSpec("html", None, "the whole result as one HTML page"),
}
TABLE_FORMATS = tuple(f for f, spec in FORMATS.items() if spec.write is not None)


def table_writer(report_format: ReportFormat) -> Callable[[pl.DataFrame, Destination], None]:
    """The writer of one table in `report_format`; `ValueError` for a format of no tables."""
    write = FORMATS[report_format].write
    if write is None:
        raise ValueError(f"{report_format} does not write tables")
    return write
