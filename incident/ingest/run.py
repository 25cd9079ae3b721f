"""`ingest(config)`: raw logs in, canonical Parquet out — stage by stage, batch by batch.

sources (find, decompress, hash) → records (lines to whitelisted raw rows) → normalise (the
scan's rules; rejected rows apart) → parts (day partitions, quarantine) → evidence (the
manifest), all inside `outputs.staged_directory`, so that `--out` appears whole or not at
all. Memory follows a batch of `batch_rows` rows and the open part files, never the input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from incident.config import ColumnMap, RejectLimit
from incident.errors import ConfigError, InputError, TooManyRejectedError
from incident.ingest import blocks
from incident.ingest.envelope import LINE_FIELDS
from incident.ingest.evidence import SourceEvidence, is_ingest_output, write_manifest
from incident.ingest.normalise import Batch, normalise, normalise_frame, quarantine_schema
from incident.ingest.parts import REJECTED, PartWriter, Quarantine
from incident.ingest.records import LineCounts, RawRow, csv_rows, json_rows
from incident.ingest.sources import SourceFile, SourceFormat, SourceReader, find_sources, total_size
from incident.outputs import check_directory, staged_directory
from incident.pipeline.files import first_line
from incident.results.manifest import FileEvidence
from incident.schema import Input
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url

# Bytes done and bytes in all, after each chunk read.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IngestConfig:
    """What to convert: the `kind` of input, the source paths (files, directories, globs),
    where to write, the layout of the sources (None: from each file's name), column names."""

    kind: Input
    sources: tuple[str, ...]
    out: Path
    format: SourceFormat | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    max_rejected: RejectLimit = field(default_factory=RejectLimit)
    batch_rows: int = 50_000
    # Options for sources in object storage, beside the environment's credentials.
    storage: StorageOptions = NO_OPTIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if not self.sources:
            raise ConfigError("no source given; expected files, directories or globs")
        for input_, renames in self.columns.renames.items():
            if input_ is not self.kind and renames:
                raise ConfigError(
                    f"--map {input_.value}.…: does not apply to --kind {self.kind.value}"
                )


@dataclass(frozen=True)
class IngestAccounting:
    """Where every row went: `rows_read = rows_written + rows_rejected`. A row is an event
    of a webhook line, a line of flat JSON, a CSV record, or a line that gives no row."""

    files: int
    lines_read: int
    blank_lines: int
    rows_read: int
    rows_written: int
    rows_rejected: int


@dataclass(frozen=True)
class IngestResult:
    """What an ingest read and wrote."""

    out: Path
    kind: Input
    accounting: IngestAccounting
    rejected_by_reason: dict[str, int]
    data_files: tuple[str, ...]
    copies: tuple[tuple[str, str], ...]

    @property
    def quarantine(self) -> Path:
        """The rejected rows."""
        return self.out / REJECTED


def _check_mappings(config: IngestConfig, files: tuple[SourceFile, ...]) -> None:
    """A webhook line names its payload's columns itself: only the line's fields map."""
    moved = sorted(set(config.columns.renames.get(Input.DELIVERIES, {})) - set(LINE_FIELDS))
    webhook = next((f for f in files if f.format is SourceFormat.JSONL), None)
    if moved and config.kind is Input.DELIVERIES and webhook is not None:
        raise ConfigError(
            f"--map deliveries.{moved[0]}: {webhook.path} is webhook JSON lines, whose payload "
            f"names that column; only {', '.join(LINE_FIELDS)} can be mapped there"
        )


def _check_out(config: IngestConfig) -> None:
    """`--out` may replace an earlier ingest output only, and neither it nor a source may
    lie inside the other: the output is replaced whole."""
    check_directory(config.out, "--out", replaceable=is_ingest_output)
    out = config.out.resolve()
    for source in (s for s in config.sources if not is_url(s)):
        where = Path(source).resolve()
        if Path(source).is_dir() and out.is_relative_to(where):
            raise ConfigError(f"--out {config.out}: is inside the source directory {source}")
        if where.is_relative_to(out):
            raise ConfigError(
                f"--out {config.out}: holds the source {source}; it would be replaced"
            )


def _rows(
    source: SourceFile, reader: SourceReader, config: IngestConfig, counts: LineCounts
) -> Iterator[RawRow]:
    if source.format is SourceFormat.CSV:
        return csv_rows(reader.lines(), source.path, config.kind, config.columns, counts)
    return json_rows(reader.lines(), config.kind, config.columns, counts)


def _batches(
    source: SourceFile, reader: SourceReader, config: IngestConfig, counts: LineCounts
) -> Iterator[Batch]:
    """The file's rows normalised, batch by batch: webhook lines a block of `batch_rows`
    lines at a time through the column-wise fast path, other layouts row by row."""
    fast = blocks.Reader(config.columns)
    if source.format is SourceFormat.JSONL and config.kind is Input.DELIVERIES and fast.usable:
        lines = reader.lines()
        while block := list(islice(lines, config.batch_rows)):
            yield normalise_frame(blocks.block_frame(fast, block, counts), config.kind, source.path)
        return
    rows = _rows(source, reader, config, counts)
    while batch := list(islice(rows, config.batch_rows)):
        yield normalise(batch, config.kind, source.path)


@dataclass
class _Tally:
    """Rows of one file so far, and reasons of its rejected rows."""

    written: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def _ingest_file(
    source: SourceFile,
    config: IngestConfig,
    writers: tuple[PartWriter, Quarantine],
    progress: Callable[[int], None],
) -> tuple[SourceEvidence, Counter[str]]:
    """Convert one file batch by batch; its evidence, and the reasons of its rejected rows."""
    data, quarantine = writers
    reader = SourceReader(source.path, progress, config.storage)
    counts, tally = LineCounts(), _Tally()
    try:
        for normalised in _batches(source, reader, config, counts):
            data.write(normalised.valid)
            quarantine.write(normalised.rejected)
            tally.written += normalised.valid.height
            tally.rejected += normalised.rejected.height
            tally.reasons.update(normalised.rejected["reject_reason"].to_list())
    finally:
        reader.close()
    evidence = FileEvidence(
        source.path, reader.bytes_read, reader.sha256, tally.written + tally.rejected
    )
    return SourceEvidence(
        evidence,
        source.format.value,
        reader.compression,
        counts.lines,
        counts.blank,
        tally.written,
        tally.rejected,
        counts.columns_ignored,
    ), tally.reasons


def _accounting(sources: list[SourceEvidence]) -> IngestAccounting:
    return IngestAccounting(
        files=len(sources),
        lines_read=sum(s.lines for s in sources),
        blank_lines=sum(s.blank_lines for s in sources),
        rows_read=sum(s.evidence.rows or 0 for s in sources),
        rows_written=sum(s.rows_written for s in sources),
        rows_rejected=sum(s.rows_rejected for s in sources),
    )


def _parameters(config: IngestConfig) -> dict[str, Any]:
    return {
        "kind": config.kind.value,
        "sources": list(config.sources),
        "format": config.format.value if config.format else None,
        "columns": {i.value: dict(m) for i, m in sorted(config.columns.renames.items())},
        "max_rejected": str(config.max_rejected),
    }


def _vouch(config: IngestConfig, accounting: IngestAccounting, reasons: Counter[str]) -> None:
    """An ingest that wrote no row publishes nothing (as a scan that can vouch for nothing)."""
    if accounting.rows_written:
        return
    where = ", ".join(config.sources)
    if not accounting.rows_read:
        raise InputError(f"{where}: no rows read; expected {config.kind.value} records")
    counted = ", ".join(f"{reason} ({n:,})" for reason, n in reasons.most_common(5))
    raise InputError(f"{where}: every row was rejected ({counted}); nothing written")


def _convert(
    files: tuple[SourceFile, ...], config: IngestConfig, staging: Path, report: Progress
) -> tuple[list[SourceEvidence], Counter[str], dict[str, int]]:
    """Every file into `staging`: the evidence of each, the reasons of the rejected rows, and
    the files written with their rows."""
    total, done = total_size(files, config.storage), 0
    sources: list[SourceEvidence] = []
    reasons: Counter[str] = Counter()
    data = PartWriter(staging, config.kind)
    quarantine = Quarantine(staging, quarantine_schema(config.kind))
    for source in files:
        evidence, found = _ingest_file(
            source, config, (data, quarantine), partial(_advance, report, done, total)
        )
        done += evidence.evidence.size
        sources.append(evidence)
        reasons.update(found)
    written = data.close()
    written[REJECTED] = quarantine.close()
    return sources, reasons, written


def _advance(report: Progress, done: int, total: int, read: int) -> None:
    report(done + read, total)


def ingest(config: IngestConfig, progress: Progress | None = None) -> IngestResult:
    """Convert the sources into canonical Parquet in `config.out`, published whole or not at
    all. `InputError` for a source that cannot be read or gives no valid row (nothing is
    published), `ConfigError` for a bad destination or parameters, `TooManyRejectedError`
    (after publishing) when more rows were rejected than `config.max_rejected` allows."""
    files, copies = find_sources(config.kind, config.sources, config.format, config.storage)
    _check_mappings(config, files)
    _check_out(config)
    report = progress or (lambda _done, _total: None)
    with staged_directory(config.out, "--out") as staging:
        try:
            sources, reasons, written = _convert(files, config, staging, report)
            accounting = _accounting(sources)
            _vouch(config, accounting, reasons)
            sources += [_copy_evidence(copy, original, sources) for copy, original in copies]
            manifest = (_parameters(config), sources, asdict(accounting), reasons, written)
            write_manifest(staging, *manifest)
        except OSError as error:
            # Reading errors are input errors by now: this is the destination failing.
            reason = error.strerror or first_line(error)
            raise ConfigError(f"--out {config.out}: cannot be written ({reason})") from None
    data_files = tuple(name for name in written if name != REJECTED)
    result = IngestResult(config.out, config.kind, accounting, dict(reasons), data_files, copies)
    _check_rejected(config, accounting)
    return result


def _copy_evidence(copy: str, original: str, read: list[SourceEvidence]) -> SourceEvidence:
    """A file with the same bytes as one read: recorded, not read again."""
    first = next(s for s in read if s.evidence.path == original)
    evidence = FileEvidence(copy, first.evidence.size, first.evidence.sha256, 0, same_as=original)
    return SourceEvidence(evidence, first.format, first.compression, 0, 0, 0, 0)


def _check_rejected(config: IngestConfig, accounting: IngestAccounting) -> None:
    if config.max_rejected.exceeded(accounting.rows_rejected, accounting.rows_read):
        raise TooManyRejectedError(
            f"{', '.join(config.sources)}: {accounting.rows_rejected} of {accounting.rows_read} "
            f"rows rejected, over --max-rejected {config.max_rejected}; "
            f"see {config.out / REJECTED}"
        )
