"""The library's face: `scan(config)` loads the inputs, runs the pipeline, writes the result
to a staging directory and publishes it whole."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from incident.config import ScanConfig
from incident.engine import open_engine
from incident.errors import ConfigError, TooManyRejectedError
from incident.outputs import check_directory, check_prefix, staged_directory, staged_prefix
from incident.pipeline import staging_area
from incident.pipeline.run import Outcome, Progress, discard_findings, load_inputs, run
from incident.report.write import write_result
from incident.results.manifest import FileEvidence, hash_inputs, write_manifest
from incident.results.read import MANIFEST, Table, holds_only_result_files, is_result
from incident.schema import Input
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url, join
from incident.summary import RowAccounting, Summary


@dataclass(frozen=True)
class ScanResult:
    """What a scan found, and where it wrote the reports."""

    location: Path | str  # a local directory, or a prefix in object storage
    summary: Summary
    users: pl.DataFrame
    developers: pl.DataFrame
    # How to read `location` when it is in object storage.
    storage: StorageOptions = NO_OPTIONS

    @property
    def misdeliveries(self) -> pl.LazyFrame:
        """Every misdelivered row, as published in `misdeliveries.parquet`: a scan of that
        file, since the rows need not fit in memory (`.collect()` them to hold them)."""
        path = join(self.location, f"{Table.MISDELIVERIES}.parquet")
        options = self.storage.for_polars(str(path)) if isinstance(path, str) else None
        return pl.scan_parquet(path, glob=False, storage_options=options)

    @property
    def out(self) -> Path:
        """The local directory of the reports (`location` names a prefix in object storage)."""
        if isinstance(self.location, str):
            raise TypeError(f"{self.location} is in object storage, not a local directory")
        return self.location

    @property
    def accounting(self) -> RowAccounting:
        """Where every delivery row went (DESIGN rule 6)."""
        return self.summary.accounting

    @property
    def has_findings(self) -> bool:
        """True when at least one delivery was misdelivered."""
        return self.accounting.rows_misdelivered > 0


def _check_cluster(config: ScanConfig) -> None:
    """Where a cluster's workers write their parts: `--staging` apart from the inputs and
    `--out` (`staging_area.check`). Without it a remote cluster stages beside an `--out`
    in object storage, or in the local staging of a local `--out`, a path its workers must
    share."""
    staging_area.check(config)


def _check_out(config: ScanConfig) -> None:
    """`--out` may replace an earlier result, never anything else, and not lie in an input."""
    if isinstance(config.out, str):
        check_prefix(config.out, "--out", config.storage, replaceable=holds_only_result_files)
        for source in (config.deliveries, config.authorizations, config.apps):
            if source and is_url(source) and config.out.startswith(source.rstrip("/") + "/"):
                raise ConfigError(f"--out {config.out}: is inside the input prefix {source}")
        return
    check_directory(config.out, "--out", replaceable=is_result)
    out = config.out.resolve()
    for source in (config.deliveries, config.authorizations, config.apps):
        if source and Path(source).is_dir() and out.is_relative_to(Path(source).resolve()):
            raise ConfigError(f"--out {config.out}: is inside the input directory {source}")


def _check_rejected(config: ScanConfig, summary: Summary) -> None:
    """`--max-rejected` holds for the delivery rows and for the authorization rows alike:
    a rejected grant makes deliveries look misdelivered."""
    accounting, inputs, limit = summary.accounting, summary.inputs, config.max_rejected
    checked = [(config.deliveries, "delivery", accounting.rows_rejected, accounting.rows_read)]
    grants = inputs.authorizations if inputs is not None else None
    if grants is not None and grants.rows_rejected is not None:
        checked.append((config.authorizations, "authorization", grants.rows_rejected, grants.rows))
    for path, what, rejected, read in checked:
        if limit.exceeded(rejected, read):
            file = "rejected.parquet" if what == "delivery" else "rejected_authorizations.parquet"
            raise TooManyRejectedError(
                f"{path}: {rejected} of {read} {what} rows rejected, over --max-rejected "
                f"{limit}; see {join(config.out, file)}"
            )


def _write(
    config: ScanConfig,
    staging: Path,
    outcome: Outcome,
    evidence: dict[Input, list[Future[FileEvidence]]],
) -> None:
    """The result's files; a full disk or a failing device is the destination's problem."""
    try:
        write_result(staging, outcome, config.formats)
        discard_findings(staging)
        write_manifest(config, staging, evidence)
    except (OSError, pl.exceptions.ComputeError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"--out {config.out}: cannot be written ({detail})") from None


def scan(config: ScanConfig, progress: Progress | None = None) -> ScanResult:
    """Run a scan and publish its result in `config.out`, whole or not at all.

    Raises `InputError` for unreadable inputs or inputs that vouch for nothing (DESIGN rule 7;
    nothing is published then), `ConfigError` for an `out` that cannot be used, and
    `TooManyRejectedError` (after publishing) when more delivery or authorization rows were
    rejected than `config.max_rejected` allows.
    """
    stage = progress or (lambda _stage: None)
    stage("reading inputs")
    inputs = load_inputs(config)
    _check_cluster(config)
    _check_out(config)
    # The input files are hashed for the manifest, on one thread, while the scan reads them.
    with ThreadPoolExecutor(max_workers=1) as pool:
        evidence = hash_inputs([loaded.source for loaded in inputs.all], pool, config.storage)
        staged = (
            staged_prefix(config.out, "--out", config.storage, last=MANIFEST)
            if isinstance(config.out, str)
            else staged_directory(config.out, "--out")
        )
        with staged as staging:
            # The engine (a cluster) is closed before anything is published: no task is left
            # running, and an interrupt while it shuts down leaves an earlier result untouched.
            with open_engine(config.cluster) as engine:
                outcome = run(config, inputs, stage, engine, staging)
            stage("writing reports")
            _write(config, staging, outcome, evidence)
    _check_rejected(config, outcome.summary)
    summary = outcome.summary
    return ScanResult(config.out, summary, outcome.users, outcome.developers, config.storage)
