"""Ground truth: truth.parquet, the misdeliveries a correct default scan must report.

Truth is not taken from the generator's intent: it is recomputed by rule 3 of DESIGN.md
from the frames exactly as written, so the answer key does not depend on the generation
code being right. Each misdelivery found then gets the label of how it was generated (its
cause and, for a collision, the app its event was meant for); a misdelivery that was
generated as an authorized delivery is a generator bug, and stops the run.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from incident.sample.constants import CAUSES, DEFAULT_WINDOW, EVENT_TYPES, NO_CAUSE, NULL_ID
from incident.sample.population import _Population
from incident.sample.writing import UTC_POLARS, _nullable
from incident.schema import Reason


def _truth(deliveries: pl.DataFrame, authorizations: pl.DataFrame) -> pl.DataFrame:
    """Rule 3 of DESIGN.md over the frames as written, independent of how they were built.

    Every in-window delivery is joined to all grant rows of its (user, app); it is a
    misdelivery when none covers it; the reason follows the rule's precedence.
    """
    t = pl.col("delivered_at")
    in_window = deliveries.lazy().filter((t >= DEFAULT_WINDOW.since) & (t < DEFAULT_WINDOW.until))
    joined = in_window.select("row", "for_user_id", "app_id", "delivered_at").join(
        authorizations.lazy(), on=["for_user_id", "app_id"], how="left"
    )
    g, r = pl.col("granted_at"), pl.col("revoked_at")
    flags = joined.group_by("row").agg(
        covered=((g <= t) & (r.is_null() | (t < r))).fill_null(False).any(),
        ended=(r <= t).fill_null(False).any(),
        had_grant=g.is_not_null().any(),
    )
    reason = (
        pl.when(~pl.col("had_grant"))
        .then(pl.lit(Reason.NO_GRANT.value))
        .when(pl.col("ended"))
        .then(pl.lit(Reason.AFTER_REVOCATION.value))
        .otherwise(pl.lit(Reason.BEFORE_GRANT.value))
    )
    misdelivered = flags.filter(~pl.col("covered")).select("row", reason=reason)
    return in_window.join(misdelivered, on="row", how="inner").sort("row").collect()


def _truth_frame(
    pop: _Population, deliveries: pl.DataFrame, authorizations: pl.DataFrame
) -> pl.DataFrame:
    """truth.parquet's rows: the misdeliveries among `deliveries` (as _build made them, in
    delivery order) against `authorizations` (as written), with their generation labels."""
    written = deliveries.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        "event_id",
        "for_user_id",
        "app_id",
        pl.col("delivered_at").cast(UTC_POLARS),
        "event_type",
    )
    width = max(9, len(str(written.height)))
    found = _truth(written, authorizations)
    # The labels say how each row was generated, joined by row; every misdelivery was
    # generated as one, so each has a cause.
    labels = deliveries.select(pl.col("cause", "intended_app").gather(found["row"]))
    if (labels["cause"] == NO_CAUSE).any():
        raise RuntimeError("sample: a delivery generated as authorized is a misdelivery")
    app = labels["intended_app"].to_numpy()
    return found.with_columns(
        labels["cause"],
        intended_app_id=pl.Series(_nullable(np.where(app < 0, NULL_ID, pop.app_ids[app]))),
    ).select(
        delivery_id=pl.lit("d") + (pl.col("row") + 1).cast(pl.String).str.zfill(width),
        event_id="event_id",
        for_user_id="for_user_id",
        app_id="app_id",
        delivered_at="delivered_at",
        event_type=pl.lit(pl.Series(EVENT_TYPES)).gather(pl.col("event_type")),
        reason="reason",
        cause=pl.lit(pl.Series(CAUSES)).gather(pl.col("cause")),
        intended_app_id="intended_app_id",
    )
