"""Synthetic webhook-delivery logs with exact ground truth.

`generate_sample` writes a data set in the layout `incident scan DIR` reads (DESIGN.md):
hive-partitioned `deliveries/`, `authorizations.parquet`, `apps.parquet`, plus
`truth.parquet`, the misdeliveries a correct scan of the default window must report, each
labelled with the mechanism that produced it (`cause`) and, for a collision, `intended_app_id`.

The population mimics the 2017-2018 incident: users authorize a few apps (with revocations,
re-grants and duplicate grant rows), apps belong to developers and some share a webhook IP
and path, events fan out to every authorized app of every party, failed calls are retried,
and a small number of deliveries are misrouted to apps that held no grant at that instant.
About a third of the misroutes follow the incident's bug: an event meant for app A also
reaches app B on the same IP and URL path, while B has its own traffic from the same backend
host a few minutes earlier (`shared_endpoint_collision`). Some arrive within minutes of a
revocation (`revocation_lag`); the rest have no mechanism (`unexplained`). Everything is
vectorised with numpy; the only Python loops run over batches and day partitions. The same
`(deliveries, seed)` gives byte-identical files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from incident.errors import ConfigError

__all__ = ["DELIVERY_WRITE_OPTIONS", "TABLE_WRITE_OPTIONS", "SampleSummary", "generate_sample"]

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


def _us(instant: datetime) -> int:
    """Microseconds since the epoch of a whole-second instant."""
    return int(instant.timestamp()) * 1_000_000


SECOND = 1_000_000
DAY = 86_400 * SECOND
LOG_START = _us(datetime(2017, 3, 1, tzinfo=UTC))
# Exclusive end of the logs, and the instant the authorizations snapshot was taken: a
# revocation after it has not happened yet, so it is written as null (still active).
LOG_END = _us(datetime(2018, 11, 1, tzinfo=UTC))
# The default scan window of DESIGN.md; truth.parquet only lists rows inside it.
DEFAULT_SINCE = datetime(2017, 5, 1, tzinfo=UTC)
DEFAULT_UNTIL = datetime(2018, 9, 11, tzinfo=UTC)
WINDOW_SINCE = _us(DEFAULT_SINCE)
WINDOW_UNTIL = _us(DEFAULT_UNTIL)
NO_END = np.iinfo(np.int64).max  # revoked_at of an active grant, so `t < end` needs no null test
NULL_ID = -1

# Event ids are snowflakes: milliseconds since this epoch, shifted left, plus the event index.
SNOWFLAKE_EPOCH_MS = 1_288_834_974_657
MAX_EVENT_BITS = 25  # (LOG_END - epoch) in ms fits 38 bits; 38 + 25 stays below 2**63
MAX_DELIVERIES = 40_000_000
MIN_DELIVERIES = 1

EVENT_TYPES = ("direct_message", "protected_tweet", "tweet", "favorite", "follow")
DM, PROTECTED, TWEET, FAVORITE, FOLLOW = range(5)
NORMAL_MIX = (0.16, 0.06, 0.34, 0.30, 0.14)
# Misroutes lean to sensitive types so that the sample exercises the DM and author paths.
INJECTED_MIX = (0.30, 0.15, 0.25, 0.20, 0.10)

COVERED, NO_GRANT, AFTER_REVOCATION, BEFORE_GRANT = range(4)
REASONS = ("covered", "no_grant", "after_revocation", "before_grant")

CAUSES = ("shared_endpoint_collision", "revocation_lag", "unexplained")
COLLISION, LAG, UNEXPLAINED = range(3)
NO_CAUSE = -1  # authorized rows
# Base misroutes by mechanism, as shares of all of them; no_grant to a random or neighbouring
# app makes up the rest.
COLLISION_SHARE, LAG_SHARE, LATE_SHARE, BEFORE_SHARE = 0.38, 0.15, 0.12, 0.12
MINUTE = 60 * SECOND
# A scan's default grace: a delivery at most this long after a revocation is lag. Lag is
# injected within MAX_LAG so that its retries (at most 30 s later) stay inside the grace;
# other deliveries after a revocation come more than MIN_LATE after the last one.
REVOCATION_GRACE = 5 * MINUTE
MAX_LAG = 270 * SECOND
MIN_LATE = 10 * MINUTE
# A collision's receiving app has its own delivery this long before the misroute, from the
# same backend host: inside the 6-minute period of the published mechanism, retries included.
TRIGGER_LEAD = (10 * SECOND, 5 * MINUTE)
TRIGGER_TRIES = 8  # random grants of the receiving app tried for the trigger's user

# Grant shapes per (user, app) key: most keys hold a single row.
SINGLE, REGRANT, OVERLAP, DUPLICATE, ZERO_LENGTH = range(5)
GRANT_SHAPE_MIX = (0.80, 0.10, 0.055, 0.04, 0.005)
KEYS_PER_USER = 1.7  # with the extra rows of the other shapes, about 2 grant rows per user

P_EXACT_GRANT_START = 0.002  # events delivered exactly at granted_at (a boundary case)
P_RETRY_NORMAL = 0.02
P_RETRY_INJECTED = 0.2
P_CLIENT_ERROR = 0.002  # 404/410 answers, which the platform does not retry
FAIL_STATUSES = np.array([500, 502, 503, 504], dtype=np.int32)
CLIENT_STATUSES = np.array([404, 410], dtype=np.int32)
N_BACKEND_HOSTS = 24

IP_BLOCKS = ("192.0.2", "198.51.100", "203.0.113")  # RFC 5737 documentation ranges
URL_PATHS = ("/webhook", "/webhooks/account", "/api/v1/events", "/callback", "/hooks/aaa")
APP_ADJECTIVES = (
    "Amber", "Brisk", "Cedar", "Cobalt", "Delta", "Ember", "Fable", "Granite",
    "Harbor", "Indigo", "Juniper", "Kestrel", "Lumen", "Maple", "Nimbus", "Orbit",
)  # fmt: skip
APP_NOUNS = (
    "Analytics", "Relay", "Scheduler", "Inbox", "Insights", "Support", "Alerts", "Archive",
    "Bridge", "Console", "Digest", "Feed", "Monitor", "Pulse", "Signal", "Studio",
)  # fmt: skip
DEV_NAMES = (
    "Acme", "Birch", "Calder", "Dorsey", "Everly", "Fenwick", "Galloway", "Hart",
    "Ives", "Jarrow", "Kline", "Lowell", "Marlow", "North", "Oakes", "Pryor",
)  # fmt: skip
DEV_SUFFIXES = ("Labs", "Software", "Media", "Systems", "Digital", "Works", "Social", "Data")

UTC_US = pa.timestamp("us", tz="UTC")
DELIVERY_SCHEMA = pa.schema(
    [
        ("delivery_id", pa.string()),
        ("event_id", pa.int64()),
        ("delivered_at", UTC_US),
        ("app_id", pa.int64()),
        ("for_user_id", pa.int64()),
        ("event_type", pa.string()),
        ("sender_id", pa.int64()),
        ("recipient_id", pa.int64()),
        ("webhook_url", pa.string()),
        ("resolved_ip", pa.string()),
        ("backend_host", pa.string()),
        ("http_status", pa.int32()),
    ]
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


# --------------------------------------------------------------------------- population


@dataclass(frozen=True)
class _Population:
    """Users, apps and developers, indexed 0..n-1; ids and strings are derived from these."""

    user_ids: I64
    app_ids: I64
    app_developer: I64  # developer index per app
    app_ip: I64  # resolved-IP index per app
    app_path: I64  # URL_PATHS index per app
    registered: Bool  # False: missing from apps.parquet ("developer unknown")
    grant_p: F64  # chance an app is picked for a grant; 0 for the unregistered apps
    pick_p: F64  # chance an app is picked as a misroute target (any app)
    ip_order: I64  # app indices sorted by IP, to find apps sharing an IP
    ip_pos: I64  # position of each app in ip_order
    ip_group_lo: I64  # first position of the app's IP group in ip_order
    ip_group_size: I64

    @property
    def n_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def n_apps(self) -> int:
        return int(self.app_ids.size)


def _population(rng: np.random.Generator, n_deliveries: int) -> _Population:
    n_users = max(100, n_deliveries // 20)
    n_apps = max(30, n_deliveries // 20_000)
    # Ids are sparse and irregular like real ones, yet unique by construction (stride + jitter).
    user_ids = (
        1_000_000_000 + np.arange(n_users, dtype=np.int64) * 1000 + rng.integers(0, 1000, n_users)
    )
    app_ids = 100_000 + np.arange(n_apps, dtype=np.int64) * 100 + rng.integers(0, 100, n_apps)

    # Developers own a geometric number of apps: most own one, a few own several.
    per_dev = rng.geometric(0.6, n_apps)
    app_developer = np.repeat(np.arange(n_apps, dtype=np.int64), per_dev)[:n_apps]
    app_developer = app_developer[rng.permutation(n_apps)]

    # A quarter of the apps sit on shared hosting IPs, mostly with the same URL path: the
    # pre-condition of the incident's bug, which the evidence columns should show.
    shared = rng.random(n_apps) < 0.25
    n_shared_ips = max(2, int(shared.sum()) // 3)
    app_ip = np.where(
        shared, rng.integers(0, n_shared_ips, n_apps), n_shared_ips + np.cumsum(~shared) - 1
    )
    app_path = np.where(
        shared & (rng.random(n_apps) < 0.7), 0, rng.integers(0, len(URL_PATHS), n_apps)
    )

    popularity = 1.0 / (1.0 + rng.permutation(n_apps)) ** 0.9
    registered = np.ones(n_apps, dtype=np.bool_)
    registered[rng.choice(n_apps, max(2, n_apps // 250), replace=False)] = False
    # Unregistered apps hold no grants, so every delivery they receive is a misdelivery.
    grant_w = np.where(registered, popularity, 0.0)
    # Collisions need two registered apps on one endpoint (IP and path); when a small
    # population has none, the two most popular share one.
    reg = np.flatnonzero(registered)
    if np.unique(app_ip[reg] * len(URL_PATHS) + app_path[reg]).size == reg.size:
        a, b = reg[np.argsort(-popularity[reg], kind="stable")[:2]]
        app_ip[b], app_path[b] = app_ip[a], app_path[a]

    ip_order = np.argsort(app_ip, kind="stable").astype(np.int64)
    ip_pos = np.empty(n_apps, dtype=np.int64)
    ip_pos[ip_order] = np.arange(n_apps)
    ip_sorted = app_ip[ip_order]
    lo = np.searchsorted(ip_sorted, app_ip, side="left").astype(np.int64)
    hi = np.searchsorted(ip_sorted, app_ip, side="right").astype(np.int64)
    return _Population(
        user_ids=user_ids.astype(np.int64),
        app_ids=app_ids.astype(np.int64),
        app_developer=app_developer,
        app_ip=app_ip.astype(np.int64),
        app_path=app_path.astype(np.int64),
        registered=registered,
        grant_p=grant_w / grant_w.sum(),
        pick_p=popularity / popularity.sum(),
        ip_order=ip_order,
        ip_pos=ip_pos,
        ip_group_lo=lo,
        ip_group_size=hi - lo,
    )


def _app_strings(pop: _Population) -> pl.DataFrame:
    """Names, developer ids and webhook evidence per app index (registered or not)."""
    width = max(4, len(str(int(pop.app_developer.max()) + 1)))
    i, dev = pl.col("i"), pl.col("dev")
    # Names cycle through the word lists; a number is appended once the combinations run out.
    suffix = (
        pl.when(i >= 256).then(pl.lit(" ") + (i // 256 + 1).cast(pl.String)).otherwise(pl.lit(""))
    )
    dev_suffix = (
        pl.when(dev >= 128)
        .then(pl.lit(" ") + (dev // 128 + 1).cast(pl.String))
        .otherwise(pl.lit(""))
    )
    frame = pl.DataFrame(
        {
            "i": np.arange(pop.n_apps, dtype=np.int64),
            "dev": pop.app_developer,
            "ip": pop.app_ip,
            "path": pop.app_path,
        }
    ).with_columns(
        app_name=pl.lit(pl.Series(APP_ADJECTIVES)).gather(pl.col("i") % 16)
        + " "
        + pl.lit(pl.Series(APP_NOUNS)).gather(pl.col("i") // 16 % 16)
        + suffix,
        developer_id=pl.lit("dev") + (pl.col("dev") + 1).cast(pl.String).str.zfill(width),
        developer_name=pl.lit(pl.Series(DEV_NAMES)).gather(pl.col("dev") % 16)
        + " "
        + pl.lit(pl.Series(DEV_SUFFIXES)).gather(pl.col("dev") // 16 % 8)
        + dev_suffix,
        # Past the 762 documentation addresses IPs repeat, which only adds shared hosting.
        resolved_ip=pl.lit(pl.Series(IP_BLOCKS)).gather(pl.col("ip") // 254 % 3)
        + "."
        + (pl.col("ip") % 254 + 1).cast(pl.String),
    )
    return frame.with_columns(
        webhook_url=pl.lit("https://")
        + pl.col("app_name").str.to_lowercase().str.replace_all(" ", "-")
        + ".example.com"
        + pl.lit(pl.Series(URL_PATHS)).gather(pl.col("path")),
    ).select("app_name", "developer_id", "developer_name", "webhook_url", "resolved_ip")


# --------------------------------------------------------------------------- grants


@dataclass(frozen=True)
class _Grants:
    """Grant rows sorted by (user, app, start, end), with per-key and per-user ranges."""

    user: I64
    app: I64
    start: I64
    end: I64  # NO_END while active
    key_code: I64  # sorted unique user * n_apps + app
    key_start: I64  # first row of each key
    key_count: I64
    user_start: I64  # first row of each user (by user index)
    user_count: I64
    anchor_lo: I64  # part of [start, end) inside the logs, to place covered deliveries
    anchor_span: I64


def _duration(rng: np.random.Generator, size: int, mean_days: float, min_seconds: int) -> I64:
    """Exponential durations in whole seconds, returned in microseconds."""
    seconds = np.maximum(rng.exponential(mean_days * 86_400, size), min_seconds)
    return seconds.astype(np.int64) * SECOND


def _grants(rng: np.random.Generator, pop: _Population) -> _Grants:
    n_apps = pop.n_apps
    user = np.repeat(
        np.arange(pop.n_users, dtype=np.int64), rng.poisson(KEYS_PER_USER, pop.n_users)
    )
    app = rng.choice(n_apps, size=user.size, p=pop.grant_p).astype(np.int64)
    code = np.sort(user * n_apps + app)
    code = code[np.concatenate([[True], code[1:] != code[:-1]])]  # distinct (user, app) keys
    k_user, k_app, n = code // n_apps, code % n_apps, code.size
    shape = rng.choice(len(GRANT_SHAPE_MIX), size=n, p=GRANT_SHAPE_MIX)

    # Grants are recorded to the second. A third predate the logs.
    early = rng.random(n) < 0.35
    g1 = np.where(
        early,
        rng.integers(LOG_START - 730 * DAY, LOG_START, n),
        rng.integers(LOG_START, LOG_END - DAY, n),
    )
    g1 = g1 // SECOND * SECOND
    revoked = (rng.random(n) < 0.3) | (shape == REGRANT)
    r1 = np.where(revoked, g1 + _duration(rng, n, 240, 3600), NO_END)
    r1 = np.where(shape == ZERO_LENGTH, g1, r1)  # valid per decisions.md, covers no instant
    r1 = np.where(r1 >= LOG_END, NO_END, r1)

    # Second rows: a re-grant after the revocation (sometimes at the very instant), a
    # second grant while the first is active, or an exact duplicate from ingestion.
    r1_or_end = np.minimum(r1, LOG_END)
    gap = np.where(rng.random(n) < 0.05, 0, _duration(rng, n, 45, 60))
    inside = ((r1_or_end - g1) * rng.random(n)).astype(np.int64) // SECOND * SECOND
    g2 = np.select([shape == REGRANT, shape == OVERLAP], [r1_or_end + gap, g1 + inside], default=g1)
    r2 = np.where(rng.random(n) < 0.3, g2 + _duration(rng, n, 240, 3600), NO_END)
    r2 = np.where(shape == DUPLICATE, r1, r2)
    r2 = np.where(r2 >= LOG_END, NO_END, r2)
    # A re-grant needs a revocation before the snapshot; later ones have not happened yet.
    second = (
        np.isin(shape, [REGRANT, OVERLAP, DUPLICATE])
        & (g2 < LOG_END)
        & ~((shape == REGRANT) & (r1 == NO_END))
    )

    # Lay the rows out by key (codes are sorted: user, then app), each key's rows by
    # (start, end), so a key's rows are adjacent and its first row starts earliest.
    swap = second & ((g2 < g1) | ((g2 == g1) & (r2 < r1)))
    key_count = 1 + second.astype(np.int64)
    key_start = np.cumsum(key_count) - key_count
    user_all, app_all = np.repeat(k_user, key_count), np.repeat(k_app, key_count)
    start = np.empty(user_all.size, dtype=np.int64)
    end = np.empty(user_all.size, dtype=np.int64)
    start[key_start], end[key_start] = np.where(swap, g2, g1), np.where(swap, r2, r1)
    later = key_start[second] + 1
    start[later] = np.where(swap, g1, g2)[second]
    end[later] = np.where(swap, r1, r2)[second]

    user_start = np.searchsorted(user_all, np.arange(pop.n_users), side="left")
    user_end = np.searchsorted(user_all, np.arange(pop.n_users), side="right")
    anchor_lo = np.maximum(start, LOG_START)
    anchor_span = np.maximum(np.minimum(end, LOG_END) - anchor_lo, 0)
    return _Grants(
        user=user_all,
        app=app_all,
        start=start,
        end=end,
        key_code=code,
        key_start=key_start,
        key_count=key_count,
        user_start=user_start.astype(np.int64),
        user_count=(user_end - user_start).astype(np.int64),
        anchor_lo=anchor_lo,
        anchor_span=anchor_span,
    )


def _expand(starts: I64, counts: I64) -> tuple[I64, I64]:
    """For each parent i, the positions starts[i] .. starts[i]+counts[i]-1, flattened.

    Returns (parent index, position) per output element: the vectorised nested loop.
    """
    parent = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return parent, np.arange(parent.size, dtype=np.int64) - first[parent] + starts[parent]


def _classify(grants: _Grants, n_apps: int, user: I64, app: I64, t: I64) -> tuple[I8, I64]:
    """Rule 3 of DESIGN.md against all grant rows of each (user, app): a status code, and the
    latest revocation at or before `t` (-1 if none), which tells revocation lag apart.

    Used to accept or reject generated candidates; truth.parquet is computed separately.
    """
    status = np.full(user.size, NO_GRANT, dtype=np.int8)
    last_end = np.full(user.size, -1, dtype=np.int64)
    if grants.key_code.size == 0 or user.size == 0:
        return status, last_end
    code = user * n_apps + app
    k = np.minimum(np.searchsorted(grants.key_code, code), grants.key_code.size - 1)
    idx = np.flatnonzero(grants.key_code[k] == code)
    counts = grants.key_count[k[idx]]
    parent, gi = _expand(grants.key_start[k[idx]], counts)
    tt = t[idx][parent]
    covers = (grants.start[gi] <= tt) & (tt < grants.end[gi])
    covered = np.bincount(parent, weights=covers, minlength=idx.size) > 0
    if idx.size:  # every key has a row, so each parent's rows start at its cumulative count
        ended_at = np.where(grants.end[gi] <= tt, grants.end[gi], -1)
        last_end[idx] = np.maximum.reduceat(ended_at, np.cumsum(counts) - counts)
    ended = last_end[idx] >= 0
    status[idx] = np.where(covered, COVERED, np.where(ended, AFTER_REVOCATION, BEFORE_GRANT))
    return status, last_end


# --------------------------------------------------------------------------- events and rows


@dataclass(frozen=True)
class _Events:
    """Account events: when, what, who; an event fans out into delivery rows."""

    t: I64
    etype: I8
    sender: I64  # user index or NULL_ID
    recipient: I64
    host: I64

    @property
    def size(self) -> int:
        return int(self.t.size)


@dataclass(frozen=True)
class _Rows:
    """Delivery attempts, by index into events, users and apps."""

    ev: I64
    user: I64
    app: I64
    t: I64
    grant: I64  # the grant row that covered the event, or -1 for misroutes
    injected: Bool
    intended: I8  # reason a base misroute was built for; -1 for derived rows
    cause: I8  # CAUSES index of a misroute (retries keep it); NO_CAUSE if authorized
    intended_app: I32  # the app a collision's event was meant for; -1 otherwise
    trigger: Bool  # a collision's receiving-app activity: never dropped as surplus
    attempt: I8
    http: npt.NDArray[np.int32]

    @property
    def size(self) -> int:
        return int(self.ev.size)

    def take(self, idx: I64 | Bool) -> _Rows:
        return _Rows(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def _concat_rows(parts: Sequence[_Rows]) -> _Rows:
    return _Rows(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Rows)}
    )


def _concat_events(parts: Sequence[_Events]) -> _Events:
    return _Events(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Events)}
    )


def _new_rows(
    ev: I64,
    user: I64,
    app: I64,
    t: I64,
    grant: I64,
    injected: bool,
    intended: I8 | None = None,
    *,
    cause: I8 | None = None,
    intended_app: I32 | None = None,
    trigger: bool = False,
) -> _Rows:
    """Rows of one kind; a misroute's cause defaults to unexplained."""
    n = ev.size
    return _Rows(
        ev=ev,
        user=user,
        app=app,
        t=t,
        grant=grant,
        injected=np.full(n, injected, dtype=np.bool_),
        intended=np.full(n, -1, dtype=np.int8) if intended is None else intended,
        cause=np.full(n, UNEXPLAINED if injected else NO_CAUSE, dtype=np.int8)
        if cause is None
        else cause,
        intended_app=np.full(n, -1, dtype=np.int32) if intended_app is None else intended_app,
        trigger=np.full(n, trigger, dtype=np.bool_),
        attempt=np.zeros(n, dtype=np.int8),
        http=np.full(n, 200, dtype=np.int32),
    )


