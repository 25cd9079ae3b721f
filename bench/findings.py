"""Time and memory of the steps after detection at many misdeliveries, without detecting them.

    python bench/findings.py RESULT [--copies N]

Takes RESULT/misdeliveries.parquet (a scan's result) and makes N copies of its rows with
distinct event and delivery IDs (as `bench/run.py --fixed-grants` copies deliveries), in a
temporary directory; then runs, one after another, what the scan does with them: the order
and the copies (`findings.order`, on the input columns), impact and the summary's aggregates
(`run.measure_impact`, on the explained rows), the timeline's events per day, and
`misdeliveries.parquet` streamed out. Prints each step's wall time and the peak resident set
size while it ran (sampled every 20 ms). Figures go to stdout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's incident

from stages import rss_mb  # bench/stages.py, beside this script

from incident.pipeline.findings import order
from incident.pipeline.run import measure_impact
from incident.report.html.timeline import daily_events
from incident.report.tables import sink_parquet
from incident.schema import ATTRIBUTION_COLUMNS


def measured(name: str, step: Callable[[], object]) -> None:
    """Run `step`, printing its wall time and its peak RSS."""
    peak, done = [rss_mb()], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    step()
    took = time.perf_counter() - started
    done.set()
    print(f"{name:<34} {took:8.2f} s {max(peak[0], rss_mb()):10,.0f} MB", flush=True)


def copies(source: Path, count: int, folder: Path) -> list[Path]:
    """`count` files, each the rows of `source` with IDs made distinct per copy."""
    files = []
    for number in range(count):
        file = folder / f"copy-{number:04d}.parquet"
        suffix = f"-{number}" if number else ""
        pl.scan_parquet(source).with_columns(
            pl.col("event_id") + suffix, pl.col("delivery_id") + suffix
        ).sink_parquet(file)
        files.append(file)
    return files


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python bench/findings.py", description=__doc__)
    parser.add_argument("result", type=Path)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="incident-findings-") as temporary:
        folder = Path(temporary)
        files = copies(args.result / "misdeliveries.parquet", args.copies, folder)
        explained = pl.scan_parquet(files)
        rows = explained.select(pl.len()).collect().item()
        found = explained.drop(*ATTRIBUTION_COLUMNS)
        print(f"{rows:,} misdeliveries; step, wall time, peak RSS (start {rss_mb():,.0f} MB)")
        measured("order and copies (findings.order)", lambda: order(found, rows, folder / "o"))
        measured("impact and summary figures", lambda: measure_impact(explained))
        measured("timeline (daily_events)", lambda: daily_events(explained))
        measured("misdeliveries.parquet (sink)", lambda: sink_parquet(explained, folder / "m"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
