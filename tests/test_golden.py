"""Golden reports: scanning sample_logs/ must reproduce sample_logs/expected/ exactly.

After an intended change to the reports, regenerate the golden files with
`python -m tests.test_golden` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from incident.cli import cli
from incident.version import __version__

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = "sample_logs"
EXPECTED = ROOT / SAMPLE / "expected"
GOLDEN = (
    "users.csv",
    "developers.csv",
    "endpoints.csv",
    "summary.json",
    "summary.md",
    "report.html",
)


def scan_sample(out: Path) -> None:
    """Scan sample_logs/ as the quick start does, with paths relative to the repository."""
    args = ["scan", SAMPLE, "--out", str(out), "--quiet", "--format", "parquet"]
    result = CliRunner().invoke(cli, [*args, "--format", "csv", "--format", "html"])
    assert result.exit_code == 0, result.output


def comparable(path: Path) -> str:
    # The golden files outlive a version bump, and an installed tool names another version
    # than a source tree.
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        summary = json.loads(text)
        summary["tool"].pop("version")
        return json.dumps(summary, indent=2)
    return text.replace(__version__, "VERSION")


@pytest.mark.parametrize("name", GOLDEN)
def test_sample_logs_reports_match_golden(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    scan_sample(tmp_path / "out")
    assert comparable(tmp_path / "out" / name) == comparable(EXPECTED / name)


def test_sample_logs_findings_are_the_injected_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polars as pl

    monkeypatch.chdir(ROOT)
    scan_sample(tmp_path / "out")
    found = pl.read_parquet(tmp_path / "out" / "misdeliveries.parquet")
    truth = pl.read_parquet(ROOT / SAMPLE / "truth.parquet")
    assert sorted(found["delivery_id"]) == sorted(truth["delivery_id"])


def regenerate() -> None:
    """Rewrite sample_logs/expected/ from a fresh scan."""
    out = ROOT / ".golden-scan"
    try:
        import os

        os.chdir(ROOT)
        scan_sample(out)
        EXPECTED.mkdir(exist_ok=True)
        for name in GOLDEN:
            text = (out / name).read_text(encoding="utf-8")
            if not name.endswith(".json"):
                text = text.replace(__version__, "VERSION")
            (EXPECTED / name).write_text(text, encoding="utf-8")
    finally:
        for path in out.glob("*"):
            path.unlink()
        out.rmdir()
    print(f"wrote {', '.join(GOLDEN)} to {EXPECTED}", file=sys.stderr)


if __name__ == "__main__":
    regenerate()
