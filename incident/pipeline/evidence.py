"""Partial evidence, said out loud: which conditions of a collision could not be checked.

Real delivery logs lack `backend_host` on a few rows, and the IP or URL on others. A condition
that cannot be checked for a misdelivery does not rule a collision out; the misdelivery is
classified with what can be checked, and its `evidence` names what could not be (`full` when
everything was). A cause other than a collision rests on no unchecked condition: checks are
only ever relaxed, so ruling a collision out always rests on a condition that failed.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl

from incident.pipeline.context import BACKEND_EVIDENCE
from incident.pipeline.endpoints import nearest, within
from incident.schema import FULL_EVIDENCE as FULL


class Condition(StrEnum):
    """A condition of the collision signature that the evidence may not let us check."""

    # The receiving app's own traffic came from the same backend: the misdelivery, or the
    # traffic near it, has no `backend_host`.
    BACKEND = "backend"


# The column of each condition, true when it could not be checked.
UNCHECKED = {Condition.BACKEND: "_no_backend"}


def evidence(checked: pl.Expr) -> pl.Expr:
    """The evidence of a misdelivery: `full` unless `checked` (true for the collisions) and some
    condition could not be checked; then their names joined by `;`."""
    names = pl.concat_str(
        [pl.when(pl.col(flag)).then(pl.lit(c.value)) for c, flag in UNCHECKED.items()],
        separator=";",
        ignore_nulls=True,
    )
    return pl.when(checked & (names != "")).then(names).otherwise(pl.lit(FULL))


def receiver_active(
    leaks: pl.DataFrame, at: pl.LazyFrame, context: pl.DataFrame, window: int, relax: bool
) -> pl.DataFrame:
    """(_m, _no_backend): the misdeliveries whose receiving app had its own traffic within the
    window from the same backend (`_no_backend` false), or, when `relax` and a backend is
    missing on the misdelivery or on that traffic, from a backend that cannot be compared
    (`_no_backend` true). `at` is each misdelivery's (_m, app_id, delivered_at, backend).

    Misdeliveries are not an app's own traffic, nor is any delivery of a misdelivered event
    to the same app for the same subscriber: a retry, or a rejected copy, is the leak again.
    `leaks` holds the (event_id, app_id, for_user_id) of every misdelivery, of every chunk,
    that `context` holds."""
    keys = leaks.columns
    traffic = context.lazy().join(leaks.lazy(), on=keys, how="anti", nulls_equal=True)
    slots = ["app_id", BACKEND_EVIDENCE]
    checked = (
        nearest(at.drop_nulls(slots), traffic, slots)
        .filter(within(window))
        .select("_m", _no_backend=pl.lit(False))
    )
    if not relax:
        return checked.collect()
    known = pl.col(BACKEND_EVIDENCE).is_not_null()
    unknown = pl.concat(
        [
            nearest(at.filter(~known).drop(BACKEND_EVIDENCE), traffic, ["app_id"]),
            nearest(at.filter(known).drop(BACKEND_EVIDENCE), traffic.filter(~known), ["app_id"]),
        ]
    ).filter(within(window))
    uncompared = unknown.join(checked, on="_m", how="anti").select("_m", _no_backend=pl.lit(True))
    return pl.concat([checked, uncompared]).collect()
