"""What staging the detection tasks' parts in object storage costs, against a local directory.

    python bench/staging.py DATA [--runs 5] [--cluster local:2] [--partition-rows N]
                                 [--grant-buckets N]

Scans DATA (laid out as `incident sample` writes it) with the parts staged locally (the
default) and in a bucket of an S3-compatible server started here on loopback (moto in server
mode, `--staging s3://…`), in turn, `--runs` times each, and prints each run's wall time and
the median of each, with their ratio. moto is a Python server on this machine: its figure is
the cost of the store's protocol (a request per part, marker and listing), not a real store's
latency or bandwidth. Figures go to stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's incident

import pyarrow.fs as pafs
from moto.server import ThreadedMotoServer

from incident.api import scan
from incident.config import ScanConfig
from incident.storage.locations import StorageOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cluster")
    parser.add_argument("--partition-rows", type=int)
    parser.add_argument("--grant-buckets", type=int)
    args = parser.parse_args()
    for variable, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ):
        os.environ.setdefault(variable, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir(bucket)
    storage = StorageOptions.parse([f"aws_endpoint_url={endpoint}"])
    where = {"local": None, "s3": f"s3://{bucket}/staging"}
    seconds: dict[str, list[float]] = {name: [] for name in where}
    try:
        with tempfile.TemporaryDirectory(prefix="incident-bench-") as scratch:
            for run in range(args.runs):
                for name, staging in where.items():
                    config = ScanConfig.from_directory(
                        args.data,
                        out=Path(scratch) / f"{name}-{run}",
                        cluster=args.cluster,
                        partition_rows=args.partition_rows,
                        grant_buckets=args.grant_buckets,
                        staging=staging,
                        storage=storage,
                    )
                    start = time.perf_counter()
                    scan(config)
                    seconds[name].append(time.perf_counter() - start)
                    print(f"run {run + 1}: {name} staging {seconds[name][-1]:.2f} s", flush=True)
    finally:
        server.stop()
    local, s3 = (statistics.median(seconds[name]) for name in where)
    print(f"median: local {local:.2f} s, s3 (moto) {s3:.2f} s, ratio {s3 / local:.2f}")


if __name__ == "__main__":
    main()
