"""Deliveries x grants -> the status of every delivery: outside the window, authorized, or why not.

A grant covers `[granted_at, revoked_at)`. Grants of one (user, app) may repeat, overlap or
re-grant, so coverage is counted rather than looked up: at instant t the number of active grants
is #(granted_at <= t) - #(revoked_at <= t), which is exact for any set of intervals whose
starts are not after their ends. The grants are reduced to one row per (user, app) key, so that
the deliveries join 1:1 and memory grows with the grants, not with the deliveries. Almost every
key has one grant and is checked by two comparisons; only keys with several grants carry lists.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl

from incident.config import Window
from incident.schema import Reason

KEY = ("for_user_id", "app_id")
STATUS = "status"
REASON = "reason"


class Status(StrEnum):
    """Where each valid delivery falls in the row accounting (DESIGN rule 6)."""

    OUTSIDE_WINDOW = "outside_window"
    AUTHORIZED = "authorized"
    MISDELIVERED = "misdelivered"


def grant_keys(grants: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (user, app): grant count, the single grant's bounds, or all bounds as lists."""
    several = pl.col("_grants") > 1
    return (
        grants.group_by(KEY)
        .agg(
            pl.len().alias("_grants"),
            pl.col("granted_at").first().alias("_granted_at"),
            pl.col("revoked_at").first().alias("_revoked_at"),
            pl.col("revoked_at").min().alias("_first_revoked_at"),
            pl.col("granted_at").alias("_starts"),
            pl.col("revoked_at").drop_nulls().alias("_ends"),
        )
        .with_columns(pl.when(several).then(pl.col("_starts", "_ends")))
    )


def _count_at_or_before(bounds: str, instant: str) -> pl.Expr:
    # list.eval cannot see other columns: prepend the instant and compare with the first element.
    return (
        pl.concat_list(instant, bounds).list.eval(pl.element() <= pl.element().first()).list.sum()
        - 1
    )


def classify(deliveries: pl.LazyFrame, grants: pl.LazyFrame, window: Window) -> pl.LazyFrame:
    """Add `status` (a `Status`) and `reason` (a `Reason`, for misdeliveries) to each delivery."""
    t = pl.col("delivered_at")
    in_window = (t >= window.since) & (t < window.until)
    single_covers = (pl.col("_granted_at") <= t) & (
        pl.col("_revoked_at").is_null() | (t < pl.col("_revoked_at"))
    )
    several_cover = (
        _count_at_or_before("_starts", "delivered_at")
        - _count_at_or_before("_ends", "delivered_at").fill_null(0)
    ) > 0
    covered = (
        pl.when(pl.col("_grants").is_null())
        .then(pl.lit(False))
        .when(pl.col("_grants") == 1)
        .then(single_covers)
        .otherwise(several_cover)
    )
    reason = (
        pl.when(pl.col("_grants").is_null())
        .then(pl.lit(Reason.NO_GRANT.value))
        .when(pl.col("_first_revoked_at") <= t)
        .then(pl.lit(Reason.AFTER_REVOCATION.value))
        .otherwise(pl.lit(Reason.BEFORE_GRANT.value))
    )
    status = (
        pl.when(in_window.not_())
        .then(pl.lit(Status.OUTSIDE_WINDOW.value))
        .when(covered)
        .then(pl.lit(Status.AUTHORIZED.value))
        .otherwise(pl.lit(Status.MISDELIVERED.value))
    )
    return (
        deliveries.join(grant_keys(grants), on=KEY, how="left", validate="m:1")
        .with_columns(status.alias(STATUS))
        .with_columns(
            pl.when(pl.col(STATUS) == Status.MISDELIVERED.value).then(reason).alias(REASON)
        )
        .drop("_grants", "_granted_at", "_revoked_at", "_first_revoked_at", "_starts", "_ends")
    )