def _draw_types(rng: np.random.Generator, n: int, mix: Sequence[float]) -> I8:
    return np.searchsorted(np.cumsum(mix), rng.random(n) * sum(mix), side="right").astype(np.int8)


def _account_events(
    rng: np.random.Generator, n_users: int, user: I64, t: I64, etype: I8
) -> tuple[_Events, I64, I64, I64]:
    """Events of `user` at `t`; returns (events, subscriber event index, subscriber, other party).

    A direct message has two subscribers: it is delivered for the sender to the sender's apps
    and for the recipient to the recipient's apps. Posts carry their author as sender_id;
    likes and follows carry the acting account.
    """
    n = user.size
    other = (user + rng.integers(1, n_users, n)) % n_users
    dm = etype == DM
    user_sends = rng.random(n) < 0.5
    actor_is_other = (etype == FAVORITE) | (etype == FOLLOW)
    sender = np.where(dm, np.where(user_sends, user, other), np.where(actor_is_other, other, user))
    recipient = np.where(dm, np.where(user_sends, other, user), NULL_ID)
    events = _Events(
        t=t,
        etype=etype,
        sender=sender,
        recipient=recipient,
        host=rng.integers(0, N_BACKEND_HOSTS, n),
    )
    local = np.arange(n, dtype=np.int64)
    return events, np.concatenate([local, local[dm]]), np.concatenate([user, other[dm]]), other


