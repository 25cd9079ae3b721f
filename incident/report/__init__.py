"""Report writers, one per output format, registered by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from incident.config import ReportFormat

# ISO-8601 UTC with `Z`; `%.f` prints fractional seconds only when they are not zero.
ISO_UTC = "%Y-%m-%dT%H:%M:%S%.fZ"


def iso_timestamps(frame: pl.DataFrame) -> pl.DataFrame:
    """Render UTC timestamps as ISO-8601 with `Z`, fractional seconds only when non-zero."""
    return frame.with_columns(
        pl.col(name).dt.strftime(ISO_UTC)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime)
    )


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    # Fixed options so that a re-run on the same input writes the same bytes.
    frame.write_parquet(path, compression="zstd", statistics=True, row_group_size=512 * 1024)


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    flat = iso_timestamps(frame).with_columns(
        pl.col(name).list.join(";")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.List)
    )
    flat.write_csv(path, include_header=True, line_terminator="\n", quote_style="necessary")


@dataclass(frozen=True)
class Writer:
    """How one format is written: the file extension and the function that writes a frame."""

    extension: str
    write: Callable[[pl.DataFrame, Path], None]


WRITERS: dict[ReportFormat, Writer] = {
    ReportFormat.PARQUET: Writer("parquet", _write_parquet),
    ReportFormat.CSV: Writer("csv", _write_csv),
}


def write_table(
    frame: pl.DataFrame, out: Path, name: str, formats: tuple[ReportFormat, ...]
) -> list[Path]:
    """Write `frame` as `out/name.<ext>` in each table format; return the paths written."""
    paths = []
    for report_format in (f for f in formats if f in WRITERS):
        writer = WRITERS[report_format]
        path = out / f"{name}.{writer.extension}"
        writer.write(frame, path)
        paths.append(path)
    return paths


def write_json(document: dict[str, Any], path: Path) -> Path:
    """Write a JSON document, indented, with a final newline: byte-stable across runs."""
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
