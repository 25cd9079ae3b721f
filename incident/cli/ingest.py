"""`incident ingest`: webhook JSON lines and CSV (gzip, zstd) into the Parquet `scan` reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from incident.cli.messages import say
from incident.cli.params import REJECT_LIMIT, storage_option
from incident.cli.terminal import console
from incident.config import ColumnMap, RejectLimit
from incident.ingest import IngestConfig, IngestResult, SourceFormat, ingest
from incident.ingest import Progress as ProgressFn
from incident.schema import Input
from incident.storage.locations import StorageOptions


@contextmanager
def _progress_bar(quiet: bool) -> Iterator[ProgressFn | None]:
    """A bar of the bytes read, on a terminal only."""
    if quiet or not console.is_terminal:
        yield None
        return
    columns = ("reading", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("reading", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _report(result: IngestResult) -> None:
    counts = result.accounting
    blank = f" ({counts.blank_lines:,} blank)" if counts.blank_lines else ""
    say(
        f"read {_count(counts.lines_read, 'line')}{blank} from {_count(counts.files, 'file')}: "
        f"{counts.rows_read:,} rows, {counts.rows_written:,} written, "
        f"{counts.rows_rejected:,} rejected"
    )
    for reason, count in sorted(result.rejected_by_reason.items(), key=lambda r: -r[1])[:10]:
        say(f"  rejected: {reason} ({count:,})")
    for copy, original in result.copies:
        say(f"warning: {copy} has the same bytes (SHA-256) as {original}; read once")
    say(
        f"wrote {result.kind.value} to {result.out} ({_count(len(result.data_files), 'file')}); "
        f"rejected rows in {result.quarantine}"
    )


@click.command("ingest")
@click.argument("sources", nargs=-1, required=True, metavar="SRC...")
@click.option(
    "--kind",
    type=click.Choice([i.value for i in Input]),
    required=True,
    help="What the sources hold.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="New (or empty) directory for the Parquet, or one an earlier ingest wrote.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in SourceFormat]),
    help="jsonl: webhook deliveries or flat objects, one per line; csv: a header line, then "
    "records [default: from each file's name, .jsonl/.ndjson/.json or .csv, "
    "optionally .gz or .zst].",
)
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="INPUT.COLUMN=SOURCE",
    help="Read a canonical column from another name, e.g. deliveries.delivered_at=ts. Repeatable.",
)
@click.option(
    "--max-rejected",
    type=REJECT_LIMIT,
    default=RejectLimit(),
    help="Exit 5 when more rows are rejected, e.g. 100 or 0.5% [default: no limit].",
)
@storage_option
@click.option("-q", "--quiet", is_flag=True, help="No summary or progress on stderr.")
def ingest_command(
    sources: tuple[str, ...],
    kind: str,
    out: Path,
    fmt: str | None,
    mappings: tuple[str, ...],
    max_rejected: RejectLimit,
    storage: StorageOptions,
    quiet: bool,
) -> None:
    """Convert raw logs (SRC: files, directories or globs; or s3://, gs://, az:// URLs) into
    the Parquet that scan reads.

    Deliveries are partitioned by UTC day; rows that cannot be used are kept, with their file,
    line and reason, in OUT/_rejected.parquet; OUT/_manifest.json records what was read.
    """
    config = IngestConfig(
        kind=Input(kind),
        sources=sources,
        out=out,
        format=SourceFormat(fmt) if fmt else None,
        columns=ColumnMap.parse(mappings),
        max_rejected=max_rejected,
        storage=storage,
    )
    with _progress_bar(quiet) as progress:
        result = ingest(config, progress)
    if not quiet:
        _report(result)
