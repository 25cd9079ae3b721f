"""Detection with many grants: one key table against grants split into buckets.

    python bench/grants.py --grants 97700000 --deliveries 5000000 [--data DIR] [--buckets 1,auto]

Generates (once, into DIR; default /tmp/incident-grants/GRANTS) random grants — users drawn
from half as many IDs as grants, 5,000 apps, grant times over 2014 to 2018, 30 % revoked — and
one day of deliveries whose keys are those of grants (99 %) or random pairs (1 %, misdelivered).
Then runs `incident scan` on it once per `--buckets` value, each in its own process
(`--grant-buckets N`; `auto` lets the scan choose), and prints wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from run import BenchError, log, run_child

APPS = 5_000
SEED = 7


def _ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def generate(data: Path, grants: int, deliveries: int) -> None:
    """Random grants and one day of deliveries into `data` (skipped when already there)."""
    done = data / ".complete"
    if done.exists():
        return
    rng = np.random.default_rng(SEED)
    users = rng.integers(1, max(2, grants // 2), grants, dtype=np.int64)
    apps = rng.integers(1, APPS + 1, grants, dtype=np.int64)
    granted = rng.integers(_ms(2014, 1, 1), _ms(2018, 9, 1), grants, dtype=np.int64)
    lasting = rng.integers(3_600_000, 400 * 86_400_000, grants, dtype=np.int64)
    revoked = np.where(rng.random(grants) < 0.3, granted + lasting, -1)
    frame = pl.DataFrame({"for_user_id": users, "app_id": apps, "granted_at": granted})
    frame = frame.with_columns(
        pl.col("granted_at").cast(pl.Datetime("ms", "UTC")),
        pl.Series("revoked_at", revoked).replace(-1, None).cast(pl.Datetime("ms", "UTC")),
    )
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(frame.to_arrow(), data / "authorizations.parquet", row_group_size=1 << 20)
    log(f"{grants:,} grants written")
    picks = rng.integers(0, grants, deliveries)
    stray = rng.random(deliveries) < 0.01
    day = _ms(2018, 3, 1)
    deliveries_frame = pl.DataFrame(
        {
            "event_id": np.arange(deliveries, dtype=np.int64),
            "delivered_at": rng.integers(day, day + 86_400_000, deliveries, dtype=np.int64),
            "app_id": np.where(stray, rng.integers(1, APPS + 1, deliveries), apps[picks]),
            "for_user_id": np.where(stray, rng.integers(1, grants, deliveries), users[picks]),
            "event_type": rng.choice(["direct_message", "tweet", "favorite"], deliveries),
        }
    ).with_columns(pl.col("delivered_at").cast(pl.Datetime("ms", "UTC")))
    (data / "deliveries").mkdir(exist_ok=True)
    for index, part in enumerate(deliveries_frame.iter_slices(1_000_000)):
        part.write_parquet(data / "deliveries" / f"part-{index:03d}.parquet")
    log(f"{deliveries:,} deliveries written")
    done.touch()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python bench/grants.py", description=__doc__)
    parser.add_argument("--grants", type=int, default=97_700_000)
    parser.add_argument("--deliveries", type=int, default=5_000_000)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--buckets", default="1,auto", help="--grant-buckets values, or auto")
    args = parser.parse_args(argv)
    data = args.data or Path("/tmp/incident-grants") / str(args.grants)
    generate(data, args.grants, args.deliveries)
    print(f"{'grant buckets':<16}{'wall s':>9}{'peak RSS':>13}")
    for buckets in args.buckets.split(","):
        out = data.parent / f"{data.name}-out-{buckets}"
        option = [] if buckets == "auto" else ["--grant-buckets", buckets]
        argv_ = [sys.executable, "-m", "incident", "scan", data, "--out", out, "-q", *option]
        try:
            logs = data.parent / f"{data.name}-{buckets}"
            measured = run_child(argv_, logs, f"buckets {buckets}")
        except BenchError as error:
            print(f"{buckets:<16} failed: {error}")
            continue
        print(f"{buckets:<16}{measured.seconds:>9.1f}{measured.peak_rss_mb:>10,.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
