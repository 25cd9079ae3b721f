"""Detection as independent tasks over partitions of the deliveries, run by an engine.

A partition is a run of files of one group (files sharing a schema), cut at file boundaries
so that its rows stay under `rows_per_partition`. Its task classifies every row, fetches the
rows to report and writes them as Parquet parts into a folder of the staging area; it
returns only the row counts. The findings are then read back from the parts. Every row is
read by exactly one task, and the reports sort their rows, so how the deliveries are cut
and in which order the tasks finish change nothing in a result.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from incident.config import Window
from incident.engine import Engine
from incident.pipeline import exchange
from incident.pipeline.detect import Status
from incident.pipeline.load import ROW, LoadedInput, SourceGroup, stack
from incident.pipeline.passes import Detector, Findings, _packed, detect, prepare
from incident.schema import Input
from incident.storage.staging import Staging

# In one process a partition is as large as a group allows; on a cluster each worker gets a
# few partitions, so that a slow or lost one delays the scan by a fraction.
TASKS_PER_WORKER = 4


@dataclass(frozen=True)
class Partition:
    """The files of one partition task, and where it writes its parts."""

    number: int
    group: SourceGroup
    staging: Staging

    def part(self, table: str) -> Staging:
        """This partition's part of `table`."""
        return self.staging / f"{table}-{self.number:06d}.parquet"


@dataclass(frozen=True)
class PartDone:
    """What a partition task returns: its rows per status (the parts are on disk)."""

    number: int
    rows: int
    statuses: Counter[str]


def plan(
    groups: tuple[SourceGroup, ...], rows_per_partition: int, staging: Staging
) -> list[Partition]:
    """The partitions of `groups`: runs of whole files of at most `rows_per_partition` rows
    (a larger file is a partition of its own), at least one per group."""
    partitions: list[Partition] = []
    for group in groups:
        runs: list[list[int]] = [[]]
        rows = 0
        for index, in_file in enumerate(group.file_rows):
            if runs[-1] and rows + in_file > rows_per_partition:
                runs.append([])
                rows = 0
            runs[-1].append(index)
            rows += in_file
        for run in runs:
            partitions.append(Partition(len(partitions), group.files_at(run), staging))
    return partitions


# A task fetches its reported rows whole before it writes them: a billion deliveries in one
# task held 4.8 GB there, in tasks of this size 1.3 GB (`bench/stages.py`), and the answer is
# the same whatever the size.
IN_PROCESS_ROWS = 100_000_000


def rows_per_partition(deliveries: LoadedInput, workers: int, configured: int | None) -> int:
    """`configured`, else up to `IN_PROCESS_ROWS` in one process, else a few partitions per
    worker."""
    if configured:
        return configured
    if workers == 1:
        return min(deliveries.source.rows or 1, IN_PROCESS_ROWS)
    return max(1, math.ceil(deliveries.source.rows / (TASKS_PER_WORKER * workers)))


def _write_parts(partition: Partition, found: Findings) -> PartDone:
    partition.part("misdeliveries").write(found.misdeliveries.drop(ROW))
    partition.part("rejected").write(found.rejected)
    return PartDone(partition.number, sum(partition.group.file_rows), found.statuses)


def detect_partition(partition: Partition, detector: Detector) -> PartDone:
    """The partition task: detect, and write the misdeliveries and rejected rows as parts."""
    return _write_parts(partition, detect(partition.group, detector))


def _scatter_partition(partition: Partition, shared: exchange.Exchange) -> int:
    return exchange.scatter((partition.number, partition.group), shared)


def _fetch_partition(partition: Partition, shared: exchange.Exchange) -> PartDone:
    return _write_parts(partition, exchange.fetch((partition.number, partition.group), shared))


