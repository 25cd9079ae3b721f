"""Why each misdelivery happened: a shared endpoint, a revocation not yet applied, or unknown.

The incident's published mechanism: apps whose webhook URLs resolved to the same IP with the
same path, active within a few minutes of each other on the same backend server, received
each other's events. A misdelivery carries that signature when another app, authorized for
its subscriber at that instant, sits on the receiving endpoint (IP and URL path) and the
receiving app had its own traffic from the same backend within the collision window.

Everything here works on the misdeliveries and on the few deliveries near them in time, so
it costs little next to detection and can run on one partition of a larger scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl

from incident.config import Attribution
from incident.pipeline.context import (
    BACKEND_EVIDENCE,
    ENDPOINT_EVIDENCE,
    as_read,
    collision_context,
)
from incident.pipeline.endpoints import (
    ENDPOINT_SCHEMA,
    app_endpoints,
    candidates_on_endpoint,
    distinct_endpoints,
    gap,
    nearest,
    received_endpoints,
    registered_endpoints,
    within,
)
from incident.pipeline.evidence import UNCHECKED, evidence, receiver_active
from incident.pipeline.impact import attribute_developers, exposure
from incident.pipeline.load import LoadedInput, collect_input, stack
from incident.schema import (
    ATTRIBUTION_COLUMNS,
    CANDIDATES,
    CAUSE,
    COUNT,
    EVIDENCE,
    INTENDED_APP,
    INTENDED_DEVELOPER,
    REASON,
    Cause,
    Input,
    Reason,
)


def _duration_ns(duration: timedelta) -> int:
    """`duration` in whole nanoseconds."""
    return (duration // timedelta(microseconds=1)) * 1000


# What attribution reads of a misdelivery; the other input columns only pass through.
USED = (
    "event_id",
    "delivered_at",
    "app_id",
    "for_user_id",
    "event_type",
    "sender_id",
    "recipient_id",
    BACKEND_EVIDENCE,
    *ENDPOINT_EVIDENCE,
    "developer_id",
    REASON,
)


# Misdeliveries explained at a time. A chunk's working memory (its grants, the traffic near
# it, the joins) grows with its rows and with the traffic near each: about 3 KB per
# misdelivery, some 740 MB at this size, among a billion deliveries of the `--fixed-grants`
# benchmark (`python bench/chunks.py DATA --chunk-rows N`). A chunk reads only the files and
# row groups of its time (`context._in_time`), so that with event IDs that grow with time,
# as snowflake IDs do, more chunks do not mean more reading.
CHUNK_ROWS = 250_000


@dataclass(frozen=True)
class Explained:
    """Misdeliveries with their cause (a scan of the explained parts, in the misdeliveries'
    order), the shared endpoints they went through, and the evidence that no input had."""

    misdeliveries: pl.LazyFrame
    endpoints: pl.DataFrame
    evidence_missing: list[str]


@dataclass(frozen=True)
class _Seen:
    """What the chunks explained so far show together: the apps' endpoints, and whether a
    misdelivery or the traffic read near one had an IP, a URL (`ENDPOINT_EVIDENCE`)."""

    endpoints: pl.DataFrame
    evidence: frozenset[str] = frozenset()

    def add(self, found: pl.DataFrame, context: pl.DataFrame) -> _Seen:
        """With a chunk's misdeliveries (`found`) and the traffic read near them."""
        present = {
            column
            for column, part in zip(ENDPOINT_EVIDENCE, ("path", "ip"), strict=True)
            if found[column].is_not_null().any() or context[part].is_not_null().any()
        }
        endpoints = [
            self.endpoints.lazy(),
            app_endpoints(found.lazy()),
            distinct_endpoints(context.lazy().select(*ENDPOINT_SCHEMA)),
        ]
        return _Seen(pl.concat(endpoints).unique().collect(), self.evidence | present)


