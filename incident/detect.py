"""Grants -> the gaps between them; deliveries x gaps -> misdeliveries with a reason.

A grant covers `[granted_at, revoked_at)`, and the grants of one (user, app) may repeat,
overlap or re-grant. Instead of asking "is some grant active at t?" for every delivery, the
grants of each key are merged into disjoint islands once, and the complement is kept: the
*gaps*. A delivery is misdelivered exactly when its time falls in a gap of its key (or its key
never had a grant), and a key's gaps are disjoint, so an equi-join on the key followed by a
range filter yields each misdelivery once. The gaps carry the reason: before the first island
nothing had ended yet (`before_grant`); after any island a grant had ended (`after_revocation`).

Memory grows with the grants (the join's build side), not with the deliveries, and no delivery
row is held back: the streaming engine pipes them through the join.
"""

from __future__ import annotations

import polars as pl

from incident.config import Window
from incident.schema import TIMESTAMP, Reason

KEY = ("for_user_id", "app_id")
REASON = "reason"

# An open grant (null revoked_at) ends at the end of representable time.
_END_OF_TIME = pl.lit(2**63 - 1).cast(TIMESTAMP)


def in_window(window: Window) -> pl.Expr:
    """`since <= delivered_at < until` (DESIGN rule 2)."""
    t = pl.col("delivered_at")
    return (t >= window.since) & (t < window.until)


def islands(grants: pl.LazyFrame) -> pl.LazyFrame:
    """Each key's grants merged into disjoint `[start, end)` islands, in order (`island` 0..n).

    Touching or overlapping grants merge. An empty grant (`granted_at == revoked_at`) covers no
    instant but still forms an island, because from then on a grant of the key has ended.
    """
    intervals = grants.select(
        *KEY,
        pl.col("granted_at").alias("start"),
        pl.col("revoked_at").fill_null(_END_OF_TIME).alias("end"),
    )
    several = pl.len().over(KEY) > 1
    # Keys with one grant are one island as they are; only the few with several are merged.
    single = intervals.filter(several.not_()).with_columns(pl.lit(0, pl.UInt32).alias("island"))
    merged = (
        intervals.filter(several)
        .sort(*KEY, "start", "end")
        .with_columns(
            pl.col("end").cum_max().shift(1).over(KEY).alias("_reach"),
        )
        .with_columns(
            # A grant opens a new island when it starts after everything before it has ended.
            (pl.col("_reach").is_null() | (pl.col("start") > pl.col("_reach")))
            .cum_sum()
            .over(KEY)
            .cast(pl.UInt32)
            .sub(1)
            .alias("island")
        )
        .group_by(*KEY, "island")
        .agg(pl.col("start").min(), pl.col("end").max())
    )
    return pl.concat([single, merged.select(single.collect_schema().names())])


def gaps(grants: pl.LazyFrame) -> pl.LazyFrame:
    """The instants each key's grants do not cover, as disjoint `[gap_start, gap_end)` with the
    reason a delivery in them gets; a null bound is unbounded."""
    merged = islands(grants)
    before_first = merged.filter(pl.col("island") == 0).select(
        *KEY,
        pl.lit(None, TIMESTAMP).alias("gap_start"),
        pl.col("start").alias("gap_end"),
        pl.lit(Reason.BEFORE_GRANT.value).alias(REASON),
    )
    after_each = (
        merged.join(
            merged.select(
                *KEY, (pl.col("island") - 1).alias("island"), pl.col("start").alias("next")
            ),
            on=[*KEY, "island"],
            how="left",
        )
        .filter(pl.col("end") < _END_OF_TIME)
        .select(
            *KEY,
            pl.col("end").alias("gap_start"),
            pl.col("next").alias("gap_end"),
            pl.lit(Reason.AFTER_REVOCATION.value).alias(REASON),
        )
    )
    return pl.concat([before_first, after_each])


def find_misdeliveries(deliveries: pl.LazyFrame, grants: pl.LazyFrame) -> pl.LazyFrame:
    """The deliveries no grant of their (user, app) covers, each once, with a `reason`
    (DESIGN rule 3). The caller restricts `deliveries` to the window first."""
    t = pl.col("delivered_at")
    keys = grants.select(KEY).unique()
    never_granted = deliveries.join(keys, on=KEY, how="anti").with_columns(
        pl.lit(Reason.NO_GRANT.value).alias(REASON)
    )
    in_gap = (
        deliveries.join(gaps(grants), on=KEY, how="inner")
        .filter(
            (pl.col("gap_start").is_null() | (pl.col("gap_start") <= t))
            & (pl.col("gap_end").is_null() | (t < pl.col("gap_end")))
        )
        .drop("gap_start", "gap_end")
    )
    return pl.concat([never_granted, in_gap])
