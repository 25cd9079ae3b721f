"""The staging area in object storage: detection tasks, on a Dask LocalCluster or in this
process, write their parts to a prefix of an S3-compatible server the tests start on loopback
(moto in server mode), as the workers of a remote cluster would. The same bytes as a scan in
one process, exactly one attempt of each task read, and nothing left behind, even when a scan
fails."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner
from distributed import LocalCluster
from moto.server import ThreadedMotoServer

from incident import ScanConfig, scan
from incident.cli import cli
from incident.config import Window
from incident.engine import InProcess
from incident.errors import ConfigError, ExitCode, InputError
from incident.pipeline import exchange, partitions, staging_area
from incident.pipeline.partitions import plan
from incident.pipeline.run import Outcome, load_inputs, run
from incident.storage import objects
from incident.storage.locations import Scheme, StorageOptions, split_url
from incident.storage.staging import FINISHED, Staging

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIATESTSTAGING",
    "AWS_SECRET_ACCESS_KEY": "staging-secret-0b7e",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

Item = TypeVar("Item")
Shared = TypeVar("Shared")
Result = TypeVar("Result")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """An S3-compatible server on loopback, and its credentials in the environment (before
    the cluster starts: its worker processes inherit them, as a real cluster's are given)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(variable, raising=False)
        for variable, value in CREDENTIALS.items():
            patch.setenv(variable, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture(scope="module")
def cluster(endpoint: str) -> Iterator[str]:
    """A 2-worker LocalCluster's address: a `tcp://` address, so the scan takes it for a
    remote cluster."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as local:
        yield local.scheduler_address


def _store(endpoint: str) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True)


def _bucket(endpoint: str) -> str:
    name = f"staging-{uuid.uuid4().hex[:12]}"
    _store(endpoint).create_dir(name)
    return name


def _storage(endpoint: str) -> StorageOptions:
    return StorageOptions.parse([f"aws_endpoint_url={endpoint}"])


def _objects(endpoint: str, url: str) -> list[str]:
    """The names of the objects under `url`."""
    prefix = split_url(url)[1]
    found = _store(endpoint).get_file_info(pafs.FileSelector(prefix, recursive=True))
    return sorted(f.path[len(prefix) + 1 :] for f in found if f.type == pafs.FileType.File)


def _result_files(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def _reports(out: Path) -> dict[str, bytes]:
    """Every file of a result but its manifest (which records the storage options given)."""
    return {name: data for name, data in _result_files(out).items() if name != "manifest.json"}


def _config(out: Path | str, **options: Any) -> ScanConfig:
    return ScanConfig.from_directory(SAMPLE, out=out, formats=("parquet", "csv"), **options)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The sample's result from a scan in this process, staged locally."""
    out = tmp_path_factory.mktemp("in-process") / "out"
    scan(_config(out))
    return _reports(out)


def _watch(endpoint: str, url: str, seen: set[str]) -> Callable[[str], None]:
    """A progress callback that notes the staged parts under `url` as the tasks finish."""

    def look(stage: str) -> None:
        if " of " in stage:
            seen.update(name for name in _objects(endpoint, url) if name.endswith(".parquet"))

    return look


@pytest.mark.parametrize("grant_buckets", [None, 3])
def test_a_cluster_staging_in_a_bucket_gives_the_in_process_bytes(
    endpoint: str, cluster: str, in_process: dict[str, bytes], tmp_path: Path, grant_buckets: Any
) -> None:
    bucket = _bucket(endpoint)
    staging = f"s3://{bucket}/staging"
    config = _config(
        tmp_path / "out",
        cluster=cluster,
        partition_rows=5_000,
        grant_buckets=grant_buckets,
        staging=staging,
        storage=_storage(endpoint),
    )
    seen: set[str] = set()
    scan(config, progress=_watch(endpoint, staging, seen))
    assert _reports(tmp_path / "out") == in_process
    # The workers wrote their parts to the bucket, and the scan removed every one.
    assert any(name.startswith("scan-") and "misdeliveries-" in name for name in seen)
    assert any("/rows-" in name for name in seen) is (grant_buckets == 3)
    assert _objects(endpoint, f"s3://{bucket}") == []


def test_a_remote_cluster_stages_beside_an_out_in_object_storage(
    endpoint: str, cluster: str, in_process: dict[str, bytes], tmp_path: Path
) -> None:
    bucket = _bucket(endpoint)
    out = f"s3://{bucket}/results/first"
    config = _config(out, cluster=cluster, partition_rows=5_000, storage=_storage(endpoint))
    seen: set[str] = set()
    scan(config, progress=_watch(endpoint, f"s3://{bucket}/results", seen))
    assert any(name.startswith("first.staging-") for name in seen)
    expected = sorted(f"first/{name}" for name in [*in_process, "manifest.json"])
    assert _objects(endpoint, f"s3://{bucket}/results") == expected
    for report in ("users.csv", "developers.parquet", "misdeliveries.parquet"):
        with _store(endpoint).open_input_stream(f"{bucket}/results/first/{report}") as stream:
            assert stream.read() == in_process[report], report


def test_the_staging_flag_stages_in_a_bucket_from_the_command_line(
    endpoint: str, in_process: dict[str, bytes], tmp_path: Path
) -> None:
    bucket = _bucket(endpoint)
    args = ["scan", str(SAMPLE), "--out", str(tmp_path / "out"), "-q", "--grant-buckets", "2"]
    args += ["--staging", f"s3://{bucket}/staging", "--partition-rows", "7000"]
    result = CliRunner().invoke(cli, [*args, "--storage-option", f"aws_endpoint_url={endpoint}"])
    assert (result.exit_code, result.stderr) == (ExitCode.OK, "")
    assert _reports(tmp_path / "out") == in_process
    assert _objects(endpoint, f"s3://{bucket}") == []


class Twice:
    """An engine that runs every task twice, as Dask may (a retry, or a lost worker's task
    run again while the first still writes), and keeps the second run's result."""

    workers = 2

    def map(
        self,
        task: Callable[[Item, Shared], Result],
        items: Sequence[Item],
        shared: Shared,
        done: Callable[[Result], None],
    ) -> list[Result]:
        results = []
        for item in items:
            task(item, shared)
            results.append(task(item, shared))
            done(results[-1])
        return results


def _outcome(config: ScanConfig, engine: Any, local: Path) -> Outcome:
    return run(config, load_inputs(config), lambda _stage: None, engine, local)


@pytest.mark.parametrize("grant_buckets", [1, 3])
def test_a_task_run_twice_counts_its_rows_once(
    endpoint: str, tmp_path: Path, grant_buckets: int
) -> None:
    bucket = _bucket(endpoint)
    config = _config(
        tmp_path / "out",
        partition_rows=5_000,
        grant_buckets=grant_buckets,
        staging=f"s3://{bucket}/staging",
        storage=_storage(endpoint),
    )
    once = _outcome(config, InProcess(), tmp_path / "once")
    twice = _outcome(config, Twice(), tmp_path / "twice")
    assert twice.accounting == once.accounting and once.accounting.rows_misdelivered > 0
    assert twice.misdeliveries.collect().equals(once.misdeliveries.collect())
    assert twice.rejected.equals(once.rejected)
    assert twice.users.equals(once.users)
    assert _objects(endpoint, f"s3://{bucket}") == []


def test_a_scatter_run_twice_is_read_from_one_finished_attempt(endpoint: str) -> None:
    staging = Staging(f"s3://{_bucket(endpoint)}/staging", _storage(endpoint))
    staging.create()
    inputs = load_inputs(_config(Path("unused")))
    groups = inputs.deliveries.groups
    first = plan(groups, 5_000, staging)[0]
    shared = exchange.split_grants(inputs.authorizations, groups, Window(), 3, staging)
    for _ in range(2):
        assert exchange.scatter((first.number, first.group), shared) == sum(first.group.file_rows)
    finished = [n for n in staging.files() if n.startswith("rows-") and n.endswith(FINISHED)]
    assert len(finished) == 2  # both runs finished, and wrote their parts
    # A third run still writing (no marker yet) is never read either.
    half = staging / finished[0].rsplit("/", 1)[0] / "zzzz" / f"{exchange.BUCKET}=0" / "0.parquet"
    half.write(pl.DataFrame({"x": [1]}))
    items = exchange.scattered(shared, [True, False])
    rows = sum(
        staging.scan(parts).select(pl.len()).collect().item() for _, _, parts in items if parts
    )
    assert rows == sum(first.group.file_rows)
    staging.remove()
    assert staging.files() == []


def _damaged_logs(root: Path) -> Path:
    logs = root / "logs"
    shutil.copytree(SAMPLE, logs, ignore=shutil.ignore_patterns("expected", "truth.parquet"))
    damaged = sorted((logs / "deliveries").rglob("*.parquet"))[-1]
    data = bytearray(damaged.read_bytes())
    data[8:40] = b"\xff" * 32  # inside the first column chunk's pages
    damaged.write_bytes(bytes(data))
    return logs


@pytest.mark.parametrize("on_cluster", [False, True])
@pytest.mark.parametrize("grant_buckets", [1, 2])
def test_a_failing_scan_leaves_no_staging_object(
    endpoint: str, cluster: str, tmp_path: Path, on_cluster: bool, grant_buckets: int
) -> None:
    bucket = _bucket(endpoint)
    config = ScanConfig.from_directory(
        _damaged_logs(tmp_path),
        out=tmp_path / "out",
        cluster=cluster if on_cluster else None,
        partition_rows=3_000,
        grant_buckets=grant_buckets,
        staging=f"s3://{bucket}/staging",
        storage=_storage(endpoint),
    )
    with pytest.raises(InputError, match=r"\.parquet"):
        scan(config)
    assert not (tmp_path / "out").exists()
    # No task still running writes a part once the scan has removed the staging area.
    time.sleep(2 if on_cluster else 0)
    assert _objects(endpoint, f"s3://{bucket}") == []


def test_a_staging_area_left_behind_by_a_failing_scan_does_not_hide_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scan's own error is what to fix, and comes first; the parts left behind are named.
    def unreadable(*args: Any) -> None:
        raise InputError("deliveries/part-0.parquet: changed while the scan read it")

    def refused(place: Staging) -> None:
        raise PermissionError(f"{place.location}: permission denied")

    monkeypatch.setattr(partitions, "run", unreadable)
    monkeypatch.setattr(Staging, "_remove", refused)
    staging = tmp_path / "staging"
    args = ["scan", str(SAMPLE), "--out", str(tmp_path / "out"), "--staging", str(staging)]
    result = CliRunner().invoke(cli, [*args, "-q"])
    assert result.exit_code == ExitCode.INPUT_ERROR
    error, also = result.stderr.splitlines()
    assert error == "error: deliveries/part-0.parquet: changed while the scan read it"
    assert also.startswith(f"also: staging area {staging}{os.sep}scan-")
    assert also.endswith(": permission denied)")


def test_where_the_tasks_stage_by_default_and_with_the_flag(tmp_path: Path) -> None:
    local = tmp_path / "result" / "_parts"
    remote = "tcp://10.0.0.1:8786"
    out = "s3://bucket/reports/first"
    cases: dict[str, dict[str, Any]] = {
        "in process": {"out": out},
        "local cluster": {"out": out, "cluster": "local:2"},
        "remote, local out": {"out": tmp_path / "out", "cluster": remote},
    }
    for case, options in cases.items():
        assert staging_area.for_scan(_config(**options), local).location == str(local), case
    beside = staging_area.for_scan(_config(out=out, cluster=remote), local)
    assert beside.location.startswith(f"{out}.staging-")
    assert beside != staging_area.for_scan(_config(out=out, cluster=remote), local)  # one per scan
    given = staging_area.for_scan(_config(out=out, staging="s3://shared/tmp/"), local)
    assert given.location.startswith("s3://shared/tmp/scan-")
    relative = staging_area.for_scan(_config(out=tmp_path, staging="parts"), local)
    assert relative.location.startswith(str(Path("parts").resolve() / "scan-"))


def test_a_staging_area_in_the_way_is_a_usage_error(endpoint: str, tmp_path: Path) -> None:
    bucket = _bucket(endpoint)
    storage = _storage(endpoint)
    in_the_way = {
        f"s3://{bucket}/logs/deliveries/tmp": f"is inside the input prefix s3://{bucket}/logs/",
        f"s3://{bucket}/out/tmp": f"--out s3://{bucket}/out must lie apart from it",
        f"s3://no-such-{bucket}/tmp": "no such bucket",
        "ftp://host/tmp": "unsupported location",
    }
    for staging, expected in in_the_way.items():
        config = ScanConfig(
            deliveries=f"s3://{bucket}/logs/*/part-*.parquet",
            authorizations=f"s3://{bucket}/logs/authorizations.parquet",
            out=f"s3://{bucket}/out",
            staging=staging,
            storage=storage,
        )
        with pytest.raises(ConfigError, match=expected):
            staging_area.check(config)
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLE, logs, ignore=shutil.ignore_patterns("expected"))
    for place, expected in {
        logs / "deliveries" / "tmp": f"is inside the input directory {logs / 'deliveries'}",
        tmp_path / "out" / "tmp": f"--out {tmp_path / 'out'} must lie apart from it",
    }.items():
        result = CliRunner().invoke(
            cli, ["scan", str(logs), "--out", str(tmp_path / "out"), "--staging", str(place)]
        )
        assert result.exit_code == ExitCode.USAGE_ERROR, result.output
        assert result.stderr == f"error: --staging {place}: {expected}\n"
        assert not place.exists() and not (tmp_path / "out").exists()


# Azurite's development account and key, as its documentation publishes them.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    """Azurite's blob service on loopback, in memory: its endpoint. Azurite runs on node
    (`npm install -g azurite`, or `AZURITE_BLOB` naming its `azurite-blob`)."""
    program = os.environ.get("AZURITE_BLOB") or shutil.which("azurite-blob")
    if program is None:
        pytest.skip("azurite is not installed (npm install -g azurite)")
    port = _free_port()
    command = [program, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--silent"]
    command += ["--inMemoryPersistence", "--skipApiVersionCheck"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # up to 30 s for node to start
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"azurite did not start: {' '.join(command)}")
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()  # azurite waits for its clients' idle connections to close
            server.wait()


def test_staging_and_a_result_in_azure_blob_storage(
    azurite: str, in_process: dict[str, bytes], tmp_path: Path
) -> None:
    """`az://` through azurite: the tasks' parts staged in a container, the result published
    to one and verified."""
    account = [f"azure_storage_account_name={AZURITE_ACCOUNT}", f"azure_storage_endpoint={azurite}"]
    storage = StorageOptions.parse([*account, f"azure_storage_account_key={AZURITE_KEY}"])
    container = f"staging-{uuid.uuid4().hex[:12]}"
    store = objects.filesystem(Scheme.AZ, storage)
    store.create_dir(container)
    staging = f"az://{container}/staging"
    config = _config(
        tmp_path / "out", grant_buckets=2, partition_rows=7_000, staging=staging, storage=storage
    )
    seen: set[str] = set()

    def look(stage: str) -> None:
        if " of " in stage:
            seen.update(found.path for found in objects.listing(staging, storage))

    scan(config, progress=look)
    assert _reports(tmp_path / "out") == in_process
    assert any("/rows-" in name for name in seen)
    listed = store.get_file_info(pafs.FileSelector(container, recursive=True))
    assert [found.path for found in listed if found.type == pafs.FileType.File] == []

    out = f"az://{container}/result"
    options = [arg for option in account for arg in ("--storage-option", option)]
    options += ["--storage-option", f"azure_storage_account_key={AZURITE_KEY}"]
    result = CliRunner().invoke(cli, ["scan", str(SAMPLE), "--out", out, "-q", *options])
    assert (result.exit_code, result.stderr) == (ExitCode.OK, "")
    result = CliRunner().invoke(cli, ["verify", out, *options])
    assert (result.exit_code, result.stderr) == (
        ExitCode.OK,
        f"verified: {out} matches its manifest.json\n",
    )
    with store.open_input_stream(f"{container}/result/users.csv") as stream:
        assert stream.read() == in_process["users.csv"]
