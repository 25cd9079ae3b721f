"""The scan, computed: inputs -> detection -> attribution -> impact -> summary.

`run` returns a typed `Outcome`, every table of a result and its summary; it writes nothing.
Writing and publishing the result is `incident.api`'s and `incident.outputs`'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from incident.config import ScanConfig
from incident.engine import Engine
from incident.errors import InputError
from incident.pipeline import partitions, staging_area
from incident.pipeline.cause import explain
from incident.pipeline.detect import MISDELIVERED, Status
from incident.pipeline.impact import (
    attribute_developers,
    breakdown,
    developers_report,
    exposure,
    regulator_figures,
    users_report,
)
from incident.pipeline.load import (
    REJECT_REASON,
    SOURCE_FILE,
    LoadedInput,
    app_registry,
    collect_input,
    load_input,
)
from incident.pipeline.summarise import Detection, Impact, reasons, summarise
from incident.pipeline.values import as_text
from incident.schema import CAUSE, COLUMNS, DELIVERY_COLUMNS, REASON, Input
from incident.summary import RowAccounting, Summary

Progress = Callable[[str], None]
# The folder of the staging area where detection tasks write their parts.
PARTS = "_parts"


@dataclass(frozen=True)
class ScanInputs:
    """The inputs of a scan, checked and planned (only Parquet footers are read), and the
    apps registry as app_id -> developer_id."""

    deliveries: LoadedInput
    authorizations: LoadedInput
    apps: LoadedInput | None
    registry: pl.DataFrame | None

    @property
    def all(self) -> tuple[LoadedInput, ...]:
        """Every input given."""
        return tuple(i for i in (self.deliveries, self.authorizations, self.apps) if i)


@dataclass(frozen=True)
class Outcome:
    """What a scan found: the tables of a result and its summary."""

    summary: Summary
    users: pl.DataFrame
    developers: pl.DataFrame
    endpoints: pl.DataFrame
    misdeliveries: pl.DataFrame
    rejected: pl.DataFrame
    rejected_grants: pl.DataFrame

    @property
    def accounting(self) -> RowAccounting:
        """Where every delivery row went."""
        return self.summary.accounting


def load_inputs(config: ScanConfig) -> ScanInputs:
    """Find and check every input of `config`; `InputError` naming the file and column."""
    storage = config.storage
    deliveries = load_input(Input.DELIVERIES, config.deliveries, config.columns, storage)
    authorizations = load_input(
        Input.AUTHORIZATIONS, config.authorizations, config.columns, storage
    )
    apps = load_input(Input.APPS, config.apps, config.columns, storage) if config.apps else None
    registry = app_registry(apps) if apps else None
    return ScanInputs(deliveries, authorizations, apps, registry)


def _sorted_rows(frame: pl.LazyFrame) -> pl.LazyFrame:
    # Every sortable column takes part, so that a re-run writes rows in the same order.
    schema = frame.collect_schema()
    keys = [name for name, dtype in schema.items() if not dtype.is_nested()]
    return frame.sort(keys, nulls_last=True, maintain_order=True)


DUPLICATE = "duplicate"


def _copies(misdelivered: pl.DataFrame) -> tuple[pl.Series, int]:
    """True for a misdelivered row that copies an earlier one (in the rows' stable order):
    the same `delivery_id` and the same required columns, or without an ID the same value in
    every input column. A log loaded twice under two names must not count its findings twice.
    Also how many delivery IDs several different deliveries share: those rows are not copies,
    and each is counted."""
    values = [c for c in misdelivered.columns if c not in (SOURCE_FILE, "developer_id", REASON)]
    attempt = ["delivery_id", *(c for c, column in DELIVERY_COLUMNS.items() if column.required)]
    has_id = pl.col("delivery_id").is_not_null()
    copy = (
        pl.when(has_id)
        .then(pl.struct(attempt).is_first_distinct().not_())
        .otherwise(pl.struct(values).is_first_distinct().not_())
    )
    attempts = pl.struct(attempt).n_unique().over("delivery_id")
    clashing = misdelivered.filter(has_id & (attempts > 1))["delivery_id"].n_unique()
    return misdelivered.select(copy.alias("copy"))["copy"], clashing


def _set_copies_apart(
    accounting: RowAccounting, misdelivered: pl.DataFrame
) -> tuple[RowAccounting, pl.DataFrame, pl.DataFrame, int]:
    """The accounting, misdeliveries and rejected copies once copies of reported rows are
    counted once (DESIGN rule 1): each copy is a rejected row with reason `duplicate`; and
    how many delivery IDs name different deliveries."""
    copies, clashing = _copies(misdelivered)
    if not copies.any():
        return accounting, misdelivered, pl.DataFrame(), clashing
    duplicates = misdelivered.filter(copies).drop("developer_id", REASON)
    rejected = duplicates.select(
        *(as_text(name, dtype) for name, dtype in duplicates.schema.items()),
        pl.lit(DUPLICATE).alias(REJECT_REASON),
    )
    moved = duplicates.height
    recounted = replace(
        accounting,
        rows_rejected=accounting.rows_rejected + moved,
        rows_misdelivered=accounting.rows_misdelivered - moved,
    )
    return recounted, misdelivered.filter(copies.not_()), rejected, clashing


def _detect(
    config: ScanConfig, inputs: ScanInputs, engine: Engine, staging: Path, progress: Progress
) -> Detection:
    """Classify every delivery, one task per partition on `engine`, with the tasks' parts in
    `staging`; the misdeliveries with their developer, in a stable order."""
    parts = staging_area.for_scan(config, staging / PARTS)
    try:
        found = partitions.run(
            inputs.deliveries,
            inputs.authorizations,
            config.window,
            engine,
            parts,
            progress,
            config.partition_rows,
            config.grant_buckets,
        )
    finally:
        # Held in memory now; a result never publishes them.
        parts.remove()
    statuses = found.statuses
    accounting = RowAccounting(
        rows_read=inputs.deliveries.source.rows,
        rows_rejected=statuses[Status.REJECTED.value],
        rows_outside_window=statuses[Status.OUTSIDE_WINDOW.value],
        rows_authorized=statuses[Status.AUTHORIZED.value],
        rows_misdelivered=sum(statuses[s] for s in MISDELIVERED),
    )
    canonical = list(COLUMNS[Input.DELIVERIES])
    attributed = attribute_developers(found.misdeliveries.lazy(), inputs.registry)
    added = [SOURCE_FILE, "developer_id", REASON]
    extras = [c for c in attributed.collect_schema() if c not in {*canonical, *added}]
    # Sorted before attribution adds its columns, which is the same order: rows alike in every
    # input column are attributed alike.
    misdelivered = _sorted_rows(attributed.select(*canonical, *extras, *added)).collect()
    accounting, misdelivered, copies, clashing = _set_copies_apart(accounting, misdelivered)
    rejected = (
        pl.concat([found.rejected, copies], how="diagonal_relaxed")
        if copies.height
        else found.rejected
    )
    return Detection(
        accounting=accounting,
        misdeliveries=misdelivered,
        delivery_id_clashes=clashing,
        rejected=rejected.sort(pl.all(), nulls_last=True, maintain_order=True),
        rejected_grants=collect_input(
            [inputs.authorizations.rejected.sort(pl.all(), nulls_last=True)],
            [inputs.authorizations],
            "auto",
        )[0],
    )


def _impact(misdeliveries: pl.DataFrame) -> Impact:
    """Who was exposed and who received what, from the attributed misdeliveries."""
    attributed = misdeliveries.lazy()
    exposed = exposure(attributed)
    users, developers, by_type, by_reason, by_cause = pl.collect_all(
        [
            users_report(exposed),
            developers_report(attributed, exposed),
            breakdown(attributed, "event_type"),
            breakdown(attributed, REASON),
            breakdown(attributed, CAUSE),
        ]
    )
    regulator = regulator_figures(users, misdeliveries)
    return Impact(users, developers, by_type, by_reason, by_cause, regulator)


def vouch(inputs: ScanInputs, detection: Detection) -> None:
    """DESIGN rule 7: a scan that can vouch for nothing is an input error, whatever else was
    asked: every delivery rejected, no valid delivery in the window, or no valid grant."""
    accounting, deliveries = detection.accounting, inputs.deliveries.source.path
    if accounting.rows_read and accounting.rows_rejected == accounting.rows_read:
        raise InputError(
            f"{deliveries}: every delivery row was rejected ({reasons(detection.rejected)}); "
            "nothing could be checked"
        )
    if not accounting.rows_authorized + accounting.rows_misdelivered:
        raise InputError(
            f"{deliveries}: no valid delivery falls in the window; check --since/--until, and "
            "that integer timestamps are epoch milliseconds"
        )
    grants = inputs.authorizations.source
    if grants.rows == detection.rejected_grants.height:
        why = f" ({reasons(detection.rejected_grants)})" if grants.rows else ""
        raise InputError(
            f"{grants.path}: no valid grant{why}; without grants every delivery would count "
            "as misdelivered"
        )


def run(
    config: ScanConfig, inputs: ScanInputs, progress: Progress, engine: Engine, staging: Path
) -> Outcome:
    """Detect, attribute and measure every misdelivery of `inputs` under `config`, detection
    on `engine` with its parts in `staging`; an `InputError` when the inputs vouch for
    nothing (`vouch`)."""
    progress("detecting misdeliveries")
    findings = _detect(config, inputs, engine, staging, progress)
    vouch(inputs, findings)
    progress("explaining misdeliveries")
    explained = explain(
        findings.misdeliveries,
        inputs.deliveries,
        inputs.authorizations,
        inputs.apps.valid if inputs.apps else None,
        inputs.registry,
        config.attribution,
    )
    progress("measuring impact")
    impact = _impact(explained.misdeliveries)
    summary = summarise(config, inputs.all, findings, explained, impact)
    return Outcome(
        summary=summary,
        users=impact.users,
        developers=impact.developers,
        endpoints=explained.endpoints,
        misdeliveries=explained.misdeliveries,
        rejected=findings.rejected,
        rejected_grants=findings.rejected_grants,
    )
