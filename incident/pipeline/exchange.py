"""Detection when the grants are too many for one key table: grants and deliveries exchanged
by key bucket, so that no task holds more than a bucket's key table.

Three rounds of tasks, each writing Parquet parts in the staging area:

1. **scatter**, a task per partition of the deliveries: the columns detection needs (as the
   first pass reads them), each row into the bucket of its key;
2. **classify**, a task per bucket: the key table of that bucket's grants, joined with that
   bucket's rows of every partition; the rows to report (`passes.classify`), and the row counts;
3. **fetch**, a task per partition: its rows to report, from every bucket, fetched whole
   (the second pass).

A delivery file is so read twice, whatever the number of buckets. The grants are split once,
streaming, before the first round. A key's bucket is a stable function of its IDs (the
packed integer key, or the user ID as an integer, else its length in bytes), the same on
every machine and polars version; a bucket holds a key's every grant and every delivery, so
the answers are those of one key table.
"""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from incident.config import Window
from incident.pipeline.detect import (
    PACKED_KEY,
    PARTITION,
    STATUS,
    Packing,
    Status,
    as_integer,
    classify,
    key_table,
)
from incident.pipeline.load import ROW, LoadedInput, SourceGroup, collect_groups
from incident.pipeline.passes import (
    EVENT,
    Findings,
    _grants,
    _narrow,
    _packed,
    _packing,
    _second_pass,
    _settle_checks,
)

BUCKET = "_bucket"
# What a grant costs at the peak while a key table is built (README, "Memory"), and what one
# key table may take before the grants are split into buckets.
BYTES_PER_GRANT = 150
KEY_TABLE_BUDGET = 1_000_000_000


def buckets_for(grants: int) -> int:
    """Buckets enough that each one's key table fits `KEY_TABLE_BUDGET`; 1 is one key table."""
    return max(1, math.ceil(grants * BYTES_PER_GRANT / KEY_TABLE_BUDGET))


def bucket_of(on: list[str], buckets: int) -> pl.Expr:
    """The bucket of a row keyed by `on`: packed integer keys, or text IDs."""
    if on == [PACKED_KEY]:
        key = pl.col(PACKED_KEY)
    else:
        user = pl.col("for_user_id")
        key = pl.coalesce(as_integer(user), user.str.len_bytes().cast(pl.Int64))
    # A key outside every grant's range has no packed key: it goes to bucket 0 (no grant).
    # The floor modulo: never negative.
    return (key % buckets).fill_null(0).cast(pl.UInt32).alias(BUCKET)


@dataclass(frozen=True)
class Exchange:
    """What every task of the exchange shares."""

    folder: str
    buckets: int
    window: Window
    packing: Packing
    grant_schemas: dict[bool, pl.Schema]

    def grants(self, packed: bool, bucket: int) -> pl.LazyFrame:
        """The grants of one bucket (none when the bucket has none)."""
        files = sorted(Path(self.folder, f"grants-{packed:d}", f"{BUCKET}={bucket}").glob("*"))
        if not files:
            return pl.LazyFrame(schema=self.grant_schemas[packed])
        return pl.scan_parquet(files, glob=False)

    def rows(self, packed: bool, bucket: int) -> list[Path]:
        """The files of one bucket's delivery rows, from every partition: from the folders of
        finished tasks only (a partition's number), never from one a lost task left half
        written under its temporary name."""
        folders = Path(self.folder, f"rows-{packed:d}")
        return sorted(
            path
            for path in folders.glob(f"*/{BUCKET}={bucket}/*")
            if path.parent.parent.name.isdigit()
        )

    def found(self, packed: bool) -> list[Path]:
        """The files of the rows to report, one per bucket."""
        return sorted(Path(self.folder, f"found-{packed:d}").glob("*.parquet"))


def write_part(frame: pl.DataFrame, path: Path) -> None:
    """A task's part, written under another name and renamed: a task that runs again (a
    retry, or a copy of a lost worker's task) replaces it whole."""
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    frame.write_parquet(temporary)
    os.replace(temporary, path)


