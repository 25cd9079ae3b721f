"""How a scan reads the deliveries: two passes over a group of files (a partition).

The first pass reads only what rule 1 and detection need (the five required columns, keys as
integers where the logs have them) and classifies every row; its output is the row accounting
and the numbers of the few rows to report. The second pass fetches just those rows whole,
normalised (misdeliveries) or as read (rejected rows). Each pass is one streaming query, so a
delivery row is never held in memory unless it is reported. `prepare` builds what every
partition shares; `detect` is the partition task's detection (`partitions` runs it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from incident.config import Window
from incident.pipeline.detect import (
    KEY,
    MISDELIVERED,
    PACKED_KEY,
    STATUS,
    KeyTables,
    Packing,
    Status,
    as_integer,
    classify,
    key_queries,
    report,
)
from incident.pipeline.footers import with_dictionary_proofs
from incident.pipeline.load import (
    ROW,
    LoadedInput,
    SourceGroup,
    collect_groups,
    collect_input,
)
from incident.schema import REASON

EVENT = "_event"


@dataclass(frozen=True)
class Findings:
    """What the passes found: rows per status, the misdeliveries whole (with `reason`) and the
    rejected rows as read (with `reject_reason`)."""

    statuses: Counter[str]
    misdeliveries: pl.DataFrame
    rejected: pl.DataFrame


def _packed(group: SourceGroup) -> bool:
    # Both keys integers that fit 64 signed bits: join on one exact 128-bit key.
    return all(group.integer(c) and group.raw_schema[group.sources[c]] != pl.UInt64 for c in KEY)


def _narrow(group: SourceGroup, packing: Packing) -> tuple[pl.LazyFrame, list[str]]:
    """The columns rule 1 and detection need, keyed like the key table for this group."""
    group = with_dictionary_proofs(group)
    packed = _packed(group)
    key_columns = (
        [packing.pack(*(pl.col(group.sources[c]) for c in KEY))]
        if packed
        else [group.column(c) for c in KEY]
    )
    narrow = group.scan().select(
        pl.col(ROW),
        pl.col(group.sources["event_id"]).alias(EVENT),
        *key_columns,
        group.column("delivered_at"),
        group.is_valid().alias("_valid"),
    )
    return narrow, [PACKED_KEY] if packed else list(KEY)


def _integer_ids(group: SourceGroup) -> list[pl.Expr]:
    """The grant IDs of `group` as integers (null where one is not an integer), read straight
    from integer columns, without a detour through text."""
    if _packed(group):
        return [pl.col(group.sources[c]).cast(pl.Int64).alias(c) for c in KEY]
    return [as_integer(group.column(c)).alias(c) for c in KEY]


def _packing(authorizations: LoadedInput) -> Packing:
    """How to pack integer IDs for these grants: from the range of IDs over all their rows."""
    ranges = pl.concat(group.scan().select(_integer_ids(group)) for group in authorizations.groups)
    (bounds,) = collect_input(
        [
            ranges.select(
                *(pl.col(c).min().alias(f"{c}_min") for c in KEY),
                *(pl.col(c).max().alias(f"{c}_max") for c in KEY),
            )
        ],
        [authorizations],
        engine="auto",
    )
    user_min, app_min, user_max, app_max = bounds.row(0)
    if user_min is None or app_min is None:
        return Packing((0, -1), (0, -1))  # no integer IDs: nothing matches
    return Packing((user_min, user_max), (app_min, app_max))


def _grants(authorizations: LoadedInput, packing: Packing | None) -> tuple[pl.LazyFrame, list[str]]:
    """The valid grants keyed like deliveries whose IDs are integers (with `packing`) or text."""
    frames = []
    for group in authorizations.groups:
        rows = group.scan().filter(group.is_valid())
        times = [group.column("granted_at"), group.column("revoked_at")]
        if packing is None:
            keyed = rows.select(*map(group.column, KEY), *times)
        else:
            ids = rows.select(*_integer_ids(group), *times).drop_nulls(KEY)
            keyed = ids.select(packing.pack(*map(pl.col, KEY)), "granted_at", "revoked_at")
        frames.append(keyed)
    return pl.concat(frames), [PACKED_KEY] if packing else list(KEY)


def _first_pass(
    group: SourceGroup, tables: dict[bool, KeyTables], packing: Packing, window: Window
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two results from one read: the row counts, and the rows to report (rejected, or valid,
    in the window and not authorized) with what the second pass needs to find them again."""
    narrow, on = _narrow(group, packing)
    keys = tables[_packed(group)]
    counts, open_rows = collect_groups(list(classify(narrow, keys, on, window)), [group])
    return counts, report(open_rows, keys, on).select(ROW, EVENT, *on, "delivered_at", STATUS)


