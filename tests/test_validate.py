"""`incident validate`: what a scan would make of its inputs, from footers and a sample or from
every row, by the scan's own rules."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from incident import ScanConfig, scan
from incident.cli import cli
from incident.errors import ExitCode, InputError
from incident.validate import validate
from tests.conftest import delivery, grant, utc, write
from tests.test_damaged import (
    EXTREME_IDS,
    EXTREME_TIMES,
    ID_COLUMNS,
    SETTINGS,
    TIME_COLUMNS,
    Damage,
    column_damage,
    value_damage,
    write_inputs,
)

runner = CliRunner()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Deliveries with one row of each problem, a copy of a misdelivery, and one sound row."""
    rows = [
        delivery(1, utc(2018, 3, 1), 10, 1, delivery_id="a"),
        delivery(2, utc(2018, 3, 1), 11, 1, delivery_id="b"),
        delivery(2, utc(2018, 3, 1), 11, 1, delivery_id="b"),  # a copy, misdelivered
        delivery(None, utc(2018, 3, 1), 10, 1),
        delivery(3, "yesterday", 10, 1),
        delivery(4, utc(2018, 3, 1), 10, "  "),
        delivery(5, utc(2016, 1, 1), 10, 1),  # outside the window
    ]
    frame = pl.DataFrame(
        [{**r, "delivered_at": str(r["delivered_at"])} for r in rows],
        schema_overrides={"delivered_at": pl.String},
    )
    write(frame, tmp_path / "logs" / "deliveries" / "part-0.parquet")
    write([grant(1, 10), grant(None, 10)], tmp_path / "logs" / "authorizations.parquet")
    return tmp_path / "logs"


def _scan_rejects(config: ScanConfig) -> tuple[Counter[str], int]:
    """The reasons of the delivery rows a scan rejects, and its rejected grants."""
    result = scan(config)
    rejected = pl.read_parquet(config.out / "rejected.parquet")
    reasons = Counter(rejected["reject_reason"].to_list()) if rejected.height else Counter()
    assert result.summary.inputs is not None
    grants = result.summary.inputs.authorizations
    assert grants is not None
    return reasons, grants.rows_rejected or 0


def test_full_pass_rejects_exactly_the_rows_scan_rejects(logs: Path, tmp_path: Path) -> None:
    config = ScanConfig.from_directory(logs, out=tmp_path / "out")
    validation = validate(config, full=True)
    deliveries, grants = validation.inputs[0], validation.inputs[1]
    assert deliveries.reasons == {
        "delivered_at: not a timestamp": 1,
        "event_id: null": 1,
        "for_user_id: empty": 1,
    }
    assert (deliveries.rows_checked, deliveries.rejected) == (7, 3)
    assert deliveries.in_window == 3 and deliveries.duplicates == 1
    assert grants.reasons == {"for_user_id: null": 1}
    reasons, rejected_grants = _scan_rejects(config)
    # The scan rejects copies of misdelivered rows as `duplicate`; validate counts every copy.
    assert reasons == Counter({**deliveries.reasons, "duplicate": deliveries.duplicates})
    assert rejected_grants == grants.rejected


def test_time_range_and_nulls(logs: Path) -> None:
    validation = validate(ScanConfig.from_directory(logs), full=True)
    (delivered_at,) = validation.inputs[0].time_ranges
    assert (delivered_at.first, delivered_at.last) == (utc(2016, 1, 1), utc(2018, 3, 1))
    nulls = {c.name: c.nulls for c in validation.inputs[0].columns}
    assert nulls["event_id"] == 1 and nulls["sender_id"] == 7  # absent: every row null
    assert [c.source for c in validation.inputs[0].columns][5:7] == ["delivery_id", None]


def _corrupt_page_logs(folder: Path, rows: int = 3000) -> Path:
    """Deliveries whose last row group has a data page that does not decompress: its footer
    and page headers are sound, so only reading that page finds it."""
    times = [1_519_862_400_000_000 + i * 1_000_000 for i in range(rows)]
    table = pa.table(
        {
            "event_id": pa.array(range(rows), pa.int64()),
            "delivered_at": pa.array(times, pa.timestamp("us", "UTC")),
            "app_id": pa.array([10] * rows, pa.int64()),
            "for_user_id": pa.array([1] * rows, pa.int64()),
            "event_type": pa.array([f"tweet-{i}" for i in range(rows)]),
        }
    )
    path = folder / "deliveries.parquet"
    pq.write_table(
        table, path, row_group_size=rows // 3, compression="snappy", use_dictionary=False
    )
    chunk = pq.read_metadata(path).row_group(2).column(4)
    end = chunk.data_page_offset + chunk.total_compressed_size
    data = bytearray(path.read_bytes())
    for offset in range(end - 40, end - 4):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    write([grant(1, 10)], folder / "authorizations.parquet")
    return folder


