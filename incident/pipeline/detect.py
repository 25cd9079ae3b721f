"""Grants -> one row per (user, app) key; deliveries x keys -> a status for every delivery.

A grant covers `[granted_at, revoked_at)`, and the grants of one key may repeat, overlap or
re-grant. They are merged once into disjoint *islands*; a delivery is authorized exactly when
an island of its key contains its time. The first `ISLANDS` islands of each key sit in columns
of a key table, so that the deliveries join it 1:1 and are classified by a few comparisons:
memory grows with the grants, not with the deliveries, and the deliveries stream through.
The deliveries join only the first island of each key; the few rows it leaves open meet the
later islands of their keys afterwards, in memory, and the rows of the rare key with more
islands than the columns hold meet the rest of its islands last.

Reasons (DESIGN rule 3) follow from the islands: before the first island nothing had ended yet
(`before_grant`); after any island a grant had ended (`after_revocation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import polars as pl

from incident.config import Window
from incident.schema import TIMESTAMP, Reason

KEY = ("for_user_id", "app_id")
PACKED_KEY = "_key"
STATUS = "_status"
# The partition a row was read in, where rows of several partitions meet (grant buckets):
# row numbers (`_row`) are a partition's own.
PARTITION = "_partition"
ISLANDS = 2

# An open grant (null revoked_at) ends at the end of representable time.
_END_OF_TIME = pl.lit(2**63 - 1).cast(TIMESTAMP)


class Status(StrEnum):
    """Where a delivery row falls in the row accounting (DESIGN rule 6), with the reason for a
    misdelivery; `check` marks a row whose key has more islands than the key table holds."""

    REJECTED = "rejected"
    OUTSIDE_WINDOW = "outside_window"
    AUTHORIZED = "authorized"
    NO_GRANT = Reason.NO_GRANT.value
    AFTER_REVOCATION = Reason.AFTER_REVOCATION.value
    BEFORE_GRANT = Reason.BEFORE_GRANT.value
    CHECK = "check"


MISDELIVERED = [Status.NO_GRANT.value, Status.AFTER_REVOCATION.value, Status.BEFORE_GRANT.value]
# Statuses as an enum: a byte per row instead of a string, over every candidate delivery.
STATUS_TYPE = pl.Enum([s.value for s in Status])


def status_literal(value: Status) -> pl.Expr:
    """A status literal of the enum type."""
    return pl.lit(value.value, dtype=STATUS_TYPE)


def in_window(window: Window) -> pl.Expr:
    """`since <= delivered_at < until` (DESIGN rule 2)."""
    t = pl.col("delivered_at")
    return (t >= window.since) & (t < window.until)


@dataclass(frozen=True)
class Packing:
    """Two integer IDs as one exact join key: one hashed column joins ~3x faster than two.

    When the IDs of the grants span few enough bits, the key is their offsets from the smallest
    ones in 64 bits (it joins faster than 128 bits, in less memory), and an ID outside the
    grants' range, which no grant can match, gets no key; else it is both IDs in 128 bits.
    """

    users: tuple[int, int]  # the smallest and the largest user ID of the grants
    apps: tuple[int, int]

    def pack(self, user: pl.Expr, app: pl.Expr) -> pl.Expr:
        """The key of integer IDs `user` and `app`."""
        app_bits = (self.apps[1] - self.apps[0]).bit_length()
        if (self.users[1] - self.users[0]).bit_length() + app_bits > 62:
            return (user.cast(pl.Int128) * 2**64 + app.cast(pl.Int128) + 2**63).alias(PACKED_KEY)
        user, app = user.cast(pl.Int64), app.cast(pl.Int64)
        key = (user - self.users[0]) * 2**app_bits + (app - self.apps[0])
        inside = user.is_between(*self.users) & app.is_between(*self.apps)
        return pl.when(inside).then(key).alias(PACKED_KEY)


def as_integer(text_id: pl.Expr) -> pl.Expr:
    """A text ID as the integer it is written as, else null."""
    # Text that is exactly an integer's decimal form ("123", not "0123") matches that integer.
    number = text_id.cast(pl.Int64, strict=False)
    return pl.when(number.cast(pl.String) == text_id).then(number)


def _same_key(on: list[str], offset: int) -> pl.Expr:
    """True where the row `offset` rows before (negative: after) this one has the same key."""
    return pl.all_horizontal(pl.col(c) == pl.col(c).shift(offset) for c in on).fill_null(False)


def _nanoseconds(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int64).cast(pl.Int128)


def _by_key(grants: pl.LazyFrame, on: list[str]) -> pl.LazyFrame:
    """Each grant as `[start, end)`, sorted by key."""
    return grants.select(
        *on,
        pl.col("granted_at").alias("start"),
        pl.col("revoked_at").fill_null(_END_OF_TIME).alias("end"),
    ).sort(*on)


def _several(on: list[str]) -> pl.Expr:
    """True for a grant, sorted by key, whose key has other grants."""
    return _same_key(on, 1) | _same_key(on, -1)


def _merged(by_key: pl.LazyFrame, on: list[str]) -> pl.LazyFrame:
    """Grants `[start, end)` sorted by key -> their islands, sorted by key and start.

    Touching or overlapping grants merge. An empty grant (`granted_at == revoked_at`) covers no
    instant but still forms an island, because from then on a grant of the key has ended.
    """
    ordered = by_key.sort(*on, "start")
    # A grant opens an island when it starts after every earlier grant of its key has ended.
    # One running maximum serves all keys at once, without a window per key, when each key's
    # instants are lifted above those of the keys before it (its number in the high 64 bits).
    lift = _same_key(on, 1).not_().cum_sum().cast(pl.Int128) * 2**64 + 2**63
    reach = (lift + _nanoseconds("end")).cum_max()
    opens = ((lift + _nanoseconds("start")) > reach.shift(1)).fill_null(True)
    # An island runs from the start of the grant that opens it to the reach of its last grant.
    return (
        ordered.with_columns(
            pl.when(opens).then(pl.col("start")).forward_fill().alias("start"),
            (reach - lift).cast(pl.Int64).cast(TIMESTAMP).alias("end"),
            opens.shift(-1).fill_null(True).alias("_last"),
        )
        .filter("_last")
        .drop("_last")
    )


def key_queries(grants: pl.LazyFrame, on: list[str]) -> list[pl.LazyFrame]:
    """What `KeyTables.build` takes, as two queries to collect together: the keys with one
    grant, which is their one island (`start`, `end`), and the islands of the other keys."""
    by_key = _by_key(grants, on)
    # Almost every key has one grant: those keys skip the sort by start and the merge.
    several = _several(on)
    return [by_key.filter(several.not_()), _merged(by_key.filter(several), on)]


def _as_columns(islands_: pl.LazyFrame, on: list[str]) -> pl.LazyFrame:
    """Islands sorted by key and start -> one row per key, its first `ISLANDS` as columns
    `_s0, _e0, …` (null past its last island), and `_more`, true when it has more than that."""
    bounds = [
        pl.when(_same_key(on, -i)).then(pl.col(bound).shift(-i)).alias(f"_{bound[0]}{i}")
        for i in range(1, ISLANDS)
        for bound in ("start", "end")
    ]
    return islands_.select(
        *on,
        pl.col("start").alias("_s0"),
        pl.col("end").alias("_e0"),
        *bounds,
        _same_key(on, -ISLANDS).alias("_more"),
    ).filter(_same_key(on, 1).not_())


@dataclass(frozen=True)
class KeyTables:
    """The grants merged into islands (see the module's docstring), in three tables: every
    key's first island (`_s0`, `_e0`), which settles almost every delivery in the join; the
    later islands (`_s1`, `_e1`, …, `_more`) of the few keys that have one; and, as rows
    (`start`, `end`), the islands past those of the rarer keys with more (`_more`)."""

    first: pl.DataFrame
    later: pl.DataFrame
    rest: pl.DataFrame

    @classmethod
    def build(cls, collected: Sequence[pl.DataFrame], on: list[str]) -> KeyTables:
        """From the results of `key_queries`. Only the keys with several grants are laid out
        here, in memory: they are few."""
        single, merged = collected
        several = _as_columns(merged.lazy(), on).collect()
        later = [f"_{b}{i}" for i in range(1, ISLANDS) for b in "se"]
        first = pl.concat(
            [single.select(*on, _s0="start", _e0="end"), several.select(*on, "_s0", "_e0")]
        )
        # `merged` is sorted by key and start: an island whose key also has the island
        # `ISLANDS` rows before is past the columns.
        rest = merged.filter(_same_key(on, ISLANDS)).select(*on, "start", "end")
        return cls(
            first, several.filter(pl.col("_s1").is_not_null()).select(*on, *later, "_more"), rest
        )


def _covered(islands: range) -> pl.Expr:
    """True where one of the joined `islands` (by number) contains `delivered_at`."""
    t = pl.col("delivered_at")
    return pl.any_horizontal(
        ((pl.col(f"_s{i}") <= t) & (t < pl.col(f"_e{i}"))).fill_null(False) for i in islands
    )


def classify(
    deliveries: pl.LazyFrame, keys: KeyTables, on: list[str], window: Window
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Classify every delivery row against the first islands, from one read: the number of
    rows and of valid rows outside the window, and the rows left open (rejected, or valid, in
    the window and not in the first island of their key), for `report` to settle.
    `deliveries` has `_valid` (rule 1), the key columns `on` and a normalised `delivered_at`;
    `keys` is `KeyTables` keyed the same way."""
    # Every row goes through the join, so that both results follow it: a branch that waited
    # for the join's hash table while the other read on would hold the rows read meanwhile.
    # The key table is the build side from the start: when polars samples both sides to choose,
    # it holds back a large part of the deliveries meanwhile (0.4 GB at 20 M).
    joined = deliveries.join(keys.first.lazy(), on=on, how="left", build_side="force_right")
    valid, inside = pl.col("_valid"), in_window(window)
    # A plain reduction: a group_by would run apart from the other branch, and hold rows too.
    counts = joined.select(
        pl.len().alias("rows"), (valid & inside.not_()).sum().alias(Status.OUTSIDE_WINDOW.value)
    )
    return counts, joined.filter(valid.not_() | (inside & _covered(range(1)).not_()))


def report(open_rows: pl.DataFrame, keys: KeyTables, on: list[str]) -> pl.DataFrame:
    """The rows to report among the rows `classify` left open, with their `_status`: those no
    later island of their key covers."""
    # In memory, once the deliveries are read: a second join in the streaming query held the
    # rows read while it built its table (1.5 GB at 20 M). Keys without later islands find
    # none here, and `_more` is null there.
    valid, t = pl.col("_valid"), pl.col("delivered_at")
    status = (
        pl.when(valid.not_())
        .then(status_literal(Status.REJECTED))
        .when(pl.col("_s0").is_null())
        .then(status_literal(Status.NO_GRANT))
        .when(t < pl.col("_s0"))
        .then(status_literal(Status.BEFORE_GRANT))
        .when(pl.col("_more"))
        .then(status_literal(Status.CHECK))
        .otherwise(status_literal(Status.AFTER_REVOCATION))
    )
    flagged = (
        open_rows.lazy()
        .join(keys.later.lazy(), on=on, how="left")
        .filter(valid.not_() | _covered(range(1, ISLANDS)).not_())
        .with_columns(status.alias(STATUS))
        .collect()
    )
    checks = flagged.filter(pl.col(STATUS) == Status.CHECK.value)
    if not checks.height:
        return flagged
    # A row marked `check` is past its key's first island and in none of the columns: an
    # island of the rest covers it, or a grant of its key had ended.
    row = ["_row", *([PARTITION] if PARTITION in checks.columns else [])]
    covered = (
        checks.lazy()
        .join(keys.rest.lazy(), on=on)
        .filter((pl.col("start") <= t) & (t < pl.col("end")))
        .select(*on, *row)
    )
    after_revocation = (
        checks.lazy()
        .join(covered, on=[*on, *row], how="anti")
        .with_columns(status_literal(Status.AFTER_REVOCATION).alias(STATUS))
        .collect()
    )
    return pl.concat([flagged.filter(pl.col(STATUS) != Status.CHECK.value), after_revocation])
