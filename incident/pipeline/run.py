"""The scan, computed: inputs -> detection -> attribution -> impact -> summary.

`run` returns a typed `Outcome`, every table of a result and its summary; it writes nothing.
Writing and publishing the result is `incident.api`'s and `incident.outputs`'.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from incident.config import ScanConfig
from incident.engine import Engine
from incident.errors import InputError
from incident.pipeline import cause, partitions, staging_area
from incident.pipeline.detect import MISDELIVERED, Status
from incident.pipeline.findings import order
from incident.pipeline.impact import (
    attribute_developers,
    breakdown,
    developers_report,
    exposure,
    regulator_figures,
    users_report,
)
from incident.pipeline.load import (
    SOURCE_FILE,
    LoadedInput,
    app_registry,
    collect_input,
    load_input,
)
from incident.pipeline.summarise import Detection, Impact, reasons, summarise
from incident.schema import CAUSE, COLUMNS, COUNT, EVIDENCE, REASON, Input
from incident.summary import RowAccounting, Summary

Progress = Callable[[str], None]
# The folder of the staging area where detection tasks write their parts.
PARTS = "_parts"
# The folder of the staging area where the findings stay, on disk, until the result is
# written; `discard_findings` removes it before the result is published.
FINDINGS = "_findings"
# Misdeliveries per pass of the users and developers reports: each pass holds its groups'
# distinct events and users, about 0.3 KB per misdelivery.
IMPACT_ROWS = 1_000_000


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
    """What a scan found: the tables of a result and its summary. The misdeliveries are a
    scan of files in the staging area (`FINDINGS`), read until `discard_findings`."""

    summary: Summary
    users: pl.DataFrame
    developers: pl.DataFrame
    endpoints: pl.DataFrame
    misdeliveries: pl.LazyFrame
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


def _detect(
    config: ScanConfig, inputs: ScanInputs, engine: Engine, staging: Path, progress: Progress
) -> Detection:
    """Classify every delivery, one task per partition on `engine`, with the tasks' parts in
    `staging`; the misdeliveries with their developer, in a stable order, on disk there."""
    # The parts are read into the ordered files below; a result never publishes them.
    with staging_area.for_scan(config, staging / PARTS).removed_after() as parts:
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
        statuses = found.statuses
        accounting = RowAccounting(
            rows_read=inputs.deliveries.source.rows,
            rows_rejected=statuses[Status.REJECTED.value],
            rows_outside_window=statuses[Status.OUTSIDE_WINDOW.value],
            rows_authorized=statuses[Status.AUTHORIZED.value],
            rows_misdelivered=sum(statuses[s] for s in MISDELIVERED),
        )
        canonical = list(COLUMNS[Input.DELIVERIES])
        attributed = attribute_developers(found.misdeliveries, inputs.registry)
        added = [SOURCE_FILE, "developer_id", REASON]
        extras = [c for c in attributed.collect_schema() if c not in {*canonical, *added}]
        # Sorted before attribution adds its columns, which is the same order: rows alike in
        # every input column are attributed alike.
        ordered = order(
            attributed.select(*canonical, *extras, *added),
            accounting.rows_misdelivered,
            staging / FINDINGS / "ordered",
        )
    # Copies of reported rows are counted once (DESIGN rule 1): rejected as `duplicate`.
    moved = ordered.copies.height
    accounting = replace(
        accounting,
        rows_rejected=accounting.rows_rejected + moved,
        rows_misdelivered=accounting.rows_misdelivered - moved,
    )
    rejected = (
        pl.concat([found.rejected, ordered.copies], how="diagonal_relaxed")
        if moved
        else found.rejected
    )
    return Detection(
        accounting=accounting,
        misdeliveries=ordered.misdeliveries,
        delivery_id_clashes=ordered.delivery_id_clashes,
        rejected=rejected.sort(pl.all(), nulls_last=True, maintain_order=True),
        rejected_grants=collect_input(
            [inputs.authorizations.rejected.sort(pl.all(), nulls_last=True)],
            [inputs.authorizations],
            "auto",
        )[0],
    )


def _by_bucket(
    report: Callable[[pl.LazyFrame], pl.LazyFrame], frame: pl.LazyFrame, key: str, buckets: int
) -> pl.DataFrame:
    """`report` (one row per value of `key`, sorted by it) a hash bucket of `key` at a time:
    each pass holds the state of a bucket's groups only, and the rows are the same."""
    if buckets == 1:
        return report(frame).collect(engine="streaming")
    parts = [
        report(frame.filter(pl.col(key).hash() % buckets == bucket)).collect(engine="streaming")
        for bucket in range(buckets)
    ]
    return pl.concat(parts).sort(key)


