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
from incident.pipeline.impact import attribute_developers, exposure
from incident.pipeline.load import ROW, LoadedInput, SourceGroup, collect_input, stack
from incident.schema import (
    ATTRIBUTION_COLUMNS,
    CANDIDATES,
    CAUSE,
    COUNT,
    ID,
    INTENDED_APP,
    INTENDED_DEVELOPER,
    REASON,
    TIMESTAMP,
    Cause,
    Input,
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
    return _distinct_endpoints(
        frame.select(*by, "app_id", ip=pl.col("resolved_ip"), path=url_path(pl.col("webhook_url")))
    )


def _distinct_endpoints(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Distinct rows with both `ip` and `path`, typed alike whatever their source."""
    return frame.drop_nulls().unique().cast({"app_id": ID, "ip": pl.String, "path": pl.String})


def _nanoseconds(duration: timedelta) -> int:
    return (duration // timedelta(microseconds=1)) * 1000


def _gap(a: str, b: str) -> pl.Expr:
    """|a - b| in nanoseconds."""
    return (pl.col(a).dt.epoch("ns") - pl.col(b).dt.epoch("ns")).abs()


def _bucket(window: int) -> pl.Expr:
    """The window-wide time slot of `delivered_at`. Two instants at most `window` apart are in
    the same or adjacent slots, so a join on (app, slot) finds every pair within the window
    without comparing every delivery of an app with every other."""
    return (pl.col("delivered_at").dt.epoch("ns") // max(window, 1)).alias("_bucket")


def _near(frame: pl.LazyFrame, window: int) -> pl.LazyFrame:
    """Each row three times: in its slot and in the two adjacent ones."""
    return (
        frame.with_columns(_bucket(window))
        .with_columns(pl.col("_bucket") + pl.lit([-1, 0, 1]))
        .explode("_bucket")
    )


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
ENDPOINT_SCHEMA = {"app_id": ID(), "ip": pl.String(), "path": pl.String()}


@dataclass(frozen=True)
class Explained:
    """Misdeliveries with their cause, the shared endpoints they went through, and the
    evidence that no input had."""

    misdeliveries: pl.DataFrame
    endpoints: pl.DataFrame
    evidence_missing: list[str]


def explain(
    misdeliveries: pl.DataFrame,
    deliveries: LoadedInput,
    authorizations: LoadedInput,
    apps: pl.LazyFrame | None,
    registry: pl.DataFrame | None,
    settings: Attribution,
) -> Explained:
    """Add `cause`, `intended_app_id`, `intended_developer_id` and `intended_app_candidates`
    to `misdeliveries` (which carry `developer_id` and `reason`), and list the shared endpoints.

    `deliveries` is the input the misdeliveries came from (read again for the traffic near
    them), `authorizations` the grants (read again for the subscribers' grants); `apps` the
    valid registry rows (for their endpoints); `registry` maps app_id -> developer_id as
    reported.
    """
    found = misdeliveries.select(USED).with_row_index("_m")
    window = _nanoseconds(settings.collision_window)
    registered = (
        app_endpoints(apps).collect() if apps is not None else pl.DataFrame(schema=ENDPOINT_SCHEMA)
    )
    # All grants of each misdelivery's subscriber, read once: the receiving app's own (for
    # revocation lag) and the other apps' (the candidates for the intended app).
    (held,) = collect_input(
        [
            found.lazy()
            .select("_m", "for_user_id", "delivered_at", REASON, receiving=pl.col("app_id"))
            .join(
                _grants_of(authorizations, found["for_user_id"]).select(
                    "for_user_id", "app_id", "granted_at", "revoked_at"
                ),
                on="for_user_id",
            )
        ],
        [authorizations],
        engine="auto",
    )
    lag = _revocation_lag(held, _nanoseconds(settings.revocation_grace))
    received = _received_endpoints(found, registered)
    candidates = _authorized_others(held)
    listed = candidates.join(registered, on="app_id").join(
        received, on=["_m", "ip", "path"], how="semi"
    )
    unlisted = candidates.join(registered, on="app_id", how="anti")
    # Only a misdelivery with a candidate on its endpoint, or one whose endpoint the registry
    # does not know, can be a collision: the traffic of the others is not read.
    plausible = pl.concat([listed.select("_m", "app_id"), unlisted])
    context = _context(found, plausible, deliveries, window)
    intended = _intended(found, received, listed, unlisted, context, window)
    cause = (
        pl.when(pl.col(INTENDED_APP).is_not_null())
        .then(pl.lit(Cause.SHARED_ENDPOINT_COLLISION.value))
        .when(pl.col("_lag").fill_null(False))
        .then(pl.lit(Cause.REVOCATION_LAG.value))
        .otherwise(pl.lit(Cause.UNEXPLAINED.value))
    )
    # Only the new columns, in the rows' order: the input columns are not copied.
    attribution = (
        found.lazy()
        .select("_m")
        .join(lag.lazy(), on="_m", how="left")
        .join(intended.lazy(), on="_m", how="left")
        .with_columns(cause.alias(CAUSE), pl.col(CANDIDATES).fill_null(0).cast(COUNT))
        .pipe(attribute_developers, registry, app=INTENDED_APP, developer=INTENDED_DEVELOPER)
        .sort("_m")
        .collect()
    )
    explained = misdeliveries.with_columns(attribution.select(ATTRIBUTION_COLUMNS))
    matched = explained.with_columns(attribution.select("_ip", "_path"))
    return Explained(
        misdeliveries=explained,
        endpoints=endpoints_report(matched, registered, context, registry),
        evidence_missing=_evidence_missing(found, received),
    )


def _grants_of(authorizations: LoadedInput, users: pl.Series) -> pl.LazyFrame:
    """The valid grants, canonical, narrowed to those of `users` before they are normalised:
    integer user IDs are matched as read (a superset, which the join on text IDs settles)."""
    frames = []
    for group in authorizations.groups:
        where = None
        if group.integer("for_user_id"):
            raw = _as_read(group, "for_user_id", users.unique()).drop_nulls()
            where = pl.col(group.sources["for_user_id"]).is_in(raw.implode())
        frames.append(group.valid(where))
    return stack(frames, Input.AUTHORIZATIONS)


def _evidence_missing(found: pl.DataFrame, received: pl.DataFrame) -> list[str]:
    """The evidence of a collision that no misdelivery has: its backend, and its endpoint
    (from its own row or the registry)."""
    missing = []
    if found.height and found[BACKEND_EVIDENCE].null_count() == found.height:
        missing.append(f"deliveries.{BACKEND_EVIDENCE}")
    if found.height and not received.height:
        missing += [f"deliveries.{column}" for column in ENDPOINT_EVIDENCE]
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
        .select("_m", _lag=_gap("delivered_at", "revoked_at") <= grace)
        .collect()
    )


def _received_endpoints(found: pl.DataFrame, registered: pl.DataFrame) -> pl.DataFrame:
    """(_m, ip, path): where each misdelivery went; the row's own evidence, else the receiving
    app's endpoints in the registry."""
    own = app_endpoints(found.lazy(), "_m").select("_m", "ip", "path")
    from_registry = (
        found.lazy()
        .join(own, on="_m", how="anti")
        .select("_m", "app_id")
        .join(registered.lazy(), on="app_id")
        .select("_m", "ip", "path")
    )
    return pl.concat([own, from_registry]).collect()


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


# What is read of the deliveries near the misdeliveries, besides their endpoint evidence; the
# context holds it with the endpoint as (ip, path).
EVIDENCE_READ = ("event_id", "app_id", "for_user_id", "delivered_at", BACKEND_EVIDENCE)
CONTEXT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": ID(),
    "app_id": ID(),
    "for_user_id": ID(),
    "delivered_at": TIMESTAMP,
    BACKEND_EVIDENCE: pl.String(),
    "ip": pl.String(),
    "path": pl.String(),
}


def _context(
    found: pl.DataFrame, candidates: pl.DataFrame, deliveries: LoadedInput, window: int
) -> pl.DataFrame:
    """The deliveries of the receiving and candidate apps within the collision window of the
    misdeliveries that have a candidate."""
    possible = found.join(candidates, on="_m", how="semi").filter(
        pl.col(BACKEND_EVIDENCE).is_not_null()
    )
    if not possible.height:
        # Without a candidate, or a backend, no collision can be shown: skip the scan.
        return pl.DataFrame(schema=CONTEXT_SCHEMA)
    apps_at = pl.concat(
        [
            possible.lazy().select("app_id", "delivered_at"),
            candidates.lazy()
            .join(possible.lazy().select("_m", "delivered_at"), on="_m")
            .select("app_id", "delivered_at"),
        ]
    )
    keys = _near(apps_at, window).select("app_id", "_bucket").unique().collect()
    return nearby(deliveries, keys, window)


def nearby(deliveries: LoadedInput, keys: pl.DataFrame, window: int) -> pl.DataFrame:
    """The delivery rows in the (app_id, _bucket) slots of `keys`, with their backend and
    endpoint (`CONTEXT_SCHEMA`).

    Two reads: the app and time of every row find the few row numbers in those slots, then
    only those rows are read whole; decoding the text evidence of every row would cost
    several times more. Rows are taken whether or not rule 1 rejects them: a row whose app
    and time parse shows the app's traffic."""
    numbers = collect_input(
        [_slot_rows(group, keys, window) for group in deliveries.groups], [deliveries]
    )
    frames = []
    for group, rows in zip(deliveries.groups, numbers, strict=True):
        wanted = pl.col(ROW).is_in(rows[ROW].implode())
        if group.integer("app_id"):
            # Not needed for the answer: an app filter on the raw integers lets the reader
            # skip decoding the rows of other apps before it looks up the row numbers.
            apps = _as_read(group, "app_id", keys["app_id"].unique()).drop_nulls()
            wanted = pl.col(group.sources["app_id"]).is_in(apps.implode()) & wanted
        columns = [c for c in (*EVIDENCE_READ, *ENDPOINT_EVIDENCE) if c in group.sources]
        frames.append(group.scan().filter(wanted).select(*map(group.column, columns)))
    context = stack(frames, Input.DELIVERIES).select(
        *EVIDENCE_READ, ip=pl.col("resolved_ip"), path=url_path(pl.col("webhook_url"))
    )
    # The URL is read as its path at once: the context holds no more text than it uses.
    (read,) = collect_input([context], [deliveries])
    return read.cast(CONTEXT_SCHEMA)  # type: ignore[arg-type]


def _as_read(group: SourceGroup, column: str, ids: pl.Series) -> pl.Series:
    """Text IDs in the integer type of `group`'s `column`; null where not an integer."""
    return ids.cast(group.raw_schema[group.sources[column]], strict=False)


def _slot_rows(group: SourceGroup, keys: pl.DataFrame, window: int) -> pl.LazyFrame:
    """The row numbers of `group` in the (app_id, _bucket) slots of `keys`. Integer app IDs
    are matched as read, which spares turning every row's ID into text; a key that is not an
    integer's text can match no such row, and one like "0123" at worst adds rows that the
    text joins after drop."""
    app = group.column("app_id")
    if group.integer("app_id"):
        keys = keys.with_columns(_as_read(group, "app_id", keys["app_id"]))
        app = pl.col(group.sources["app_id"]).alias("app_id")
    return (
        group.scan()
        .select(ROW, app, group.column("delivered_at"))
        .with_columns(_bucket(window))
        .join(keys.drop_nulls().lazy(), on=["app_id", "_bucket"], how="semi")
        .select(ROW)
    )


def _nearest(left: pl.LazyFrame, right: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """`left` with `_gap`: how far in time (ns) the nearest row of `right` with the same `by`
    is from `delivered_at`; null when there is none. An as-of join walks both sides once in
    time order, so a busy app costs its rows, not its rows times its misdeliveries."""
    return (
        left.sort("delivered_at")
        .join_asof(
            right.select(*by, "delivered_at", other_at="delivered_at").sort("delivered_at"),
            on="delivered_at",
            by=by,
            strategy="nearest",
            check_sortedness=False,  # both sides sorted just above
        )
        .with_columns(_gap=_gap("delivered_at", "other_at"))
        .drop("other_at")
    )


def _intended(
    found: pl.DataFrame,
    received: pl.DataFrame,
    listed: pl.DataFrame,
    unlisted: pl.DataFrame,
    context: pl.DataFrame,
    window: int,
) -> pl.DataFrame:
    """(_m, intended app, candidates, matched endpoint) of the misdeliveries with the shared
    endpoint signature. `listed` holds the candidates the registry puts on the misdelivery's
    endpoint, `unlisted` those whose endpoints only their traffic can tell.

    Each test of "a delivery within the window" is an as-of join to the nearest one, so no
    misdelivery is paired with all of an app's traffic around it."""
    within = pl.col("_gap") <= window
    at = found.lazy().select("_m", "app_id", "delivered_at", BACKEND_EVIDENCE)
    # Misdeliveries are not an app's own traffic, nor is any delivery of a misdelivered event
    # to the same app for the same subscriber: a retry, or a rejected copy, is the leak again.
    leaks = ["event_id", "app_id", "for_user_id"]
    traffic = context.lazy().join(
        found.lazy().select(leaks), on=leaks, how="anti", nulls_equal=True
    )
    slots = ["app_id", BACKEND_EVIDENCE]
    active = _nearest(at.drop_nulls(slots), traffic, slots).filter(within).select("_m").collect()
    at = at.join(active.lazy(), on="_m", how="semi").drop("app_id")

    # Where an unlisted candidate listened: its deliveries near the misdelivery.
    endpoints = ["app_id", "ip", "path"]
    observed = _nearest(
        unlisted.lazy()
        .join(received.lazy(), on="_m")
        .join(at.select("_m", "delivered_at"), on="_m"),
        _distinct_endpoints(context.lazy().select("delivered_at", *endpoints)),
        endpoints,
    ).filter(within)
    on_endpoint = (
        pl.concat([listed.lazy(), observed.select("_m", "app_id", "ip", "path")])
        .join(active.lazy(), on="_m", how="semi")
        .unique()
    )

    # The most likely intended app: it received the same event nearby, then it was active on
    # the same backend closest in time, then the first app_id (for a stable answer).
    same_event = (
        on_endpoint.select("_m", "app_id")
        .join(found.lazy().select("_m", "event_id", "delivered_at"), on="_m")
        .join(
            context.lazy().select("app_id", "event_id", other_at="delivered_at"),
            on=["app_id", "event_id"],
        )
        .filter(_gap("delivered_at", "other_at") <= window)
        .select("_m", "app_id", _same_event=pl.lit(True))
        .unique()
    )
    nearest = _nearest(
        on_endpoint.select("_m", "app_id").unique().join(at, on="_m"), context.lazy(), slots
    ).select("_m", "app_id", _nearest=pl.when(within).then("_gap"))
    ranked = (
        on_endpoint.join(same_event, on=["_m", "app_id"], how="left")
        .join(nearest, on=["_m", "app_id"], how="left")
        .with_columns(pl.col("_same_event").fill_null(False))
        .sort(
            ["_m", "_same_event", "_nearest", "app_id", "ip", "path"],
            descending=[False, True, False, False, False, False],
            nulls_last=True,
        )
    )
    return (
        ranked.group_by("_m", maintain_order=True)
        .agg(
            pl.col("app_id").first().alias(INTENDED_APP),
            pl.col("app_id").n_unique().cast(COUNT).alias(CANDIDATES),
            pl.col("ip").first().alias("_ip"),
            pl.col("path").first().alias("_path"),
        )
        .collect()
    )


def endpoints_report(
    explained: pl.DataFrame,
    registered: pl.DataFrame,
    context: pl.DataFrame,
    registry: pl.DataFrame | None,
) -> pl.DataFrame:
    """One row per (IP, URL path) shared by two or more apps, with the misdeliveries the
    shared endpoint explains; sorted by IP and path. Apps are placed on endpoints by the
    registry and by the deliveries the scan saw with evidence."""
    sources = [
        app_endpoints(explained.lazy()),
        _distinct_endpoints(context.lazy().select("app_id", "ip", "path")),
        registered.lazy(),
    ]
    members = attribute_developers(pl.concat(sources).unique(), registry)
    shared = (
        members.group_by("ip", "path")
        .agg(
            pl.col("app_id").unique().sort().alias("app_ids"),
            pl.col("developer_id").unique().sort().alias("developer_ids"),
        )
        .filter(pl.col("app_ids").list.len() > 1)
    )
    collisions = (
        explained.lazy()
        .filter(pl.col(CAUSE) == Cause.SHARED_ENDPOINT_COLLISION.value)
        .select(*USED, ip="_ip", path="_path")
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
        .collect()
    )
