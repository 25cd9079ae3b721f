"""The cast of a sample: users, apps and the developers who own them, with their endpoints.

Everything downstream refers to users and apps by index (0..n-1); this module draws those
indices' ids, each app's developer, hosting IP and URL path, how popular it is, and whether
it is in the app registry at all. A quarter of the apps share a hosting IP, mostly with the
same path, because that shared endpoint is the pre-condition of the incident's bug that the
collisions reproduce; `_app_strings` turns the indices into the names, URLs and addresses the
written files carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from incident.sample.constants import F64, I64, URL_PATHS, Bool

IP_BLOCKS = ("192.0.2", "198.51.100", "203.0.113")  # RFC 5737 documentation ranges
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


def _developers(rng: np.random.Generator, n_apps: int) -> I64:
    """Each app's developer index: developers own a geometric number of apps, most just one."""
    per_dev = rng.geometric(0.6, n_apps)
    app_developer = np.repeat(np.arange(n_apps, dtype=np.int64), per_dev)[:n_apps]
    return app_developer[rng.permutation(n_apps)]


def _hosting(rng: np.random.Generator, n_apps: int) -> tuple[I64, I64]:
    """Each app's IP and URL-path indices.

    A quarter of the apps sit on shared hosting IPs, mostly with the same URL path: the
    pre-condition of the incident's bug, which the evidence columns should show.
    """
    shared = rng.random(n_apps) < 0.25
    n_shared_ips = max(2, int(shared.sum()) // 3)
    app_ip = np.where(
        shared, rng.integers(0, n_shared_ips, n_apps), n_shared_ips + np.cumsum(~shared) - 1
    )
    app_path = np.where(
        shared & (rng.random(n_apps) < 0.7), 0, rng.integers(0, len(URL_PATHS), n_apps)
    )
    return app_ip, app_path


def _ensure_shared_endpoint(
    registered: Bool, popularity: npt.NDArray[np.floating[Any]], app_ip: I64, app_path: I64
) -> None:
    """Collisions need two registered apps on one endpoint (IP and path); when a small
    population has none, the two most popular share one (in place)."""
    reg = np.flatnonzero(registered)
    if np.unique(app_ip[reg] * len(URL_PATHS) + app_path[reg]).size == reg.size:
        a, b = reg[np.argsort(-popularity[reg], kind="stable")[:2]]
        app_ip[b], app_path[b] = app_ip[a], app_path[a]


def _ip_groups(app_ip: I64) -> tuple[I64, I64, I64, I64]:
    """Apps grouped by IP: (app indices by IP, each app's position there, group start, size)."""
    ip_order = np.argsort(app_ip, kind="stable").astype(np.int64)
    ip_pos = np.empty(app_ip.size, dtype=np.int64)
    ip_pos[ip_order] = np.arange(app_ip.size)
    ip_sorted = app_ip[ip_order]
    lo = np.searchsorted(ip_sorted, app_ip, side="left").astype(np.int64)
    hi = np.searchsorted(ip_sorted, app_ip, side="right").astype(np.int64)
    return ip_order, ip_pos, lo, hi - lo


def _population(rng: np.random.Generator, n_deliveries: int) -> _Population:
    n_users = max(100, n_deliveries // 20)
    n_apps = max(30, n_deliveries // 20_000)
    # Ids are sparse and irregular like real ones, yet unique by construction (stride + jitter).
    user_ids = (
        1_000_000_000 + np.arange(n_users, dtype=np.int64) * 1000 + rng.integers(0, 1000, n_users)
    )
    app_ids = 100_000 + np.arange(n_apps, dtype=np.int64) * 100 + rng.integers(0, 100, n_apps)
    app_developer = _developers(rng, n_apps)
    app_ip, app_path = _hosting(rng, n_apps)

    popularity = 1.0 / (1.0 + rng.permutation(n_apps)) ** 0.9
    registered = np.ones(n_apps, dtype=np.bool_)
    registered[rng.choice(n_apps, max(2, n_apps // 250), replace=False)] = False
    # Unregistered apps hold no grants, so every delivery they receive is a misdelivery.
    grant_w = np.where(registered, popularity, 0.0)
    _ensure_shared_endpoint(registered, popularity, app_ip, app_path)

    ip_order, ip_pos, ip_group_lo, ip_group_size = _ip_groups(app_ip)
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
        ip_group_lo=ip_group_lo,
        ip_group_size=ip_group_size,
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
