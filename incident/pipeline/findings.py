"""The misdeliveries on disk in their stable order, copies of reported rows set apart.

Detection leaves its findings as Parquet parts; here they become one run of sorted files in
the staging area, without ever holding them all in memory. Rows are sorted by every sortable
column (`event_id` first), so the parts are cut into ranges of `event_id` (bounds from a
sample of that column alone), and each range is read, sorted and written in turn: the
ranges in order are the whole frame sorted. A copy (DESIGN rule 1) always has the `event_id`
of the row it copies, so it is found within its range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from incident.pipeline.load import REJECT_REASON, SOURCE_FILE
from incident.pipeline.values import as_text
from incident.schema import DELIVERY_COLUMNS, REASON

DUPLICATE = "duplicate"
# Rows sorted in memory at once: about 1 KB each while sorting. Smaller ranges cost more
# passes over the parts, but each sorts faster: on 483,160 misdeliveries, ranges of 100,000
# rows took 2 s and 0.3 GB where one range took 3 to 8 s and 0.6 GB.
RANGE_ROWS = 250_000
# Values of the leading key read to place the ranges' bounds.
SAMPLE_ROWS = 100_000
LEADING = "event_id"


@dataclass(frozen=True)
class Ordered:
    """The sorted misdeliveries without copies (a scan of their files), the copies as
    rejected rows, and how many delivery IDs name different deliveries."""

    misdeliveries: pl.LazyFrame
    copies: pl.DataFrame
    delivery_id_clashes: int


def sort_keys(schema: pl.Schema) -> list[str]:
    """Every sortable column takes part, so that a re-run writes rows in the same order."""
    return [name for name, dtype in schema.items() if not dtype.is_nested()]


def _bounds(misdelivered: pl.LazyFrame, rows: int, range_rows: int) -> list[str]:
    """Values of the leading key that cut `rows` rows into ranges of about `range_rows`:
    quantiles of an even sample, so only the sample is held."""
    ranges = math.ceil(rows / range_rows)
    if ranges <= 1:
        return []
    step = max(1, rows // SAMPLE_ROWS)
    sample = (
        misdelivered.select(LEADING)
        .with_row_index("_n")
        .filter(pl.col("_n") % step == 0)
        .select(pl.col(LEADING).drop_nulls().sort())
        .collect(engine="streaming")[LEADING]
    )
    picked = {sample[i * sample.len() // ranges] for i in range(1, ranges) if sample.len()}
    return sorted(picked)


def _ranges(bounds: list[str]) -> list[pl.Expr]:
    """One filter per range of the leading key, in order; nulls sort last."""
    key = pl.col(LEADING)
    if not bounds:
        return [pl.lit(True)]
    lows = [key >= bound for bound in bounds]
    highs = [key < bound for bound in bounds]
    middle = [low & high for low, high in zip(lows[:-1], highs[1:], strict=True)]
    return [highs[0], *middle, lows[-1] | key.is_null()]


def _copies(misdelivered: pl.DataFrame) -> pl.Series:
    """True for a misdelivered row that copies an earlier one (in the rows' stable order):
    the same `delivery_id` and the same required columns, or without an ID the same value in
    every input column. A log loaded twice under two names must not count its findings twice."""
    values = [c for c in misdelivered.columns if c not in (SOURCE_FILE, "developer_id", REASON)]
    attempt = ["delivery_id", *(c for c, column in DELIVERY_COLUMNS.items() if column.required)]
    copy = (
        pl.when(pl.col("delivery_id").is_not_null())
        .then(pl.struct(attempt).is_first_distinct().not_())
        .otherwise(pl.struct(values).is_first_distinct().not_())
    )
    return misdelivered.select(copy.alias("copy"))["copy"]


def _as_rejected(duplicates: pl.DataFrame) -> pl.DataFrame:
    """Copies as rejected rows: every input column as text, with reason `duplicate`."""
    duplicates = duplicates.drop("developer_id", REASON)
    return duplicates.select(
        *(as_text(name, dtype) for name, dtype in duplicates.schema.items()),
        pl.lit(DUPLICATE).alias(REJECT_REASON),
    )


def _clashes(ordered: pl.LazyFrame, rows: int, range_rows: int) -> int:
    """Delivery IDs that several different deliveries share. With copies gone, each row of an
    ID is another attempt; the IDs are counted a hash bucket at a time, to hold a bucket."""
    buckets = max(1, math.ceil(rows / range_rows))
    has_id = ordered.select("delivery_id").filter(pl.col("delivery_id").is_not_null())
    clashing = 0
    for bucket in range(buckets):
        shared = (
            has_id.filter(pl.col("delivery_id").hash() % buckets == bucket)
            .group_by("delivery_id")
            .len()
            .filter(pl.col("len") > 1)
            .select(pl.len())
            .collect(engine="streaming")
            .item()
        )
        clashing += int(shared)
    return clashing


def order(
    misdelivered: pl.LazyFrame, rows: int, folder: Path, range_rows: int | None = None
) -> Ordered:
    """Sort the `rows` misdelivered rows of `misdelivered` by every sortable column and set
    copies apart (DESIGN rule 1), a range of `event_id` of about `range_rows` rows
    (`RANGE_ROWS`) at a time, into files in `folder`."""
    range_rows = range_rows or RANGE_ROWS
    folder.mkdir(parents=True, exist_ok=True)
    keys = sort_keys(misdelivered.collect_schema())
    if keys[0] != LEADING:  # the ranges would not be in the rows' order
        raise ValueError(f"the misdeliveries are sorted by {keys[0]} first, not {LEADING}")
    files: list[Path] = []
    copies: list[pl.DataFrame] = []
    for number, in_range in enumerate(_ranges(_bounds(misdelivered, rows, range_rows))):
        found = misdelivered.filter(in_range).collect(engine="streaming")
        found = found.sort(keys, nulls_last=True, maintain_order=True)
        copy = _copies(found)
        if copy.any():
            copies.append(_as_rejected(found.filter(copy)))
            found = found.filter(copy.not_())
        if found.height or not files:
            file = folder / f"misdeliveries-{number:06d}.parquet"
            found.write_parquet(file)
            files.append(file)
        del found
    ordered = pl.scan_parquet(files, glob=False)
    return Ordered(
        misdeliveries=ordered,
        copies=pl.concat(copies, how="diagonal_relaxed") if copies else pl.DataFrame(),
        delivery_id_clashes=_clashes(ordered, rows, range_rows),
    )