def measure_impact(misdeliveries: pl.LazyFrame) -> Impact:
    """Who was exposed and who received what, from the attributed misdeliveries: each figure
    by the streaming engine from their files, one after another, the users and developers
    reports in buckets of about `IMPACT_ROWS` misdeliveries, so that what is held is bounded."""
    events, deliveries = (
        misdeliveries.select(pl.col("event_id").n_unique(), pl.len())
        .collect(engine="streaming")
        .row(0)
    )
    buckets = max(1, math.ceil(deliveries / IMPACT_ROWS))
    users = _by_bucket(users_report, exposure(misdeliveries), "user_id", buckets)
    developers = _by_bucket(
        lambda part: developers_report(part, exposure(part)),
        misdeliveries,
        "developer_id",
        buckets,
    )
    by_type, by_reason, by_cause, by_evidence = (
        query.collect(engine="streaming")
        for query in (
            breakdown(misdeliveries, "event_type"),
            breakdown(misdeliveries, REASON),
            breakdown(misdeliveries, CAUSE),
            misdeliveries.group_by(EVIDENCE).agg(pl.len().cast(COUNT)).sort(EVIDENCE),
        )
    )
    return Impact(
        users=users,
        developers=developers,
        by_event_type=by_type,
        by_reason=by_reason,
        by_cause=by_cause,
        by_evidence=dict(by_evidence.iter_rows()),
        events_misdelivered=events,
        deliveries_misdelivered=deliveries,
        regulator=regulator_figures(users, misdeliveries),
    )


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
    on `engine` with its parts in `staging`, where the findings stay on disk until
    `discard_findings`; an `InputError` when the inputs vouch for nothing (`vouch`)."""
    progress("detecting misdeliveries")
    findings = _detect(config, inputs, engine, staging, progress)
    vouch(inputs, findings)
    progress("explaining misdeliveries")
    explained = cause.explain(
        findings.misdeliveries,
        inputs.deliveries,
        inputs.authorizations,
        inputs.apps.valid if inputs.apps else None,
        inputs.registry,
        config.attribution,
        staging / FINDINGS / "explained",
    )
    progress("measuring impact")
    impact = measure_impact(explained.misdeliveries)
    # Every misdelivery found is explained and reported, once: a lost or repeated row would
    # be a wrong answer, so it is a bug (exit 1) rather than a result.
    if impact.deliveries_misdelivered != findings.accounting.rows_misdelivered:
        raise RuntimeError(
            f"{impact.deliveries_misdelivered} misdeliveries explained of "
            f"{findings.accounting.rows_misdelivered} found"
        )
    summary = summarise(
        config, inputs.all, findings, impact, explained.endpoints, explained.evidence_missing
    )
    return Outcome(
        summary=summary,
        users=impact.users,
        developers=impact.developers,
        endpoints=explained.endpoints,
        misdeliveries=explained.misdeliveries,
        rejected=findings.rejected,
        rejected_grants=findings.rejected_grants,
    )


def discard_findings(staging: Path) -> None:
    """Remove the findings `run` left in `staging`: an `Outcome`'s misdeliveries are then
    gone, and a result never publishes them."""
    shutil.rmtree(staging / FINDINGS, ignore_errors=True)
