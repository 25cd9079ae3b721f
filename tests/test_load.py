"""Reading inputs: every ID and timestamp form of the contract, layouts, mappings, bad input."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from incident import ColumnMap, ScanConfig, scan
from incident.api import ScanResult
from incident.errors import InputError
from incident.pipeline.dictionary import BLANK_FIRST_BYTES
from incident.pipeline.files import find_files
from incident.pipeline.footers import with_dictionary_proofs
from incident.pipeline.load import load_input
from incident.pipeline.values import is_blank
from incident.schema import Input
from tests.conftest import BYSTANDER_GRANT, ScanFn, delivery, grant, utc, write

# One instant, 2018-03-01T00:00:00Z, in every timestamp form the contract accepts.
INSTANT = utc(2018, 3, 1)
FORMS: dict[str, tuple[object, pl.DataType | type[pl.DataType] | None]] = {
    "aware_ms_tokyo": (INSTANT, pl.Datetime("ms", "Asia/Tokyo")),
    "aware_ns_utc": (INSTANT, pl.Datetime("ns", "UTC")),
    "aware_s": (INSTANT, pl.Datetime("us", "America/New_York")),
    "naive_us": (INSTANT.replace(tzinfo=None), pl.Datetime("us")),
    "epoch_ms": (int(INSTANT.timestamp() * 1000), pl.Int64),
    "iso_offset": ("2018-03-01T09:00:00+09:00", pl.String),
    "iso_zulu_fraction": ("2018-03-01T00:00:00.000Z", pl.String),
    "iso_space_naive": ("2018-03-01 00:00:00", pl.String),
    "iso_compact_offset": ("2018-02-28T19:00:00-0500", pl.String),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_timestamp_form_is_the_same_instant(run_scan: ScanFn, form: str) -> None:
    value, dtype = FORMS[form]
    deliveries = pl.DataFrame(
        [delivery(delivered_at=value)],
        schema_overrides={"delivered_at": dtype} if dtype else None,
    )
    # A grant revoked exactly at the instant: the delivery is after revocation, not covered.
    revoked = [grant(granted_at=utc(2018, 1, 1), revoked_at=INSTANT)]
    result = run_scan(deliveries, revoked)
    assert result.misdeliveries.collect()["delivered_at"].to_list() == [INSTANT]
    assert result.misdeliveries.collect()["reason"].to_list() == ["after_revocation"]
    just_after = [grant(granted_at=utc(2018, 1, 1), revoked_at=INSTANT + timedelta(microseconds=1))]
    assert run_scan(deliveries, just_after).accounting.rows_authorized == 1


def test_nanoseconds_are_not_rounded(run_scan: ScanFn) -> None:
    nanos = int(INSTANT.timestamp()) * 10**9
    deliveries = pl.DataFrame([delivery()]).with_columns(
        pl.lit(nanos + 1).cast(pl.Datetime("ns", "UTC")).alias("delivered_at")
    )
    grants = pl.DataFrame([grant()]).with_columns(
        pl.lit(nanos).cast(pl.Datetime("ns", "UTC")).alias("granted_at").alias("granted_at"),
        pl.lit(nanos + 2).cast(pl.Datetime("ns", "UTC")).alias("revoked_at"),
    )
    assert run_scan(deliveries, grants).accounting.rows_authorized == 1
    grants = grants.with_columns(
        pl.lit(nanos + 1).cast(pl.Datetime("ns", "UTC")).alias("revoked_at")
    )
    assert run_scan(deliveries, grants).accounting.rows_misdelivered == 1


# 2018-03-02T14:13:20Z in epoch milliseconds: a valid delivery time.
EPOCH_MS = 1_520_000_000_000


def test_out_of_range_epoch_is_rejected(run_scan: ScanFn) -> None:
    # With one valid row beside it: a scan whose every row is rejected is refused (rule 7).
    deliveries = pl.DataFrame([delivery(delivered_at=10**17), delivery(delivered_at=EPOCH_MS)])
    result = run_scan(deliveries, [grant()])
    assert result.accounting.rows_rejected == 1


def test_hive_directory_glob_and_changing_column_types(tmp_path: Path) -> None:
    root = tmp_path / "deliveries"
    # Two days whose files disagree on column types: the reader normalises each on its own.
    write([delivery(1, utc(2018, 3, 1), 10, 1)], root / "day=2018-03-01" / "part-0.parquet")
    write(
        [delivery("2", "2018-03-02T00:00:00Z", "10", "1", extra="x")],
        root / "day=2018-03-02" / "part-0.parquet",
    )
    (root / "_SUCCESS").write_text("")
    grants = write([grant(1, 10)], tmp_path / "authorizations.parquet")
    for path in (root, tmp_path / "deliveries" / "*" / "*.parquet"):
        result = scan(
            ScanConfig(deliveries=str(path), authorizations=str(grants), out=tmp_path / "out")
        )
        assert result.accounting.rows_read == 2
        assert result.accounting.rows_authorized == 2
    assert len(find_files(Input.DELIVERIES, str(root))) == 2


def test_column_mapping_from_flags_and_toml(tmp_path: Path) -> None:
    frame = pl.DataFrame([delivery()]).rename({"delivered_at": "ts", "for_user_id": "uid"})
    deliveries = write(frame, tmp_path / "d.parquet")
    grants = write([grant()], tmp_path / "g.parquet")
    toml = tmp_path / "map.toml"
    toml.write_text('[map.deliveries]\ndelivered_at = "ts"\n')
    columns = ColumnMap.parse(["deliveries.for_user_id=uid"], base=ColumnMap.from_toml(toml))
    result = scan(ScanConfig(str(deliveries), str(grants), out=tmp_path / "out", columns=columns))
    assert result.accounting.rows_authorized == 1


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    path = write(pl.DataFrame([delivery()]).drop("event_type"), tmp_path / "d.parquet")
    with pytest.raises(InputError, match=r"d\.parquet: missing required column 'event_type'"):
        load_input(Input.DELIVERIES, str(path), ColumnMap())
    mapped = ColumnMap.parse(["deliveries.event_type=kind"])
    with pytest.raises(InputError, match=r"'kind' \(mapped to deliveries.event_type\)"):
        load_input(Input.DELIVERIES, str(path), mapped)


def test_not_parquet_and_missing_path_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("event_id,delivered_at\n1,2018\n")
    with pytest.raises(InputError, match=r"bad\.parquet: not a readable Parquet file"):
        load_input(Input.DELIVERIES, str(bad), ColumnMap())
    with pytest.raises(InputError, match=r"nope: deliveries input not found"):
        load_input(Input.DELIVERIES, str(tmp_path / "nope"), ColumnMap())


def test_unsupported_column_type_names_file_column_and_expectation(tmp_path: Path) -> None:
    frame = pl.DataFrame([delivery()]).with_columns(pl.lit(True).alias("delivered_at"))
    path = write(frame, tmp_path / "d.parquet")
    with pytest.raises(InputError, match=r"d\.parquet: column 'delivered_at' is Boolean: expected"):
        load_input(Input.DELIVERIES, str(path), ColumnMap())


def test_bad_authorization_rows_are_quarantined(run_scan: ScanFn) -> None:
    grants = [
        grant(1, 10, utc(2018, 1, 1), None),
        grant(2, 10, utc(2018, 2, 1), utc(2018, 1, 1)),  # revoked before granted
        {"for_user_id": 3, "app_id": 10, "granted_at": None, "revoked_at": None},
    ]
    deliveries = [
        delivery(1, for_user_id=1),
        delivery(2, for_user_id=2),
        delivery(3, for_user_id=3),
    ]
    result = run_scan(deliveries, grants)
    assert result.accounting.rows_misdelivered == 2
    quarantined = pl.read_parquet(result.out / "rejected_authorizations.parquet")
    assert sorted(quarantined["reject_reason"].to_list()) == [
        "granted_at: null",
        "revoked_at: before granted_at",
    ]
    assert result.summary.to_json()["inputs"]["authorizations"]["rows_rejected"] == 2


def test_app_with_two_developers_is_an_input_error(run_scan: ScanFn) -> None:
    apps = [{"app_id": 10, "developer_id": "a"}, {"app_id": 10, "developer_id": "b"}]
    with pytest.raises(InputError, match=r"app '10' is registered to several developers"):
        run_scan([delivery()], [], apps)


def test_offsets_are_normalised_before_comparison(run_scan: ScanFn) -> None:
    tokyo = timezone(timedelta(hours=9))
    deliveries = [delivery(delivered_at="2018-03-01T08:59:59+09:00")]
    grants = [grant(granted_at=datetime(2018, 3, 1, 9, tzinfo=tokyo).astimezone(UTC))]
    result = run_scan(deliveries, grants)
    assert result.misdeliveries.collect()["reason"].to_list() == ["before_grant"]


def test_times_beyond_the_nanosecond_range(run_scan: ScanFn) -> None:
    deliveries = [
        delivery(1, "2602-03-01T00:00:00Z"),  # would wrap around to 2017 if parsed blindly
        delivery(2, "2018-03-01T00:00:00Z"),
    ]
    # "Never revoked" written as the end of the calendar, in text and as a timestamp.
    grants = [grant(revoked_at="9999-12-31T23:59:59Z", granted_at="2016-01-01T00:00:00Z")]
    result = run_scan(deliveries, grants)
    assert result.accounting.rows_rejected == 1
    assert result.accounting.rows_authorized == 1
    far = pl.DataFrame([grant()]).with_columns(
        pl.lit(datetime(9999, 12, 31)).cast(pl.Datetime("us", "UTC")).alias("revoked_at")
    )
    assert run_scan([delivery()], far).accounting.rows_authorized == 1
    epoch = pl.DataFrame(
        [
            delivery(delivered_at=-(2**63)),
            delivery(delivered_at=2**63 - 1),
            delivery(delivered_at=EPOCH_MS),
        ]
    )
    assert run_scan(epoch, [grant()]).accounting.rows_rejected == 2


def test_decimal_and_float_ids(run_scan: ScanFn) -> None:
    from decimal import Decimal

    big = 9007199254740993  # 2**53 + 1: a float would round it
    deliveries = pl.DataFrame(
        [delivery(Decimal(big), for_user_id=Decimal(big)), delivery(Decimal(big + 1))],
        schema_overrides={"event_id": pl.Decimal(38, 0), "for_user_id": pl.Decimal(38, 0)},
    )
    result = run_scan(deliveries, [grant(for_user_id=str(big))])
    assert result.accounting.rows_authorized == 1
    assert result.misdeliveries.collect()["event_id"].to_list() == [str(big + 1)]
    floats = pl.DataFrame([delivery(1.0), delivery(1.5), delivery(float("nan"))])
    result = run_scan(floats, [])
    assert result.accounting.rows_rejected == 2
    assert result.misdeliveries.collect()["event_id"].to_list() == ["1"]


def test_extra_columns_pass_through_to_misdeliveries(run_scan: ScanFn) -> None:
    extra = {"status": "delivered", "__index_level_0__": 7, "gap_start": "x"}
    result = run_scan([delivery(**extra)], [])
    row = result.misdeliveries.collect().row(0, named=True)
    assert {k: row[k] for k in extra} == extra
    assert row["reason"] == "no_grant"


def test_files_beyond_the_row_number_range_split_into_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Row numbers are 32-bit: a group of files is split before it would overflow them.
    monkeypatch.setattr("incident.pipeline.load._MAX_GROUP_ROWS", 3)
    for day in range(1, 4):
        rows = [delivery(f"{day}-{i}", utc(2018, 3, day), for_user_id=i) for i in (1, 2)]
        write(rows, tmp_path / "deliveries" / f"day={day}" / "part-0.parquet")
    grants = write([grant(1, 10)], tmp_path / "authorizations.parquet")
    loaded = load_input(Input.DELIVERIES, str(tmp_path / "deliveries"), ColumnMap())
    assert [len(group.files) for group in loaded.groups] == [1, 1, 1]
    result = scan(ScanConfig(str(tmp_path / "deliveries"), str(grants), out=tmp_path / "out"))
    assert result.accounting.rows_authorized == 3
    assert sorted(result.misdeliveries.collect()["event_id"]) == ["1-2", "2-2", "3-2"]


def test_authorization_files_with_different_id_types(tmp_path: Path) -> None:
    deliveries = write(
        [delivery(1, for_user_id=1), delivery(2, for_user_id=2)], tmp_path / "d.parquet"
    )
    write([grant(1, 10)], tmp_path / "grants" / "a.parquet")
    write([grant("2", "10")], tmp_path / "grants" / "b.parquet")
    result = scan(ScanConfig(str(deliveries), str(tmp_path / "grants"), out=tmp_path / "out"))
    assert result.accounting.rows_authorized == 2


@pytest.mark.parametrize("name", ["_row", "source_file", "reason"])
def test_reserved_column_names_are_input_errors(tmp_path: Path, name: str) -> None:
    path = write(
        pl.DataFrame([delivery()]).with_columns(pl.lit("x").alias(name)), tmp_path / "d.parquet"
    )
    with pytest.raises(InputError, match=f"column '{name}' has the name of a column"):
        load_input(Input.DELIVERIES, str(path), ColumnMap())


def test_a_named_partition_column_is_read_and_the_others_ignored(tmp_path: Path) -> None:
    frame = pl.DataFrame([delivery()]).drop("event_type")
    write(frame, tmp_path / "d" / "day=2018-03-01" / "kind=tweet" / "part-0.parquet")
    grants = write([grant()], tmp_path / "g.parquet")
    result = scan(
        ScanConfig(
            str(tmp_path / "d"),
            str(grants),
            out=tmp_path / "out",
            columns=ColumnMap.parse(["deliveries.event_type=kind"]),
        )
    )
    assert result.accounting.rows_authorized == 1
    grants = write([grant(for_user_id=2)], tmp_path / "g.parquet")
    result = scan(
        ScanConfig(
            str(tmp_path / "d"),
            str(grants),
            out=tmp_path / "out",
            columns=ColumnMap.parse(["deliveries.event_type=kind"]),
        )
    )
    assert result.misdeliveries.collect()["event_type"].to_list() == ["tweet"]
    assert "day" not in result.misdeliveries.collect().columns


def _rejected(result: ScanResult, name: str = "rejected") -> list[str]:
    reasons = pl.read_parquet(result.out / f"{name}.parquet")["reject_reason"]
    return sorted(reasons.to_list())


def not_exact(column: str, bits: int = 53) -> str:
    kind = {53: "Float64", 24: "Float32"}[bits]
    return (
        f"{column}: not an exact integer ID (a {kind} that is fractional, not finite, "
        f"or beyond ±(2^{bits}-1))"
    )


def test_a_float_id_is_exact_or_its_row_is_rejected(run_scan: ScanFn) -> None:
    # A 19-digit ID written as a float64 reads back as another ID: 1234567890123456789
    # becomes 1234567890123456768. It must not match that other person's grant.
    rounded = 1234567890123456768
    deliveries = pl.DataFrame(
        [
            delivery(1, for_user_id=float(1234567890123456789)),
            delivery(2, for_user_id=float(2**53 - 1)),  # the largest surely exact
            delivery(3, for_user_id=float(2**53)),  # also what 2**53 + 1 is stored as
            delivery(4, for_user_id=1.5),
            delivery(5, for_user_id=float("inf")),
        ],
        schema_overrides={"for_user_id": pl.Float64},
    )
    grants = [grant(for_user_id=str(rounded)), grant(for_user_id=str(2**53 - 1))]
    for id_ in (2**53, 1):
        grants.append(grant(for_user_id=str(id_)))
    result = run_scan(deliveries, grants)
    assert result.accounting.rows_authorized == 1
    assert result.accounting.rows_rejected == 4
    assert _rejected(result) == [not_exact("for_user_id")] * 4


def test_an_optional_float_id_that_is_not_exact_rejects_its_row(run_scan: ScanFn) -> None:
    # Read as null, it would silently expose nobody: the sender of a misdelivered message.
    deliveries = pl.DataFrame(
        [
            delivery(1, event_type="direct_message", sender_id=2.0**60, recipient_id=7.0),
            delivery(2, event_type="direct_message", sender_id=5.0, recipient_id=float("nan")),
            delivery(3, sender_id=None, recipient_id=None, delivery_id=0.5),
            delivery(4, event_type="direct_message", sender_id=-0.0, recipient_id=None),
        ],
        schema_overrides={c: pl.Float64 for c in ("sender_id", "recipient_id", "delivery_id")},
    )
    result = run_scan(deliveries, [])
    assert _rejected(result) == sorted(
        [not_exact("sender_id"), not_exact("recipient_id"), not_exact("delivery_id")]
    )
    assert result.accounting.rows_misdelivered == 1
    assert sorted(result.users["user_id"]) == ["0", "1"]


def test_float_ids_in_grants_and_apps(run_scan: ScanFn) -> None:
    grants = pl.DataFrame(
        [grant(for_user_id=2.0**63), grant(for_user_id=1.0)],
        schema_overrides={"for_user_id": pl.Float64},
    )
    apps = pl.DataFrame(
        {"app_id": [10.0, 20.0], "developer_id": [7.0, 0.5]},
        schema={"app_id": pl.Float32, "developer_id": pl.Float64},
    )
    deliveries = [delivery(1), delivery(2, app_id=20)]
    result = run_scan(deliveries, grants, apps)
    assert _rejected(result, "rejected_authorizations") == [not_exact("for_user_id")]
    assert result.accounting.rows_authorized == 1
    # The app with a fractional developer is not registered: its developer is unknown.
    assert result.misdeliveries.collect()["developer_id"].to_list() == ["unknown:20"]
    assert result.summary.to_json()["inputs"]["apps"]["rows_rejected"] == 1


def test_float32_ids_are_exact_below_2_to_the_24(run_scan: ScanFn) -> None:
    deliveries = pl.DataFrame(
        [delivery(1, for_user_id=2.0**24 - 1), delivery(2, for_user_id=2.0**24)],
        schema_overrides={"for_user_id": pl.Float32},
    )
    result = run_scan(deliveries, [grant(for_user_id=2**24 - 1), grant(for_user_id=2**24)])
    assert result.accounting.rows_authorized == 1
    assert _rejected(result) == [not_exact("for_user_id", 24)]


def _cli(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from incident.cli import cli

    result = CliRunner().invoke(cli, ["scan", *args, "-q"])
    return result.exit_code, result.stderr


def _partitioned(root: Path) -> Path:
    """Deliveries in two day partitions, the second a link to a directory elsewhere; a
    grant for user 1 only, so that the linked day's delivery (user 2) is a misdelivery."""
    write([delivery(1, for_user_id=1)], root / "deliveries" / "day=2018-03-01" / "part.parquet")
    elsewhere = root / "elsewhere" / "day=2018-03-02"
    write([delivery(2, for_user_id=2)], elsewhere / "part.parquet")
    (root / "deliveries" / "day=2018-03-02").symlink_to(elsewhere, target_is_directory=True)
    write([grant(1, 10)], root / "authorizations.parquet")
    return root / "deliveries"