def _fetch(group: SourceGroup, flagged: pl.DataFrame) -> pl.LazyFrame:
    """The raw rows numbered in `flagged`, with their `_status`, read from just the files
    that hold them (none when there are none)."""
    narrowed, rows = group.holding(flagged[ROW])
    wanted = flagged.select(rows.alias(ROW), EVENT, STATUS)
    raw = narrowed.scan()
    if wanted.height:
        # The event ID, decoded first, rules out almost every row before the other columns
        # are decoded; the row number then picks the exact rows.
        event = pl.col(group.sources["event_id"])
        events = event.is_in(wanted[EVENT].drop_nulls().unique().implode()) | event.is_null()
        raw = raw.filter(events & pl.col(ROW).is_in(wanted[ROW].implode()))
    else:
        raw = raw.head(0)
    return raw.join(wanted.lazy().select(ROW, STATUS), on=ROW)


def _second_pass(group: SourceGroup, found: pl.DataFrame) -> list[pl.LazyFrame]:
    """The rows to report, fetched: the misdeliveries normalised as they are read, with their
    `reason`, so that their raw form is never held whole; the rejected rows as read. Each
    reads only the files holding its rows: rejected rows are few, and usually none."""
    misdelivered = _fetch(group, found.filter(pl.col(STATUS).is_in(MISDELIVERED)))
    reasons = misdelivered.select(ROW, pl.col(STATUS).cast(pl.String).alias(REASON))
    rejected = _fetch(group, found.filter(pl.col(STATUS) == Status.REJECTED.value))
    return [group.normalised(misdelivered).join(reasons, on=ROW), group.as_read(rejected)]


@dataclass(frozen=True)
class Detector:
    """What detection needs beside the deliveries, built once and shared by every partition:
    the window, how integer IDs are packed, and for each way a group keys its rows (packed
    integers or text) the key tables of the grants."""

    window: Window
    packing: Packing
    tables: dict[bool, KeyTables]


def prepare(authorizations: LoadedInput, groups: Sequence[SourceGroup], window: Window) -> Detector:
    """The key tables for the ways `groups` key their rows, each built once."""
    packing = _packing(authorizations)
    grants = {
        packed: _grants(authorizations, packing if packed else None)
        for packed in map(_packed, groups)
    }
    # One at a time: each is as large as the grants.
    tables = {
        packed: KeyTables.build(collect_input(key_queries(keyed, on), [authorizations], "auto"), on)
        for packed, (keyed, on) in grants.items()
    }
    return Detector(window, packing, tables)


def detect(group: SourceGroup, detector: Detector) -> Findings:
    """Classify every row of `group` and fetch the rows to report (both passes). The
    misdeliveries keep their row number (`_row`) in the group."""
    counts, found = _first_pass(group, detector.tables, detector.packing, detector.window)
    rows, outside = counts.row(0)
    statuses = Counter(found[STATUS].to_list())
    statuses[Status.OUTSIDE_WINDOW.value] += outside
    # Every row read and not otherwise accounted for was authorized.
    statuses[Status.AUTHORIZED.value] += rows - outside - found.height
    misdeliveries, rejected = collect_groups(_second_pass(group, found), [group])
    return Findings(+statuses, misdeliveries, rejected)
