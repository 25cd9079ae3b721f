"""Where an app listened at an instant: its endpoint (IP, URL path) from the deliveries near
that instant, and from the registry only where they say nothing.

The registry is one snapshot, taken after the incident, while apps changed hosting; the
deliveries record where each event went at the time. So an app's endpoints at `t` are those of
its own deliveries within the collision window of `t` (all of them: an app may listen on two),
and the registry's only when none of those deliveries has an endpoint. Each test is an as-of
join per (app, endpoint), linear in an app's traffic.
"""

from __future__ import annotations

import polars as pl

from incident.pipeline.normal import endpoint_ip, endpoint_path
from incident.schema import ID

ENDPOINT_SCHEMA = {"app_id": ID(), "ip": pl.String(), "path": pl.String()}


def app_endpoints(frame: pl.LazyFrame, *by: str) -> pl.LazyFrame:
    """Distinct (*by, app_id, ip, path) of rows with both an IP and a URL."""
    return distinct_endpoints(
        frame.select(
            *by,
            "app_id",
            ip=endpoint_ip(pl.col("resolved_ip")),
            path=endpoint_path(pl.col("webhook_url")),
        )
    )


def distinct_endpoints(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Distinct rows with both `ip` and `path`, typed alike whatever their source."""
    return frame.drop_nulls().unique().cast({"app_id": ID, "ip": pl.String, "path": pl.String})


def registered_endpoints(apps: pl.LazyFrame | None) -> pl.DataFrame:
    """(app_id, ip, path): the endpoints of the valid registry rows; none without a registry."""
    if apps is None:
        return pl.DataFrame(schema=ENDPOINT_SCHEMA)
    return app_endpoints(apps).collect()


def gap(a: str, b: str) -> pl.Expr:
    """|a - b| in nanoseconds."""
    return (pl.col(a).dt.epoch("ns") - pl.col(b).dt.epoch("ns")).abs()


def nearest(left: pl.LazyFrame, right: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
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
        .with_columns(_gap=gap("delivered_at", "other_at"))
        .drop("other_at")
    )


def within(window: int) -> pl.Expr:
    """`_gap` (from `nearest`) is at most `window`."""
    return pl.col("_gap") <= window


def seen_near(wanted: pl.LazyFrame, context: pl.DataFrame, window: int) -> pl.LazyFrame:
    """(_m, app_id, ip, path): the endpoints of the app's own deliveries within the window of
    each (_m, app_id, delivered_at) in `wanted`. One as-of join per endpoint the app shows in
    `context`: an app has few."""
    # Only the traffic of the apps asked about: the context also holds every other app's.
    own = context.lazy().join(wanted.select("app_id").unique(), on="app_id", how="semi")
    traffic = distinct_endpoints(own.select("delivered_at", "app_id", "ip", "path")).collect()
    shown = distinct_endpoints(traffic.lazy().select("app_id", "ip", "path"))
    endpoints = ["app_id", "ip", "path"]
    return (
        nearest(wanted.join(shown, on="app_id"), traffic.lazy(), endpoints)
        .filter(within(window))
        .select("_m", "app_id", "ip", "path")
    )


def received_endpoints(
    found: pl.DataFrame, context: pl.DataFrame, registered: pl.DataFrame, window: int
) -> pl.DataFrame:
    """(_m, ip, path): where each misdelivery went. The row's own evidence; else the endpoints
    of the receiving app's deliveries within the window; else its endpoints in the registry."""
    own = app_endpoints(found.lazy(), "_m").select("_m", "ip", "path")
    rest = found.lazy().join(own, on="_m", how="anti").select("_m", "app_id", "delivered_at")
    by_traffic = seen_near(rest, context, window).select("_m", "ip", "path")
    from_registry = (
        rest.join(by_traffic, on="_m", how="anti")
        .select("_m", "app_id")
        .join(registered.lazy(), on="app_id")
        .select("_m", "ip", "path")
    )
    return pl.concat([own, by_traffic, from_registry]).unique().collect()


def candidates_on_endpoint(
    candidates: pl.DataFrame,
    found: pl.DataFrame,
    received: pl.DataFrame,
    context: pl.DataFrame,
    registered: pl.DataFrame,
    window: int,
) -> pl.LazyFrame:
    """(_m, app_id, ip, path): the candidates (_m, app_id) that listened on the endpoint the
    misdelivery went to: by their deliveries within the window, else by the registry.

    Two as-of joins, each linear in the candidates' traffic: one per received endpoint (was
    the candidate there?), one per candidate (was it anywhere the rows show?)."""
    wanted = candidates.lazy().join(found.lazy().select("_m", "delivered_at"), on="_m")
    own = (
        context.lazy()
        .join(candidates.lazy().select("app_id").unique(), on="app_id", how="semi")
        .select("delivered_at", "app_id", "ip", "path")
        .drop_nulls()
    )
    endpoints = ["app_id", "ip", "path"]
    # Only the rows on some misdelivery's endpoint can place a candidate there.
    there = own.join(received.lazy().select("ip", "path").unique(), on=["ip", "path"], how="semi")
    seen = (
        nearest(wanted.join(received.lazy(), on="_m"), there, endpoints)
        .filter(within(window))
        .select("_m", "app_id", "ip", "path")
    )
    somewhere = nearest(wanted, own.select("delivered_at", "app_id"), ["app_id"]).filter(
        within(window)
    )
    listed = (
        candidates.lazy()
        .join(somewhere, on=["_m", "app_id"], how="anti")
        .join(registered.lazy(), on="app_id")
        .join(received.lazy(), on=["_m", "ip", "path"], how="semi")
        .select("_m", "app_id", "ip", "path")
    )
    return pl.concat([seen, listed])


def received_ips(
    found: pl.DataFrame, seen: pl.LazyFrame, registered: pl.DataFrame, window: int
) -> pl.LazyFrame:
    """(_m, ip): every IP a misdelivery of `found` may have gone to, from where apps were
    seen (`seen`: app_id, delivered_at, ip) without their URLs: a superset of the IPs of
    `received_endpoints`. The row's own IP when it has its whole endpoint; else those of the
    receiving app's deliveries within the window, and of its registry entries."""
    whole = pl.col("resolved_ip").is_not_null() & pl.col("webhook_url").is_not_null()
    own = found.lazy().filter(whole).select("_m", ip=endpoint_ip(pl.col("resolved_ip")))
    rest = found.lazy().filter(~whole).select("_m", "app_id", "delivered_at")
    traffic = seen.join(rest.select("app_id").unique(), on="app_id", how="semi").drop_nulls()
    by_traffic = nearest(
        rest.join(traffic.select("app_id", "ip").unique(), on="app_id"),
        traffic,
        ["app_id", "ip"],
    ).filter(within(window))
    from_registry = rest.join(registered.lazy(), on="app_id")
    return pl.concat([own, by_traffic.select("_m", "ip"), from_registry.select("_m", "ip")])


def near_received_ip(
    wanted: pl.LazyFrame,
    ips: pl.LazyFrame,
    seen: pl.LazyFrame,
    registered: pl.DataFrame,
    window: int,
) -> pl.LazyFrame:
    """(_m, app_id, delivered_at): the candidates of `wanted` (the same columns) that may have
    listened where the misdelivery went: seen within the window on one of its IPs (`ips`,
    from `received_ips`), or registered at one. No other candidate can be on its endpoint
    (`candidates_on_endpoint`), so only these candidates' traffic need be read whole."""
    at_ip = wanted.join(ips.unique(), on="_m")
    # Most candidates were elsewhere: only their deliveries on the IPs asked about are sorted.
    there = seen.join(at_ip.select("app_id", "ip").unique(), on=["app_id", "ip"], how="semi")
    by_traffic = nearest(at_ip, there, ["app_id", "ip"]).filter(within(window))
    listed = at_ip.join(registered.lazy(), on=["app_id", "ip"], how="semi")
    columns = ["_m", "app_id", "delivered_at"]
    return pl.concat([by_traffic.select(columns), listed.select(columns)]).unique()