def test_a_linked_partition_is_read(tmp_path: Path) -> None:
    deliveries = _partitioned(tmp_path)
    grants = tmp_path / "authorizations.parquet"
    result = scan(ScanConfig(str(deliveries), str(grants), out=tmp_path / "out"))
    assert result.accounting.rows_read == 2
    assert result.misdeliveries.collect()["event_id"].to_list() == ["2"]
    pattern = str(tmp_path / "deliveries" / "day=*" / "*.parquet")
    assert len(find_files(Input.DELIVERIES, pattern)) == 2


def test_a_link_back_up_the_tree_is_not_read_twice(tmp_path: Path) -> None:
    deliveries = _partitioned(tmp_path)
    (deliveries / "day=2018-03-01" / "again").symlink_to(deliveries, target_is_directory=True)
    (deliveries / "twice").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert len(find_files(Input.DELIVERIES, str(deliveries))) == 2


def test_a_broken_link_is_an_input_error_naming_it(tmp_path: Path) -> None:
    deliveries = _partitioned(tmp_path)
    (deliveries / "day=2018-03-03").symlink_to(tmp_path / "gone")
    code, stderr = _cli(
        "--deliveries",
        str(deliveries),
        "--authorizations",
        str(tmp_path / "authorizations.parquet"),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 4
    assert stderr == (
        f"error: {deliveries / 'day=2018-03-03'}: broken symbolic link in the deliveries "
        "input; expected it to point to a file or directory\n"
    )


def test_a_directory_that_cannot_be_listed_is_an_input_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, where chmod 000 does not stop a read: the refusal is simulated.
    deliveries = _partitioned(tmp_path)
    refused = str(deliveries / "day=2018-03-02")
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if str(path) == refused:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr("incident.pipeline.files.os.scandir", scandir)
    grants = str(tmp_path / "authorizations.parquet")
    for given in (str(deliveries), str(deliveries / "*" / "*.parquet")):
        code, stderr = _cli(
            "--deliveries", given, "--authorizations", grants, "--out", str(tmp_path / "out")
        )
        assert code == 4
        assert stderr == (
            f"error: {refused}: cannot list deliveries directory (Permission denied); "
            "expected a readable directory\n"
        )


def test_a_path_the_system_refuses_is_an_input_error(tmp_path: Path) -> None:
    long = str(tmp_path / ("x" * 300) / "deliveries.parquet")
    with pytest.raises(
        InputError,
        match=r"deliveries\.parquet: cannot open deliveries input \(File name too long\)",
    ):
        find_files(Input.DELIVERIES, long)
    fifo = tmp_path / "d" / "pipe.parquet"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe\.parquet: not a regular file or directory"):
        find_files(Input.DELIVERIES, str(tmp_path / "d"))


def test_a_glob_skips_markers_like_a_directory_does(tmp_path: Path) -> None:
    write([delivery()], tmp_path / "d" / "part-0.parquet")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    (tmp_path / "d" / ".part-0.parquet.crc").write_text("")
    assert find_files(Input.DELIVERIES, str(tmp_path / "d" / "*")) == (
        str(tmp_path / "d" / "part-0.parquet"),
    )
    assert len(find_files(Input.DELIVERIES, str(tmp_path / "**"))) == 1


UNITS = ["ms", "us", "ns"]


def _at(unit: str, value: int, tz: str | None = "UTC") -> pl.Expr:
    return pl.lit(value, dtype=pl.Int64).cast(pl.Datetime(unit, tz))  # type: ignore[arg-type]


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("value", [2**63 - 1, -(2**63) + 1])
def test_an_instant_beyond_the_calendar_is_not_a_timestamp(
    run_scan: ScanFn, unit: str, value: int
) -> None:
    # int64's bounds, in any unit: polars panics on any calendar conversion of them.
    rows = pl.DataFrame([delivery(1), delivery(2)]).with_columns(
        pl.when(pl.col("event_id") == 2)
        .then(_at(unit, value, None))
        .otherwise(
            _at(
                unit, int(INSTANT.timestamp()) * {"ms": 10**3, "us": 10**6, "ns": 10**9}[unit], None
            )
        )
        .alias("delivered_at")
    )
    result = run_scan(rows, [grant()])
    assert result.accounting.rows_authorized == 1
    if unit == "ns":  # every int64 is an instant in nanoseconds (1677 to 2262)
        assert result.accounting.rows_outside_window == 1
        return
    assert _rejected(result) == ["delivered_at: not a timestamp"]
    shown = pl.read_parquet(result.out / "rejected.parquet")["delivered_at"].to_list()
    assert shown == [f"{value} {unit}"]


def _with_bystander(grants: pl.DataFrame) -> pl.DataFrame:
    """`grants` and one valid grant of a pair no delivery uses (rule 7 refuses a scan with
    no valid grant at all)."""
    bystander = pl.DataFrame([BYSTANDER_GRANT]).with_columns(
        pl.col("granted_at").cast(grants.schema["granted_at"], strict=False)
    )
    return pl.concat([grants, bystander], how="vertical_relaxed")


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_grant_instants_beyond_the_calendar(run_scan: ScanFn, unit: str) -> None:
    never = pl.DataFrame([grant()]).with_columns(_at(unit, 2**63 - 1).alias("revoked_at"))
    assert run_scan([delivery()], never).accounting.rows_authorized == 1
    unknown = pl.DataFrame([grant()]).with_columns(_at(unit, 2**63 - 1).alias("granted_at"))
    result = run_scan([delivery()], _with_bystander(unknown))
    assert result.accounting.rows_misdelivered == 1
    assert _rejected(result, "rejected_authorizations") == ["granted_at: not a timestamp"]
    before = pl.DataFrame([grant()]).with_columns(_at(unit, -(2**63) + 1).alias("revoked_at"))
    result = run_scan([delivery()], _with_bystander(before))
    assert _rejected(result, "rejected_authorizations") == ["revoked_at: not a timestamp"]


def test_dates_beyond_the_calendar(run_scan: ScanFn) -> None:
    far = pl.lit(2**31 - 1, dtype=pl.Int32).cast(pl.Date)
    deliveries = pl.DataFrame([delivery(1)]).with_columns(far.alias("delivered_at"))
    deliveries = pl.concat([deliveries, pl.DataFrame([delivery(2)]).cast(deliveries.schema)])
    assert _rejected(run_scan(deliveries, [grant()])) == ["delivered_at: not a timestamp"]
    never = pl.DataFrame([grant()]).with_columns(far.alias("revoked_at"))
    assert run_scan([delivery()], never).accounting.rows_authorized == 1


def _damaged_page(path: Path) -> Path:
    """A file whose footer and page headers are intact, with a byte inside the text of its
    `event_type` page that is not UTF-8."""
    rows = [delivery(i, event_type=f"tweet-{i:04d}") for i in range(100)]
    frame = pl.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(frame.to_arrow(), path, compression="none", use_dictionary=False)
    data = bytearray(path.read_bytes())
    data[data.index(b"tweet-0042") + 3] = 0xFF
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_page_is_an_input_error_naming_the_file_and_column(tmp_path: Path) -> None:
    # Of two files read together, the one that fails is named, alone.
    write([delivery(1)], tmp_path / "deliveries" / "a.parquet")
    damaged = _damaged_page(tmp_path / "deliveries" / "b.parquet")
    grants = write([grant()], tmp_path / "authorizations.parquet")
    code, stderr = _cli(
        "--deliveries",
        str(tmp_path / "deliveries"),
        "--authorizations",
        str(grants),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 4
    assert stderr.startswith(f"error: {damaged}: column 'event_type': cannot be read (")
    assert stderr.endswith("); expected Parquet data that polars can read\n")
    assert stderr.count("\n") == 1


def test_a_page_header_with_an_impossible_count_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    # polars would allocate by it: a negative count read as 2**64 aborts the process.
    path = tmp_path / "d.parquet"
    pq.write_table(pl.DataFrame([delivery()]).to_arrow(), path, compression="none")
    data = bytearray(path.read_bytes())
    footer_at = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    # The first data page header of `event_id`: type 0 (0x15 0x00), sizes, then its
    # DataPageHeader (0x2c) whose first field is num_values (0x15, zigzag varint 1 = 0x02).
    header = data.index(bytes([0x2C, 0x15, 0x02]), 4, footer_at)
    data[header + 2] = 0x01  # zigzag -1
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"d\.parquet: not a readable Parquet file \(damaged: "):
        load_input(Input.DELIVERIES, str(path), ColumnMap())


# Rule 1 checks only where the footers do not rule a problem out (issue 15): a check skipped
# wrongly would let a row with a null or blank required value count as valid.


def _written(tmp_path: Path, rows: list[dict[str, object]], **options: object) -> Path:
    """Deliveries written by pyarrow, two rows a row group, with `options` (statistics,
    dictionaries, page sizes)."""
    table = pl.DataFrame(rows, infer_schema_length=None).to_arrow()
    path = tmp_path / "deliveries.parquet"
    pq.write_table(table, path, row_group_size=2, **options)
    return path


def _checked(path: Path) -> set[str]:
    """The checks the first pass makes of the deliveries at `path`."""
    (group,) = load_input(Input.DELIVERIES, str(path), ColumnMap()).groups
    group = with_dictionary_proofs(group)
    return {text for _, text in group.problems} - group.needless


def _scanned(tmp_path: Path, deliveries: Path) -> ScanResult:
    grants = write([grant(app_id=app) for app in range(10, 16)], tmp_path / "grants.parquet")
    return scan(ScanConfig(str(deliveries), str(grants), out=tmp_path / "out"))


REQUIRED_CHECKS = {
    "event_id: null",
    "delivered_at: null",
    "delivered_at: not a timestamp",
    "app_id: null",
    "for_user_id: null",
    "event_type: null",
    "event_type: empty",
}
CLEAN = [delivery(event_id=i, app_id=10 + i) for i in range(6)]


def test_blank_first_bytes_are_those_of_every_character_polars_strips() -> None:
    characters = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    blank = pl.DataFrame({"c": characters}).filter(is_blank(pl.col("c")))["c"].to_list()
    assert " " in blank and "\u3000" in blank and "a" not in blank
    assert {c.encode()[0] for c in blank} == BLANK_FIRST_BYTES


def test_statistics_rule_out_the_checks_of_clean_columns(tmp_path: Path) -> None:
    # Only what detection reads anyway: the time, and event_type's null check, which decodes it.
    expected = {"delivered_at: not a timestamp", "event_type: null"}
    assert _checked(_written(tmp_path, CLEAN)) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "event_type: null"),
        ("", "event_type: empty"),
        (" \u3000", "event_type: empty"),  # whitespace only, one of it beyond ASCII
    ],
)
@pytest.mark.parametrize(
    "options",
    [
        {},  # statistics and dictionaries: the statistics of the last row group tell
        {"write_statistics": False},  # the dictionary of the last row group tells
        {"write_statistics": False, "use_dictionary": False},  # nothing tells: every row
    ],
)
def test_a_blank_or_null_in_one_row_group_only_is_still_found(
    tmp_path: Path, value: str | None, problem: str, options: dict[str, object]
) -> None:
    rows = [*CLEAN[:5], delivery(event_id=5, app_id=15, event_type=value)]
    path = _written(tmp_path, rows, **options)
    assert problem in _checked(path)
    result = _scanned(tmp_path, path)
    assert _rejected(result) == [problem]
    assert result.accounting.rows_authorized == 5


