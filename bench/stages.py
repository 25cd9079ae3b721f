"""Where a scan spends its time and memory, stage by stage.

    python bench/stages.py DATA [--out DIR] [--cluster local:2] [--partition-rows N]
                                   [--grant-buckets N]

Runs `incident.scan` on DATA (a directory laid out like `incident sample` writes it:
deliveries/, authorizations.parquet, apps.parquet) in this process (detection on a Dask
cluster with --cluster; the RSS is then this process's only), and prints for each stage
the progress display names its wall time and the peak resident set size while it ran, sampled
from /proc/self/status every 20 ms (Linux). Figures go to stdout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's incident

from incident.api import scan
from incident.config import ScanConfig


def rss_mb() -> float:
    """This process's resident set size now, in MB (10^6 bytes)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    return 0.0


class Stages:
    """Progress callback that closes one stage and opens the next, with a sampler thread
    keeping the peak RSS of the open stage."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []  # (stage, seconds, peak MB)
        self.name, self.started, self.peak = "start-up", time.perf_counter(), rss_mb()
        self.lock = threading.Lock()
        self.done = threading.Event()
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self) -> None:
        while not self.done.wait(0.02):
            now = rss_mb()
            with self.lock:
                self.peak = max(self.peak, now)

    def __call__(self, message: str) -> None:
        # "detecting misdeliveries: 3 of 8 partitions, …" goes on with its stage.
        stage = message.split(":")[0]
        if stage == self.name:
            return
        with self.lock:
            now = time.perf_counter()
            self.rows.append((self.name, now - self.started, max(self.peak, rss_mb())))
            self.name, self.started, self.peak = stage, now, rss_mb()

    def finish(self) -> None:
        self("end")
        self.done.set()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python bench/stages.py", description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, help="where the reports go (default: a temp dir)")
    parser.add_argument("--cluster", help="as scan's --cluster, e.g. local:2 (default: none)")
    parser.add_argument("--partition-rows", type=int, help="as scan's --partition-rows")
    parser.add_argument("--grant-buckets", type=int, help="as scan's --grant-buckets")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="incident-stages-")) / "out"
    config = ScanConfig.from_directory(
        args.data,
        out=out,
        cluster=args.cluster,
        partition_rows=args.partition_rows,
        grant_buckets=args.grant_buckets,
    )
    stages = Stages()
    scan(config, stages)
    stages.finish()
    print(f"{'stage':<28}{'wall s':>9}{'peak RSS':>13}")
    for name, seconds, peak in stages.rows:
        print(f"{name:<28}{seconds:>9.2f}{peak:>10,.0f} MB")
    print(f"{'total':<28}{sum(s for _, s, _ in stages.rows):>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