def test_sample_reads_footers_and_a_sample_not_every_row(tmp_path: Path) -> None:
    folder = _corrupt_page_logs(tmp_path)
    code = runner.invoke(cli, ["validate", str(folder), "--sample-rows", "100"])
    assert code.exit_code == ExitCode.OK, code.stderr
    (deliveries, _) = validate(ScanConfig.from_directory(folder), sample_rows=100).inputs
    assert (deliveries.rows_checked, deliveries.rows) == (100, 3000)
    # The time range is every row's, from the footers' statistics.
    (span,) = deliveries.time_ranges
    assert (span.last, span.basis) == (utc(2018, 3, 1) + timedelta(seconds=2999), "footer")
    full = runner.invoke(cli, ["validate", str(folder), "--full"])
    assert full.exit_code == ExitCode.INPUT_ERROR
    assert full.stderr == (
        f"error: {folder / 'deliveries.parquet'}: column 'event_type': cannot be read "
        "(parquet: File out of specification: Invalid snappy data: copy offset is out of "
        "bounds); expected Parquet data that polars can read\n"
    )


def test_cli_sound_inputs_exit_0_with_summary_and_json(logs: Path) -> None:
    result = runner.invoke(cli, ["validate", str(logs), "--full", "--json"])
    assert result.exit_code == ExitCode.OK
    document = json.loads(result.stdout)
    assert document["mode"] == "full"
    assert document["inputs"]["deliveries"]["rows_rejected"] == 3
    assert document["inputs"]["deliveries"]["time_ranges"]["delivered_at"] == {
        "first": "2016-01-01T00:00:00Z",
        "last": "2018-03-01T00:00:00Z",
        "basis": "full",
    }
    lines = result.stderr.splitlines()
    assert lines[0] == "validation (every row read)"
    assert "  every row, 7 rows: 3 would be rejected; 3 valid in the window; 1 copies of " in (
        "\n".join(lines)
    )
    assert f"warning: {logs / 'deliveries'}: 3 of 7 deliveries rows would be rejected" in lines
    assert lines[-1] == "inputs readable: a scan can read them"
    quiet = runner.invoke(cli, ["validate", str(logs), "-q"])
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")


def test_cli_broken_schema_exits_4_naming_file_and_column(logs: Path) -> None:
    part = logs / "deliveries" / "part-0.parquet"
    pl.read_parquet(part).drop("event_type").write_parquet(part)
    result = runner.invoke(cli, ["validate", str(logs)])
    assert result.exit_code == ExitCode.INPUT_ERROR
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {part}: missing required column 'event_type'; "
        "map another column with --map deliveries.event_type=NAME\n"
    )


def test_cli_takes_the_inputs_as_scan_does(logs: Path) -> None:
    part = logs / "deliveries" / "part-0.parquet"
    pl.read_parquet(part).rename({"delivered_at": "ts"}).write_parquet(part)
    args = ["--deliveries", str(logs / "deliveries"), "--authorizations"]
    args += [str(logs / "authorizations.parquet"), "--since", "2018-01-01", "--json", "--full"]
    result = runner.invoke(cli, ["validate", *args, "--map", "deliveries.delivered_at=ts"])
    assert result.exit_code == ExitCode.OK, result.stderr
    document = json.loads(result.stdout)
    assert document["window"]["since"] == "2018-01-01T00:00:00Z"
    columns = document["inputs"]["deliveries"]["columns"]
    assert columns[1]["source"] == "ts"
    assert "apps" not in document["inputs"]


@st.composite
def row_damage(draw: st.DrawFn) -> Damage:
    """An extreme ID or time in one row of the deliveries or the grants: a rejected row, more
    often than an unreadable input."""
    input_ = draw(st.sampled_from(["deliveries", "authorizations"]))
    kind = draw(st.sampled_from(["id", "time"]))
    columns = ID_COLUMNS[input_] if kind == "id" else TIME_COLUMNS[input_]
    dtype, value = draw(st.sampled_from(EXTREME_IDS if kind == "id" else EXTREME_TIMES))
    row = draw(st.integers(0, 2))
    return Damage(input_, "value", draw(st.sampled_from(columns)), dtype, value, row)


@settings(SETTINGS, max_examples=80)
@given(
    damages=st.lists(
        st.one_of(row_damage(), row_damage(), value_damage(), column_damage()),
        min_size=1,
        max_size=3,
    )
)
def test_full_pass_agrees_with_scan_on_damaged_inputs(damages: list[Damage]) -> None:
    """Whatever the damage: validate fails where loading fails, and otherwise counts exactly
    the delivery and grant rows the scan rejects (copies apart: the scan's `duplicate`)."""
    with tempfile.TemporaryDirectory() as folder:
        paths = write_inputs(Path(folder), damages, with_apps=True)
        config = ScanConfig(
            deliveries=str(paths["deliveries"]),
            authorizations=str(paths["authorizations"]),
            apps=str(paths["apps"]),
            out=Path(folder) / "out",
        )
        try:
            validation = validate(config, full=True)
        except InputError as refused:
            with pytest.raises(InputError) as scanned:
                scan(config)
            assert str(scanned.value) == str(refused)
            return
        try:
            reasons, rejected_grants = _scan_rejects(config)
        except InputError:
            # DESIGN rule 7: the scan vouches for nothing; validate said it would stop.
            assert any("the scan would stop" in w for w in validation.warnings), validation
            return
    deliveries, grants = validation.inputs[0], validation.inputs[1]
    duplicates = reasons.pop("duplicate", 0)
    assert reasons == Counter(deliveries.reasons)
    assert duplicates <= (deliveries.duplicates or 0)
    assert rejected_grants == grants.rejected