def explain(
    misdeliveries: pl.LazyFrame,
    deliveries: LoadedInput,
    authorizations: LoadedInput,
    apps: pl.LazyFrame | None,
    registry: pl.DataFrame | None,
    settings: Attribution,
    folder: Path,
    chunk_rows: int = CHUNK_ROWS,
) -> Explained:
    """Add `cause`, `evidence`, `intended_app_id`, `intended_developer_id` and
    `intended_app_candidates` to `misdeliveries` (which carry `developer_id` and `reason`), and
    list the shared endpoints.

    The misdeliveries are explained `chunk_rows` at a time, each chunk written as a Parquet part
    into `folder`; the answer does not depend on the chunk size: each misdelivery's attribution
    reads only the traffic near it, and what is global (whether any misdelivery has a backend,
    the leaks, the endpoints report) is computed over all of them. `deliveries` is the input
    the misdeliveries came from (read again for the traffic near them), `authorizations` the
    grants (read again for the subscribers' grants); `apps` the valid registry rows (for their
    endpoints); `registry` maps app_id -> developer_id as reported.
    """
    registered = registered_endpoints(apps)
    # A backend missing on a few rows goes unchecked; missing on all, it is evidence the input
    # lacks, and no collision is shown: a property of all the misdeliveries, not of a chunk.
    total, relax = (
        misdeliveries.select(pl.len(), pl.col(BACKEND_EVIDENCE).is_not_null().any())
        .collect(engine="streaming")
        .row(0)
    )
    seen = _Seen(pl.DataFrame(schema=ENDPOINT_SCHEMA))
    folder.mkdir(parents=True, exist_ok=True)
    parts, collisions = [], []
    # One chunk at least, so that an empty scan still has the explained columns.
    for number, offset in enumerate(range(0, max(total, 1), chunk_rows)):
        chunk = misdeliveries.slice(offset, chunk_rows).collect()
        found = chunk.select(USED).with_row_index("_m")
        attribution, context = _attribute(
            found, misdeliveries, deliveries, authorizations, registered, registry, settings, relax
        )
        explained = chunk.with_columns(attribution.select(ATTRIBUTION_COLUMNS))
        parts.append(folder / f"explained-{number:06d}.parquet")
        explained.write_parquet(parts[-1])
        collisions.append(folder / f"collisions-{number:06d}.parquet")
        _collisions(found, attribution).write_parquet(collisions[-1])
        seen = seen.add(found, context)
        # Let go before the next chunk is read: two chunks are never held at once.
        del chunk, found, attribution, context, explained
    return Explained(
        misdeliveries=pl.scan_parquet(parts, glob=False),
        endpoints=endpoints_report(
            pl.scan_parquet(collisions, glob=False), seen.endpoints, registered, registry
        ),
        evidence_missing=_evidence_missing(total, relax, registered, seen.evidence),
    )