def _fan_out(grants: _Grants, sub_ev: I64, sub_user: I64, t: I64) -> tuple[I64, I64, I64]:
    """Every app whose grant covers the event time: (event index, subscriber, grant row)."""
    parent, gi = _expand(grants.user_start[sub_user], grants.user_count[sub_user])
    te = t[sub_ev[parent]]
    ok = (grants.start[gi] <= te) & (te < grants.end[gi])
    parent, gi = parent[ok], gi[ok]
    # Overlapping or duplicate rows of one key are adjacent: deliver once per app.
    dup = np.zeros(parent.size, dtype=np.bool_)
    dup[1:] = (parent[1:] == parent[:-1]) & (grants.app[gi[1:]] == grants.app[gi[:-1]])
    parent, gi = parent[~dup], gi[~dup]
    return sub_ev[parent], sub_user[parent], gi


def _latency(rng: np.random.Generator, n: int) -> I64:
    return rng.integers(20_000, 1_500_000, n)  # 20 ms .. 1.5 s after the event


def _attempts(rng: np.random.Generator, rows: _Rows) -> tuple[_Rows, _Rows]:
    """Fail some attempts with a 5xx and retry them a few seconds later (new row, same event).

    Returns the first attempts, with their status, and the retries.
    """
    n = rows.size
    fail = rng.random(n) < np.where(rows.injected, P_RETRY_INJECTED, P_RETRY_NORMAL)
    http = np.full(n, 200, dtype=np.int32)
    http[fail] = FAIL_STATUSES[rng.integers(0, FAIL_STATUSES.size, int(fail.sum()))]
    client = ~fail & (rng.random(n) < P_CLIENT_ERROR)
    http[client] = CLIENT_STATUSES[rng.integers(0, CLIENT_STATUSES.size, int(client.sum()))]
    first = replace(rows, http=http)
    retry = rows.take(fail)
    m = retry.size
    retry = replace(
        retry,
        t=retry.t + rng.integers(2 * SECOND, 30 * SECOND, m),
        intended=np.full(m, -1, dtype=np.int8),
        attempt=np.ones(m, dtype=np.int8),
        http=np.where(rng.random(m) < 0.9, 200, 503).astype(np.int32),
    )
    return first, retry


