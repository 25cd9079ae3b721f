"""`incident sample` labels every injected misdelivery with the mechanism that produced it,
and the written files show that mechanism: checked here with polars on the files alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


# --realistic: messier evidence over the same rows, grants and truth.
BARE_PATH = r"^https://[^/:?]+(?::\d+)?(/[^?]*)"
CALLED_URL = r"^https://[^/:?]+:443/[^?]*\?crc_token=[0-9a-f]{16}$"


@dataclass(frozen=True)
class Realistic:
    root: Path
    default_root: Path
    sample: Sample


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> Realistic:
    root = tmp_path_factory.mktemp("realistic")
    generate_sample(root / "realistic", deliveries=30_000, seed=0, realistic=True)
    generate_sample(root / "default", deliveries=30_000, seed=0)
    return Realistic(root / "realistic", root / "default", read(root / "realistic"))


def test_realistic_keeps_the_rows_grants_and_truth_of_the_default(realistic: Realistic) -> None:
    for name in ("truth.parquet", "authorizations.parquet"):
        assert (realistic.root / name).read_bytes() == (realistic.default_root / name).read_bytes()
    evidence = ["webhook_url", "resolved_ip", "backend_host"]
    default = pl.read_parquet(realistic.default_root / "deliveries", hive_partitioning=False)
    assert realistic.sample.deliveries.drop(evidence).equals(default.drop(evidence))
    apps = pl.read_parquet(realistic.root / "apps.parquet").drop("resolved_ip")
    assert apps.equals(pl.read_parquet(realistic.default_root / "apps.parquet").drop("resolved_ip"))


def ip_history(sample: Sample) -> pl.DataFrame:
    """Per app: its delivered IPs, first and last, and when the last one was first seen."""
    return (
        sample.deliveries.sort("delivered_at")
        .group_by("app_id")
        .agg(
            ips=pl.col("resolved_ip").n_unique(),
            first_ip=pl.col("resolved_ip").first(),
            last_ip=pl.col("resolved_ip").last(),
            last_old=pl.col("delivered_at")
            .filter(pl.col("resolved_ip") != pl.col("resolved_ip").last())
            .max(),
            first_new=pl.col("delivered_at")
            .filter(pl.col("resolved_ip") == pl.col("resolved_ip").last())
            .min(),
        )
    )


def test_realistic_apps_on_shared_hosting_move_and_the_registry_shows_the_latest_ip(
    realistic: Realistic,
) -> None:
    sample = realistic.sample
    shared = sample.apps.filter(pl.len().over("resolved_ip") >= 2)
    history = ip_history(sample).join(sample.apps, on="app_id", how="left")
    assert history["ips"].max() == 2  # one move at most
    moved = history.filter(pl.col("ips") == 2)
    # A move is one switch inside the window, to the address the registry shows.
    assert (moved["last_old"] < moved["first_new"]).all()
    assert (moved["first_new"] > datetime(2017, 5, 1, tzinfo=UTC)).all()
    assert (moved["last_old"] < datetime(2018, 9, 11, tzinfo=UTC)).all()
    registered = history.filter(pl.col("resolved_ip").is_not_null())
    assert (registered["last_ip"] == registered["resolved_ip"]).all()
    moved_shared = shared.join(moved, on="app_id", how="semi")
    assert shared.height >= 5
    assert moved_shared.height >= 0.2 * shared.height
    # Co-hosted apps move together: the apps first seen on one IP leave it for one other
    # IP, all of them after their last delivery on the old one.
    first = history.select("app_id", "first_ip")
    old = pl.col("resolved_ip") == pl.col("first_ip")
    hosts = (
        sample.deliveries.join(first, on="app_id")
        .group_by("first_ip")
        .agg(
            new_ips=pl.col("resolved_ip").filter(~old).n_unique(),
            last_old=pl.col("delivered_at").filter(old).max(),
            first_new=pl.col("delivered_at").filter(~old).min(),
        )
    )
    assert (hosts["new_ips"] <= 1).all()
    assert (hosts["first_new"].is_null() | (hosts["last_old"] < hosts["first_new"])).all()


def test_realistic_urls_as_called_carry_port_and_query_and_some_hosts_are_missing(
    realistic: Realistic,
) -> None:
    deliveries = realistic.sample.deliveries.join(
        pl.read_parquet(realistic.root / "apps.parquet").select("app_id", bare="webhook_url"),
        on="app_id",
    )
    url = pl.col("webhook_url")
    called = deliveries.select(url.str.contains(CALLED_URL))["webhook_url"]
    assert 0.47 <= called.mean() <= 0.53  # type: ignore[operator]
    rest = deliveries.filter(~called)
    assert (rest["webhook_url"] == rest["bare"]).all()
    same_path = deliveries.select(
        url.str.extract(BARE_PATH) == pl.col("bare").str.extract(BARE_PATH)
    )
    assert same_path.to_series().all()
    assert not (
        pl.read_parquet(realistic.root / "apps.parquet")["webhook_url"].str.contains(r"[:?]\d|\?")
    ).any()
    missing = realistic.sample.deliveries["backend_host"].null_count()
    assert 0.025 <= missing / realistic.sample.deliveries.height <= 0.035
    collisions = realistic.sample.collisions.join(realistic.sample.deliveries, on="delivery_id")
    assert collisions.height >= 10


def test_realistic_collisions_share_ip_and_path_with_the_intended_app_at_the_instant(
    realistic: Realistic,
) -> None:
    """The intended app's IP at the collision is that of its delivery just before or just
    after (its one move is on one side or the other); after its last delivery the registry's."""
    sample = realistic.sample
    collisions = (
        sample.collisions.join(
            sample.deliveries.select("delivery_id", "resolved_ip", "webhook_url"),
            on="delivery_id",
        )
        .with_columns(path=pl.col("webhook_url").str.extract(BARE_PATH))
        .sort("delivered_at")
    )
    own = (
        sample.deliveries.select("app_id", "delivered_at", ip="resolved_ip")
        .sort("delivered_at")
        .rename({"app_id": "intended_app_id"})
    )
    before = own.rename({"ip": "before"})
    after = own.rename({"ip": "after"})
    checked = (
        collisions.join_asof(
            before,
            on="delivered_at",
            by="intended_app_id",
            strategy="backward",
            check_sortedness=False,
        )
        .join_asof(
            after,
            on="delivered_at",
            by="intended_app_id",
            strategy="forward",
            check_sortedness=False,
        )
        .join(
            sample.apps.select(
                intended_app_id="app_id", latest="resolved_ip", intended_path="path"
            ),
            on="intended_app_id",
        )
        .with_columns(after=pl.coalesce("after", "latest"))
    )
    assert checked.height == collisions.height >= 10
    assert (checked["path"] == checked["intended_path"]).all()
    same_ip = (checked["resolved_ip"] == checked["before"]) | (
        checked["resolved_ip"] == checked["after"]
    )
    assert same_ip.fill_null(False).all()
    # Some collisions come after their endpoint moved, some before it.
    assert checked["resolved_ip"].str.starts_with("198.18.").any()
    assert not checked["resolved_ip"].str.starts_with("198.18.").all()
