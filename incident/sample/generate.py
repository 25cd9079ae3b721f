"""The entry point: `generate_sample` builds a data set and writes it, with a summary.

It guards the output directory (new or empty, so stale partitions never mix into a new
sample), builds the whole data set in memory (assembly.py), then writes the deliveries,
authorizations.parquet, apps.parquet and truth.parquet (writing.py, truth.py) and returns
the row counts as a `SampleSummary`, which the `incident sample` command prints. With
`realistic`, realistic.py edits the evidence columns of each day as it is written and the
registry's IPs, from an RNG stream of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from incident.errors import ConfigError
from incident.sample.assembly import _build
from incident.sample.population import _app_strings
from incident.sample.realistic import _realism
from incident.sample.truth import _truth_frame
from incident.sample.writing import (
    APP_SCHEMA,
    AUTHORIZATION_SCHEMA,
    TRUTH_SCHEMA,
    _authorizations_frame,
    _registry_frame,
    _write_deliveries,
    _write_frame,
)


@dataclass(frozen=True)
class SampleSummary:
    """What `generate_sample` wrote: row counts per file, and the output directory.

    `users` counts distinct accounts appearing anywhere in the data (subscribers, senders,
    recipients, grantees); `apps` and `developers` count the registry (apps.parquet), which
    deliberately omits a few apps that do receive deliveries; `injected_misdeliveries` is
    the number of rows in truth.parquet (misdeliveries inside the default window).
    """

    deliveries: int
    authorizations: int
    apps: int
    developers: int
    users: int
    injected_misdeliveries: int
    out: Path


def _check_out(out: Path) -> None:
    """`out` must be missing or an empty directory."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: expected a directory for the sample, found a file")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: output directory is not empty; expected a new or empty one")


def generate_sample(
    out: Path, deliveries: int = 20_000, seed: int = 0, realistic: bool = False
) -> SampleSummary:
    """Write a synthetic incident data set with `deliveries` delivery rows into `out`.

    `out` is created if missing and must be empty otherwise, so stale partitions can never
    mix into a new sample. The same arguments always produce byte-identical files.
    `realistic` makes the evidence messier (realistic.py): apps moving to new IPs during the
    incident, URLs as called (port and query string), backend hosts missing; the rows, the
    grants and truth.parquet stay those of the default mode.
    """
    out = Path(out)
    _check_out(out)
    ds = _build(deliveries, seed)
    out.mkdir(parents=True, exist_ok=True)

    app_strings = _app_strings(ds.pop)
    realism = _realism(seed, app_strings) if realistic else None
    edit = None if realism is None else realism.edit
    _write_deliveries(ds.deliveries, app_strings, out / "deliveries", edit)
    authorizations = _authorizations_frame(ds.pop, ds.grants)
    _write_frame(authorizations, AUTHORIZATION_SCHEMA, out / "authorizations.parquet")
    registry = _registry_frame(
        ds.pop, app_strings if realism is None else realism.latest(app_strings)
    )
    _write_frame(registry, APP_SCHEMA, out / "apps.parquet")
    truth = _truth_frame(ds.pop, ds.deliveries, authorizations)
    _write_frame(truth, TRUTH_SCHEMA, out / "truth.parquet")

    return SampleSummary(
        deliveries=ds.deliveries.height,
        authorizations=int(ds.grants.user.size),
        apps=registry.height,
        developers=registry["developer_id"].n_unique(),
        users=ds.users_seen,
        injected_misdeliveries=truth.height,
        out=out,
    )
