"""Benchmark data shaped like a large platform's grants (issue 15), generated into a directory.

    python bench/many_grants.py OUT [--deliveries 20000000] [--seed 1]

writes ``OUT/deliveries/part-0.parquet`` and ``part-1.parquet`` (two large files, in time
order), ``OUT/authorizations.parquet`` and ``OUT/apps.parquet``, laid out as `incident scan
OUT` and bench/duckdb_job.sql read them. For N deliveries: N / 10 users and 5,000 apps,
0.16 N grants with random intervals (20 M -> 2 M users, 3.2 M grants), integer IDs. Almost
every (user, app) key has one grant; about one in sixteen grants re-grants a key that already
has one, at a random time, so some keys have overlapping or disjoint grants. Deliveries follow
the grants: 99.5 % fall inside one of their key's grants; 0.2 % go to a random (user, app)
pair (no_grant), 0.15 % before a grant starts and 0.15 % after an ended grant (some of these
are still covered by another grant of the key). About a fifth fall before the default window.

No required column has a null or a blank, so DuckDB's query and `incident scan` agree. The
files are written with pyarrow's defaults (dictionary encoding and statistics for every
column) and zstd, as a generic writer would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

APPS = 5_000
USERS_PER_DELIVERY = 0.1
GRANTS_PER_DELIVERY = 0.16
REGRANTS = 1 / 16  # share of grants that re-grant a key already granted
FILES = 2
US_PER_DAY = 86_400 * 10**6
START = 1_483_228_800 * 10**6  # 2017-01-01T00:00:00Z, in microseconds
DAYS = 618  # to 2018-09-11
END = START + DAYS * US_PER_DAY
EVENT_TYPES = ("tweet", "favorite", "follow", "direct_message", "protected_tweet")
EVENT_WEIGHTS = (0.40, 0.25, 0.10, 0.20, 0.05)
BACKEND_HOSTS = 64
FIRST_USER, FIRST_APP, FIRST_DELIVERY = 1_000_000_000, 100_000, 10**12
WRITE_OPTIONS: dict[str, object] = {"compression": "zstd"}

I64 = npt.NDArray[np.int64]
UTC_US = pa.timestamp("us", tz="UTC")


def grants(rng: np.random.Generator, deliveries: int) -> tuple[I64, I64, I64, I64]:
    """(user, app, granted_at, revoked_at) of every grant, in µs; revoked_at -1 = still active."""
    count = int(deliveries * GRANTS_PER_DELIVERY)
    users = max(1, int(deliveries * USERS_PER_DELIVERY))
    first = count - int(count * REGRANTS)
    # Distinct keys for the first grants; a collision of two random draws is merged away.
    keys = np.unique(rng.integers(0, users, first) * APPS + rng.integers(0, APPS, first))
    keys = np.concatenate([keys, rng.choice(keys, count - keys.size)])
    granted = START + rng.integers(0, DAYS * US_PER_DAY, count)
    lasting = rng.exponential(120 * US_PER_DAY, count).astype(np.int64) + 1
    revoked = np.where(rng.random(count) < 0.5, -1, granted + lasting)
    order = rng.permutation(count)
    return keys[order] // APPS, keys[order] % APPS, granted[order], revoked[order]


def delivery_keys(
    rng: np.random.Generator, deliveries: int, granted: tuple[I64, I64, I64, I64]
) -> tuple[I64, I64, I64]:
    """(user, app, delivered_at) of every delivery, as the module's docstring describes."""
    user, app, start, revoked = granted
    pick = rng.integers(0, user.size, deliveries)
    end = np.where(revoked[pick] < 0, END, np.minimum(revoked[pick], END))
    span = np.maximum(end - start[pick], 1)
    at = start[pick] + (rng.random(deliveries) * span).astype(np.int64)
    users, apps = user[pick], app[pick]
    kind = rng.random(deliveries)
    before = kind < 0.0015
    at = np.where(before, start[pick] - rng.integers(1, 30 * US_PER_DAY, deliveries), at)
    after = (kind >= 0.0015) & (kind < 0.003) & (revoked[pick] >= 0)
    at = np.where(after, revoked[pick] + rng.integers(0, 30 * US_PER_DAY, deliveries), at)
    stray = (kind >= 0.003) & (kind < 0.005)
    users = np.where(stray, rng.integers(0, user.max() + 1, deliveries), users)
    apps = np.where(stray, rng.integers(0, APPS, deliveries), apps)
    return users, apps, np.clip(at, START, END - 1)