def _replace_directory(write: Callable[[Path], None], final: Path) -> None:
    # Written beside and renamed: a task that runs twice (a retry, or a lost worker's task
    # run again) leaves one whole copy of its parts.
    temporary = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    # Made here: a partitioned sink of no rows makes no directory. Its parent is never made by
    # a task: a task still running after its scan failed must not bring the staging back.
    temporary.mkdir()
    write(temporary)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)


def split_grants(
    authorizations: LoadedInput,
    groups: tuple[SourceGroup, ...],
    window: Window,
    buckets: int,
    folder: Path,
) -> Exchange:
    """Split the valid grants into buckets, streaming, once for each way `groups` key rows."""
    packing = _packing(authorizations)
    schemas = {}
    for packed in sorted(set(map(_packed, groups))):
        keyed, on = _grants(authorizations, packing if packed else None)
        schemas[packed] = keyed.collect_schema()

        def write(path: Path, keyed: pl.LazyFrame = keyed, on: list[str] = on) -> None:
            split = pl.PartitionBy(path, key=bucket_of(on, buckets), include_key=False)
            sink = keyed.sink_parquet(split, mkdir=True, lazy=True)
            collect_groups([sink], authorizations.groups)

        _replace_directory(write, folder / f"grants-{packed:d}")
        # The folders the tasks write in, made once, here.
        for round_ in ("rows", "found"):
            (folder / f"{round_}-{packed:d}").mkdir()
    return Exchange(str(folder), buckets, window, packing, schemas)


def scatter(partition: tuple[int, SourceGroup], exchange: Exchange) -> int:
    """Round 1: a partition's rows, as detection reads them, into the buckets of their keys."""
    number, group = partition
    narrow, on = _narrow(group, exchange.packing)
    rows = narrow.with_columns(pl.lit(number, pl.UInt32).alias(PARTITION))

    def write(path: Path) -> None:
        split = pl.PartitionBy(path, key=bucket_of(on, exchange.buckets), include_key=False)
        collect_groups([rows.sink_parquet(split, mkdir=True, lazy=True)], [group])

    _replace_directory(write, Path(exchange.folder, f"rows-{_packed(group):d}", f"{number:06d}"))
    return sum(group.file_rows)


def classify_bucket(bucket: tuple[bool, int], exchange: Exchange) -> Counter[str]:
    """Round 2: one bucket's rows against its key table; its rows to report are written, its
    counts of rows read and valid rows outside the window returned."""
    packed, number = bucket
    files = exchange.rows(packed, number)
    if not files:
        return Counter()
    on = [PACKED_KEY] if packed else ["for_user_id", "app_id"]
    grants = exchange.grants(packed, number)
    (keys,) = collect_groups([key_table(grants, on)], (), engine="auto")
    counts, reported = classify(
        pl.scan_parquet(files, glob=False), keys.lazy(), on, exchange.window
    )
    counted, flagged = collect_groups(
        [counts, reported.select(PARTITION, ROW, EVENT, *on, "delivered_at", STATUS)], ()
    )
    settled = _settle_checks(flagged, (grants, on), ())
    found = settled.filter(pl.col(STATUS) != Status.AUTHORIZED.value)
    path = Path(exchange.folder, f"found-{packed:d}", f"{number:06d}.parquet")
    write_part(found.select(PARTITION, ROW, EVENT, STATUS), path)
    rows, outside = counted.row(0)
    return Counter({"rows": rows, Status.OUTSIDE_WINDOW.value: outside})


def fetch(partition: tuple[int, SourceGroup], exchange: Exchange) -> Findings:
    """Round 3: a partition's rows to report, from every bucket, fetched whole."""
    number, group = partition
    found_files = exchange.found(_packed(group))
    found = (
        pl.scan_parquet(found_files, glob=False)
        .filter(pl.col(PARTITION) == number)
        .drop(PARTITION)
        .collect()
        if found_files
        else pl.DataFrame(schema={ROW: pl.UInt32, EVENT: pl.String, STATUS: pl.String})
    )
    misdeliveries, rejected = collect_groups(_second_pass(group, found), [group])
    return Findings(Counter(found[STATUS].cast(pl.String).to_list()), misdeliveries, rejected)