def test_a_blank_in_a_page_after_the_dictionary_grew_too_large_is_found(tmp_path: Path) -> None:
    # Many distinct types: pyarrow falls back from the dictionary to plain pages.
    rows = [delivery(event_id=i, event_type=f"type-{i:04d}") for i in range(2_000)]
    rows[-1] = delivery(event_id=2_000, event_type="  ")
    table = pl.DataFrame(rows).to_arrow()
    path = tmp_path / "deliveries.parquet"
    pq.write_table(
        table, path, write_statistics=False, dictionary_pagesize_limit=64, data_page_size=64
    )
    chunk = pq.read_metadata(path).row_group(0).column(table.schema.names.index("event_type"))
    assert chunk.has_dictionary_page and "PLAIN" in chunk.encodings
    assert "event_type: empty" in _checked(path)
    result = _scanned(tmp_path, path)
    assert _rejected(result) == ["event_type: empty"]


def test_without_statistics_or_dictionaries_every_check_is_made(tmp_path: Path) -> None:
    path = _written(tmp_path, CLEAN, write_statistics=False, use_dictionary=False)
    assert _checked(path) == REQUIRED_CHECKS


def test_the_dictionaries_rule_out_the_text_checks_without_statistics(tmp_path: Path) -> None:
    path = _written(tmp_path, CLEAN, write_statistics=False)
    assert _checked(path) == REQUIRED_CHECKS - {"event_type: empty"}


