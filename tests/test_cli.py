"""The command line through click's CliRunner: exit codes, messages, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from incident.cli import cli
from incident.errors import ExitCode
from tests.conftest import delivery, grant, utc, write


@pytest.fixture
def case(tmp_path: Path) -> Path:
    """A DIR laid out by convention: one authorized delivery, one misdelivery, one bad row."""
    write(
        [
            delivery(1, utc(2018, 3, 1), 10, 1),
            delivery(2, utc(2018, 3, 1), 11, 1, "direct_message", sender_id=2, recipient_id=1),
            delivery(None, utc(2018, 3, 1), 10, 1),
        ],
        tmp_path / "logs" / "deliveries" / "day=2018-03-01" / "part-0.parquet",
    )
    write([grant(1, 10)], tmp_path / "logs" / "authorizations.parquet")
    write([{"app_id": 11, "developer_id": "dev-b"}], tmp_path / "logs" / "apps.parquet")
    return tmp_path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_scan_dir_writes_reports_and_summary(case: Path) -> None:
    code, stdout, stderr = invoke("scan", str(case / "logs"), "--out", str(case / "out"))
    assert code == ExitCode.OK
    assert stdout == ""
    assert "rows_misdelivered        1" in stderr
    assert "warning: 1 delivery rows rejected" in stderr
    assert sorted(p.name for p in (case / "out").iterdir()) == [
        "developers.csv",
        "developers.parquet",
        "endpoints.csv",
        "endpoints.parquet",
        "manifest.json",
        "misdeliveries.parquet",
        "rejected.parquet",
        "rejected_authorizations.parquet",
        "summary.json",
        "summary.md",
        "users.csv",
        "users.parquet",
    ]
    assert (case / "out" / "developers.csv").read_text().splitlines() == [
        "\ufeffdeveloper_id,app_ids,events,deliveries,direct_messages,protected_tweets,"
        "users_exposed,first_received_at,last_received_at,intended_developer_ids",
        'dev-b,11,1,1,1,0,2,2018-03-01T00:00:00Z,2018-03-01T00:00:00Z,""',
    ]


def test_scan_explicit_form_json_quiet_and_format(case: Path) -> None:
    logs = case / "logs"
    code, stdout, stderr = invoke(
        "scan",
        "--deliveries",
        str(logs / "deliveries"),
        "--authorizations",
        str(logs / "authorizations.parquet"),
        "--out",
        str(case / "out"),
        "--format",
        "csv",
        "--json",
        "--quiet",
    )
    assert code == ExitCode.OK
    assert stderr == ""
    summary = json.loads(stdout)
    assert summary["accounting"]["rows_read"] == 3
    assert summary["inputs"]["apps"] is None
    assert not (case / "out" / "users.parquet").exists()
    assert (case / "out" / "users.csv").exists()


def test_rerun_is_byte_identical(case: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        assert invoke("scan", str(case / "logs"), "--out", str(case / name), "-q")[0] == 0
        outputs.append({p.name: p.read_bytes() for p in (case / name).iterdir()})
    assert outputs[0] == outputs[1]


def test_rerun_replaces_an_earlier_result(case: Path) -> None:
    out = str(case / "out")
    assert invoke("scan", str(case / "logs"), "--out", out, "-q")[0] == 0
    assert invoke("scan", str(case / "logs"), "--out", out, "-q", "--format", "csv")[0] == 0
    assert not (case / "out" / "users.parquet").exists()
    assert not [p for p in case.iterdir() if p.name.startswith(".out.")]


def test_fail_on_findings_exits_3(case: Path) -> None:
    code, _, _ = invoke("scan", str(case / "logs"), "--out", str(case / "o"), "--fail-on-findings")
    assert code == ExitCode.FINDINGS
    write([grant(1, 10), grant(1, 11)], case / "logs" / "authorizations.parquet")
    code, _, _ = invoke("scan", str(case / "logs"), "--out", str(case / "o"), "--fail-on-findings")
    assert code == ExitCode.OK


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("0", ExitCode.TOO_MANY_REJECTED),
        ("1", ExitCode.OK),
        ("10%", ExitCode.TOO_MANY_REJECTED),
        ("50%", ExitCode.OK),
    ],
)
def test_max_rejected_exits_5(case: Path, limit: str, expected: ExitCode) -> None:
    code, _, stderr = invoke(
        "scan", str(case / "logs"), "--out", str(case / "o"), "-q", "--max-rejected", limit
    )
    assert code == expected
    if expected == ExitCode.TOO_MANY_REJECTED:
        assert "1 of 3 delivery rows rejected, over --max-rejected" in stderr
        assert (case / "o" / "rejected.parquet").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan"], "give a DIR, or both --deliveries and --authorizations"),
        (["scan", "--deliveries", "x"], "give a DIR, or both"),
        (["scan", "LOGS", "--since", "yesterday"], "invalid time 'yesterday'"),
        (["scan", "LOGS", "--max-rejected", "lots"], "invalid --max-rejected 'lots'"),
        (["scan", "LOGS", "--map", "deliveries.nope=x"], "unknown column deliveries.nope"),
        (["scan", "LOGS", "--map", "garbage"], "invalid mapping 'garbage'"),
        (["scan", "LOGS", "--since", "2018-02-01", "--until", "2018-01-01"], "empty window"),
        (["scan", "LOGS", "--format", "xlsx"], "'xlsx' is not one of"),
    ],
)
def test_usage_errors_exit_2(case: Path, args: list[str], message: str) -> None:
    args = [str(case / "logs") if a == "LOGS" else a for a in args]
    code, stdout, stderr = invoke(*args, "--out", str(case / "o"))
    assert code == ExitCode.USAGE_ERROR
    assert message in stderr
    assert stdout == ""


def test_input_errors_exit_4_with_one_line(case: Path) -> None:
    logs = case / "logs"
    write(pl.DataFrame([grant()]).drop("revoked_at"), logs / "authorizations.parquet")
    code, _, stderr = invoke("scan", str(logs), "--out", str(case / "o"))
    assert code == ExitCode.INPUT_ERROR
    assert stderr == (
        f"error: {logs / 'authorizations.parquet'}: missing required column 'revoked_at'; "
        "map another column with --map authorizations.revoked_at=NAME\n"
    )
    (logs / "authorizations.parquet").write_text("not parquet")
    code, _, stderr = invoke("scan", str(logs), "--out", str(case / "o"))
    assert code == ExitCode.INPUT_ERROR
    assert "authorizations.parquet: not a readable Parquet file" in stderr
    assert len(stderr.splitlines()) == 1


def test_refuses_to_replace_a_directory_that_is_not_a_result(case: Path) -> None:
    (case / "home").mkdir()
    (case / "home" / "notes.txt").write_text("keep me")
    code, _, stderr = invoke("scan", str(case / "logs"), "--out", str(case / "home"))
    assert code == ExitCode.USAGE_ERROR
    assert "holds no incident result" in stderr
    assert (case / "home" / "notes.txt").read_text() == "keep me"


def test_internal_error_says_it_is_a_bug(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("incident.cli.scan.scan", broken)
    code, _, stderr = invoke("scan", str(case / "logs"))
    assert code == ExitCode.INTERNAL_ERROR
    assert "internal error (a bug in incident" in stderr
    assert "ZeroDivisionError: boom" in stderr


def test_every_exit_code_is_distinct() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode)
    assert [int(code) for code in ExitCode] == list(range(7))


def test_out_is_never_a_directory_with_other_files(case: Path) -> None:
    home = case / "home"
    home.mkdir()
    (home / "summary.json").write_text('{"tool": {"name": "incident"}}')
    (home / "thesis.docx").write_text("keep me")
    code, _, stderr = invoke("scan", str(case / "logs"), "--out", str(home))
    assert code == ExitCode.USAGE_ERROR
    assert (home / "thesis.docx").exists()
    code, _, stderr = invoke(
        "scan", str(case / "logs"), "--out", str(case / "logs" / "deliveries" / "report")
    )
    assert code == ExitCode.USAGE_ERROR
    assert "is inside the input directory" in stderr


def test_reserved_and_nested_columns(case: Path) -> None:
    logs = case / "logs"
    day = logs / "deliveries" / "day=2018-03-01" / "part-0.parquet"
    frame = pl.read_parquet(day)
    write(frame.with_columns(pl.lit("spoof").alias("developer_id")), day)
    code, _, stderr = invoke("scan", str(logs), "--out", str(case / "o"))
    assert code == ExitCode.INPUT_ERROR
    assert "column 'developer_id' has the name of a column the reports add" in stderr
    write(frame.with_columns(pl.lit(["a", "b"]).alias("tags")), day)
    code, _, _ = invoke("scan", str(logs), "--out", str(case / "o"), "-q")
    assert code == ExitCode.OK
    rejected = pl.read_parquet(case / "o" / "rejected.parquet")
    assert rejected["tags"].to_list() == ['["a","b"]']


def test_a_scan_that_vouches_for_nothing_fails_whatever_the_flags(case: Path) -> None:
    """DESIGN rule 7: no valid delivery in the window, every delivery rejected, or no valid
    grant is an input error, even with --fail-on-findings unset or --max-rejected generous;
    no result is published."""
    logs, out = case / "logs", case / "o"
    window = ["--since", "2019-01-01", "--until", "2020-01-01"]
    code, stdout, stderr = invoke("scan", str(logs), "--out", str(out), *window)
    assert (code, stdout) == (ExitCode.INPUT_ERROR, "")
    assert stderr == (
        f"error: {logs / 'deliveries'}: no valid delivery falls in the window; check "
        "--since/--until, and that integer timestamps are epoch milliseconds\n"
    )
    assert not out.exists()

    unreadable = [delivery(1, "soon", 10, 1), delivery(2, "later", 10, 1)]
    write(unreadable, logs / "deliveries" / "day=2018-03-01" / "part-0.parquet")
    code, _, stderr = invoke("scan", str(logs), "--out", str(out), "--max-rejected", "100%")
    assert code == ExitCode.INPUT_ERROR
    assert stderr == (
        f"error: {logs / 'deliveries'}: every delivery row was rejected "
        "(delivered_at: not a timestamp (2)); nothing could be checked\n"
    )
    assert not out.exists()


def test_no_valid_grant_is_an_input_error(case: Path) -> None:
    logs = case / "logs"
    write([grant(None, 10), grant(1, None)], logs / "authorizations.parquet")
    code, _, stderr = invoke("scan", str(logs), "--out", str(case / "o"), "--fail-on-findings")
    assert code == ExitCode.INPUT_ERROR
    assert stderr == (
        f"error: {logs / 'authorizations.parquet'}: no valid grant (app_id: null (1), "
        "for_user_id: null (1)); without grants every delivery would count as misdelivered\n"
    )
    assert not (case / "o").exists()


def test_max_rejected_counts_rejected_grants_too(case: Path) -> None:
    logs = case / "logs"
    write([grant(1, 10), grant(None, 10)], logs / "authorizations.parquet")
    code, _, stderr = invoke(
        "scan", str(logs), "--out", str(case / "o"), "-q", "--max-rejected", "40%"
    )
    assert code == ExitCode.TOO_MANY_REJECTED
    assert stderr == (
        f"error: {logs / 'authorizations.parquet'}: 1 of 2 authorization rows rejected, over "
        f"--max-rejected 40%; see {case / 'o' / 'rejected_authorizations.parquet'}\n"
    )
    code, _, stderr = invoke("scan", str(logs), "--out", str(case / "o"), "--max-rejected", "50%")
    assert code == ExitCode.OK
    assert "warning: 1 authorization rows rejected (for_user_id: null (1));" in stderr


def test_summary_markdown_for_a_ticket(case: Path) -> None:
    assert invoke("scan", str(case / "logs"), "--out", str(case / "o"), "-q")[0] == 0
    markdown = (case / "o" / "summary.md").read_text()
    assert "- **1** events misdelivered (1 deliveries)" in markdown
    assert "| rows_rejected | 1 |" in markdown
    assert "| dev-b | 1 | 2 |" in markdown


def test_verify_passes_then_names_every_mismatch(case: Path) -> None:
    out = case / "o"
    assert invoke("scan", str(case / "logs"), "--out", str(out), "-q")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["since"] == "2017-05-01T00:00:00Z"
    assert [f["rows"] for f in manifest["inputs"]["deliveries"]] == [3]
    assert set(manifest["outputs"]) == {p.name for p in out.iterdir()} - {"manifest.json"}
    code, stdout, stderr = invoke("verify", str(out))
    assert (code, stdout) == (ExitCode.OK, "")
    assert "matches its manifest.json" in stderr

    (out / "users.csv").write_text("user_id\n")
    write([grant(1, 10), grant(1, 11)], case / "logs" / "authorizations.parquet")
    write([delivery(9)], case / "logs" / "deliveries" / "day=2018-03-02" / "part-0.parquet")
    code, _, stderr = invoke("verify", str(out))
    assert code == ExitCode.VERIFICATION_FAILED
    lines = stderr.splitlines()
    assert any("users.csv: sha256" in line for line in lines)
    assert any("authorizations.parquet: sha256" in line for line in lines)
    assert any("day=2018-03-02" in line and "a new deliveries file" in line for line in lines)
    assert lines[-1].endswith("mismatches with its manifest.json")


def test_verify_without_manifest_fails(tmp_path: Path) -> None:
    code, _, stderr = invoke("verify", str(tmp_path))
    assert code == ExitCode.VERIFICATION_FAILED
    assert "manifest.json: missing" in stderr


def test_format_html_writes_the_page_beside_the_tables(case: Path) -> None:
    out = case / "o"
    assert invoke("scan", str(case / "logs"), "--out", str(out), "-q", "--format", "html")[0] == 0
    assert {"report.html", "users.parquet", "users.csv"} <= {p.name for p in out.iterdir()}
    page = (out / "report.html").read_text()
    assert 'id="users-exposed"' in page
    assert invoke("verify", str(out))[0] == ExitCode.OK
    # A re-run may replace a result that holds a report.html.
    assert invoke("scan", str(case / "logs"), "--out", str(out), "-q", "--format", "csv")[0] == 0
    assert not (out / "report.html").exists()


def test_a_failed_scan_leaves_no_partial_result(
    case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = case / "o"
    assert invoke("scan", str(case / "logs"), "--out", str(out), "-q")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C while the result is being written

    monkeypatch.setattr("incident.api.write_manifest", interrupted)
    code, _, stderr = invoke("scan", str(case / "logs"), "--out", str(out), "-q")
    assert code != ExitCode.OK
    assert "Aborted" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, _ = invoke("scan", str(case / "logs"), "--out", str(case / "new"), "-q")
    assert code != ExitCode.OK
    assert not (case / "new").exists()
    assert [p.name for p in case.iterdir() if p.name.startswith(".")] == []