def _consistent(grants: _Grants, n_apps: int, rows: _Rows) -> Bool:
    """Which rows have the status and cause they were built to have; the others are dropped.

    Latency or a retry delay can push an authorized delivery past its grant's end, a
    misroute into a grant, or a collision's retry past the intended app's grant. Dropping
    those keeps every authorized row strictly covered, every injected row a misdelivery (of
    its intended reason, for base misroutes), and each label true: a collision's intended
    app covered, and lag exactly for the rows labelled so.
    """
    # An authorized row's grant covered its event; the row is at or after the event, so that
    # grant still covers it while it is before the grant's end. (Rows covered only by another
    # overlapping grant are dropped too, which is harmless.)
    keep = (rows.t < LOG_END) & (rows.t < grants.end[np.maximum(rows.grant, 0)])
    inj = np.flatnonzero(rows.injected)
    user, t, cause = rows.user[inj], rows.t[inj], rows.cause[inj]
    status, last_end = _classify(grants, n_apps, user, rows.app[inj], t)
    intended = rows.intended[inj]
    lag = (status == AFTER_REVOCATION) & (t - last_end <= REVOCATION_GRACE)
    meant = np.ones(inj.size, dtype=np.bool_)  # a collision's intended app holds a grant
    col = np.flatnonzero(cause == COLLISION)
    intended_app = rows.intended_app[inj][col].astype(np.int64)
    meant[col] = _classify(grants, n_apps, user[col], intended_app, t[col])[0] == COVERED
    keep[inj] = (
        (t < LOG_END)
        & (status != COVERED)
        & ((intended < 0) | (status == intended))
        & (lag == (cause == LAG))
        & meant
    )
    return keep


@dataclass(frozen=True)
class _Batch:
    """Generated events and their delivery rows, with which rows to keep."""

    events: _Events
    rows: list[_Rows]
    keep: list[Bool]


def _batch(
    rng: np.random.Generator, grants: _Grants, n_apps: int, events: _Events, rows: _Rows
) -> _Batch:
    first, retry = _attempts(rng, rows)
    return _Batch(
        events=events,
        rows=[first, retry],
        keep=[_consistent(grants, n_apps, first), _consistent(grants, n_apps, retry)],
    )


