"""Detection as partition tasks: the plan, and the same result in one process, in many small
partitions, and on a Dask LocalCluster started here, including when a worker dies."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dask
import polars as pl
import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident import ScanConfig, scan
from incident.cli import cli
from incident.cli.scan import _with_bar
from incident.config import Window
from incident.errors import ConfigError, ExitCode, InputError
from incident.pipeline import findings, run
from incident.pipeline.detect import PACKED_KEY, Packing
from incident.pipeline.exchange import BUCKET, Exchange, bucket_of
from incident.pipeline.load import SourceGroup
from incident.pipeline.partitions import plan
from incident.storage.staging import Staging
from tests.conftest import delivery, grant, utc, write

SAMPLE = Path(__file__).resolve().parent.parent / "sample_logs"


def _group(file_rows: tuple[int, ...]) -> SourceGroup:
    files = tuple(f"f{i}.parquet" for i in range(len(file_rows)))
    return SourceGroup(files, False, pl.Schema(), (), (), (), {}, file_rows)


@given(
    st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=12), min_size=1, max_size=4),
    st.integers(1, 120),
)
def test_plan_reads_every_file_once_in_runs_under_the_limit(
    groups: list[list[int]], limit: int
) -> None:
    planned = plan(tuple(_group(tuple(rows)) for rows in groups), limit, Staging("parts"))
    assert [p.number for p in planned] == list(range(len(planned)))
    # Every file of every group is in exactly one partition, in order.
    files = [(f, n) for p in planned for f, n in zip(p.group.files, p.group.file_rows, strict=True)]
    expected = [(f"f{i}.parquet", n) for rows in groups for i, n in enumerate(rows)]
    assert files == expected
    for partition in planned:
        rows = partition.group.file_rows
        assert sum(rows) <= limit or len(rows) == 1
    assert len(planned) >= len(groups)


def _awkward_logs(tmp_path: Path) -> Path:
    """The sample logs, plus what exercises every path of detection: a second schema group
    (text IDs, an extra column), rejected rows, a copy of a misdelivered row, and a key with
    more islands than the key table holds."""
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLE, logs, ignore=shutil.ignore_patterns("expected", "truth.parquet"))
    many_islands = [grant(7, 70, utc(2017, 6, day), utc(2017, 6, day + 1)) for day in (1, 5, 9, 13)]
    grants = pl.read_parquet(logs / "authorizations.parquet")
    grants = pl.concat([grants, pl.DataFrame(many_islands).cast(grants.schema)])
    write(grants, logs / "authorizations.parquet")
    extra = [
        delivery("e1", utc(2017, 6, 3), "70", "7", "direct_message", channel="x"),
        delivery("e2", utc(2017, 6, 6), "70", "7", "tweet", channel="y"),
        delivery("e3", utc(2017, 6, 12), "70", "7", "tweet", channel="z"),
        delivery("e3", utc(2017, 6, 12), "70", "7", "tweet", channel="z"),
        delivery(None, utc(2017, 6, 12), "70", "7", "tweet", channel="null event"),
        delivery("e4", utc(2017, 6, 12), "70", "7", " ", channel="blank type"),
    ]
    write(extra, logs / "deliveries" / "extra" / "part-0.parquet")
    return logs


def _result_files(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def _scan(logs: Path, out: Path, **options: Any) -> dict[str, bytes]:
    scan(ScanConfig.from_directory(logs, out=out, formats=("parquet", "csv"), **options))
    return _result_files(out)


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """The awkward logs and their result scanned in one process, in one partition."""
    tmp = tmp_path_factory.mktemp("awkward")
    logs = _awkward_logs(tmp)
    return logs, _scan(logs, tmp / "one")


def test_awkward_logs_exercise_every_status(awkward: tuple[Path, dict[str, bytes]]) -> None:
    _, files = awkward
    summary = files["summary.json"].decode()
    for present in ('"rows_rejected": 3', '"after_revocation"', '"before_grant"', '"no_grant"'):
        assert present in summary


@pytest.mark.parametrize("grant_buckets", [1, 2, 5])
def test_many_small_partitions_give_the_same_bytes(
    awkward: tuple[Path, dict[str, bytes]], tmp_path: Path, grant_buckets: int
) -> None:
    logs, expected = awkward
    got = _scan(logs, tmp_path / "small", partition_rows=700, grant_buckets=grant_buckets)
    assert got == expected


def test_grants_split_into_buckets_give_the_same_bytes_in_one_partition(
    awkward: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    logs, expected = awkward
    # A staging path with glob characters: the parts are read as names.
    assert _scan(logs, tmp_path / "buckets[1]*?", grant_buckets=3) == expected


def test_findings_in_many_ranges_and_buckets_give_the_same_bytes(
    awkward: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs, expected = awkward
    # A few rows per range of event_id: the findings are sorted and their copies found out of
    # core, range by range; the users and developers reports are made a bucket at a time.
    monkeypatch.setattr(findings, "RANGE_ROWS", 5)
    monkeypatch.setattr(run, "IMPACT_ROWS", 7)
    assert _scan(logs, tmp_path / "ranges") == expected


def test_a_keys_bucket_is_a_stable_function_of_its_ids() -> None:
    # Fixed values: a bucket must not depend on the polars version or the machine.
    frame = pl.DataFrame(
        {
            PACKED_KEY: [0, 10, 11, None, -7],
            "for_user_id": ["12345", "0123", "abc", None, "-7"],
        }
    )
    packed = frame.select(bucket_of([PACKED_KEY], 3))[BUCKET].to_list()
    text = frame.select(bucket_of(["for_user_id", "app_id"], 7))[BUCKET].to_list()
    assert packed == [0, 1, 2, 0, 2]  # the floor modulo: never negative
    assert text == [12345 % 7, len("0123"), len("abc"), 0, 0]
    wide = pl.DataFrame({PACKED_KEY: [2**70, -(2**70) - 1]}, schema={PACKED_KEY: pl.Int128})
    assert wide.select(bucket_of([PACKED_KEY], 5))[BUCKET].to_list() == [2**70 % 5, 0]


def _cluster(**config: Any) -> Iterator[tuple[LocalCluster, Client]]:
    with (
        dask.config.set(config),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield cluster, client


@pytest.fixture
def cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """A 2-worker LocalCluster of its own: a test may kill its workers."""
    yield from _cluster()


def _kill_one_worker(client: Client) -> int:
    """SIGKILL one worker process; its pid."""
    pids: dict[str, int] = client.run(os.getpid)
    pid = sorted(pids.values())[0]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_local_cluster_gives_the_same_bytes(
    awkward: tuple[Path, dict[str, bytes]],
    cluster: tuple[LocalCluster, Client],
    tmp_path: Path,
) -> None:
    logs, expected = awkward
    address = cluster[0].scheduler_address
    assert _scan(logs, tmp_path / "dask", cluster=address, partition_rows=2_000) == expected
    exchanged = _scan(
        logs, tmp_path / "exchanged", cluster=address, partition_rows=3_000, grant_buckets=4
    )
    assert exchanged == expected


def test_a_worker_killed_mid_scan_and_the_scan_completes_the_same(
    awkward: tuple[Path, dict[str, bytes]],
    cluster: tuple[LocalCluster, Client],
    tmp_path: Path,
) -> None:
    logs, expected = awkward
    local, client = cluster
    killed: list[int] = []

    def kill_after_first_partition(stage: str) -> None:
        if stage.startswith("detecting misdeliveries: 1 of") and not killed:
            killed.append(_kill_one_worker(client))

    config = ScanConfig.from_directory(
        logs,
        out=tmp_path / "killed",
        formats=("parquet", "csv"),
        cluster=local.scheduler_address,
        partition_rows=500,
    )
    scan(config, progress=kill_after_first_partition)
    assert killed
    assert _result_files(tmp_path / "killed") == expected


def test_a_task_whose_worker_keeps_dying_fails_the_scan_and_publishes_nothing(
    awkward: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    logs, _ = awkward
    # No failure allowed: the first worker death under a task fails it for good.
    for local, client in _cluster(**{"distributed.scheduler.allowed-failures": 0}):

        def kill(stage: str, client: Client = client) -> None:
            if stage.startswith("detecting misdeliveries: 1 of"):
                _kill_one_worker(client)

        config = ScanConfig.from_directory(
            logs, out=tmp_path / "out", cluster=local.scheduler_address, partition_rows=300
        )
        with pytest.raises(ConfigError, match=r"--cluster tcp://.*worker dying under it"):
            scan(config, progress=kill)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]  # no staging left


@pytest.mark.parametrize("grant_buckets", [1, 2])
def test_a_damaged_file_is_named_by_the_task_that_reads_it(
    cluster: tuple[LocalCluster, Client], tmp_path: Path, grant_buckets: int
) -> None:
    logs = _awkward_logs(tmp_path)
    damaged = logs / "deliveries" / "extra" / "part-0.parquet"
    data = bytearray(damaged.read_bytes())
    data[8:40] = b"\xff" * 32  # inside the first column chunk's pages
    damaged.write_bytes(bytes(data))
    config = ScanConfig.from_directory(
        logs,
        out=tmp_path / "out",
        cluster=cluster[0].scheduler_address,
        grant_buckets=grant_buckets,
        partition_rows=3_000,
    )
    with pytest.raises(InputError, match=r"part-0\.parquet"):
        scan(config)
    assert not (tmp_path / "out").exists()
    # No task still running brings the staging back once the scan has removed it.
    time.sleep(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ("local:0", "--cluster local:0: expected between 1 and "),
        ("local:99999999999999999999", "--cluster local:99999999999999999999: expected between"),
        ("local:", "--cluster local:: expected local, local:N or a scheduler address"),
        ("Local", "--cluster Local: expected local, local:N or a scheduler address"),
        ("tcp://", "--cluster tcp://: cannot reach the Dask scheduler"),
        ("tcp://127.0.0.1:notaport", "--cluster tcp://127.0.0.1:notaport: cannot reach"),
        ("tcp://127.0.0.1:9", "--cluster tcp://127.0.0.1:9: cannot reach the Dask scheduler"),
    ],
)
def test_a_cluster_that_cannot_be_used_is_a_usage_error(
    cluster: str, message: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli, ["scan", str(SAMPLE), "--out", str(tmp_path / "out"), "--cluster", cluster]
    )
    assert result.exit_code == ExitCode.USAGE_ERROR, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_without_dask_the_cluster_flag_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "incident.engine.dask", None)
    result = CliRunner().invoke(
        cli, ["scan", str(SAMPLE), "--out", str(tmp_path / "out"), "--cluster", "local"]
    )
    assert result.exit_code == ExitCode.USAGE_ERROR
    assert "pip install 'incident[dask]'" in result.output


def test_the_terminal_shows_a_bar_of_the_tasks_done() -> None:
    stage = "detecting misdeliveries: 3 of 8 partitions read, 30 of 80 rows"
    assert _with_bar(stage) == f"{stage} [{'━' * 7}{' ' * 13}]"
    assert _with_bar("explaining misdeliveries") == "explaining misdeliveries…"


def test_progress_counts_tasks_and_rows_to_the_total(tmp_path: Path) -> None:
    stages: list[str] = []
    config = ScanConfig.from_directory(SAMPLE, out=tmp_path / "out", partition_rows=5_000)
    scan(config, progress=stages.append)
    counted = [s for s in stages if " of " in s]
    assert counted[-1] == (
        f"detecting misdeliveries: {len(counted)} of {len(counted)} partitions read, "
        "20,000 of 20,000 rows"
    )


_DAY = timedelta(days=1)
_deliveries = st.lists(  # files of (user, app, day, hour) deliveries; a file may be empty
    st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(0, 40), st.integers(0, 23)),
        max_size=4,
    ),
    min_size=1,
    max_size=4,
)
_grants = st.lists(  # (user, app, first day, days held; None: never revoked)
    st.tuples(
        st.integers(1, 3),
        st.integers(1, 2),
        st.integers(0, 40),
        st.one_of(st.none(), st.integers(0, 6)),
    ),
    min_size=1,
    max_size=10,
)


Files = list[list[tuple[int, int, int, int]]]


def _write_case(root: Path, files: Files, grants: list[Any]) -> Path:
    start = utc(2018, 1, 1)
    schema = {
        "event_id": pl.Int64,
        "delivered_at": pl.Datetime("us", "UTC"),
        "app_id": pl.Int64,
        "for_user_id": pl.Int64,
        "event_type": pl.String,
    }
    event = iter(range(1_000))
    for index, rows in enumerate(files):
        frame = [
            delivery(next(event), start + day * _DAY + timedelta(hours=hour), app, user)
            for user, app, day, hour in rows
        ]
        write(frame, root / "deliveries" / f"part-{index}.parquet", schema=schema)
    held = [
        grant(user, app, start + day * _DAY, None if days is None else start + (day + days) * _DAY)
        for user, app, day, days in grants
    ]
    write(held, root / "authorizations.parquet")
    return root


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=_deliveries, grants=_grants)
def test_grant_buckets_and_partitions_never_change_an_answer(
    tmp_path_factory: pytest.TempPathFactory, files: Files, grants: list[Any]
) -> None:
    """Keys with many islands, rows of several partitions with the same row numbers, empty
    files: one key table in one partition and every split give the same bytes."""
    root = _write_case(tmp_path_factory.mktemp("case"), files, grants)
    if not sum(map(len, files)):
        return  # DESIGN rule 7: no delivery to vouch for
    window = Window(utc(2017, 1, 1), utc(2019, 1, 1))
    results = []
    for name, options in (
        ("one", {"grant_buckets": 1}),
        ("files", {"grant_buckets": 1, "partition_rows": 1}),
        ("buckets", {"grant_buckets": 2, "partition_rows": 1}),
        ("more", {"grant_buckets": 3}),
    ):
        config = ScanConfig.from_directory(root, out=root / name, window=window, **options)
        scan(config)
        results.append(_result_files(root / name))
    assert all(result == results[0] for result in results[1:])


def test_text_grants_with_integer_deliveries_in_buckets(tmp_path: Path) -> None:
    """No integer-keyed grant at all: the integer-keyed buckets are empty, and say so."""
    root = tmp_path / "logs"
    write([delivery(1, utc(2018, 3, 1), 10, 1)], root / "deliveries" / "part-0.parquet")
    write([grant("u1", "a1")], root / "authorizations.parquet")
    one = _scan(root, tmp_path / "one", grant_buckets=1)
    assert _scan(root, tmp_path / "two", grant_buckets=2) == one


def test_a_lost_tasks_half_written_rows_are_never_read(tmp_path: Path) -> None:
    exchange = Exchange(Staging(str(tmp_path)), 2, Window(), Packing((0, 1), (0, 1)), {}, {})
    # Partition 0 finished attempt "b" and left "a" half written; partition 1 finished none.
    for attempt in ("000000/a", "000000/b", "000001/c"):
        part = tmp_path / "rows-1" / attempt / f"{BUCKET}=0" / "00000000.parquet"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"")
    (tmp_path / "rows-1" / "000000" / "b.finished").write_bytes(b"")
    rows = exchange.rows(True)
    assert [part.name for part in rows[0]] == [f"rows-1/000000/b/{BUCKET}=0/00000000.parquet"]


def test_rows_of_two_partitions_with_one_row_number_keep_their_own_status(
    tmp_path: Path,
) -> None:
    """A key with more islands than the key table holds is settled per row: the first rows of
    two partitions (both numbered 0) meet in one bucket and must not trade statuses."""
    root = tmp_path / "logs"
    held = [grant(1, 1, utc(2018, month, 1), utc(2018, month, 2)) for month in (1, 2, 3)]
    write(held, root / "authorizations.parquet")
    late, covered = utc(2018, 3, 15), utc(2018, 3, 1, 12)
    write([delivery("e1", late, 1, 1)], root / "deliveries" / "a.parquet")
    write([delivery("e2", covered, 1, 1)], root / "deliveries" / "b.parquet")
    files = _scan(root, tmp_path / "buckets", grant_buckets=2, partition_rows=1)
    assert files == _scan(root, tmp_path / "one", grant_buckets=1)
    misdelivered = pl.read_parquet(tmp_path / "buckets" / "misdeliveries.parquet")
    assert misdelivered.select("event_id", "reason").rows() == [("e1", "after_revocation")]


@pytest.mark.parametrize("option", ["partition_rows", "grant_buckets"])
def test_a_count_below_one_is_refused_from_python_too(option: str) -> None:
    with pytest.raises(ConfigError, match=r"expected a whole number of at least 1"):
        ScanConfig.from_directory(SAMPLE, **{option: 0})
