"""Attribution against the mechanism `incident sample` injected (truth.parquet labels).

Run `python -m tests.test_attribution [DELIVERIES SEED ...]` to print the figures in the README.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from incident import ScanConfig, scan
from incident.report.html import render_html
from incident.sample import generate_sample
from incident.schema import Cause

MIN_PRECISION = MIN_RECALL = 0.95
MIN_INTENDED = 0.9


@dataclass(frozen=True)
class Score:
    """How well the scan's causes match the injected ones."""

    cause: str
    injected: int
    attributed: int
    correct: int

    @property
    def precision(self) -> float:
        return self.correct / self.attributed if self.attributed else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.injected if self.injected else 1.0


def compare(root: Path, out: Path) -> tuple[list[Score], int, int]:
    """Per-cause scores, and (collisions found with the right intended app, collisions)."""
    result = scan(
        ScanConfig(
            deliveries=str(root / "deliveries"),
            authorizations=str(root / "authorizations.parquet"),
            apps=str(root / "apps.parquet"),
            out=out,
        )
    )
    truth = pl.read_parquet(root / "truth.parquet").select(
        "delivery_id",
        injected="cause",
        injected_app=pl.col("intended_app_id").cast(pl.String),
    )
    found = result.misdeliveries.collect().select("delivery_id", "cause", "intended_app_id")
    both = truth.join(found, on="delivery_id", how="full", coalesce=True)
    assert both.height == truth.height == found.height, "misdeliveries differ from the truth"
    scores = [
        Score(
            cause.value,
            injected=int((both["injected"] == cause.value).sum()),
            attributed=int((both["cause"] == cause.value).sum()),
            correct=int(((both["injected"] == cause.value) & (both["cause"] == cause.value)).sum()),
        )
        for cause in Cause
    ]
    collisions = both.filter(pl.col("injected") == Cause.SHARED_ENDPOINT_COLLISION.value)
    right_app = int((collisions["intended_app_id"] == collisions["injected_app"]).sum())
    return scores, right_app, collisions.height


@pytest.mark.parametrize(("deliveries", "seed"), [(20_000, 0), (200_000, 3)])
def test_attribution_recovers_the_injected_mechanism(
    tmp_path: Path, deliveries: int, seed: int
) -> None:
    generate_sample(tmp_path / "logs", deliveries=deliveries, seed=seed)
    scores, right_app, collisions = compare(tmp_path / "logs", tmp_path / "out")
    by_cause = {score.cause: score for score in scores}
    assert by_cause[Cause.SHARED_ENDPOINT_COLLISION].injected >= 10  # the test has teeth
    assert by_cause[Cause.REVOCATION_LAG].injected >= 3
    for score in scores:
        assert score.precision >= MIN_PRECISION, score
        assert score.recall >= MIN_RECALL, score
    assert right_app >= MIN_INTENDED * collisions, (right_app, collisions)


@pytest.mark.parametrize(("deliveries", "seed"), [(20_000, 0), (200_000, 3)])
def test_attribution_holds_on_realistic_evidence(
    tmp_path: Path, deliveries: int, seed: int
) -> None:
    """Endpoints that move with a registry showing only the latest IP, URLs with ports and
    query strings, `backend_host` missing on 3 % of rows (`incident sample --realistic`)."""
    generate_sample(tmp_path / "logs", deliveries=deliveries, seed=seed, realistic=True)
    scores, right_app, collisions = compare(tmp_path / "logs", tmp_path / "out")
    by_cause = {score.cause: score for score in scores}
    assert by_cause[Cause.SHARED_ENDPOINT_COLLISION].injected >= 10
    for score in scores:
        assert score.precision >= MIN_PRECISION, score
        assert score.recall >= MIN_RECALL, score
    assert right_app >= MIN_INTENDED * collisions, (right_app, collisions)
    # The collisions whose backend could not be checked are said to be so, everywhere.
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    partial = summary["attribution"]["by_evidence"].get("backend", 0)
    assert partial > 0
    page = render_html(tmp_path / "out")
    assert f'data-evidence="backend" data-deliveries="{partial}"' in page


def main(args: list[str]) -> None:
    import tempfile

    runs = [(int(a), int(b)) for a, b in zip(args[::2], args[1::2], strict=True)] or [
        (20_000, 0),
        (200_000, 3),
        (2_000_000, 1),
    ]
    print("| evidence | deliveries | seed | cause | injected | attributed | precision | recall |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    notes = []
    for (deliveries, seed), realistic in ((run, r) for r in (False, True) for run in runs):
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            generate_sample(root / "logs", deliveries=deliveries, seed=seed, realistic=realistic)
            scores, right_app, collisions = compare(root / "logs", root / "out")
        evidence = "realistic" if realistic else "clean"
        for s in scores:
            print(
                f"| {evidence} | {deliveries:,} | {seed} | {s.cause} | {s.injected:,} | "
                f"{s.attributed:,} | {s.precision:.3f} | {s.recall:.3f} |"
            )
        share = right_app / collisions if collisions else 1.0
        notes.append(
            f"{evidence}, {deliveries:,} deliveries, seed {seed}: intended app right for "
            f"{right_app:,} of {collisions:,} collisions ({share:.3f})"
        )
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main(sys.argv[1:])