def _normal_batch(
    rng: np.random.Generator, pop: _Population, grants: _Grants, n_events: int, ev_offset: int
) -> _Batch:
    """Authorized traffic: events placed uniformly in time inside grant coverage."""
    weights = grants.anchor_span.astype(np.float64)
    counts = rng.multinomial(n_events, weights / weights.sum())
    gi = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    t = grants.anchor_lo[gi] + rng.integers(0, grants.anchor_span[gi])
    # Some events land exactly on granted_at, with no latency: covered, by the half-open rule.
    exact = (rng.random(gi.size) < P_EXACT_GRANT_START) & (grants.start[gi] >= LOG_START)
    t = np.where(exact, grants.start[gi], t)
    etype = _draw_types(rng, gi.size, NORMAL_MIX)
    events, sub_ev, sub_user, _ = _account_events(rng, pop.n_users, grants.user[gi], t, etype)
    ev, user, row_grant = _fan_out(grants, sub_ev, sub_user, t)
    delay = np.where(exact[ev], 0, _latency(rng, ev.size))
    t_row = t[ev] + delay
    rows = _new_rows(ev + ev_offset, user, grants.app[row_grant], t_row, row_grant, False)
    return _batch(rng, grants, pop.n_apps, events, rows)


# --------------------------------------------------------------------------- misroutes


@dataclass(frozen=True)
class _Bases:
    """Base misroutes, one event each: for whom, to which app, when, and how each was built."""

    user: I64
    app: I64  # the receiving app
    t_event: I64
    t: I64  # when the misroute is delivered: at its event, or a latency after it
    reason: I8  # the rule-3 status it was built to have
    cause: I8
    intended_app: I32  # the app a collision's event was meant for; -1 otherwise

    @property
    def size(self) -> int:
        return int(self.user.size)


def _bases(user: I64, app: I64, t: I64, reason: int, cause: int) -> _Bases:
    """Bases of one reason and cause, delivered at the instant of their event."""
    n = user.size
    return _Bases(
        user=user,
        app=app,
        t_event=t,
        t=t,
        reason=np.full(n, reason, dtype=np.int8),
        cause=np.full(n, cause, dtype=np.int8),
        intended_app=np.full(n, -1, dtype=np.int32),
    )


def _concat_bases(parts: Sequence[_Bases]) -> _Bases:
    return _Bases(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Bases)}
    )


@dataclass(frozen=True)
class _Triggers:
    """Per collision, the receiving app's own delivery shortly before the misroute."""

    grant: I64  # the grant row it is delivered under: its user and (receiving) app
    t_event: I64
    t: I64


def _outside_window_times(rng: np.random.Generator, n: int) -> I64:
    """Uniform over the logs minus the default window."""
    before = WINDOW_SINCE - LOG_START
    u = rng.integers(0, before + (LOG_END - WINDOW_UNTIL), n)
    return np.where(u < before, LOG_START + u, WINDOW_UNTIL + (u - before))


def _shared_ip_neighbour(rng: np.random.Generator, pop: _Population, app: I64) -> I64:
    """Another app on the same IP as `app`, or -1 where it has none."""
    lo, size = pop.ip_group_lo[app], pop.ip_group_size[app]
    step = rng.integers(1, np.maximum(size, 2))
    pos = lo + (pop.ip_pos[app] - lo + step) % size
    return np.where(size > 1, pop.ip_order[pos], -1)


def _first(mask: Bool, k: int) -> I64:
    return np.flatnonzero(mask)[:k]


def _collisions(
    rng: np.random.Generator, pop: _Population, grants: _Grants, k: int
) -> tuple[_Bases, _Triggers]:
    """Up to `k` base misroutes by the incident's bug, each with its trigger.

    User u's event, meant for app A (u's grant of A covers it), also reaches app B, which
    has A's IP and URL path and no grant of u covering that instant. The bug needs B to be
    active on the same backend host: the trigger is a delivery to B for another user whose
    grant of B covers it, TRIGGER_LEAD before the misroute. Only apps with grants (so with
    users, and registered) take part; where no two of them share an endpoint, none happen.
    """
    n_apps = pop.n_apps
    # Apps with grants grouped by endpoint, so that B is drawn among A's partners.
    endpoint = pop.app_ip * len(URL_PATHS) + pop.app_path
    app_count = np.bincount(grants.app, minlength=n_apps)
    members = np.flatnonzero(app_count > 0)
    order = members[np.argsort(endpoint[members], kind="stable")]
    lo = np.searchsorted(endpoint[order], endpoint, side="left")
    size = np.searchsorted(endpoint[order], endpoint, side="right") - lo
    pos = np.zeros(n_apps, dtype=np.int64)
    pos[order] = np.arange(order.size)
    eligible = np.flatnonzero((size[grants.app] > 1) & (grants.anchor_span > 0))
    if k == 0 or eligible.size == 0:
        none = np.zeros(0, dtype=np.int64)
        return _bases(none, none, none, NO_GRANT, COLLISION), _Triggers(none, none, none)

    # The event happens while u's grant of A is active, mostly inside the window (a grant
    # entirely outside it gives an uncovered instant, which the checks below reject).
    m = 8 * k + 64
    ga = eligible[rng.integers(0, eligible.size, m)]
    user, a = grants.user[ga], grants.app[ga]
    lo_t, hi_t = grants.anchor_lo[ga], grants.anchor_lo[ga] + grants.anchor_span[ga]
    in_window = rng.random(m) < 0.9
    lo_t = np.where(in_window, np.maximum(lo_t, WINDOW_SINCE), lo_t)
    hi_t = np.where(in_window, np.minimum(hi_t, WINDOW_UNTIL), hi_t)
    t_event = lo_t + rng.integers(0, np.maximum(hi_t - lo_t, 1))
    t = t_event + _latency(rng, m)
    b = order[lo[a] + (pos[a] - lo[a] + rng.integers(1, size[a])) % size[a]]
    status, last_end = _classify(grants, n_apps, user, b, t)
    # Not also revocation lag of (u, B): each misroute has one mechanism.
    lag = (status == AFTER_REVOCATION) & (t - last_end <= REVOCATION_GRACE)
    meant = _classify(grants, n_apps, user, a, t)[0] == COVERED

    # The trigger's user: the first of a few random grants of B that covers the trigger's
    # event and delivery and is not u's.
    by_app = np.argsort(grants.app, kind="stable")
    app_lo = np.cumsum(app_count) - app_count
    offset = rng.integers(0, app_count[b][:, None], (m, TRIGGER_TRIES))
    tries = by_app[app_lo[b][:, None] + offset]
    trigger_t = t - rng.integers(TRIGGER_LEAD[0], TRIGGER_LEAD[1] + 1, m)
    trigger_event = trigger_t - _latency(rng, m)
    fits = (
        (grants.start[tries] <= trigger_event[:, None])
        & (trigger_t[:, None] < grants.end[tries])
        & (grants.user[tries] != user[:, None])
    )
    trigger_grant = tries[np.arange(m), fits.argmax(axis=1)]

    ok = meant & (status != COVERED) & ~lag & fits.any(axis=1)
    pick = _first(ok & (t < LOG_END) & (trigger_event >= LOG_START), k)
    bases = _Bases(
        user=user[pick],
        app=b[pick],
        t_event=t_event[pick],
        t=t[pick],
        reason=status[pick],
        cause=np.full(pick.size, COLLISION, dtype=np.int8),
        intended_app=a[pick].astype(np.int32),
    )
    triggers = _Triggers(trigger_grant[pick], trigger_event[pick], trigger_t[pick])
    return bases, triggers


