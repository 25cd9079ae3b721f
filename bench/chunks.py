"""Attribution's memory and time with chunks of a given size.

    python bench/chunks.py DATA --chunk-rows N

Runs `incident.scan` on DATA (laid out like `incident sample` writes it) in this process with
attribution explaining N misdeliveries at a time, and prints the resident set size when
attribution starts, its peak while it runs (sampled from /proc/self/status every 20 ms,
Linux), the difference (the chunk's working memory) and attribution's wall time. Run one
size per process: a peak is a high-water mark.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's incident

from stages import rss_mb  # bench/stages.py, beside this script

from incident.api import scan
from incident.config import ScanConfig
from incident.pipeline import cause


class Watched:
    """`explain` with chunks of `rows`, its start RSS, peak RSS and wall time kept."""

    def __init__(self, rows: int) -> None:
        self.explain = partial(cause.explain, chunk_rows=rows)
        self.start = self.peak = self.seconds = 0.0
        self.running = threading.Event()
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self) -> None:
        while True:
            self.running.wait()
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.02)

    def __call__(self, *args: Any, **kwargs: Any) -> cause.Explained:
        self.start = self.peak = rss_mb()
        started = time.perf_counter()
        self.running.set()
        try:
            return self.explain(*args, **kwargs)
        finally:
            self.running.clear()
            self.seconds = time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python bench/chunks.py", description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--chunk-rows", type=int, default=cause.CHUNK_ROWS)
    args = parser.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="incident-chunks-")) / "out"
    watched = Watched(args.chunk_rows)
    with patch("incident.pipeline.cause.explain", watched):
        scan(ScanConfig.from_directory(args.data, out=out))
    print(
        f"chunk_rows {args.chunk_rows:,}: attribution {watched.seconds:.1f} s, "
        f"RSS at start {watched.start:,.0f} MB, peak {watched.peak:,.0f} MB, "
        f"working {watched.peak - watched.start:,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