def test_a_null_in_one_row_group_and_an_instant_beyond_the_calendar_are_found(
    tmp_path: Path,
) -> None:
    far = pl.lit(2**62, pl.Int64).cast(pl.Datetime("us", "UTC"))
    frame = pl.DataFrame(CLEAN).with_columns(
        pl.when(pl.col("event_id") == 4).then(None).otherwise(pl.col("app_id")).alias("app_id"),
        pl.when(pl.col("event_id") == 5).then(far).otherwise("delivered_at").alias("delivered_at"),
    )
    path = tmp_path / "deliveries.parquet"
    pq.write_table(frame.to_arrow(), path, row_group_size=2)
    assert "app_id: null" in _checked(path)
    result = _scanned(tmp_path, path)
    assert _rejected(result) == ["app_id: null", "delivered_at: not a timestamp"]


def test_a_hive_directory_value_is_checked_whatever_the_files_footers_say(
    tmp_path: Path,
) -> None:
    # Each file holds app_id 7 (no null, in its statistics), but the directory that names
    # app_id as a partition replaces it: __HIVE_DEFAULT_PARTITION__ reads as null.
    for app in ("7", "__HIVE_DEFAULT_PARTITION__"):
        folder = tmp_path / "d" / "event_type=dm" / f"app_id={app}"
        folder.mkdir(parents=True)
        pl.DataFrame(
            {
                "event_id": ["e1"],
                "delivered_at": ["2024-01-01T00:00:00Z"],
                "app_id": [7],
                "for_user_id": [1],
            }
        ).write_parquet(folder / "f.parquet")
    loaded = load_input(Input.DELIVERIES, str(tmp_path / "d"), ColumnMap())
    valid = pl.concat(
        [group.scan().select("app_id", group.is_valid().alias("valid")) for group in loaded.groups]
    ).collect()
    assert valid.filter(pl.col("app_id").is_null())["valid"].to_list() == [False]
    assert all(not group.needless for group in loaded.groups)
