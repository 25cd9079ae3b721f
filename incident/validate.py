"""Validation of a scan's inputs before a long scan: `validate(config)` says, per input, what
the scan would read — columns and types, nulls, duplicates, values that do not parse, the time
range covered and the rows it would reject — from the Parquet footers and a sample of rows, or
from every row (`full=True`).

It applies the scan's own rules: the inputs are found, checked and planned by
`pipeline.run.load_inputs` (a schema error is the same `InputError`), and a row is rejected,
with the same reason, by the same expressions (`SourceGroup.is_valid`, `reject_reason`). On a
full pass the rows it counts as rejected are exactly the rows the scan rejects for rule 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from incident.config import ScanConfig, Window, format_instant
from incident.pipeline.footers import FooterFacts, footer_facts
from incident.pipeline.load import (
    ROW,
    SOURCE_FILE,
    LoadedInput,
    SourceGroup,
    collect_input,
    stack,
)
from incident.pipeline.run import load_inputs
from incident.schema import COLUMNS, DELIVERY_COLUMNS, Input, Kind

# A sample reads the first rows of files spread over the input, this many rows in all: enough
# to see a systematic problem, read in seconds. At most this many files are opened for it.
SAMPLE_ROWS = 10_000
SAMPLE_FILES = 256


@dataclass(frozen=True)
class ColumnReport:
    """One canonical column of an input: the column it is read from (None when absent), its
    Parquet types as polars reads them, and its null values (None when not known)."""

    name: str
    source: str | None
    types: tuple[str, ...]
    required: bool
    nulls: int
    # Where `nulls` was counted: `footer` (statistics of every row group), `sample`, `full`.
    nulls_basis: str


@dataclass(frozen=True)
class TimeRange:
    """The earliest and latest readable value of a time column, and what they were read from:
    `footer` (the statistics of every row group), `sample` or `full`."""

    column: str
    first: datetime | None
    last: datetime | None
    basis: str


@dataclass(frozen=True)
class InputReport:
    """What a scan would make of one input. `rows_checked` rows were read (all of them on a
    full pass); `rejected` and `reasons` count those of them it would reject, by the first
    problem of each row, as `rejected.parquet` names it; `problems` counts every problem."""

    input: Input
    path: str
    files: int
    rows: int
    identical_files: tuple[tuple[str, str], ...]
    columns: tuple[ColumnReport, ...]
    extra_columns: tuple[str, ...]
    rows_checked: int
    rejected: int
    reasons: dict[str, int]
    problems: dict[str, int]
    time_ranges: tuple[TimeRange, ...]
    # Deliveries only: valid rows of those checked in the window, and copies of another row.
    in_window: int | None = None
    duplicates: int | None = None


@dataclass(frozen=True)
class Validation:
    """The inputs of a scan, validated; `full` when every row was read."""

    full: bool
    window: Window
    inputs: tuple[InputReport, ...]
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The validation as plain JSON values: instants in ISO-8601 `Z`."""
        return {
            "mode": "full" if self.full else "sample",
            "window": {
                "since": format_instant(self.window.since),
                "until": format_instant(self.window.until),
            },
            "inputs": {report.input.value: _input_json(report) for report in self.inputs},
            "warnings": list(self.warnings),
        }


def _input_json(report: InputReport) -> dict[str, Any]:
    return {
        "path": report.path,
        "files": report.files,
        "rows": report.rows,
        "identical_files": [list(pair) for pair in report.identical_files],
        "columns": [
            {
                "name": c.name,
                "source": c.source,
                "types": list(c.types),
                "required": c.required,
                "nulls": c.nulls,
                "nulls_basis": c.nulls_basis,
            }
            for c in report.columns
        ],
        "extra_columns": list(report.extra_columns),
        "rows_checked": report.rows_checked,
        "rows_rejected": report.rejected,
        "reject_reasons": report.reasons,
        "problems": report.problems,
        "time_ranges": {
            r.column: {
                "first": format_instant(r.first) if r.first else None,
                "last": format_instant(r.last) if r.last else None,
                "basis": r.basis,
            }
            for r in report.time_ranges
        },
        "rows_in_window": report.in_window,
        "duplicates": report.duplicates,
    }


def validate(config: ScanConfig, full: bool = False, sample_rows: int = SAMPLE_ROWS) -> Validation:
    """Validate the inputs of `config` as its scan would read them: from the footers and about
    `sample_rows` rows per input, or every row when `full`. Raises the scan's `InputError`
    (naming file and column) for an input it could not read at all."""
    inputs = load_inputs(config)
    reports = tuple(
        _validate_input(loaded, config.window, full, sample_rows) for loaded in inputs.all
    )
    return Validation(full, config.window, reports, _warnings(reports, full))


