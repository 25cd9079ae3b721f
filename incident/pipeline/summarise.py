"""The summary of a scan, assembled from what each stage found, with the warnings a reader
needs: rejected rows, unknown apps, missing evidence, an empty window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from incident.config import ScanConfig
from incident.pipeline.cause import Explained
from incident.pipeline.impact import UNKNOWN_DEVELOPER
from incident.pipeline.load import REJECT_REASON, LoadedInput
from incident.schema import CAUSE, COUNT, EVIDENCE, REASON, Input
from incident.summary import (
    AttributionSummary,
    Counts,
    Inputs,
    InputSummary,
    RegulatorFigures,
    RowAccounting,
    Summary,
    Totals,
)


@dataclass(frozen=True)
class Detection:
    """What detection found: the row accounting, the misdeliveries (with `developer_id` and
    `reason`, sorted), and the rejected delivery and authorization rows."""

    accounting: RowAccounting
    misdeliveries: pl.DataFrame
    rejected: pl.DataFrame
    rejected_grants: pl.DataFrame
    # Delivery IDs that misdelivered rows share with a different delivery (not a copy).
    delivery_id_clashes: int = 0


@dataclass(frozen=True)
class Impact:
    """The users and developers reports, the breakdowns, and the regulator's figures."""

    users: pl.DataFrame
    developers: pl.DataFrame
    by_event_type: pl.DataFrame
    by_reason: pl.DataFrame
    by_cause: pl.DataFrame
    regulator: RegulatorFigures


def reasons(rejected: pl.DataFrame) -> str:
    """`reason: count, …` of rejected rows, the commonest first."""
    counts = rejected.group_by(REJECT_REASON).len()
    ordered = counts.sort(["len", REJECT_REASON], descending=[True, False])
    return ", ".join(f"{reason} ({count:,})" for reason, count in ordered.iter_rows())


def _seconds(duration: timedelta) -> int | float:
    seconds = duration.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def _breakdown(frame: pl.DataFrame, key: str) -> dict[str, Counts]:
    return {
        str(row[key]): Counts(row["events"], row["deliveries"])
        for row in frame.iter_rows(named=True)
    }


def _input(loaded: LoadedInput, rejected: int | None = None) -> InputSummary:
    source = loaded.source
    return InputSummary(source.path, len(source.files), source.rows, rejected)


def _inputs(loaded: Sequence[LoadedInput], detection: Detection) -> Inputs:
    """The inputs as found, with their rejected rows."""
    by_input = {i.source.input: i for i in loaded}
    apps = by_input.get(Input.APPS)
    # Registry rows without an app_id name nothing; they are counted, not reported.
    apps_rejected = apps.rejected.select(pl.len()).collect().item() if apps else 0
    return Inputs(
        deliveries=_input(by_input[Input.DELIVERIES]),
        authorizations=_input(by_input[Input.AUTHORIZATIONS], detection.rejected_grants.height),
        apps=_input(apps, apps_rejected) if apps else None,
    )


def _copies(loaded: Sequence[LoadedInput]) -> list[str]:
    """A warning per input with files that are copies of others (read once)."""
    warnings = []
    for source in (i.source for i in loaded if i.source.copies):
        pairs = [f"{copy} = {original}" for copy, original in source.copies]
        shown = "; ".join(pairs[:3]) + (f"; and {len(pairs) - 3} more" if len(pairs) > 3 else "")
        warnings.append(
            f"{len(pairs)} {source.input.value} files have the same bytes (SHA-256) as another "
            f"and were read once: {shown}; see manifest.json"
        )
    return warnings


def _warnings(
    detection: Detection, impact: Impact, apps: InputSummary | None, missing: Sequence[str]
) -> list[str]:
    accounting, warnings = detection.accounting, []
    if accounting.rows_rejected:
        warnings.append(
            f"{accounting.rows_rejected} delivery rows rejected ({reasons(detection.rejected)}), "
            "not counted as findings; see rejected.parquet"
        )
    if detection.delivery_id_clashes:
        warnings.append(
            f"{detection.delivery_id_clashes} delivery_id values name misdelivered rows that "
            "differ in event, app, user, time or type: not copies, each row is counted"
        )
    if detection.rejected_grants.height:
        warnings.append(
            f"{detection.rejected_grants.height} authorization rows rejected "
            f"({reasons(detection.rejected_grants)}); without them more deliveries count as "
            "misdelivered; see rejected_authorizations.parquet"
        )
    if apps is not None and apps.rows_rejected:
        warnings.append(f"{apps.rows_rejected} apps registry rows rejected (no app_id)")
    unknown = impact.developers.filter(pl.col("developer_id").str.starts_with(UNKNOWN_DEVELOPER))
    if apps is not None and unknown.height:
        warnings.append(
            f"{unknown.height} receiving apps are missing from the apps registry; "
            "reported under the developer unknown:APP_ID"
        )
    if missing:
        warnings.append(
            f"no {', '.join(missing)} in the inputs: misdeliveries cannot be attributed to a "
            "shared endpoint, only to revocation lag or left unexplained"
        )
    return warnings


def summarise(
    config: ScanConfig,
    loaded: Sequence[LoadedInput],
    detection: Detection,
    explained: Explained,
    impact: Impact,
) -> Summary:
    """The summary of one scan."""
    misdeliveries, endpoints = explained.misdeliveries, explained.endpoints
    inputs = _inputs(loaded, detection)
    reject_reasons = (
        detection.rejected.group_by(REJECT_REASON).agg(pl.len().cast(COUNT)).sort(REJECT_REASON)
    )
    attribution = AttributionSummary(
        collision_window_seconds=_seconds(config.attribution.collision_window),
        revocation_grace_seconds=_seconds(config.attribution.revocation_grace),
        evidence_missing=tuple(explained.evidence_missing),
        shared_endpoints=endpoints.height,
        shared_endpoints_with_misdeliveries=endpoints.filter(pl.col("misdeliveries") > 0).height,
        by_evidence=dict(
            misdeliveries.group_by(EVIDENCE).agg(pl.len()).sort(EVIDENCE).collect().iter_rows()
        ),
    )
    events, deliveries = (
        misdeliveries.select(pl.col("event_id").n_unique(), pl.len()).collect().row(0)
    )
    return Summary(
        window=config.window,
        inputs=inputs,
        accounting=detection.accounting,
        totals=Totals(
            events_misdelivered=events,
            deliveries_misdelivered=deliveries,
            users_exposed=impact.users.height,
            developers_exposed=impact.developers.height,
        ),
        by_event_type=_breakdown(impact.by_event_type, "event_type"),
        by_reason=_breakdown(impact.by_reason, REASON),
        by_cause=_breakdown(impact.by_cause, CAUSE),
        attribution=attribution,
        regulator=impact.regulator,
        rejected_by_reason=dict(reject_reasons.iter_rows()),
        warnings=(
            *_copies(loaded),
            *_warnings(detection, impact, inputs.apps, explained.evidence_missing),
        ),
    )
