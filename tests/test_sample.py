"""`incident sample` labels every injected misdelivery with the mechanism that produced it,
and the written files show that mechanism: checked here with polars on the files alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from incident.sample import generate_sample

COLLISION, LAG, UNEXPLAINED = "shared_endpoint_collision", "revocation_lag", "unexplained"
COLLISION_WINDOW = timedelta(minutes=6)
REVOCATION_GRACE = timedelta(minutes=5)
SAMPLES = [(30_000, 0), (30_000, 1), (200_000, 3)]


@dataclass(frozen=True)
class Sample:
    truth: pl.DataFrame
    deliveries: pl.DataFrame
    grants: pl.DataFrame
    apps: pl.DataFrame  # app_id, resolved_ip, path

    @property
    def collisions(self) -> pl.DataFrame:
        return self.truth.filter(pl.col("cause") == COLLISION)


def read(root: Path) -> Sample:
    apps = pl.read_parquet(root / "apps.parquet").select(
        "app_id", "resolved_ip", path=pl.col("webhook_url").str.extract(r"^https?://[^/]+(/.*)$")
    )
    return Sample(
        truth=pl.read_parquet(root / "truth.parquet"),
        deliveries=pl.read_parquet(root / "deliveries", hive_partitioning=False),
        grants=pl.read_parquet(root / "authorizations.parquet"),
        apps=apps,
    )


@pytest.fixture(scope="module", params=SAMPLES, ids=lambda p: f"{p[0]}-seed{p[1]}")
def sample(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sample:
    deliveries, seed = request.param
    out = tmp_path_factory.mktemp("sample") / "logs"
    generate_sample(out, deliveries=deliveries, seed=seed)
    return read(out)


def covered(rows: pl.DataFrame, app: str, grants: pl.DataFrame) -> pl.Series:
    """Per row, in order: does a grant of (for_user_id, rows[app]) cover delivered_at?"""
    at, end = pl.col("delivered_at"), pl.col("revoked_at")
    return (
        rows.select("for_user_id", "delivered_at", app_id=app)
        .with_row_index("i")
        .join(grants, on=["for_user_id", "app_id"], how="left")
        .group_by("i")
        .agg(
            covered=((pl.col("granted_at") <= at) & (end.is_null() | (at < end)))
            .fill_null(False)
            .any()
        )
        .sort("i")["covered"]
    )


def test_every_misdelivery_has_a_cause_and_only_collisions_an_intended_app(sample: Sample) -> None:
    truth = sample.truth
    assert truth.height > 0
    assert truth["cause"].null_count() == 0
    assert set(truth["cause"]) == {COLLISION, LAG, UNEXPLAINED}
    assert truth["intended_app_id"].dtype == truth["app_id"].dtype == pl.Int64
    has_intended = truth["intended_app_id"].is_not_null()
    assert (has_intended == (truth["cause"] == COLLISION)).all()


def test_a_collision_was_meant_for_an_authorized_app_on_the_receiving_endpoint(
    sample: Sample,
) -> None:
    collisions = sample.collisions
    assert collisions.height >= 10
    assert (collisions["intended_app_id"] != collisions["app_id"]).all()
    assert covered(collisions, "intended_app_id", sample.grants).all()
    assert not covered(collisions, "app_id", sample.grants).any()

    endpoints = collisions.join(sample.apps, on="app_id").join(
        sample.apps, left_on="intended_app_id", right_on="app_id", suffix="_intended"
    )
    assert endpoints.height == collisions.height  # both apps are in the registry
    assert (endpoints["resolved_ip"] == endpoints["resolved_ip_intended"]).all()
    assert (endpoints["path"] == endpoints["path_intended"]).all()


def test_a_collisions_receiving_app_is_active_on_the_same_backend_within_six_minutes(
    sample: Sample,
) -> None:
    collisions = sample.collisions.join(
        sample.deliveries.select("delivery_id", "backend_host"), on="delivery_id"
    )
    others = sample.deliveries.select(
        "app_id", other_event="event_id", other_at="delivered_at", other_host="backend_host"
    )
    active = (
        collisions.join(others, on="app_id")
        .filter(
            (pl.col("other_event") != pl.col("event_id"))
            & (pl.col("other_host") == pl.col("backend_host"))
            & ((pl.col("other_at") - pl.col("delivered_at")).abs() <= COLLISION_WINDOW)
        )
        .select("delivery_id")
        .unique()
    )
    assert collisions.height >= 10
    assert set(active["delivery_id"]) == set(collisions["delivery_id"])


def test_revocation_lag_comes_within_five_minutes_of_a_revocation_of_its_grant(
    sample: Sample,
) -> None:
    lag = sample.truth.filter(pl.col("cause") == LAG)
    assert lag.height >= 3
    assert (lag["reason"] == "after_revocation").all()
    revocation = pl.col("revoked_at")
    explained = lag.join(sample.grants, on=["for_user_id", "app_id"]).filter(
        (revocation <= pl.col("delivered_at"))
        & (pl.col("delivered_at") <= revocation + REVOCATION_GRACE)
    )
    assert set(explained["delivery_id"]) == set(lag["delivery_id"])


def test_collisions_are_a_substantial_share_of_the_misdeliveries(sample: Sample) -> None:
    collisions = int((sample.truth["cause"] == COLLISION).sum())
    assert collisions >= 0.2 * sample.truth.height


@pytest.mark.parametrize("seed", range(6))
def test_samples_of_twenty_thousand_deliveries_have_collisions(tmp_path: Path, seed: int) -> None:
    generate_sample(tmp_path, deliveries=20_000, seed=seed)
    truth = pl.read_parquet(tmp_path / "truth.parquet")
    assert (truth["cause"] == COLLISION).sum() > 0


def test_the_same_seed_writes_the_same_truth(tmp_path: Path) -> None:
    truths = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate_sample(tmp_path / name, deliveries=30_000, seed=seed)
        truths.append((tmp_path / name / "truth.parquet").read_bytes())
    assert truths[0] == truths[1]
    assert truths[0] != truths[2]  # the seed matters, so equality above is not vacuous
