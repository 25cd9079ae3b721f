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

import polars as pl

from incident.config import Attribution
from incident.impact import attribute_developers, exposure
from incident.schema import (
    ATTRIBUTION_COLUMNS,
    CANDIDATES,
    CAUSE,
    COUNT,
    INTENDED_APP,
    INTENDED_DEVELOPER,
    REASON,
    TIMESTAMP,
    Cause,
    Reason,
)

# The evidence each part of the signature needs, as `input.column`.
ENDPOINT_EVIDENCE = ("webhook_url", "resolved_ip")
BACKEND_EVIDENCE = "backend_host"


def url_path(url: pl.Expr) -> pl.Expr:
    """The path of a webhook URL (no scheme, host, query or fragment); `/` when empty."""
    path = url.str.extract(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://)?[^/?#]*([^?#]*)", 1)
    return path.str.replace(r"^$", "/")


def app_endpoints(frame: pl.LazyFrame, *by: str) -> pl.LazyFrame:
    """Distinct (*by, app_id, ip, path) of rows with both an IP and a URL."""
    return (
        frame.select(*by, "app_id", ip=pl.col("resolved_ip"), path=url_path(pl.col("webhook_url")))
        .drop_nulls()
        .unique()
    )


def _nanoseconds(duration: timedelta) -> int:
    return (duration // timedelta(microseconds=1)) * 1000


def _gap(a: str, b: str) -> pl.Expr:
    """|a - b| in nanoseconds."""
    return (pl.col(a).dt.epoch("ns") - pl.col(b).dt.epoch("ns")).abs()


@dataclass(frozen=True)
class Explained:
    """Misdeliveries with their cause, and the shared endpoints they went through."""

    misdeliveries: pl.DataFrame
    endpoints: pl.DataFrame


def explain(
    misdeliveries: pl.DataFrame,
    deliveries: pl.LazyFrame,
    grants: pl.LazyFrame,
    apps: pl.LazyFrame | None,
    registry: pl.DataFrame | None,
    settings: Attribution,
) -> Explained:
    """Add `cause`, `intended_app_id`, `intended_developer_id` and `intended_app_candidates`
    to `misdeliveries` (which carry `developer_id` and `reason`), and list the shared endpoints.

    `deliveries` and `grants` are the valid rows of those inputs, canonical; `apps` the valid
    registry rows (their endpoints); `registry` maps app_id -> developer_id as reported.
    """
    found = misdeliveries.lazy().with_row_index("_m")
    window = _nanoseconds(settings.collision_window)
    received = _received_endpoints(found, apps)
    candidates = _candidates(found, grants)
    context = _context(found, candidates, deliveries, window)
    intended = _intended(found, received, candidates, context, apps, window)
    lag = _revocation_lag(found, grants, _nanoseconds(settings.revocation_grace))
    cause = (
        pl.when(pl.col(INTENDED_APP).is_not_null())
        .then(pl.lit(Cause.SHARED_ENDPOINT_COLLISION.value))
        .when(pl.col("_lag").fill_null(False))
        .then(pl.lit(Cause.REVOCATION_LAG.value))
        .otherwise(pl.lit(Cause.UNEXPLAINED.value))
    )
    explained = (
        found.join(lag, on="_m", how="left")
        .join(intended, on="_m", how="left")
        .with_columns(cause.alias(CAUSE), pl.col(CANDIDATES).fill_null(0).cast(COUNT))
        .pipe(attribute_developers, registry, app=INTENDED_APP, developer=INTENDED_DEVELOPER)
        .sort("_m")
        .collect()
    )
    endpoints = endpoints_report(explained.lazy(), found, apps, context, registry)
    return Explained(
        misdeliveries=explained.select(
            pl.exclude("_m", "_lag", "_ip", "_path", *ATTRIBUTION_COLUMNS), *ATTRIBUTION_COLUMNS
        ),
        endpoints=endpoints.collect(),
    )


def _received_endpoints(found: pl.LazyFrame, apps: pl.LazyFrame | None) -> pl.LazyFrame:
    """(_m, ip, path): where each misdelivery went; the row's own evidence, else the receiving
    app's endpoints in the registry."""
    own = app_endpoints(found.select("_m", "app_id", "resolved_ip", "webhook_url"), "_m")
    if apps is None:
        return own.select("_m", "ip", "path")
    registered = (
        found.join(own, on="_m", how="anti")
        .select("_m", "app_id")
        .join(app_endpoints(apps), on="app_id")
    )
    return pl.concat([own.select("_m", "ip", "path"), registered.select("_m", "ip", "path")])


def _candidates(found: pl.LazyFrame, grants: pl.LazyFrame) -> pl.LazyFrame:
    """(_m, app_id): the other apps authorized for the subscriber at the delivery instant."""
    at = pl.col("delivered_at")
    return (
        found.select("_m", "for_user_id", "delivered_at", receiving=pl.col("app_id"))
        .join(grants.select("for_user_id", "app_id", "granted_at", "revoked_at"), on="for_user_id")
        .filter(
            (pl.col("app_id") != pl.col("receiving"))
            & (pl.col("granted_at") <= at)
            & (pl.col("revoked_at").is_null() | (at < pl.col("revoked_at")))
        )
        .select("_m", "app_id")
        .unique()
    )


def _context(
    found: pl.LazyFrame, candidates: pl.LazyFrame, deliveries: pl.LazyFrame, window: int
) -> pl.DataFrame:
    """The deliveries of the receiving and candidate apps within the collision window of a
    misdelivery: found by (app, time bucket), so only those rows are kept from the scan."""
    evidence = ["event_id", "app_id", "delivered_at", BACKEND_EVIDENCE, *ENDPOINT_EVIDENCE]
    if found.select(pl.col(BACKEND_EVIDENCE).is_not_null().any()).collect().item() is not True:
        # Without a backend no collision can be shown: skip the scan.
        return pl.DataFrame(schema={c: pl.String for c in evidence}).with_columns(
            pl.col("delivered_at").cast(TIMESTAMP)
        )
    width = max(window, 1)
    bucket = (pl.col("delivered_at").dt.epoch("ns") // width).alias("_bucket")
    times = found.select("_m", "delivered_at")
    apps_at = pl.concat(
        [found.select("app_id", "delivered_at"), candidates.join(times, on="_m").drop("_m")]
    )
    keys = (
        apps_at.select("app_id", bucket)
        .with_columns(pl.col("_bucket") + pl.lit([-1, 0, 1]))
        .explode("_bucket")
        .unique()
    )
    return (
        deliveries.select(evidence)
        .with_columns(bucket)
        .join(keys, on=["app_id", "_bucket"], how="semi")
        .drop("_bucket")
        .collect(engine="streaming")
    )


def _intended(
    found: pl.LazyFrame,
    received: pl.LazyFrame,
    candidates: pl.LazyFrame,
    context: pl.DataFrame,
    apps: pl.LazyFrame | None,
    window: int,
) -> pl.LazyFrame:
    """(_m, intended app, candidates, matched endpoint) of the misdeliveries with the shared
    endpoint signature."""
    near = context.lazy().select(
        "app_id",
        other_event="event_id",
        other_at="delivered_at",
        other_backend=BACKEND_EVIDENCE,
        resolved_ip="resolved_ip",
        webhook_url="webhook_url",
    )
    at = found.select("_m", "event_id", "app_id", "delivered_at", BACKEND_EVIDENCE)
    within = _gap("delivered_at", "other_at") <= window

    # The receiving app's own traffic: another event, same backend, within the window.
    active = (
        at.join(near, on="app_id")
        .filter(
            within
            & (pl.col("other_backend") == pl.col(BACKEND_EVIDENCE))
            & (pl.col("other_event") != pl.col("event_id"))
        )
        .select("_m")
        .unique()
    )

    # Where each candidate app listens: the registry, and its deliveries near the instant.
    candidate_near = candidates.join(at.drop("app_id"), on="_m").join(near, on="app_id")
    observed = app_endpoints(candidate_near.filter(within), "_m")
    registered = (
        candidates.join(app_endpoints(apps), on="app_id") if apps is not None else observed.head(0)
    )
    on_endpoint = (
        pl.concat([observed.select("_m", "app_id", "ip", "path"), registered])
        .join(received, on=["_m", "ip", "path"])
        .join(active, on="_m", how="semi")
        .unique()
    )

    # The most likely intended app: it received the same event nearby, then it was active on
    # the same backend closest in time, then the smallest app_id (for a stable answer).
    same_backend = pl.col("other_backend") == pl.col(BACKEND_EVIDENCE)
    evidence = (
        candidate_near.filter(within)
        .group_by("_m", "app_id")
        .agg(
            (pl.col("other_event") == pl.col("event_id")).any().alias("_same_event"),
            _gap("delivered_at", "other_at").filter(same_backend).min().alias("_nearest"),
        )
    )
    ranked = on_endpoint.join(evidence, on=["_m", "app_id"], how="left").sort(
        ["_m", "_same_event", "_nearest", "app_id", "ip", "path"],
        descending=[False, True, False, False, False, False],
        nulls_last=True,
    )
    return ranked.group_by("_m", maintain_order=True).agg(
        pl.col("app_id").first().alias(INTENDED_APP),
        pl.col("app_id").n_unique().cast(COUNT).alias(CANDIDATES),
        pl.col("ip").first().alias("_ip"),
        pl.col("path").first().alias("_path"),
    )


def _revocation_lag(found: pl.LazyFrame, grants: pl.LazyFrame, grace: int) -> pl.LazyFrame:
    """`_lag` per misdelivery after a revocation: the latest revocation of its key at or
    before it is at most `grace` earlier."""
    after = found.filter(pl.col(REASON) == Reason.AFTER_REVOCATION.value).select(
        "_m", "for_user_id", "app_id", "delivered_at"
    )
    return (
        after.join(
            grants.select("for_user_id", "app_id", "revoked_at"), on=["for_user_id", "app_id"]
        )
        .filter(pl.col("revoked_at") <= pl.col("delivered_at"))
        .group_by("_m")
        .agg(pl.col("revoked_at").max(), pl.col("delivered_at").first())
        .select("_m", _lag=_gap("delivered_at", "revoked_at") <= grace)
    )


def endpoints_report(
    explained: pl.LazyFrame,
    found: pl.LazyFrame,
    apps: pl.LazyFrame | None,
    context: pl.DataFrame,
    registry: pl.DataFrame | None,
) -> pl.LazyFrame:
    """One row per (IP, URL path) shared by two or more apps, with the misdeliveries the
    shared endpoint explains; sorted by IP and path."""
    sources = [app_endpoints(found), app_endpoints(context.lazy())]
    if apps is not None:
        sources.append(app_endpoints(apps))
    members = attribute_developers(pl.concat(sources).unique(), registry)
    shared = (
        members.group_by("ip", "path")
        .agg(
            pl.col("app_id").unique().sort().alias("app_ids"),
            pl.col("developer_id").unique().sort().alias("developer_ids"),
        )
        .filter(pl.col("app_ids").list.len() > 1)
    )
    collisions = explained.filter(pl.col(CAUSE) == Cause.SHARED_ENDPOINT_COLLISION.value).rename(
        {"_ip": "ip", "_path": "path"}
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
    )