def _attribute(
    found: pl.DataFrame,
    misdeliveries: pl.LazyFrame,
    deliveries: LoadedInput,
    authorizations: LoadedInput,
    registered: pl.DataFrame,
    registry: pl.DataFrame | None,
    settings: Attribution,
    relax: bool,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The attribution columns, and the matched endpoint (`_ip`, `_path`), of the misdeliveries
    of one chunk (`found`, numbered by `_m`), and the traffic read near them (the context)."""
    window = _duration_ns(settings.collision_window)
    held = _subscriber_grants(found, authorizations)
    lag = _revocation_lag(held, _duration_ns(settings.revocation_grace))
    candidates = _authorized_others(held)
    # The candidates' traffic near the misdelivery says where they listened then, before the
    # registry (a later snapshot) does; only that of candidates seen on, or registered at,
    # its IP is read whole.
    context = collision_context(
        found if relax else found.clear(), candidates, registered, deliveries, window
    )
    received = received_endpoints(found, context, registered, window)
    on_endpoint = candidates_on_endpoint(candidates, found, received, context, registered, window)
    leaks = _leaks(misdeliveries, context)
    intended = _intended(found, leaks, on_endpoint, context, window, relax)
    return _attribution(found, lag, intended, registry), context


# A misdelivery's key as a leak: a delivery of its event to its app for its subscriber.
LEAK = ("event_id", "app_id", "for_user_id")


def _leaks(misdeliveries: pl.LazyFrame, context: pl.DataFrame) -> pl.DataFrame:
    """The leak keys (`LEAK`) of all misdeliveries, of every chunk, that the context holds: a
    misdelivery is not its app's own traffic for another misdelivery, in whichever chunk."""
    near = context.select(LEAK).unique()
    return (
        misdeliveries.select(LEAK)
        .join(near.lazy(), on=list(LEAK), how="semi", nulls_equal=True)
        .unique()
        .collect(engine="streaming")
    )


def _collisions(found: pl.DataFrame, attribution: pl.DataFrame) -> pl.DataFrame:
    """The collisions of a chunk with their endpoint (ip, path): what the endpoints report
    counts, written apart so that the published misdeliveries carry no hidden column."""
    return (
        found.with_columns(attribution.select(CAUSE, ip="_ip", path="_path"))
        .filter(pl.col(CAUSE) == Cause.SHARED_ENDPOINT_COLLISION.value)
        .select(*USED, "ip", "path")
    )


def _subscriber_grants(found: pl.DataFrame, authorizations: LoadedInput) -> pl.DataFrame:
    """(_m, for_user_id, delivered_at, reason, receiving, app_id, granted_at, revoked_at): all
    grants of each misdelivery's subscriber, read once: the receiving app's own (for
    revocation lag) and the other apps' (the candidates for the intended app)."""
    query = (
        found.lazy()
        .select("_m", "for_user_id", "delivered_at", REASON, receiving=pl.col("app_id"))
        .join(
            _grants_of(authorizations, found["for_user_id"]).select(
                "for_user_id", "app_id", "granted_at", "revoked_at"
            ),
            on="for_user_id",
        )
    )
    (held,) = collect_input([query], [authorizations], engine="auto")
    return held


def _cause() -> pl.Expr:
    """The cause of a misdelivery: a collision when it has an intended app, else revocation
    lag when it came within the grace after a revocation, else unexplained."""
    return (
        pl.when(pl.col(INTENDED_APP).is_not_null())
        .then(pl.lit(Cause.SHARED_ENDPOINT_COLLISION.value))
        .when(pl.col("_lag").fill_null(False))
        .then(pl.lit(Cause.REVOCATION_LAG.value))
        .otherwise(pl.lit(Cause.UNEXPLAINED.value))
    )


def _attribution(
    found: pl.DataFrame,
    lag: pl.DataFrame,
    intended: pl.DataFrame,
    registry: pl.DataFrame | None,
) -> pl.DataFrame:
    """The attribution columns, and the matched endpoint (`_ip`, `_path`), of each
    misdelivery in `found`'s order. Only the new columns: the input columns are not copied."""
    return (
        found.lazy()
        .select("_m")
        .join(lag.lazy(), on="_m", how="left")
        .join(intended.lazy(), on="_m", how="left")
        .with_columns(_cause().alias(CAUSE), pl.col(CANDIDATES).fill_null(0).cast(COUNT))
        .with_columns(evidence(pl.col(INTENDED_APP).is_not_null()).alias(EVIDENCE))
        .pipe(attribute_developers, registry, app=INTENDED_APP, developer=INTENDED_DEVELOPER)
        .sort("_m")
        .collect()
    )


def _grants_of(authorizations: LoadedInput, users: pl.Series) -> pl.LazyFrame:
    """The valid grants, canonical, narrowed to those of `users` before they are normalised:
    integer user IDs are matched as read (a superset, which the join on text IDs settles)."""
    frames = []
    for group in authorizations.groups:
        where = None
        if group.integer("for_user_id"):
            raw = as_read(group, "for_user_id", users.unique()).drop_nulls()
            where = pl.col(group.sources["for_user_id"]).is_in(raw.implode())
        frames.append(group.valid(where))
    return stack(frames, Input.AUTHORIZATIONS)


def _evidence_missing(
    total: int, relax: bool, registered: pl.DataFrame, present: frozenset[str]
) -> list[str]:
    """The evidence of a collision that the inputs lack: a backend on no misdelivery; an IP,
    or a URL, on no misdelivery, registry entry or delivery read near them (`present` names
    the columns some misdelivery or delivery near one had)."""
    if not total:
        return []
    missing = [] if relax else [f"deliveries.{BACKEND_EVIDENCE}"]
    for column in ENDPOINT_EVIDENCE:
        if not (column in present or registered.height):
            missing.append(f"deliveries.{column}")
    return missing


def _revocation_lag(held: pl.DataFrame, grace: int) -> pl.DataFrame:
    """`_lag` per misdelivery after a revocation: the latest revocation of its key at or
    before it is at most `grace` earlier."""
    return (
        held.lazy()
        .filter(
            (pl.col(REASON) == Reason.AFTER_REVOCATION.value)
            & (pl.col("app_id") == pl.col("receiving"))
            & (pl.col("revoked_at") <= pl.col("delivered_at"))
        )
        .group_by("_m")
        .agg(pl.col("revoked_at").max(), pl.col("delivered_at").first())
        .select("_m", _lag=gap("delivered_at", "revoked_at") <= grace)
        .collect()
    )


def _authorized_others(held: pl.DataFrame) -> pl.DataFrame:
    """(_m, app_id): the other apps authorized for the subscriber at the delivery instant."""
    at = pl.col("delivered_at")
    return (
        held.filter(
            (pl.col("app_id") != pl.col("receiving"))
            & (pl.col("granted_at") <= at)
            & (pl.col("revoked_at").is_null() | (at < pl.col("revoked_at")))
        )
        .select("_m", "app_id")
        .unique()
    )


def _intended(
    found: pl.DataFrame,
    leaks: pl.DataFrame,
    on_endpoint: pl.LazyFrame,
    context: pl.DataFrame,
    window: int,
    relax: bool,
) -> pl.DataFrame:
    """(_m, intended app, candidates, matched endpoint) of the misdeliveries with the shared
    endpoint signature. `leaks` are the misdeliveries' keys in the context (`_leaks`);
    `on_endpoint` holds the candidates on each misdelivery's endpoint
    (`candidates_on_endpoint`); `relax` lets a missing backend go unchecked (`evidence`).

    Each test of "a delivery within the window" is an as-of join to the nearest one, so no
    misdelivery is paired with all of an app's traffic around it."""
    at = found.lazy().select("_m", "app_id", "delivered_at", BACKEND_EVIDENCE)
    receiving = context.join(found.select("app_id").unique(), on="app_id", how="semi")
    active = receiver_active(leaks, at, receiving, window, relax)
    at = at.join(active.lazy(), on="_m", how="semi").drop("app_id")
    # Collected once: the ranking reads it thrice, and only its apps' traffic.
    on_endpoint_ = on_endpoint.unique().join(active.lazy(), on="_m").collect()
    theirs = context.join(on_endpoint_.select("app_id").unique(), on="app_id", how="semi")
    return (
        _ranked(on_endpoint_.lazy(), found, at, theirs, window)
        .group_by("_m", maintain_order=True)
        .agg(
            pl.col("app_id").first().alias(INTENDED_APP),
            pl.col("app_id").n_unique().cast(COUNT).alias(CANDIDATES),
            pl.col("ip").first().alias("_ip"),
            pl.col("path").first().alias("_path"),
            *(pl.col(flag).first() for flag in UNCHECKED.values()),
        )
        .collect()
    )


def _ranked(
    on_endpoint: pl.LazyFrame,
    found: pl.DataFrame,
    at: pl.LazyFrame,
    context: pl.DataFrame,
    window: int,
) -> pl.LazyFrame:
    """The candidates on each misdelivery's endpoint, most likely intended app first: it
    received the same event nearby, then it was active on the same backend closest in time,
    then the first app_id (for a stable answer)."""
    candidates = on_endpoint.select("_m", "app_id")
    same_event = _same_event(candidates, found, context, window)
    closest = _closest_activity(candidates, at, context, window)
    return (
        on_endpoint.join(same_event, on=["_m", "app_id"], how="left")
        .join(closest, on=["_m", "app_id"], how="left")
        .with_columns(pl.col("_same_event").fill_null(False))
        .sort(
            ["_m", "_same_event", "_nearest", "app_id", "ip", "path"],
            descending=[False, True, False, False, False, False],
            nulls_last=True,
        )
    )


def _same_event(
    candidates: pl.LazyFrame, found: pl.DataFrame, context: pl.DataFrame, window: int
) -> pl.LazyFrame:
    """(_m, app_id, _same_event): the candidates that received the misdelivered event
    within the window."""
    # An as-of join, not an equi-join: an app may get the same event for many subscribers.
    return (
        nearest(
            candidates.unique().join(
                found.lazy().select("_m", "event_id", "delivered_at"), on="_m"
            ),
            context.lazy(),
            ["app_id", "event_id"],
        )
        .filter(within(window))
        .select("_m", "app_id", _same_event=pl.lit(True))
    )


def _closest_activity(
    candidates: pl.LazyFrame, at: pl.LazyFrame, context: pl.DataFrame, window: int
) -> pl.LazyFrame:
    """(_m, app_id, _nearest): how far in time (ns) from the misdelivery is the candidate's
    nearest delivery from the same backend; null when none is within the window."""
    slots = ["app_id", BACKEND_EVIDENCE]
    return nearest(candidates.unique().join(at, on="_m"), context.lazy(), slots).select(
        "_m", "app_id", _nearest=pl.when(within(window)).then("_gap")
    )


def endpoints_report(
    collisions: pl.LazyFrame,
    members: pl.DataFrame,
    registered: pl.DataFrame,
    registry: pl.DataFrame | None,
) -> pl.DataFrame:
    """One row per (IP, URL path) shared by two or more apps, with the misdeliveries the
    shared endpoint explains; sorted by IP and path. Apps are placed on endpoints by the
    registry and by the deliveries the scan saw with evidence (`members`: app_id, ip, path);
    `collisions` are all the collisions (`USED` columns) with their endpoint (ip, path), so
    that the distinct events and users are counted over all of them."""
    placed = pl.concat([members.lazy(), registered.lazy()]).unique()
    shared = (
        attribute_developers(placed, registry)
        .group_by("ip", "path")
        .agg(
            pl.col("app_id").unique().sort().alias("app_ids"),
            pl.col("developer_id").unique().sort().alias("developer_ids"),
        )
        .filter(pl.col("app_ids").list.len() > 1)
    )
    leaked = collisions.group_by("ip", "path").agg(
        pl.len().cast(COUNT).alias("misdeliveries"),
        pl.col("event_id").n_unique().cast(COUNT).alias("events"),
        pl.col("delivered_at").min().alias("first_misdelivered_at"),
        pl.col("delivered_at").max().alias("last_misdelivered_at"),
    )
    users = (
        exposure(collisions, carry=("ip", "path"))
        .group_by("ip", "path")
        .agg(pl.col("user_id").n_unique().cast(COUNT).alias("users_exposed"))
    )
    return (
        shared.join(leaked, on=["ip", "path"], how="left")
        .join(users, on=["ip", "path"], how="left")
        .select(
            pl.col("ip").alias("resolved_ip"),
            pl.col("path").alias("url_path"),
            pl.col("app_ids").list.len().cast(COUNT).alias("apps"),
            "app_ids",
            pl.col("developer_ids").list.len().cast(COUNT).alias("developers"),
            "developer_ids",
            *(pl.col(c).fill_null(0) for c in ("misdeliveries", "events", "users_exposed")),
            "first_misdelivered_at",
            "last_misdelivered_at",
        )
        .sort("resolved_ip", "url_path")
        .collect(engine="streaming")
    )
