"""SIGINT and SIGTERM: one line, exit 130 or 143, no traceback, no partial or hidden output,
and an earlier result left byte for byte as it was. Run as real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import delivery, grant, utc, write

# Runs the command line with a pause at a chosen point, announced on stderr, for the test to
# send its signal there: while the result is being written, or while the tool starts.
PAUSE_WHILE_WRITING = """
import sys, time
import incident.api as api
write_result = api.write_result
def paused(*args, **kwargs):
    write_result(*args, **kwargs)
    print("paused", file=sys.stderr, flush=True)
    time.sleep(60)
api.write_result = paused
from incident.cli import main
sys.argv = ["incident", *sys.argv[1:]]
main()
"""
PAUSE_WHILE_STARTING = """
import importlib.abc, sys, time
class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "incident.cli.commands":
            print("paused", file=sys.stderr, flush=True)
            time.sleep(60)
        return None
sys.meta_path.insert(0, Slow())
from incident.cli import main
sys.argv = ["incident", *sys.argv[1:]]
main()
"""


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    write(
        [delivery(1, utc(2018, 3, 1), 10, 1), delivery(2, utc(2018, 3, 1), 11, 1)],
        tmp_path / "logs" / "deliveries.parquet",
    )
    write([grant(1, 10)], tmp_path / "logs" / "authorizations.parquet")
    return tmp_path / "logs"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    ("script", "signum", "code"),
    [
        (PAUSE_WHILE_WRITING, signal.SIGINT, 130),
        (PAUSE_WHILE_WRITING, signal.SIGTERM, 143),
        (PAUSE_WHILE_STARTING, signal.SIGINT, 130),
        (PAUSE_WHILE_STARTING, signal.SIGTERM, 143),
    ],
    ids=["int-writing", "term-writing", "int-starting", "term-starting"],
)
def test_a_signal_stops_the_scan_cleanly(
    logs: Path, tmp_path: Path, script: str, signum: signal.Signals, code: int
) -> None:
    out = tmp_path / "out"
    args = ["scan", str(logs), "--out", str(out), "-q"]
    earlier = subprocess.run([sys.executable, "-m", "incident", *args], capture_output=True)
    assert earlier.returncode == 0, earlier.stderr
    before = snapshot(out)

    process = subprocess.Popen(
        [sys.executable, "-c", script, *args], stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    assert process.stderr.readline() == "paused\n"
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == code
    assert rest == (
        f"interrupted ({signum.name}): no result written; an earlier one is untouched\n"
    )
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "out"]  # nothing hidden
