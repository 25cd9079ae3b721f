"""`incident diff`: two results compared, through the library and the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from incident.cli import cli
from incident.config import Attribution, Window
from incident.errors import ExitCode
from incident.results.diff import Change, diff_results
from incident.results.read import Table, read_report
from tests.conftest import ScanFn, delivery, grant, utc

# A DM from user 2 to user 3 for 2's account and a like for user 5, both to app 10; a post
# for user 5 to app 11; user 1's authorized tweet. Without an apps registry, app = developer.
DELIVERIES = [
    delivery(1, utc(2018, 3, 1), 10, 2, "direct_message", sender_id=2, recipient_id=3),
    delivery(2, utc(2018, 3, 2), 11, 5, "tweet"),
    delivery(3, utc(2018, 3, 3), 10, 5, "favorite"),
    delivery(4, utc(2018, 3, 4), 10, 1, "tweet"),
]
GRANTS = [grant(1, 10)]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def old(run_scan: ScanFn) -> Path:
    return run_scan(DELIVERIES, GRANTS).out


def test_diff_after_adding_a_grant_removes_and_changes(old: Path, run_scan: ScanFn) -> None:
    # User 2 had authorized app 10 after all: the DM was no misdelivery.
    new = run_scan(DELIVERIES, [*GRANTS, grant(2, 10)]).out
    diff = diff_results(old, new)
    assert diff.users.to_dicts() == [
        {"user_id": "2", "change": "removed", "columns": []},
        {"user_id": "3", "change": "removed", "columns": []},
    ]
    assert diff.developers.to_dicts() == [
        {
            "developer_id": "10",
            "change": "changed",
            "columns": [
                "events",
                "deliveries",
                "direct_messages",
                "users_exposed",
                "first_received_at",
            ],
        }
    ]
    assert (diff.user_counts.removed, diff.user_counts.old_rows, diff.user_counts.new_rows) == (
        2,
        3,
        1,
    )
    assert (diff.developer_counts.changed, diff.developer_counts.added) == (1, 0)
    assert diff.has_differences

    code, stdout, stderr = invoke("diff", str(old), str(new))
    assert (code, stderr) == (ExitCode.OK, "")
    assert stdout == "\n".join(
        [
            f"old: {old}",
            f"new: {new}",
            "users      0 added, 2 removed, 0 changed (3 -> 1)",
            "developers 0 added, 0 removed, 1 changed (2 -> 2)",
            "",
            "total                    old  new  change",
            "events_misdelivered        3    2      -1",
            "deliveries_misdelivered    3    2      -1",
            "users_exposed              3    1      -2",
            "developers_exposed         2    2       0",
            "rows_read                  4    4       0",
            "rows_rejected              0    0       0",
            "rows_outside_window        0    0       0",
            "rows_authorized            1    2      +1",
            "rows_misdelivered          3    2      -1",
            "",
            "users removed (2):",
            "  2",
            "  3",
            "",
            "developers changed (1):",
            "  10: events, deliveries, direct_messages, users_exposed, first_received_at",
            "",
        ]
    )


def test_diff_after_adding_a_misdelivery_adds(old: Path, run_scan: ScanFn) -> None:
    added = delivery(5, utc(2018, 3, 5), 12, 8, "protected_tweet", sender_id=9)
    new = run_scan([*DELIVERIES, added], GRANTS).out
    diff = diff_results(old, new)
    assert diff.users.to_dicts() == [
        {"user_id": "8", "change": "added", "columns": []},
        {"user_id": "9", "change": "added", "columns": []},
    ]
    assert diff.developers.to_dicts() == [{"developer_id": "12", "change": "added", "columns": []}]
    assert diff.totals.filter(pl.col("name") == "users_exposed").row(0) == (
        "users_exposed",
        3,
        5,
        2,
    )

    code, stdout, _ = invoke("diff", str(old), str(new), "--json")
    assert code == ExitCode.OK
    document = json.loads(stdout)
    assert document["has_differences"] is True
    assert document["users"] == {
        "old": 3,
        "new": 5,
        "added": 2,
        "removed": 0,
        "changed": 0,
        "differences": diff.users.to_dicts(),
    }
    assert document["developers"]["added"] == 1
    assert document["totals"]["developers_exposed"] == {"old": 2, "new": 3, "change": 1}


def test_diff_of_identical_results_has_no_differences(old: Path, run_scan: ScanFn) -> None:
    again = run_scan(DELIVERIES, GRANTS).out
    diff = diff_results(old, again)
    assert not diff.has_differences
    assert diff.users.is_empty() and diff.developers.is_empty()
    code, stdout, stderr = invoke("diff", str(old), str(again))
    assert (code, stdout, stderr) == (
        ExitCode.OK,
        f"old: {old}\nnew: {again}\nno differences\n",
        "",
    )
    code, stdout, _ = invoke("diff", str(old), str(again), "--json")
    assert code == ExitCode.OK
    assert json.loads(stdout)["has_differences"] is False


def test_diff_a_csv_only_result_reads_it_like_parquet(old: Path, tmp_path: Path) -> None:
    csv_only = tmp_path / "csv-only"
    code, _, _ = invoke(
        "scan",
        "--deliveries",
        str(old.parent / "deliveries.parquet"),
        "--authorizations",
        str(old.parent / "authorizations.parquet"),
        "--out",
        str(csv_only),
        "--format",
        "csv",
        "-q",
    )
    assert code == ExitCode.OK
    assert not (csv_only / "users.parquet").exists()
    for report in Table:
        assert read_report(csv_only, report).equals(read_report(old, report))
    assert not diff_results(old, csv_only).has_differences


def test_diff_text_lists_at_most_twenty_ids(run_scan: ScanFn) -> None:
    many = [delivery(n, utc(2018, 3, 1), 10, 100 + n) for n in range(25)]
    old, new = run_scan(many, []).out, run_scan(many, [grant(100 + n, 10) for n in range(25)]).out
    code, stdout, _ = invoke("diff", str(old), str(new))
    assert code == ExitCode.OK
    assert "users removed (25):\n  100\n" in stdout
    assert "  ... and 5 more (--json lists all)\n" in stdout
    assert (
        len(json.loads(invoke("diff", str(old), str(new), "--json")[1])["users"]["differences"])
        == 25
    )


def test_every_change_kind_is_reported(old: Path, run_scan: ScanFn) -> None:
    # A grant for user 2 removes users 2 and 3; a new misdelivery for user 5 changes them; a
    # protected post for user 8 by user 9 adds both.
    added = [
        delivery(5, utc(2018, 3, 5), 12, 5, "tweet"),
        delivery(6, utc(2018, 3, 6), 12, 8, "protected_tweet", sender_id=9),
    ]
    new = run_scan([*DELIVERIES, *added], [*GRANTS, grant(2, 10)]).out
    diff = diff_results(old, new)
    code, stdout, _ = invoke("diff", str(old), str(new))
    assert code == ExitCode.OK
    expected = {Change.ADDED: ["8", "9"], Change.REMOVED: ["2", "3"], Change.CHANGED: ["5"]}
    for change in Change:
        ids = diff.users.filter(pl.col("change") == change.value)["user_id"].to_list()
        assert ids == expected[change]
        assert f"users {change.value} ({len(ids)}):" in stdout
    assert (diff.user_counts.added, diff.user_counts.removed, diff.user_counts.changed) == (2, 2, 1)
    assert diff.users.filter(pl.col("user_id") == "5")["columns"].to_list() == [
        ["events", "developers", "developer_ids", "last_exposed_at"]
    ]


def test_diff_errors_name_the_directory(old: Path, tmp_path: Path) -> None:
    not_a_result = tmp_path / "notes"
    not_a_result.mkdir()
    (not_a_result / "summary.json").write_text('{"tool": {"name": "other"}}')
    for args in ([str(not_a_result), str(old)], [str(old), str(not_a_result)]):
        code, stdout, stderr = invoke("diff", *args)
        assert (code, stdout) == (ExitCode.INPUT_ERROR, "")
        assert stderr == (
            f"error: {not_a_result}: not an incident result "
            "(summary.json not written by incident)\n"
        )
    (not_a_result / "summary.json").write_text("{not json")
    code, _, stderr = invoke("diff", str(old), str(not_a_result))
    assert code == ExitCode.INPUT_ERROR
    assert stderr.startswith(
        f"error: {not_a_result}: not an incident result (summary.json unreadable: "
    )
    (old / "developers.parquet").unlink()
    (old / "developers.csv").unlink()
    code, _, stderr = invoke("diff", str(old), str(old))
    assert code == ExitCode.INPUT_ERROR
    assert stderr == (
        f"error: {old}: incomplete incident result (no developers.parquet or developers.csv)\n"
    )
    code, _, stderr = invoke("diff", str(old), str(tmp_path / "nowhere"))
    assert code == ExitCode.USAGE_ERROR
    assert "does not exist" in stderr


def test_differing_windows_and_parameters_are_shown_first(old: Path, run_scan: ScanFn) -> None:
    new = run_scan(
        DELIVERIES,
        GRANTS,
        window=Window(utc(2018, 3, 2), utc(2018, 9, 11)),
        attribution=Attribution(collision_window=timedelta(seconds=90)),
    ).out
    code, stdout, _ = invoke("diff", str(old), str(new))
    assert code == ExitCode.OK
    assert stdout.splitlines()[2:6] == [
        "scanned with different settings:",
        "  since: 2017-05-01T00:00:00Z -> 2018-03-02T00:00:00Z",
        "  collision_window_seconds: 360 -> 90",
        "",
    ]
    settings = json.loads(invoke("diff", str(old), str(new), "--json")[1])["settings"]
    assert settings == {
        "since": {"old": "2017-05-01T00:00:00Z", "new": "2018-03-02T00:00:00Z"},
        "collision_window_seconds": {"old": "360", "new": "90"},
    }
    # The same settings and the same findings: nothing to show.
    assert diff_results(old, run_scan(DELIVERIES, GRANTS).out).settings == {}


def test_control_characters_in_ids_never_reach_the_terminal(run_scan: ScanFn) -> None:
    hostile = "\x1b]0;owned\x07dev\nfake line\x9b31m"
    rows = [delivery(1, utc(2018, 3, 1), hostile, 2)]
    old, new = run_scan(rows, GRANTS).out, run_scan(rows, [*GRANTS, grant(2, hostile)]).out
    code, stdout, _ = invoke("diff", str(old), str(new))
    assert code == ExitCode.OK
    assert "  \\x1b]0;owned\\x07dev\\nfake line\\x9b31m\n" in stdout
    assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in stdout)