def _exchanged(
    deliveries: LoadedInput,
    authorizations: LoadedInput,
    window: Window,
    engine: Engine,
    partitions: list[Partition],
    buckets: int,
    progress: Callable[[str], None],
) -> Counter[str]:
    """Detection in three rounds over grants split into `buckets` (`exchange`); the
    statuses of every row."""
    progress(f"detecting misdeliveries: splitting the grants into {buckets} buckets")
    staging = partitions[0].staging
    shared = exchange.split_grants(authorizations, deliveries.groups, window, buckets, staging)
    total, rows = len(partitions), deliveries.source.rows
    scattered = _counter(progress, "partitions read", total, rows)
    engine.map(_scatter_partition, partitions, shared, scattered)
    buckets_ = exchange.scattered(shared, sorted({_packed(p.group) for p in partitions}))
    counts = engine.map(
        exchange.classify_bucket,
        buckets_,
        shared,
        _counter(progress, "buckets joined", len(buckets_), rows),
    )
    fetched = engine.map(
        _fetch_partition, partitions, shared, _counter(progress, "partitions fetched", total, rows)
    )
    # Every row went to exactly one bucket: a lost one would be a silent wrong answer.
    in_buckets = sum(count["rows"] for count in counts)
    if in_buckets != deliveries.source.rows:
        raise RuntimeError(f"the buckets hold {in_buckets} of {deliveries.source.rows} rows")
    outside = sum(count[Status.OUTSIDE_WINDOW.value] for count in counts)
    return _statuses(deliveries.source.rows, outside, [part.statuses for part in fetched])


def _statuses(rows: int, outside: int, found: list[Counter[str]]) -> Counter[str]:
    statuses: Counter[str] = sum(found, Counter())
    reported = statuses.total()
    statuses[Status.OUTSIDE_WINDOW.value] += outside
    # Every row read and not otherwise accounted for was authorized.
    statuses[Status.AUTHORIZED.value] += rows - outside - reported
    return +statuses


def _rows(result: object) -> int:
    """The delivery rows a task's result stands for."""
    if isinstance(result, PartDone):
        return result.rows
    if isinstance(result, Counter):
        return int(result["rows"])
    return result if isinstance(result, int) else 0


def _counter(
    progress: Callable[[str], None], what: str, total: int, rows: int
) -> Callable[[object], None]:
    """A progress line for each task done: tasks and delivery rows done, of how many."""
    done = Counter[str]()

    def tick(result: object) -> None:
        done["tasks"] += 1
        done["rows"] += _rows(result)
        progress(
            f"detecting misdeliveries: {done['tasks']} of {total} {what}, "
            f"{done['rows']:,} of {rows:,} rows"
        )

    return tick


@dataclass(frozen=True)
class Found:
    """What detection found: rows per status, the misdeliveries (with `reason`) as a scan of
    the tasks' parts, which stay on disk, and the rejected rows as read."""

    statuses: Counter[str]
    misdeliveries: pl.LazyFrame
    rejected: pl.DataFrame


def run(
    deliveries: LoadedInput,
    authorizations: LoadedInput,
    window: Window,
    engine: Engine,
    staging: Staging,
    progress: Callable[[str], None],
    configured_rows: int | None = None,
    grant_buckets: int | None = None,
) -> Found:
    """Classify every delivery row on `engine`, one task per partition; the rows to report
    stay in the parts the tasks write in `staging` (a scan of them: keep them until read).
    The grants make one key table shared by every task, or, when they are too many for one
    (or `grant_buckets` says so), are split into buckets with the deliveries exchanged to
    match (`exchange`)."""
    size = rows_per_partition(deliveries, engine.workers, configured_rows)
    partitions = plan(deliveries.groups, size, staging)
    staging.create()
    buckets = grant_buckets or exchange.buckets_for(authorizations.source.rows)
    if buckets > 1:
        statuses = _exchanged(
            deliveries, authorizations, window, engine, partitions, buckets, progress
        )
    else:
        detector = prepare(authorizations, deliveries.groups, window)
        done = _counter(progress, "partitions read", len(partitions), deliveries.source.rows)
        parts = engine.map(detect_partition, partitions, detector, done)
        statuses = sum((part.statuses for part in parts), Counter())
    misdeliveries = stack(
        [staging.scan([p.part("misdeliveries")]) for p in partitions], Input.DELIVERIES
    )
    rejected = [staging.scan([p.part("rejected")]).collect() for p in partitions]
    return Found(
        statuses=+statuses,
        misdeliveries=misdeliveries,
        rejected=pl.concat(rejected, how="diagonal_relaxed"),
    )