def _after_revocation(
    rng: np.random.Generator, pop: _Population, grants: _Grants, k: int, late: bool
) -> _Bases:
    """Up to `k` deliveries after a revocation and before any re-grant of the key: within
    MAX_LAG of it, some at the very instant (revocation lag), or, `late`, more than MIN_LATE
    after the key's last revocation (unexplained)."""
    revoked = np.flatnonzero((grants.end >= LOG_START) & (grants.end < LOG_END))
    m = 4 * k + 32
    row = revoked[rng.integers(0, revoked.size, m)] if revoked.size else np.zeros(0, dtype=np.int64)
    m = row.size
    if late:
        delta = _duration(rng, m, 20, MIN_LATE // SECOND + 1) + rng.integers(0, SECOND, m)
    else:
        delta = np.where(rng.random(m) < 0.2, 0, rng.integers(1, MAX_LAG + 1, m))
    user, app, t = grants.user[row], grants.app[row], grants.end[row] + delta
    status, last_end = _classify(grants, pop.n_apps, user, app, t)
    # Another row of the key may have been revoked later than this one, closer to t.
    timely = (t - last_end > MIN_LATE) if late else (t - last_end <= MAX_LAG)
    pick = _first((status == AFTER_REVOCATION) & (t < LOG_END) & timely, k)
    return _bases(user[pick], app[pick], t[pick], AFTER_REVOCATION, UNEXPLAINED if late else LAG)


def _misroute_candidates(
    rng: np.random.Generator, pop: _Population, grants: _Grants, k: int, n_collisions: int
) -> _Bases:
    """The base misroutes besides the `n_collisions` collisions, about `k` in all with them
    (at least one of each kind), each checked against rule 3."""
    n_apps = pop.n_apps
    k_lag = max(1, round(k * LAG_SHARE))
    k_late = max(1, round(k * LATE_SHARE))
    k_before = max(1, round(k * BEFORE_SHARE))
    k_no_grant = max(1, k - n_collisions - k_lag - k_late - k_before)

    # no_grant: the event of a user who authorized app A goes to an app on A's IP with
    # another path (a neighbour, without the bug's signature), else to a random app; the
    # first few go to unregistered apps.
    m = 4 * k_no_grant + 32
    key = rng.integers(0, grants.key_code.size, m)
    user, via = grants.key_code[key] // n_apps, grants.key_code[key] % n_apps
    app = _shared_ip_neighbour(rng, pop, via)
    random_app = rng.choice(n_apps, m, p=pop.pick_p).astype(np.int64)
    same_path = pop.app_path[app] == pop.app_path[via]
    app = np.where((app < 0) | same_path | (rng.random(m) < 0.3), random_app, app)
    unregistered = np.flatnonzero(~pop.registered)
    n_forced = max(unregistered.size, math.ceil(0.12 * k_no_grant))
    app[:n_forced] = unregistered[np.arange(n_forced) % unregistered.size]
    t = np.where(
        rng.random(m) < 0.9,
        rng.integers(WINDOW_SINCE, WINDOW_UNTIL, m),
        _outside_window_times(rng, m),
    )
    # Exactly on the window bounds: `since` is inside, `until` is outside.
    t[0], t[1] = WINDOW_SINCE, WINDOW_UNTIL
    pick = _first(_classify(grants, n_apps, user, app, t)[0] == NO_GRANT, k_no_grant)
    ng = _bases(user[pick], app[pick], t[pick], NO_GRANT, UNEXPLAINED)

    lag = _after_revocation(rng, pop, grants, k_lag, late=False)
    late = _after_revocation(rng, pop, grants, k_late, late=True)

    # before_grant: shortly before the first grant of a key that starts inside the logs.
    later = np.flatnonzero(grants.start[grants.key_start] > LOG_START + DAY)
    m = 4 * k_before + 32
    key = later[rng.integers(0, later.size, m)] if later.size else np.zeros(0, dtype=np.int64)
    m = key.size
    row = grants.key_start[key]
    t = grants.start[row] - _duration(rng, m, 20, 1) + rng.integers(0, SECOND, m)
    status = _classify(grants, n_apps, grants.user[row], grants.app[row], t)[0]
    pick = _first((status == BEFORE_GRANT) & (t >= LOG_START), k_before)
    bg = _bases(grants.user[row][pick], grants.app[row][pick], t[pick], BEFORE_GRANT, UNEXPLAINED)
    return _concat_bases([ng, lag, late, bg])


def _misroute_batch(rng: np.random.Generator, pop: _Population, grants: _Grants, k: int) -> _Batch:
    """Events with injected misdeliveries, plus their authorized deliveries.

    Each base misroute is one event; it is also delivered normally to the apps its parties
    did authorize (a collision's intended app among them). A collision comes with its
    trigger, another event delivered to the receiving app from the same backend host. Other
    bases are sometimes misrouted for the other party of a DM or to a second wrong app as
    well (unexplained). Any misroute may be retried, keeping its cause.
    """
    collisions, triggers = _collisions(rng, pop, grants, round(k * COLLISION_SHARE))
    bases = _concat_bases([collisions, _misroute_candidates(rng, pop, grants, k, collisions.size)])
    n, n_col = bases.size, collisions.size
    etype = _draw_types(rng, n, INJECTED_MIX)
    events, sub_ev, sub_user, other = _account_events(
        rng, pop.n_users, bases.user, bases.t_event, etype
    )
    trigger_user = grants.user[triggers.grant]
    trigger_events, trigger_sub_ev, trigger_sub_user, _ = _account_events(
        rng, pop.n_users, trigger_user, triggers.t_event, _draw_types(rng, n_col, NORMAL_MIX)
    )
    # Collisions come first among the bases: each trigger runs on its collision's host.
    events = _concat_events([events, replace(trigger_events, host=events.host[:n_col])])
    sub_ev = np.concatenate([sub_ev, n + trigger_sub_ev])
    sub_user = np.concatenate([sub_user, trigger_sub_user])
    ev, fan_user, row_grant = _fan_out(grants, sub_ev, sub_user, events.t)
    normal = _new_rows(
        ev, fan_user, grants.app[row_grant], events.t[ev] + _latency(rng, ev.size), row_grant, False
    )
    # The trigger's own delivery to the receiving app, under the grant that was checked.
    trigger = _new_rows(
        n + np.arange(n_col, dtype=np.int64),
        trigger_user,
        grants.app[triggers.grant],
        triggers.t,
        triggers.grant,
        False,
        trigger=True,
    )

    base = _new_rows(
        np.arange(n, dtype=np.int64),
        bases.user,
        bases.app,
        bases.t,
        np.full(n, -1),
        True,
        bases.reason,
        cause=bases.cause,
        intended_app=bases.intended_app,
    )
    derive = bases.cause != COLLISION  # the bug misroutes one delivery, not its neighbours
    dm_other = np.flatnonzero((etype == DM) & derive & (rng.random(n) < 0.3))
    other_party = _new_rows(
        dm_other,
        other[dm_other],
        bases.app[dm_other],
        bases.t[dm_other] + _latency(rng, dm_other.size),
        np.full(dm_other.size, -1),
        True,
    )
    fanned = np.flatnonzero(derive & (rng.random(n) < 0.15))
    second_app = rng.choice(pop.n_apps, fanned.size, p=pop.pick_p).astype(np.int64)
    second = _new_rows(
        fanned,
        bases.user[fanned],
        second_app,
        bases.t[fanned] + _latency(rng, fanned.size),
        np.full(fanned.size, -1),
        True,
    )
    rows = _concat_rows([trigger, normal, base, other_party, second])
    # One row per (event, user, app), the first: a trigger replaces its fan-out copy, and
    # the same delivery is never both authorized and misrouted.
    code = (rows.ev * pop.n_users + rows.user) * pop.n_apps + rows.app
    _, first_idx = np.unique(code, return_index=True)
    return _batch(rng, grants, pop.n_apps, events, rows.take(np.sort(first_idx)))


# --------------------------------------------------------------------------- assembly


@dataclass(frozen=True)
class _Dataset:
    """Everything generate_sample writes, before string formatting.

    `deliveries` holds one row per delivery in delivery order (delivery_id = row + 1): the
    numeric output columns, `event_type` as an index into EVENT_TYPES, NULL_ID for absent
    sender and recipient, `app` and `host` indices for the evidence strings, for checks
    `attempt`, `injected` and `intended` (the reason a base misroute was built for), and the
    labels of truth.parquet: `cause` (a CAUSES index, NO_CAUSE if authorized) and
    `intended_app` (an app index, -1 unless a collision).
    """

    pop: _Population
    grants: _Grants
    deliveries: pl.DataFrame
    users_seen: int  # distinct accounts in deliveries or grants


def _build(n_deliveries: int, seed: int) -> _Dataset:
    if not MIN_DELIVERIES <= n_deliveries <= MAX_DELIVERIES:
        raise ConfigError(
            f"deliveries: expected {MIN_DELIVERIES:,} to {MAX_DELIVERIES:,}, got {n_deliveries:,}"
        )
    rng = np.random.default_rng(seed)
    pop = _population(rng, n_deliveries)
    grants = _grants(rng, pop)
    k_misroutes = max(round(0.004 * n_deliveries), min(40, n_deliveries // 10))
    batches = [_misroute_batch(rng, pop, grants, k_misroutes)]
    n_misroute_rows = sum(part.size for part in batches[0].rows)
    n_events = batches[0].events.size
    n_kept = sum(int(keep.sum()) for keep in batches[0].keep)

    # Top up with authorized traffic until there are enough rows. An event makes about two
    # rows; the first batch assumes more so it undershoots, the next use the measured ratio.
    per_event = 2.5
    while n_kept < n_deliveries:
        want = math.ceil((n_deliveries - n_kept) / per_event * 1.02) + 16
        batch = _normal_batch(rng, pop, grants, want, n_events)
        kept = sum(int(keep.sum()) for keep in batch.keep)
        per_event = max(kept / want, 0.05)
        batches.append(batch)
        n_events += batch.events.size
        n_kept += kept
    events = _concat_events([batch.events for batch in batches])
    rows = _concat_rows([part for batch in batches for part in batch.rows])
    keep = np.concatenate([mask for batch in batches for mask in batch.keep])

    # Drop the surplus at random among the top-up batches' rows, so the count is exact. Only
    # a tiny sample needs more: then the misroute batch's (first) authorized rows go first,
    # then its misroutes, and a collision's trigger last, since without it the label is false.
    kept_idx = np.flatnonzero(keep)
    surplus = kept_idx.size - n_deliveries
    if surplus > 0:
        priority = rng.random(kept_idx.size)
        head = kept_idx[: np.searchsorted(kept_idx, n_misroute_rows)]
        priority[: head.size] += 1 + rows.injected[head] + 2 * rows.trigger[head]
        keep[kept_idx[np.argpartition(priority, surplus)[:surplus]]] = False

    # Snowflake-style event ids: event time in ms, then the (unique) event index.
    bits = max(22, int(events.size).bit_length())
    if bits > MAX_EVENT_BITS:
        raise ConfigError(f"deliveries: {n_deliveries:,} needs too many events for unique ids")
    event_ids = ((events.t // 1000 - SNOWFLAKE_EPOCH_MS) << bits) + np.arange(
        events.size, dtype=np.int64
    )

    # Event-level columns are gathered in generation order, where rows of one event are
    # adjacent (cache-friendly); the time sort then moves all columns at once, in parallel.
    ev = rows.ev
    sender, recipient = events.sender[ev], events.recipient[ev]
    deliveries = (
        pl.DataFrame(
            {
                "keep": keep,
                "event_id": event_ids[ev],
                "delivered_at": rows.t,
                "app_id": pop.app_ids[rows.app],
                "for_user_id": pop.user_ids[rows.user],
                "event_type": events.etype[ev],
                "sender_id": np.where(sender == NULL_ID, NULL_ID, pop.user_ids[sender]),
                "recipient_id": np.where(recipient == NULL_ID, NULL_ID, pop.user_ids[recipient]),
                "app": rows.app,
                "host": events.host[ev],
                "http_status": rows.http,
                "attempt": rows.attempt,
                "injected": rows.injected,
                "intended": rows.intended,
                "cause": rows.cause,
                "intended_app": rows.intended_app,
            }
        )
        .filter("keep")
        .drop("keep")
        # Stable, so equal instants keep generation order and reruns are byte-identical.
        .sort("delivered_at", maintain_order=True)
    )

    seen = np.zeros(pop.n_users, dtype=np.bool_)
    seen[grants.user] = True
    for party in (rows.user, sender, recipient):
        seen[party[keep & (party != NULL_ID)]] = True
    return _Dataset(pop=pop, grants=grants, deliveries=deliveries, users_seen=int(seen.sum()))


# --------------------------------------------------------------------------- truth


def _truth(deliveries: pl.DataFrame, authorizations: pl.DataFrame) -> pl.DataFrame:
    """Rule 3 of DESIGN.md over the frames as written, independent of how they were built.

    Every in-window delivery is joined to all grant rows of its (user, app); it is a
    misdelivery when none covers it; the reason follows the rule's precedence.
    """
    t = pl.col("delivered_at")
    in_window = deliveries.lazy().filter((t >= DEFAULT_SINCE) & (t < DEFAULT_UNTIL))
    joined = in_window.select("row", "for_user_id", "app_id", "delivered_at").join(
        authorizations.lazy(), on=["for_user_id", "app_id"], how="left"
    )
    g, r = pl.col("granted_at"), pl.col("revoked_at")
    flags = joined.group_by("row").agg(
        covered=((g <= t) & (r.is_null() | (t < r))).fill_null(False).any(),
        ended=(r <= t).fill_null(False).any(),
        had_grant=g.is_not_null().any(),
    )
    reason = (
        pl.when(~pl.col("had_grant"))
        .then(pl.lit("no_grant"))
        .when(pl.col("ended"))
        .then(pl.lit("after_revocation"))
        .otherwise(pl.lit("before_grant"))
    )
    misdelivered = flags.filter(~pl.col("covered")).select("row", reason=reason)
    return in_window.join(misdelivered, on="row", how="inner").sort("row").collect()


# --------------------------------------------------------------------------- writing

TABLE_WRITE_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "store_schema": False,  # the Parquet logical types already carry UTC; saves ~1 kB a file
}
# A small sample has ~600 day files of a few dozen rows, where footers and statistics
# dominate the size; these settings keep it compact and cost nothing on big partitions.
DELIVERY_WRITE_OPTIONS: dict[str, object] = {
    **TABLE_WRITE_OPTIONS,
    "row_group_size": 1 << 20,
    "use_dictionary": ["event_type", "webhook_url", "resolved_ip", "backend_host"],
    "write_statistics": ["delivered_at"],
    "column_encoding": {
        "delivery_id": "DELTA_BYTE_ARRAY",
        "delivered_at": "DELTA_BINARY_PACKED",
        "app_id": "DELTA_BINARY_PACKED",
    },
}


def _delivery_ids(rows: I64, width: int) -> pa.Array:
    """'d' + zero-padded 1-based row number."""
    digits = pc.utf8_lpad(pc.cast(pa.array(rows + 1), pa.string()), width, "0")
    return pc.binary_join_element_wise("d", digits, "")


def _nullable(values: I64) -> pa.Array:
    return pa.array(values, mask=values == NULL_ID)


def _write_deliveries(deliveries: pl.DataFrame, apps: pl.DataFrame, directory: Path) -> None:
    """One file per UTC day of delivered_at, rows in delivery order, no `day` column."""
    c = {name: deliveries[name].to_numpy() for name in deliveries.columns}
    width = max(9, len(str(deliveries.height)))
    url = pa.array(apps["webhook_url"].to_list(), pa.string())
    ip = pa.array(apps["resolved_ip"].to_list(), pa.string())
    type_names = pa.array(EVENT_TYPES, pa.string())
    hosts = pa.array(
        [f"aaa-web-{i + 1:03d}.dc{i % 2 + 1}.example.net" for i in range(N_BACKEND_HOSTS)],
        pa.string(),
    )
    day = c["delivered_at"] // DAY
    first_day, last_day = int(day[0]), int(day[-1])
    bounds = np.searchsorted(day, np.arange(first_day, last_day + 2))

    def write_day(d: int) -> None:
        a, b = int(bounds[d - first_day]), int(bounds[d - first_day + 1])
        if a == b:
            return
        s = slice(a, b)
        app = pa.array(c["app"][s])
        table = pa.Table.from_arrays(
            [
                _delivery_ids(np.arange(a, b, dtype=np.int64), width),
                pa.array(c["event_id"][s]),
                pa.array(c["delivered_at"][s]).cast(UTC_US),
                pa.array(c["app_id"][s]),
                pa.array(c["for_user_id"][s]),
                type_names.take(pa.array(c["event_type"][s])),
                _nullable(c["sender_id"][s]),
                _nullable(c["recipient_id"][s]),
                url.take(app),
                ip.take(app),
                hosts.take(pa.array(c["host"][s])),
                pa.array(c["http_status"][s]),
            ],
            schema=DELIVERY_SCHEMA,
        )
        name = datetime.fromtimestamp(d * 86_400, tz=UTC).strftime("%Y-%m-%d")
        part = directory / f"day={name}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, part / "part-0.parquet", **DELIVERY_WRITE_OPTIONS)

    # pyarrow releases the GIL while encoding; each day is its own file, so order is moot.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(write_day, range(first_day, last_day + 1)))


def _write_frame(frame: pl.DataFrame, schema: pa.Schema, path: Path) -> None:
    pq.write_table(frame.to_arrow().cast(schema), path, **TABLE_WRITE_OPTIONS)


UTC_POLARS = pl.Datetime("us", "UTC")
AUTHORIZATION_SCHEMA = pa.schema(
    [
        ("for_user_id", pa.int64()),
        ("app_id", pa.int64()),
        ("granted_at", UTC_US),
        ("revoked_at", UTC_US),
    ]
)
APP_SCHEMA = pa.schema(
    [("app_id", pa.int64())]
    + [
        (name, pa.string())
        for name in ("developer_id", "app_name", "developer_name", "webhook_url", "resolved_ip")
    ]
)
TRUTH_SCHEMA = pa.schema(
    [
        ("delivery_id", pa.string()),
        ("event_id", pa.int64()),
        ("for_user_id", pa.int64()),
        ("app_id", pa.int64()),
        ("delivered_at", UTC_US),
        ("event_type", pa.string()),
        ("reason", pa.string()),
        ("cause", pa.string()),
        ("intended_app_id", pa.int64()),
    ]
)


def generate_sample(out: Path, deliveries: int = 20_000, seed: int = 0) -> SampleSummary:
    """Write a synthetic incident data set with `deliveries` delivery rows into `out`.

    `out` is created if missing and must be empty otherwise, so stale partitions can never
    mix into a new sample. The same arguments always produce byte-identical files.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: expected a directory for the sample, found a file")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: output directory is not empty; expected a new or empty one")
    ds = _build(deliveries, seed)
    pop, grants = ds.pop, ds.grants
    out.mkdir(parents=True, exist_ok=True)

    app_strings = _app_strings(pop)
    _write_deliveries(ds.deliveries, app_strings, out / "deliveries")

    authorizations = pl.DataFrame(
        {
            "for_user_id": pop.user_ids[grants.user],
            "app_id": pop.app_ids[grants.app],
            "granted_at": pl.Series(grants.start).cast(UTC_POLARS),
            "end": grants.end,
        }
    ).select(
        "for_user_id",
        "app_id",
        "granted_at",
        revoked_at=pl.when(pl.col("end") != NO_END).then(pl.col("end")).cast(UTC_POLARS),
    )
    _write_frame(authorizations, AUTHORIZATION_SCHEMA, out / "authorizations.parquet")

    registry = (
        app_strings.with_columns(app_id=pl.Series(pop.app_ids))
        .filter(pl.Series(pop.registered))
        .select(APP_SCHEMA.names)
    )
    _write_frame(registry, APP_SCHEMA, out / "apps.parquet")

    written = ds.deliveries.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        "event_id",
        "for_user_id",
        "app_id",
        pl.col("delivered_at").cast(UTC_POLARS),
        "event_type",
    )
    width = max(9, len(str(written.height)))
    found = _truth(written, authorizations)
    # The labels say how each row was generated, joined by row; every misdelivery was
    # generated as one, so each has a cause.
    labels = ds.deliveries.select(pl.col("cause", "intended_app").gather(found["row"]))
    if (labels["cause"] == NO_CAUSE).any():
        raise RuntimeError("sample: a delivery generated as authorized is a misdelivery")
    app = labels["intended_app"].to_numpy()
    truth = found.with_columns(
        labels["cause"],
        intended_app_id=pl.Series(_nullable(np.where(app < 0, NULL_ID, pop.app_ids[app]))),
    ).select(
        delivery_id=pl.lit("d") + (pl.col("row") + 1).cast(pl.String).str.zfill(width),
        event_id="event_id",
        for_user_id="for_user_id",
        app_id="app_id",
        delivered_at="delivered_at",
        event_type=pl.lit(pl.Series(EVENT_TYPES)).gather(pl.col("event_type")),
        reason="reason",
        cause=pl.lit(pl.Series(CAUSES)).gather(pl.col("cause")),
        intended_app_id="intended_app_id",
    )
    _write_frame(truth, TRUTH_SCHEMA, out / "truth.parquet")

    return SampleSummary(
        deliveries=ds.deliveries.height,
        authorizations=int(grants.user.size),
        apps=registry.height,
        developers=registry["developer_id"].n_unique(),
        users=ds.users_seen,
        injected_misdeliveries=truth.height,
        out=out,
    )
