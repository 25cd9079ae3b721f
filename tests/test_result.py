"""`incident.results.read`: a result directory read back, and the errors when it is not one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from incident.config import ReportFormat
from incident.errors import InputError
from incident.report.html import render_html
from incident.report.tables import write_csv
from incident.results.diff import diff_results
from incident.results.export import export_result
from incident.results.read import (
    SCHEMAS,
    Table,
    check_result,
    read_report,
    read_summary,
    report_path,
)
from tests.conftest import ScanFn, delivery, grant, utc

# Long and zero-led IDs, commas and quotes in an ID, a developer unknown to the registry,
# fractional seconds: everything a CSV could lose.
DELIVERIES = [
    delivery(
        "9007199254740993123",
        utc(2018, 3, 1, 9),
        11,
        "12345678901234567890",
        "direct_message",
        sender_id="0042",
        recipient_id="12345678901234567890",
    ),
    delivery(
        "2",
        utc(2018, 3, 2, 0, 0, 0, 500000),
        12,
        "Zoë",
        "protected_tweet",
        sender_id="0042",
        recipient_id=None,
    ),
    delivery("3", utc(2018, 3, 3), 13, "0042", "tweet", sender_id=None, recipient_id=None),
    delivery("4", utc(2018, 3, 3), 11, "7", "tweet", sender_id=None, recipient_id=None),
]
GRANTS = [grant("7", 11)]
# Both apps listen on one shared endpoint, which the endpoints report lists.
APPS = [
    {
        "app_id": 11,
        "developer_id": 'dev,"acme"',
        "webhook_url": "https://a.example/hook",
        "resolved_ip": "192.0.2.7",
    },
    {
        "app_id": 12,
        "developer_id": 'dev,"acme"',
        "webhook_url": "https://b.example/hook?v=2",
        "resolved_ip": "192.0.2.7",
    },
]


def scanned(run_scan: ScanFn, *formats: ReportFormat) -> Path:
    return run_scan(DELIVERIES, GRANTS, APPS, formats=formats).out


def message(raised: pytest.ExceptionInfo[InputError]) -> str:
    return str(raised.value)


# Not a result


def test_a_missing_directory_or_a_file_is_not_a_result(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        read_summary(tmp_path / "nowhere")
    assert message(raised) == f"{tmp_path / 'nowhere'}: not an incident result (does not exist)"
    (tmp_path / "file").write_text("{}")
    with pytest.raises(InputError) as raised:
        read_summary(tmp_path / "file")
    assert message(raised) == f"{tmp_path / 'file'}: not an incident result (not a directory)"


def test_a_directory_without_summary_is_not_a_result(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        read_summary(tmp_path)
    assert message(raised) == f"{tmp_path}: not an incident result (no summary.json)"
    (tmp_path / "summary.json").mkdir()
    with pytest.raises(InputError) as raised:
        read_summary(tmp_path)
    assert message(raised) == f"{tmp_path}: not an incident result (no summary.json)"


def test_an_unreadable_summary_is_named(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(InputError) as raised:
        read_summary(tmp_path)
    assert re.fullmatch(
        rf"{re.escape(str(tmp_path))}: not an incident result \(summary\.json unreadable: "
        r"Expecting property name[^\n]*\)",
        message(raised),
    )


@pytest.mark.parametrize(
    "text",
    ['{"tool": {"name": "other"}}', '{"tool": "incident"}', "{}", '["incident"]', "null"],
)
def test_a_summary_not_written_by_incident_is_not_a_result(tmp_path: Path, text: str) -> None:
    (tmp_path / "summary.json").write_text(text)
    with pytest.raises(InputError) as raised:
        read_summary(tmp_path)
    assert message(raised) == (
        f"{tmp_path}: not an incident result (summary.json not written by incident)"
    )


def test_a_summary_without_a_required_section_is_incomplete(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"tool": {"name": "incident"}, "totals": {}}')
    check_result(tmp_path)  # an incident result, for the commands that need no summary
    with pytest.raises(InputError) as raised:
        read_summary(tmp_path)
    assert (
        message(raised) == f"{tmp_path / 'summary.json'}: incomplete incident summary (no 'window')"
    )


def test_a_malformed_summary_names_it(run_scan: ScanFn) -> None:
    out = scanned(run_scan, ReportFormat.PARQUET)
    summary = json.loads((out / "summary.json").read_text())
    summary["accounting"]["rows_read"] = "many"
    (out / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(InputError) as raised:
        read_summary(out)
    assert message(raised) == (
        f"{out / 'summary.json'}: malformed incident summary (expected a count, found 'many')"
    )


def test_a_result_reads_back(run_scan: ScanFn) -> None:
    out = scanned(run_scan, ReportFormat.PARQUET)
    assert read_summary(out).to_json() == json.loads((out / "summary.json").read_text())
    for report in Table:
        assert report_path(out, report) == out / f"{report.value}.parquet"
        assert read_report(out, report).equals(pl.read_parquet(out / f"{report.value}.parquet"))


# CSV-only results


def test_a_csv_only_result_reads_back_equal_to_the_parquet_one(run_scan: ScanFn) -> None:
    parquet = scanned(run_scan, ReportFormat.PARQUET)
    csv_only = scanned(run_scan, ReportFormat.CSV)
    assert not (csv_only / "users.parquet").exists()
    for report in SCHEMAS:
        assert report_path(csv_only, report) == csv_only / f"{report.value}.csv"
        from_csv, from_parquet = read_report(csv_only, report), read_report(parquet, report)
        assert from_csv.schema == pl.Schema(SCHEMAS[report])
        assert from_csv.equals(from_parquet)
        assert from_csv.height > 0
    assert read_report(parquet, Table.USERS)["user_id"].to_list() == [
        "0042",
        "12345678901234567890",
        "Zoë",
    ]
    assert read_report(csv_only, Table.DEVELOPERS)["developer_id"].to_list() == [
        'dev,"acme"',
        "unknown:13",
    ]


def test_an_empty_list_survives_the_csv(run_scan: ScanFn) -> None:
    out = scanned(run_scan, ReportFormat.PARQUET)
    zoe = pl.col("user_id") == "Zoë"
    users = read_report(out, Table.USERS).with_columns(
        pl.when(zoe)
        .then(pl.lit([], pl.List(pl.String)))
        .otherwise("developer_ids")
        .alias("developer_ids"),
        pl.when(zoe).then(0).otherwise("developers").alias("developers"),
    )
    (out / "users.parquet").unlink()
    write_csv(users, out / "users.csv")
    assert read_report(out, Table.USERS).equals(users)


def test_a_semicolon_in_an_id_makes_the_csv_lists_ambiguous(run_scan: ScanFn) -> None:
    deliveries = [delivery(1, app_id="a;b"), delivery(2, app_id="c")]
    formats = (ReportFormat.PARQUET, ReportFormat.CSV)
    both = run_scan(deliveries, [grant(2, 10)], formats=formats).out
    assert read_report(both, Table.USERS)["developer_ids"].to_list() == [["a;b", "c"]]
    (both / "users.parquet").unlink()
    with pytest.raises(InputError) as raised:
        read_report(both, Table.USERS)
    assert message(raised) == (
        f"{both / 'users.csv'}: a developer_id contains ';', so the developer_ids lists cannot "
        "be split; re-run the scan with --format parquet"
    )


# Broken reports


def test_a_missing_report_makes_the_result_incomplete(run_scan: ScanFn) -> None:
    out = scanned(run_scan, ReportFormat.PARQUET)
    (out / "users.parquet").unlink()
    with pytest.raises(InputError) as raised:
        read_report(out, Table.USERS)
    assert message(raised) == f"{out}: incomplete incident result (no users.parquet or users.csv)"
    (out / "misdeliveries.parquet").unlink()
    with pytest.raises(InputError) as raised:
        read_report(out, Table.MISDELIVERIES)
    assert message(raised) == f"{out}: incomplete incident result (no misdeliveries.parquet)"


def test_only_the_columns_asked_for_are_read(run_scan: ScanFn) -> None:
    out = scanned(run_scan, ReportFormat.PARQUET)
    frame = read_report(out, Table.MISDELIVERIES, columns=["event_id", "developer_id"])
    assert frame.columns == ["event_id", "developer_id"]
    assert read_report(out, Table.USERS, columns=["user_id"]).columns == ["user_id"]
    with pytest.raises(InputError) as raised:
        read_report(out, Table.MISDELIVERIES, columns=["event_id", "colour"])
    assert message(raised) == (
        f"{out / 'misdeliveries.parquet'}: missing column 'colour' of the misdeliveries report"
    )


def refusal(result: Path, report: Table) -> str:
    with pytest.raises(InputError) as raised:
        read_report(result, report)
    return str(raised.value)


def with_reason(text: str, prefix: str) -> bool:
    """`text` is `prefix` and a one-line reason in parentheses (the reader's own words)."""
    return re.fullmatch(re.escape(prefix) + r" \([^\n]+\)", text) is not None


def test_broken_reports_are_named(run_scan: ScanFn) -> None:
    out = scanned(run_scan, ReportFormat.PARQUET, ReportFormat.CSV)
    (out / "developers.parquet").write_text("not parquet")
    assert with_reason(
        refusal(out, Table.DEVELOPERS),
        f"{out / 'developers.parquet'}: not a readable developers report",
    )
    users = pl.read_parquet(out / "users.parquet")
    users.drop("roles", "events").write_parquet(out / "users.parquet")
    assert refusal(out, Table.USERS) == (
        f"{out / 'users.parquet'}: missing columns 'roles', 'events' of the users report"
    )
    pl.concat([users, users.head(1)]).write_parquet(out / "users.parquet")
    assert refusal(out, Table.USERS) == (
        f"{out / 'users.parquet'}: user_id is not unique; not a report written by incident"
    )
    (out / "users.parquet").unlink()
    csv = (out / "users.csv").read_text(encoding="utf-8")
    (out / "users.csv").write_text(csv.replace("2018-03-01T09:00:00Z", "yesterday", 1))
    assert with_reason(
        refusal(out, Table.USERS), f"{out / 'users.csv'}: unexpected values in the users report"
    )


# Results written before attribution


def test_a_result_from_before_attribution_is_still_read(
    run_scan: ScanFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = scanned(run_scan, ReportFormat.PARQUET, ReportFormat.CSV)
    new = scanned(run_scan, ReportFormat.PARQUET, ReportFormat.CSV)
    for name in ("endpoints.parquet", "endpoints.csv"):
        (old / name).unlink()
    developers = pl.read_parquet(old / "developers.parquet").drop("intended_developer_ids")
    developers.write_parquet(old / "developers.parquet")
    read_back = read_report(old, Table.DEVELOPERS)
    assert read_back["intended_developer_ids"].null_count() == read_back.height
    assert read_back.drop("intended_developer_ids").equals(developers)

    monkeypatch.chdir(tmp_path)
    exported = export_result(old, Path("shared"), ReportFormat.CSV)
    assert [p.name for p in exported] == ["users.csv", "developers.csv", "misdeliveries.csv"]
    assert "<html" in render_html(old)
    changes = diff_results(old, new)
    assert changes.developers["columns"].to_list() == [["intended_developer_ids"]] * 2


def test_a_semicolon_in_an_endpoint_list_of_a_csv_result_is_refused(run_scan: ScanFn) -> None:
    apps: list[dict[str, object]] = [
        *APPS,
        {
            "app_id": "4;0",
            "developer_id": "d",
            "webhook_url": "https://c/hook",
            "resolved_ip": "192.0.2.7",
        },
    ]
    apps = [{**app, "app_id": str(app["app_id"])} for app in apps]
    out = run_scan(DELIVERIES, GRANTS, apps, formats=(ReportFormat.CSV,)).out
    with pytest.raises(InputError) as raised:
        read_report(out, Table.ENDPOINTS)
    assert message(raised) == (
        f"{out / 'endpoints.csv'}: app_ids do not match apps; an ID holds ';', so the lists "
        "cannot be split; re-run the scan with --format parquet"
    )
