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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from incident.config import Window
from incident.pipeline.detect import (
    PACKED_KEY,
    PARTITION,
    STATUS,
    KeyTables,
    Packing,
    Status,
    as_integer,
    classify,
    key_queries,
    report,
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
)
from incident.storage.staging import Staging

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
    """What every task of the exchange shares: the staging area, and the grants' parts of
    each bucket by keying (written once, by the scan itself)."""

    staging: Staging
    buckets: int
    window: Window
    packing: Packing
    grant_schemas: dict[bool, pl.Schema]
    grant_parts: dict[tuple[bool, int], list[Staging]]

    def grants(self, packed: bool, bucket: int) -> pl.LazyFrame:
        """The grants of one bucket (none when the bucket has none)."""
        parts = self.grant_parts.get((packed, bucket))
        if not parts:
            return pl.LazyFrame(schema=self.grant_schemas[packed])
        return self.staging.scan(parts)

    def rows(self, packed: bool) -> dict[int, list[Staging]]:
        """The parts of each bucket's delivery rows, from every partition: from one finished
        attempt of each partition's task only, never from one a lost task left half written
        or from two runs of one task."""
        return _by_bucket((self.staging / f"rows-{packed:d}").finished().values())

    def found(self, packed: bool) -> list[Staging]:
        """The parts of the rows to report, one per bucket."""
        found = self.staging / f"found-{packed:d}"
        return [found / name for name in found.files() if name.endswith(".parquet")]


def _by_bucket(attempts: Iterable[list[Staging]]) -> dict[int, list[Staging]]:
    """Parts of partitioned sinks (`_bucket=N/…`) by bucket."""
    parts: dict[int, list[Staging]] = {}
    for attempt in attempts:
        for part in attempt:
            folder = part.name.split("/")[-2]
            parts.setdefault(int(folder.removeprefix(f"{BUCKET}=")), []).append(part)
    return parts


def split_grants(
    authorizations: LoadedInput,
    groups: tuple[SourceGroup, ...],
    window: Window,
    buckets: int,
    staging: Staging,
) -> Exchange:
    """Split the valid grants into buckets, streaming, once for each way `groups` key rows."""
    packing = _packing(authorizations)
    schemas, grant_parts = {}, {}
    for packed in sorted(set(map(_packed, groups))):
        keyed, on = _grants(authorizations, packing if packed else None)
        schemas[packed] = keyed.collect_schema()

        def write(split: Staging, keyed: pl.LazyFrame = keyed, on: list[str] = on) -> None:
            by_bucket = pl.PartitionBy(
                split.location, key=bucket_of(on, buckets), include_key=False
            )
            sink = keyed.sink_parquet(
                by_bucket, mkdir=True, lazy=True, storage_options=split.options
            )
            collect_groups([sink], authorizations.groups)

        # Written by this process once, but as a task writes its parts, so read alike.
        grants = staging / "grants"
        grants.folder()
        (grants / f"{packed:d}").write_attempt(write)
        for bucket, parts in _by_bucket([grants.finished()[f"{packed:d}"]]).items():
            grant_parts[(packed, bucket)] = parts
        # The folders the tasks write in, made once, here.
        for round_ in ("rows", "found"):
            (staging / f"{round_}-{packed:d}").folder()
    return Exchange(staging, buckets, window, packing, schemas, grant_parts)


def scatter(partition: tuple[int, SourceGroup], exchange: Exchange) -> int:
    """Round 1: a partition's rows, as detection reads them, into the buckets of their keys."""
    number, group = partition
    narrow, on = _narrow(group, exchange.packing)
    rows = narrow.with_columns(pl.lit(number, pl.UInt32).alias(PARTITION))

    def write(attempt: Staging) -> None:
        split = pl.PartitionBy(
            attempt.location, key=bucket_of(on, exchange.buckets), include_key=False
        )
        sink = rows.sink_parquet(split, mkdir=True, lazy=True, storage_options=attempt.options)
        collect_groups([sink], [group])

    (exchange.staging / f"rows-{_packed(group):d}" / f"{number:06d}").write_attempt(write)
    return sum(group.file_rows)


def scattered(exchange: Exchange, keyings: list[bool]) -> list[tuple[bool, int, list[Staging]]]:
    """Round 2's items: every bucket of every keying with the parts of its rows, listed once
    here rather than by each task."""
    items = []
    for packed in keyings:
        rows = exchange.rows(packed)
        items += [(packed, bucket, rows.get(bucket, [])) for bucket in range(exchange.buckets)]
    return items


def classify_bucket(bucket: tuple[bool, int, list[Staging]], exchange: Exchange) -> Counter[str]:
    """Round 2: one bucket's rows against its key table; its rows to report are written, its
    counts of rows read and valid rows outside the window returned."""
    packed, number, parts = bucket
    if not parts:
        return Counter()
    on = [PACKED_KEY] if packed else ["for_user_id", "app_id"]
    grants = exchange.grants(packed, number)
    keys = KeyTables.build(collect_groups(key_queries(grants, on), (), engine="auto"), on)
    counted, open_rows = collect_groups(
        list(classify(exchange.staging.scan(parts), keys, on, exchange.window)), ()
    )
    found = report(open_rows, keys, on)
    part = exchange.staging / f"found-{packed:d}" / f"{number:06d}.parquet"
    part.write(found.select(PARTITION, ROW, EVENT, STATUS))
    rows, outside = counted.row(0)
    return Counter({"rows": rows, Status.OUTSIDE_WINDOW.value: outside})


def fetch(partition: tuple[int, SourceGroup], exchange: Exchange) -> Findings:
    """Round 3: a partition's rows to report, from every bucket, fetched whole."""
    number, group = partition
    found_parts = exchange.found(_packed(group))
    found = (
        exchange.staging.scan(found_parts)
        .filter(pl.col(PARTITION) == number)
        .drop(PARTITION)
        .collect()
        if found_parts
        else pl.DataFrame(schema={ROW: pl.UInt32, EVENT: pl.String, STATUS: pl.String})
    )
    misdeliveries, rejected = collect_groups(_second_pass(group, found), [group])
    return Findings(Counter(found[STATUS].cast(pl.String).to_list()), misdeliveries, rejected)