def _sample(group: SourceGroup, rows: int) -> pl.LazyFrame:
    """The first rows of a few files of `group`, spread over it, about `rows` in all; only the
    pages that hold them are read."""
    average = max(1, sum(group.file_rows) // len(group.files))
    count = min(len(group.files), SAMPLE_FILES, -(-rows // average))
    step = len(group.files) / count
    picked = sorted({int(i * step) for i in range(count)})
    per_file = max(1, rows // len(picked))
    return pl.concat(group.files_at([i]).scan().head(per_file) for i in picked)


def _validate_input(
    loaded: LoadedInput, window: Window, full: bool, sample_rows: int
) -> InputReport:
    """One input validated: its footers, one query per group over its rows or a sample, and
    for the deliveries their copies."""
    groups, input_ = loaded.groups, loaded.source.input
    per_group = max(1, sample_rows // len(groups))
    frames = [group.scan() if full else _sample(group, per_group) for group in groups]
    measured = collect_input(
        [_measures(g, frame, input_, window) for g, frame in zip(groups, frames, strict=True)],
        [loaded],
        engine="streaming" if full else "auto",
    )
    deliveries = input_ is Input.DELIVERIES
    valid = [
        g.normalised(frame.filter(g.is_valid())).drop(ROW)
        for g, frame in zip(groups, frames, strict=True)
    ]
    facts = None if full else footer_facts(loaded)
    totals = _totals(measured)
    return InputReport(
        input=input_,
        path=loaded.source.path,
        files=len(loaded.source.files),
        rows=loaded.source.rows,
        identical_files=loaded.source.copies,
        columns=_columns(loaded, totals, facts),
        extra_columns=_extras(loaded),
        rows_checked=totals.get("rows", 0),
        rejected=sum(v for k, v in totals.items() if k.startswith("reason:")),
        reasons=_labelled(totals, "reason:"),
        problems=_labelled(totals, "problem:"),
        time_ranges=_time_ranges(loaded, measured, facts, full),
        in_window=totals.get("in_window") if deliveries else None,
        duplicates=_copies(stack(valid, input_), loaded) if deliveries else None,
    )


def _measures(
    group: SourceGroup, frame: pl.LazyFrame, input_: Input, window: Window
) -> pl.LazyFrame:
    """One row of figures about the raw rows `frame` of `group`: rows, nulls per canonical
    column, rows per problem and per reject reason, time bounds, valid deliveries in window."""
    by_problem: dict[str, list[pl.Expr]] = {}
    for failed, text in group.problems:
        by_problem.setdefault(text, []).append(failed.fill_null(False))
    reason = group.reject_reason()
    times = [c for c in group.sources if COLUMNS[input_][c].kind is Kind.TIMESTAMP]
    figures = [
        pl.len().cast(pl.Int64).alias("rows"),
        *(
            pl.col(source).null_count().cast(pl.Int64).alias(f"null:{canonical}")
            for canonical, source in group.sources.items()
        ),
        *(
            pl.any_horizontal(failed).sum().cast(pl.Int64).alias(f"problem:{text}")
            for text, failed in by_problem.items()
        ),
        *((reason == text).sum().cast(pl.Int64).alias(f"reason:{text}") for text in by_problem),
        *(group.column(c).min().alias(f"min:{c}") for c in times),
        *(group.column(c).max().alias(f"max:{c}") for c in times),
    ]
    if input_ is Input.DELIVERIES:
        delivered = group.column("delivered_at")
        in_window = group.is_valid() & (delivered >= window.since) & (delivered < window.until)
        figures.append(in_window.fill_null(False).sum().cast(pl.Int64).alias("in_window"))
    return frame.select(figures)


def _copies(valid: pl.LazyFrame, loaded: LoadedInput) -> int:
    """Valid deliveries that copy an earlier one as the scan tells copies (`findings._copies`): the
    same `delivery_id` and required columns, or without an ID the same value in every column.
    Rows are hashed first, and only rows whose hash repeats are compared whole: exact, and a
    pass holds 8 bytes per distinct row rather than the rows."""
    values = [c for c in valid.collect_schema() if c != SOURCE_FILE]
    attempt = ["delivery_id", *(c for c, column in DELIVERY_COLUMNS.items() if column.required)]
    has_id = pl.col("delivery_id").is_not_null()
    parts = [(valid.filter(has_id), attempt), (valid.filter(has_id.not_()), values)]
    hashed = [part.with_columns(pl.struct(key).hash().alias("_hash")) for part, key in parts]
    repeated = collect_input(
        [h.group_by("_hash").len().filter(pl.col("len") > 1).select("_hash") for h in hashed],
        [loaded],
    )
    if not any(r.height for r in repeated):
        return 0
    exact = [
        h.filter(pl.col("_hash").is_in(r["_hash"].implode())).select(
            pl.struct(key).is_first_distinct().not_().sum().cast(pl.Int64)
        )
        for h, r, (_, key) in zip(hashed, repeated, parts, strict=True)
    ]
    return sum(int(frame.item()) for frame in collect_input(exact, [loaded]))


def _totals(measured: list[pl.DataFrame]) -> dict[str, int]:
    """The counts of every group added up (time bounds apart), and each group's rows
    (`rows:N`)."""
    totals: dict[str, int] = {}
    for index, frame in enumerate(measured):
        totals[f"rows:{index}"] = int(frame["rows"][0])
        for name, value in frame.row(0, named=True).items():
            if not name.startswith(("min:", "max:")):
                totals[name] = totals.get(name, 0) + int(value or 0)
    return totals


def _labelled(totals: dict[str, int], prefix: str) -> dict[str, int]:
    """The non-zero counts named `prefix…`, the commonest first."""
    found = [
        (name.removeprefix(prefix), n) for name, n in totals.items() if name.startswith(prefix)
    ]
    return dict(sorted(((k, n) for k, n in found if n), key=lambda item: (-item[1], item[0])))


def _columns(
    loaded: LoadedInput, totals: dict[str, int], facts: FooterFacts | None
) -> tuple[ColumnReport, ...]:
    """Each canonical column: where it is read from, its types, its nulls."""
    reports = []
    for name, column in COLUMNS[loaded.source.input].items():
        present = [g for g in loaded.groups if name in g.sources]
        types = sorted({str(g.raw_schema[g.sources[name]]) for g in present})
        footer = facts.nulls.get(name) if facts is not None else None
        if footer is not None:
            nulls, basis = footer, "footer"
        else:  # the rows read of groups without the column are null too
            absent = sum(
                totals.get(f"rows:{i}", 0)
                for i, g in enumerate(loaded.groups)
                if name not in g.sources
            )
            nulls, basis = totals.get(f"null:{name}", 0) + absent, "sample" if facts else "full"
        source = present[0].sources[name] if present else None
        reports.append(ColumnReport(name, source, tuple(types), column.required, nulls, basis))
    return tuple(reports)


def _extras(loaded: LoadedInput) -> tuple[str, ...]:
    """Input columns that are not canonical: carried into `misdeliveries.parquet`."""
    names = {e.meta.output_name() for g in loaded.groups for e in g.extras}
    return tuple(sorted(names))


def _time_ranges(
    loaded: LoadedInput, measured: list[pl.DataFrame], facts: FooterFacts | None, full: bool
) -> tuple[TimeRange, ...]:
    """The earliest and latest readable value of each time column: from the footers when they
    tell, else from the rows read."""
    ranges = []
    for name, column in COLUMNS[loaded.source.input].items():
        if column.kind is not Kind.TIMESTAMP:
            continue
        footer = facts.ranges.get(name) if facts is not None else None
        if footer is not None:
            ranges.append(TimeRange(name, *footer, "footer"))
            continue
        lows = [f[f"min:{name}"][0] for f in measured if f"min:{name}" in f.columns]
        highs = [f[f"max:{name}"][0] for f in measured if f"max:{name}" in f.columns]
        low = min((v for v in lows if v is not None), default=None)
        high = max((v for v in highs if v is not None), default=None)
        ranges.append(TimeRange(name, low, high, "full" if full else "sample"))
    return tuple(ranges)


def _warnings(reports: tuple[InputReport, ...], full: bool) -> tuple[str, ...]:
    """What a user should know before a scan: where it would stop (DESIGN rule 7), files read
    once, rows rejected."""
    found = []
    of = "" if full else " in the sample"
    for report in reports:
        name = report.input.value
        if report.identical_files:
            found.append(
                f"{report.path}: {len(report.identical_files)} {name} files have the same "
                "bytes as another and would be read once"
            )
        if report.rejected and report.rejected == report.rows_checked:
            stop = "; the scan would stop (exit 4)" if report.input is not Input.APPS else ""
            found.append(f"{report.path}: every {name} row{of} would be rejected{stop}")
        elif report.rejected:
            found.append(
                f"{report.path}: {report.rejected:,} of {report.rows_checked:,} {name} rows"
                f"{of} would be rejected"
            )
        if report.input is Input.DELIVERIES and report.rows_checked and not report.in_window:
            found.append(
                f"{report.path}: no valid delivery{of} falls in the window"
                + ("; the scan would stop (exit 4)" if full else "")
            )
    return tuple(found)
