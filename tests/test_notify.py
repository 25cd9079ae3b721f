"""`incident notify`: the notification list, through the library and the command line."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from incident.cli import cli
from incident.errors import ExitCode, InputError
from incident.results.notify import CATEGORIES, NOTIFICATION_COLUMNS, Category, notification_list
from incident.schema import Role
from tests.conftest import ScanFn, delivery, grant, utc

HEADER = "\ufeff" + ",".join(NOTIFICATION_COLUMNS)  # UTF-8 with BOM, as every CSV


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def result(run_scan: ScanFn) -> Path:
    """A DM (user 2 to user 3, for 2's account, retried), a protected post (by 4, for 5's
    account), two other events of user 6 to two developers on two days, one authorized."""
    deliveries = [
        delivery(1, utc(2018, 3, 1, 9), 10, 2, "direct_message", sender_id=2, recipient_id=3),
        delivery(1, utc(2018, 3, 1, 9, 5), 10, 2, "direct_message", sender_id=2, recipient_id=3),
        delivery(2, utc(2018, 3, 2), 11, 5, "protected_tweet", sender_id=4),
        delivery(3, utc(2018, 3, 3), 10, 6, "favorite"),
        delivery(4, utc(2018, 4, 5, 12, 30, 0), 12, 6, "follow", sender_id=9),
        delivery(5, utc(2018, 3, 1), 10, 1, "direct_message", sender_id=1, recipient_id=7),
    ]
    return run_scan(deliveries, [grant(1, 10)]).out


def test_notify_csv_to_stdout(result: Path) -> None:
    code, stdout, stderr = invoke("notify", str(result))
    assert (code, stderr) == (ExitCode.OK, "")
    assert stdout.splitlines() == [
        HEADER,
        "2,direct messages you sent,1,1,0,0,0,2018-03-01T09:00:00Z,2018-03-01T09:05:00Z,1,"
        '"On 1 March 2018 (UTC), because of a software error, 1 direct message you sent was '
        'delivered to 1 developer who was not authorized to receive it."',
        "3,direct messages you received,1,0,1,0,0,2018-03-01T09:00:00Z,2018-03-01T09:05:00Z,1,"
        '"On 1 March 2018 (UTC), because of a software error, 1 direct message you received '
        'was delivered to 1 developer who was not authorized to receive it."',
        "4,protected posts you wrote,1,0,0,1,0,2018-03-02T00:00:00Z,2018-03-02T00:00:00Z,1,"
        '"On 2 March 2018 (UTC), because of a software error, 1 protected post you wrote was '
        'delivered to 1 developer who was not authorized to receive it."',
        "5,other events of your account,1,0,0,0,1,2018-03-02T00:00:00Z,2018-03-02T00:00:00Z,1,"
        '"On 2 March 2018 (UTC), because of a software error, 1 event of your account was '
        'delivered to 1 developer who was not authorized to receive it."',
        "6,other events of your account,2,0,0,0,2,2018-03-03T00:00:00Z,2018-04-05T12:30:00Z,2,"
        '"Between 3 March 2018 and 5 April 2018 (UTC), because of a software error, 2 events '
        "of your account were delivered to 2 developers who were not authorized to receive "
        'them."',
    ]


def test_notify_to_file(result: Path, tmp_path: Path) -> None:
    target = tmp_path / "notices.csv"
    code, stdout, stderr = invoke("notify", str(result), "--to", str(target))
    assert (code, stdout) == (ExitCode.OK, "")
    assert stderr == f"wrote 5 users to {target}\n"
    assert target.read_text(encoding="utf-8") == invoke("notify", str(result))[1]


def test_notify_plurals_and_several_categories(run_scan: ScanFn) -> None:
    # User 1 sent two DMs, received one, wrote a protected post and had a like delivered;
    # user 8 sent a DM to themself: one event, both sent and received.
    deliveries = [
        delivery(1, utc(2018, 3, 1), 10, 1, "direct_message", sender_id=1, recipient_id=2),
        delivery(2, utc(2018, 3, 2), 11, 1, "direct_message", sender_id=1, recipient_id=3),
        delivery(3, utc(2018, 3, 3), 10, 1, "direct_message", sender_id=4, recipient_id=1),
        delivery(4, utc(2018, 3, 4), 10, 1, "protected_tweet", sender_id=1),
        delivery(5, utc(2018, 3, 5), 10, 1, "favorite", sender_id=5),
        delivery(6, utc(2018, 3, 6), 10, 8, "direct_message", sender_id=8, recipient_id=8),
    ]
    notices = notification_list(run_scan(deliveries, []).out)
    one = notices.row(0, named=True)
    assert one["categories"] == [
        "direct messages you sent",
        "direct messages you received",
        "protected posts you wrote",
        "other events of your account",
    ]
    assert [one[c.value] for c in Category] == [2, 1, 1, 1]
    assert (one["events"], one["developers"]) == (5, 2)
    assert one["message"] == (
        "Between 1 March 2018 and 5 March 2018 (UTC), because of a software error, "
        "2 direct messages you sent, 1 direct message you received, 1 protected post you wrote "
        "and 1 other event of your account were delivered to 2 developers who were not "
        "authorized to receive them."
    )
    self_dm = notices.filter(pl.col("user_id") == "8").row(0, named=True)
    assert (self_dm["events"], self_dm["direct_messages_sent"]) == (1, 1)
    assert self_dm["direct_messages_received"] == 1
    assert self_dm["message"].startswith(
        "On 6 March 2018 (UTC), because of a software error, 1 direct message you sent and "
        "1 direct message you received were delivered to 1 developer who was"
    )


def test_every_category_has_a_role_and_every_role_a_category() -> None:
    for category in Category:
        spec = CATEGORIES[category]
        assert spec.singular != spec.plural
        assert category.value in NOTIFICATION_COLUMNS
    assert {spec.role for spec in CATEGORIES.values()} == set(Role)


def test_notify_without_misdeliveries_is_a_header(run_scan: ScanFn) -> None:
    out = run_scan([delivery(1, utc(2018, 3, 1), 10, 1)], [grant(1, 10)]).out
    code, stdout, _ = invoke("notify", str(out))
    assert (code, stdout) == (ExitCode.OK, HEADER + "\n")


def test_notify_reads_a_csv_only_result(result: Path, run_scan: ScanFn, tmp_path: Path) -> None:
    code, _, _ = invoke(
        "scan",
        "--deliveries",
        str(result.parent / "deliveries.parquet"),
        "--authorizations",
        str(result.parent / "authorizations.parquet"),
        "--out",
        str(tmp_path / "csv-only"),
        "--format",
        "csv",
        "-q",
    )
    assert code == ExitCode.OK
    assert not (tmp_path / "csv-only" / "users.parquet").exists()
    assert invoke("notify", str(tmp_path / "csv-only"))[1] == invoke("notify", str(result))[1]


def test_notify_agrees_with_the_users_report_of_the_sample(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    root = Path(__file__).resolve().parent.parent
    code, _, _ = invoke("scan", str(root / "sample_logs"), "--out", str(out), "-q")
    assert code == ExitCode.OK
    notices = notification_list(out)
    users = pl.read_parquet(out / "users.parquet")
    assert notices["user_id"].to_list() == users["user_id"].to_list()
    assert notices["developers"].to_list() == users["developers"].to_list()
    assert notices["direct_messages_sent"].sum() > 0
    # No self-addressed DM in the sample: the categories split each user's events exactly.
    assert notices.select(pl.sum_horizontal(c.value for c in Category)).to_series().to_list() == (
        users["events"].to_list()
    )


def test_notify_refuses_a_users_report_that_disagrees(result: Path) -> None:
    users = pl.read_parquet(result / "users.parquet")
    users.filter(pl.col("user_id") != "3").write_parquet(result / "users.parquet")
    code, stdout, stderr = invoke("notify", str(result))
    assert (code, stdout) == (ExitCode.INPUT_ERROR, "")
    assert stderr == (
        f"error: {result}: the users report disagrees with misdeliveries.parquet; "
        "check the result with incident verify\n"
    )
    with pytest.raises(InputError):
        notification_list(result)


def test_notify_errors(result: Path, tmp_path: Path) -> None:
    code, _, stderr = invoke("notify", str(tmp_path / "nowhere"))
    assert code == ExitCode.USAGE_ERROR
    assert "does not exist" in stderr
    (tmp_path / "empty").mkdir()
    code, stdout, stderr = invoke("notify", str(tmp_path / "empty"))
    assert (code, stdout) == (ExitCode.INPUT_ERROR, "")
    assert stderr == f"error: {tmp_path / 'empty'}: not an incident result (no summary.json)\n"
    inside = result / "notices.csv"
    code, _, stderr = invoke("notify", str(result), "--to", str(inside))
    assert code == ExitCode.USAGE_ERROR
    assert (
        stderr == f"error: --to {inside}: is inside the result {result}; write the list elsewhere\n"
    )
    assert not inside.exists()
    (result / "misdeliveries.parquet").unlink()
    code, _, stderr = invoke("notify", str(result))
    assert code == ExitCode.INPUT_ERROR
    assert stderr == f"error: {result}: incomplete incident result (no misdeliveries.parquet)\n"