def deliveries_table(
    rng: np.random.Generator, deliveries: int, keys: tuple[I64, I64, I64]
) -> pa.Table:
    """Every delivery, in time order, with its evidence columns."""
    users, apps, at = keys
    order = np.argsort(at, kind="stable")
    users, apps, at = users[order], apps[order], at[order]
    kinds = rng.choice(len(EVENT_TYPES), deliveries, p=EVENT_WEIGHTS)
    # Some events fan out: the next row delivers the same event to another app.
    fan_out = rng.random(deliveries) < 0.05
    fan_out[0] = False
    event_id = FIRST_DELIVERY + np.arange(deliveries) - np.cumsum(fan_out)
    private = (kinds == 3) | (kinds == 4)
    sender = np.where(private | (kinds == 0), rng.integers(0, users.max() + 1, deliveries), -1)
    recipient = np.where(kinds == 3, users, -1)
    hosts = rng.integers(0, BACKEND_HOSTS, deliveries)

    def text(values: list[str], index: npt.NDArray[np.int64]) -> pa.Array:
        return pa.array(values, pa.string()).take(pa.array(index))

    urls = [f"https://app{a}.example.com/hooks/aaa" for a in range(APPS)]

    return pa.table(
        {
            "delivery_id": pa.array(FIRST_DELIVERY + np.arange(deliveries)),
            "event_id": pa.array(event_id),
            "delivered_at": pa.array(at, UTC_US),
            "app_id": pa.array(FIRST_APP + apps),
            "for_user_id": pa.array(FIRST_USER + users),
            "event_type": text(list(EVENT_TYPES), kinds),
            "sender_id": pa.array(FIRST_USER + sender, mask=sender < 0),
            "recipient_id": pa.array(FIRST_USER + recipient, mask=recipient < 0),
            "webhook_url": text(urls, apps),
            "resolved_ip": text([f"10.{a // 250}.{a % 250}.7" for a in range(APPS)], apps),
            "backend_host": text([f"backend-{h}" for h in range(BACKEND_HOSTS)], hosts),
            "http_status": pa.array(np.full(deliveries, 200, np.int32)),
        }
    )


def generate(out: Path, deliveries: int, seed: int) -> None:
    """Write the data set of `deliveries` rows into `out` (which must not hold one)."""
    rng = np.random.default_rng(seed)
    granted = grants(rng, deliveries)
    user, app, start, revoked = granted
    authorizations = pa.table(
        {
            "for_user_id": pa.array(FIRST_USER + user),
            "app_id": pa.array(FIRST_APP + app),
            "granted_at": pa.array(start, UTC_US),
            "revoked_at": pa.array(revoked, UTC_US, mask=revoked < 0),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(authorizations, out / "authorizations.parquet", **WRITE_OPTIONS)
    apps = pa.table(
        {
            "app_id": pa.array(FIRST_APP + np.arange(APPS)),
            "developer_id": pa.array([f"dev-{a // 3}" for a in range(APPS)]),
        }
    )
    pq.write_table(apps, out / "apps.parquet", **WRITE_OPTIONS)
    table = deliveries_table(rng, deliveries, delivery_keys(rng, deliveries, granted))
    del granted, user, app, start, revoked, authorizations
    (out / "deliveries").mkdir(exist_ok=True)
    share = -(-deliveries // FILES)
    for index in range(FILES):
        part = table.slice(index * share, share)
        pq.write_table(part, out / "deliveries" / f"part-{index}.parquet", **WRITE_OPTIONS)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python bench/many_grants.py", description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--deliveries", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.deliveries < 1000:
        parser.error("--deliveries must be at least 1000")
    generate(args.out, args.deliveries, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
