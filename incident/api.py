"""The library's face: `scan(config)` composes load -> detect -> impact -> report."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from incident.config import ReportFormat, ScanConfig, format_instant
from incident.errors import ConfigError, IncidentError, InputError, TooManyRejectedError
from incident.pipeline import passes
from incident.pipeline.cause import Explained, explain
from incident.pipeline.detect import MISDELIVERED, Status
from incident.pipeline.impact import (
    UNKNOWN_DEVELOPER,
    attribute_developers,
    breakdown,
    developers_report,
    exposure,
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
from incident.report import write_json, write_table
from incident.report.html import html_report
from incident.report.markdown import summary_markdown
from incident.results.manifest import MANIFEST, hash_inputs, write_manifest
from incident.results.read import read_summary
from incident.schema import CAUSE, COLUMNS, COUNT, REASON, Input
from incident.version import __version__

HTML_REPORT = "report.html"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RowAccounting:
    """Where every delivery row went (DESIGN rule 6): the parts always add up to `rows_read`."""

    rows_read: int
    rows_rejected: int
    rows_outside_window: int
    rows_authorized: int
    rows_misdelivered: int

    def __post_init__(self) -> None:
        parts = (
            self.rows_rejected
            + self.rows_outside_window
            + self.rows_authorized
            + self.rows_misdelivered
        )
        if parts != self.rows_read:
            raise IncidentError(f"internal error: row accounting {parts} != rows read {self}")


@dataclass(frozen=True)
class ScanResult:
    """What a scan found, and where it wrote the reports."""

    out: Path
    accounting: RowAccounting
    users: pl.DataFrame
    developers: pl.DataFrame
    misdeliveries: pl.DataFrame
    summary: dict[str, Any]

    @property
    def has_findings(self) -> bool:
        """True when at least one delivery was misdelivered."""
        return self.accounting.rows_misdelivered > 0


def _input_summary(loaded: LoadedInput, rejected: int | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "path": loaded.source.path,
        "files": len(loaded.source.files),
        "rows": loaded.source.rows,
    }
    if rejected is not None:
        summary["rows_rejected"] = rejected
    return summary


def _seconds(duration: timedelta) -> int | float:
    seconds = duration.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def _counts(frame: pl.DataFrame, key: str) -> dict[str, dict[str, int]]:
    return {
        str(row[key]): {"events": row["events"], "deliveries": row["deliveries"]}
        for row in frame.iter_rows(named=True)
    }


def _sorted_rows(frame: pl.LazyFrame) -> pl.LazyFrame:
    # Every sortable column takes part, so that a re-run writes rows in the same order.
    schema = frame.collect_schema()
    keys = [name for name, dtype in schema.items() if not dtype.is_nested()]
    return frame.sort(keys, nulls_last=True, maintain_order=True)


# The reports written in every table format asked for.
TABLES = ("users", "developers", "endpoints")

# Every file a result may hold: an --out directory with anything else is not replaced.
RESULT_FILES = frozenset(
    {f"{name}.{ext}" for name in TABLES for ext in ("parquet", "csv")}
    | {
        HTML_REPORT,
        "misdeliveries.parquet",
        "rejected.parquet",
        "rejected_authorizations.parquet",
        "summary.json",
        "summary.md",
        MANIFEST,
    }
)


def _is_result(directory: Path) -> bool:
    try:
        read_summary(directory)
    except InputError:
        return False
    return {p.name for p in directory.iterdir()} <= RESULT_FILES


def _prepare_out(config: ScanConfig) -> Path:
    """A fresh directory beside `out`, so that a failed scan never leaves a partial result."""
    out = config.out.resolve()
    if out == Path.cwd() or out == Path(out.anchor):
        raise ConfigError(f"--out {config.out}: name a directory of its own for the reports")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {config.out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not _is_result(out):
        raise ConfigError(
            f"--out {config.out}: directory is not empty and holds no incident result; "
            "choose a new directory"
        )
    for source in (config.deliveries, config.authorizations, config.apps):
        if source and os.path.isdir(source) and out.is_relative_to(Path(source).resolve()):
            raise ConfigError(f"--out {config.out}: is inside the input directory {source}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a result is an ordinary directory
    return staging


def _publish(staging: Path, out: Path) -> None:
    if out.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, retired / out.name)
        os.replace(staging, out)
        shutil.rmtree(retired)
    else:
        os.replace(staging, out)


def scan(config: ScanConfig, progress: Progress | None = None) -> ScanResult:
    """Run a scan and write its reports to `config.out`.

    Raises `InputError` for unreadable inputs, and `TooManyRejectedError` (after writing the
    reports) when more delivery rows were rejected than `config.max_rejected` allows.
    """
    report = progress or (lambda _stage: None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return _scan(config, report, pool)


def _scan(config: ScanConfig, report: Progress, pool: ThreadPoolExecutor) -> ScanResult:
    report("reading inputs")
    deliveries = load_input(Input.DELIVERIES, config.deliveries, config.columns)
    authorizations = load_input(Input.AUTHORIZATIONS, config.authorizations, config.columns)
    apps = load_input(Input.APPS, config.apps, config.columns) if config.apps else None
    registry = app_registry(apps) if apps else None
    staging = _prepare_out(config)
    # The input files are hashed for the manifest while the scan reads them.
    sources = [loaded.source for loaded in (deliveries, authorizations, apps) if loaded]
    evidence = hash_inputs(sources, pool)
    try:
        result = _scan_into(config, staging, deliveries, authorizations, apps, registry, report)
        write_manifest(config, staging, evidence)
        _publish(staging, config.out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    result = replace(result, out=config.out)
    if config.max_rejected.exceeded(result.accounting.rows_rejected, result.accounting.rows_read):
        raise TooManyRejectedError(
            f"{config.deliveries}: {result.accounting.rows_rejected} of "
            f"{result.accounting.rows_read} delivery rows rejected, over --max-rejected "
            f"{config.max_rejected}; see {config.out / 'rejected.parquet'}"
        )
    return result


def _scan_into(
    config: ScanConfig,
    out: Path,
    deliveries: LoadedInput,
    authorizations: LoadedInput,
    apps: LoadedInput | None,
    registry: pl.DataFrame | None,
    report: Progress,
) -> ScanResult:
    report("detecting misdeliveries")
    findings = passes.run(deliveries, authorizations, config.window)
    rejected_grants = collect_input(
        [authorizations.rejected.sort(pl.all(), nulls_last=True)], [authorizations], "auto"
    )[0]
    rejected = findings.rejected.sort(pl.all(), nulls_last=True, maintain_order=True)
    statuses = findings.statuses
    accounting = RowAccounting(
        rows_read=deliveries.source.rows,
        rows_rejected=statuses[Status.REJECTED.value],
        rows_outside_window=statuses[Status.OUTSIDE_WINDOW.value],
        rows_authorized=statuses[Status.AUTHORIZED.value],
        rows_misdelivered=sum(statuses[s] for s in MISDELIVERED),
    )

    report("measuring impact")
    canonical = list(COLUMNS[Input.DELIVERIES])
    attributed = attribute_developers(findings.misdeliveries.lazy(), registry)
    added = [SOURCE_FILE, "developer_id", REASON]
    extras = [c for c in attributed.collect_schema() if c not in {*canonical, *added}]
    # Sorted before attribution adds its columns, which is the same order: rows alike in every
    # input column are attributed alike. The passes' copy is dropped: at scale it is large.
    misdelivered = _sorted_rows(attributed.select(*canonical, *extras, *added)).collect()
    del findings, attributed
    report("explaining misdeliveries")
    explained = explain(
        misdelivered,
        deliveries,
        authorizations,
        apps.valid if apps else None,
        registry,
        config.attribution,
    )
    attributed = explained.misdeliveries.lazy()
    exposed = exposure(attributed)
    users, developers, by_type, by_reason, by_cause, misdeliveries = pl.collect_all(
        [
            users_report(exposed),
            developers_report(attributed, exposed),
            breakdown(attributed, "event_type"),
            breakdown(attributed, REASON),
            breakdown(attributed, CAUSE),
            attributed,
        ]
    )

    report("writing reports")
    summary = _summary(
        config,
        accounting,
        deliveries,
        authorizations,
        apps,
        rejected,
        rejected_grants,
        misdeliveries,
        users,
        developers,
        by_type,
        by_reason,
        by_cause,
        explained,
    )
    write_table(users, out, "users", config.formats)
    write_table(developers, out, "developers", config.formats)
    write_table(explained.endpoints, out, "endpoints", config.formats)
    write_table(misdeliveries, out, "misdeliveries", (ReportFormat.PARQUET,))
    write_table(rejected, out, "rejected", (ReportFormat.PARQUET,))
    write_table(rejected_grants, out, "rejected_authorizations", (ReportFormat.PARQUET,))
    write_json(summary, out / "summary.json")
    (out / "summary.md").write_text(summary_markdown(summary, developers), encoding="utf-8")
    if ReportFormat.HTML in config.formats:
        page = html_report(summary, users, developers, misdeliveries)
        (out / HTML_REPORT).write_text(page, encoding="utf-8")
    return ScanResult(out, accounting, users, developers, misdeliveries, summary)


def _summary(
    config: ScanConfig,
    accounting: RowAccounting,
    deliveries: LoadedInput,
    authorizations: LoadedInput,
    apps: LoadedInput | None,
    rejected: pl.DataFrame,
    rejected_grants: pl.DataFrame,
    misdeliveries: pl.DataFrame,
    users: pl.DataFrame,
    developers: pl.DataFrame,
    by_type: pl.DataFrame,
    by_reason: pl.DataFrame,
    by_cause: pl.DataFrame,
    explained: Explained,
) -> dict[str, Any]:
    unknown = developers.filter(pl.col("developer_id").str.starts_with(UNKNOWN_DEVELOPER))
    warnings = []
    if accounting.rows_rejected:
        warnings.append(
            f"{accounting.rows_rejected} delivery rows rejected (not counted as findings); "
            "see rejected.parquet"
        )
    if rejected_grants.height:
        warnings.append(
            f"{rejected_grants.height} authorization rows rejected; without them more "
            "deliveries count as misdelivered; see rejected_authorizations.parquet"
        )
    # Registry rows without an app_id name nothing; they are counted, not reported.
    apps_rejected = apps.rejected.select(pl.len()).collect().item() if apps else 0
    if apps_rejected:
        warnings.append(f"{apps_rejected} apps registry rows rejected (no app_id)")
    in_window_rows = accounting.rows_authorized + accounting.rows_misdelivered
    if accounting.rows_read > accounting.rows_rejected and not in_window_rows:
        warnings.append(
            "no delivery falls in the window; check --since/--until, and that integer "
            "timestamps are epoch milliseconds"
        )
    if apps is not None and unknown.height:
        warnings.append(
            f"{unknown.height} receiving apps are missing from the apps registry; "
            "reported under the developer unknown:APP_ID"
        )
    missing = explained.evidence_missing
    if missing:
        warnings.append(
            f"no {', '.join(missing)} in the inputs: misdeliveries cannot be attributed to a "
            "shared endpoint, only to revocation lag or left unexplained"
        )
    reject_reasons = rejected.group_by(REJECT_REASON).agg(pl.len().cast(COUNT)).sort(REJECT_REASON)
    return {
        "tool": {"name": "incident", "version": __version__},
        "window": {
            "since": format_instant(config.window.since),
            "until": format_instant(config.window.until),
        },
        "inputs": {
            "deliveries": _input_summary(deliveries),
            "authorizations": _input_summary(authorizations, rejected_grants.height),
            "apps": _input_summary(apps, apps_rejected) if apps else None,
        },
        "accounting": {
            "rows_read": accounting.rows_read,
            "rows_rejected": accounting.rows_rejected,
            "rows_outside_window": accounting.rows_outside_window,
            "rows_authorized": accounting.rows_authorized,
            "rows_misdelivered": accounting.rows_misdelivered,
        },
        "totals": {
            "events_misdelivered": misdeliveries["event_id"].n_unique(),
            "deliveries_misdelivered": misdeliveries.height,
            "users_exposed": users.height,
            "developers_exposed": developers.height,
        },
        "by_event_type": _counts(by_type, "event_type"),
        "by_reason": _counts(by_reason, REASON),
        "by_cause": _counts(by_cause, CAUSE),
        "attribution": {
            "collision_window_seconds": _seconds(config.attribution.collision_window),
            "revocation_grace_seconds": _seconds(config.attribution.revocation_grace),
            "evidence_missing": missing,
            "shared_endpoints": explained.endpoints.height,
            "shared_endpoints_with_misdeliveries": explained.endpoints.filter(
                pl.col("misdeliveries") > 0
            ).height,
        },
        "rejected_by_reason": dict(reject_reasons.iter_rows()),
        "warnings": warnings,
    }
