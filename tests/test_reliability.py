"""Damaged, odd or hostile input and environments: a clear one-line answer with the right exit
code, nothing injected into a terminal or a spreadsheet."""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from rich.console import Console

from incident.cli import cli
from incident.cli.terminal import render_summary
from incident.errors import ExitCode
from tests.conftest import ScanFn, delivery, grant, utc, write

# A bidirectional override (U+202E) would show what follows it reversed on a terminal.
HOSTILE = "\x1b]0;owned\x07dev\x1b[31m\rred\nfake line\x9b\u202e"
HOSTILE_SHOWN = "\\x1b]0;owned\\x07dev\\x1b[31m\\rred\\nfake line\\x9b\\u202e"
FORMULA = '=HYPERLINK("http://evil.example","click")'


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def controls(text: str) -> list[str]:
    """The control characters of `text` (bidirectional formatting too), line breaks aside."""
    bidi = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    return [
        c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F or ord(c) in bidi
    ]


@pytest.fixture
def hostile_logs(tmp_path: Path) -> Path:
    """Logs whose developer ID and event type carry terminal escapes and line breaks, and
    whose IDs would run as spreadsheet formulas or lose digits in a spreadsheet."""
    logs = tmp_path / "logs"
    write(
        [
            delivery(1, utc(2018, 3, 1), 10, 1),
            delivery(2, utc(2018, 3, 1), 11, FORMULA, HOSTILE, sender_id="0042"),
            delivery(3, utc(2018, 3, 2), 11, "123456789012345678", "direct_message"),
        ],
        logs / "deliveries.parquet",
    )
    write([grant(1, 10)], logs / "authorizations.parquet")
    write([{"app_id": 11, "developer_id": HOSTILE}], logs / "apps.parquet")
    return logs


def test_control_characters_from_the_data_are_shown_escaped(hostile_logs: Path) -> None:
    out = hostile_logs.parent / "out"
    code, stdout, stderr = invoke("scan", str(hostile_logs), "--out", str(out))
    assert (code, stdout) == (ExitCode.OK, "")
    assert f"  {HOSTILE_SHOWN}" in stderr  # the developer, and the event type
    assert controls(stderr) == []
    # The same on a terminal, where the summary is a set of rich tables.
    code, stdout, _ = invoke("scan", str(hostile_logs), "--out", str(out), "--json", "-q")
    assert code == ExitCode.OK
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=200, color_system=None)
    from incident.api import scan
    from incident.config import ScanConfig

    render_summary(terminal, scan(ScanConfig.from_directory(hostile_logs, out=out)))
    assert HOSTILE_SHOWN in screen.getvalue()
    assert controls(screen.getvalue()) == []


def _csv_cells(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("\ufeff"), f"{path.name}: no byte-order mark"
    frame = pl.read_csv(io.StringIO(text.removeprefix("\ufeff")), infer_schema=False)
    return [cell for column in frame.iter_columns() for cell in column if cell is not None]


def test_every_csv_the_tool_writes_is_spreadsheet_safe(hostile_logs: Path, tmp_path: Path) -> None:
    """One policy for the scan's reports, export and notify: a byte-order mark, no cell that
    a spreadsheet would run as a formula, no ID a spreadsheet would turn into a number."""
    out = tmp_path / "out"
    assert invoke("scan", str(hostile_logs), "--out", str(out), "-q")[0] == ExitCode.OK
    assert invoke("export", str(out), "--to", str(tmp_path / "shared"))[0] == ExitCode.OK
    assert invoke("notify", str(out), "--to", str(tmp_path / "notices.csv"))[0] == ExitCode.OK
    written = [
        *sorted(out.glob("*.csv")),
        *sorted((tmp_path / "shared").glob("*.csv")),
        tmp_path / "notices.csv",
    ]
    assert len(written) == 3 + 4 + 1
    seen = set()
    for path in written:
        for cell in _csv_cells(path):
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or (
                cell.startswith('="') and cell[2:-1].isdigit()
            ), f"{path.name}: {cell!r} would run as a formula"
            long_or_zero_led = len(cell) >= 12 or (len(cell) > 1 and cell.startswith("0"))
            assert not (cell.isdigit() and long_or_zero_led), (
                f"{path.name}: {cell!r} would lose digits in a spreadsheet"
            )
            seen.add(cell)
    assert "'" + FORMULA in seen  # the user ID, guarded
    assert '="123456789012345678"' in seen
    assert '="0042"' in seen


def test_a_csv_report_reads_back_exactly(hostile_logs: Path, tmp_path: Path) -> None:
    both, csv_only = tmp_path / "both", tmp_path / "csv"
    (hostile_logs / "apps.parquet").unlink()  # its developer ID holds ';', refused in CSV
    assert invoke("scan", str(hostile_logs), "--out", str(both), "-q")[0] == ExitCode.OK
    args = ("scan", str(hostile_logs), "--out", str(csv_only), "--format", "csv", "-q")
    assert invoke(*args)[0] == ExitCode.OK
    from incident.results.read import Table, read_report

    for table in (Table.USERS, Table.DEVELOPERS, Table.ENDPOINTS):
        assert read_report(csv_only, table).equals(read_report(both, table)), table


@pytest.mark.parametrize("width", ["40", "300"])
def test_messages_are_one_line_whatever_the_width_or_path(
    hostile_logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: str
) -> None:
    monkeypatch.setenv("COLUMNS", width)
    out = tmp_path / ("a-very-long-directory-name-" * 6) / "out"
    assert invoke("scan", str(hostile_logs), "--out", str(out), "-q")[0] == ExitCode.OK
    code, _, stderr = invoke("verify", str(out))
    assert (code, stderr) == (ExitCode.OK, f"verified: {out} matches its manifest.json\n")
    code, _, stderr = invoke("scan", str(hostile_logs / "nope"), "--out", str(out))
    assert code == ExitCode.USAGE_ERROR
    code, _, stderr = invoke("export", str(out / "nope"), "--to", str(tmp_path / "x"))
    assert code == ExitCode.INPUT_ERROR
    assert stderr.count("\n") == 1 and stderr.startswith("error: ")


def test_impossible_destinations_are_usage_errors(hostile_logs: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    below_a_file = tmp_path / "a-file" / "out"
    code, _, stderr = invoke("scan", str(hostile_logs), "--out", str(below_a_file))
    assert code == ExitCode.USAGE_ERROR
    assert stderr == f"error: --out {below_a_file}: {tmp_path / 'a-file'} is not a directory\n"
    code, _, stderr = invoke("scan", str(hostile_logs), "--out", "/proc/incident-out")
    assert code == ExitCode.USAGE_ERROR
    assert stderr.startswith("error: --out /proc/incident-out: cannot be written (")
    out = tmp_path / "out"
    assert invoke("scan", str(hostile_logs), "--out", str(out), "-q")[0] == ExitCode.OK
    code, _, stderr = invoke("export", str(out), "--to", "/dev/stdout")
    assert code == ExitCode.USAGE_ERROR
    assert stderr == "error: --to /dev/stdout: exists and is not a directory\n"


def test_a_key_file_must_be_a_regular_file_of_bounded_size(
    hostile_logs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert invoke("scan", str(hostile_logs), "--out", str(out), "-q")[0] == ExitCode.OK
    args = ["export", str(out), "--to", str(tmp_path / "p"), "--pseudonymize", "--key-file"]
    code, _, stderr = invoke(*args, "/dev/urandom")
    assert code == ExitCode.USAGE_ERROR
    assert stderr.startswith("error: --key-file /dev/urandom: not a regular file; expected")
    huge = tmp_path / "huge.key"
    huge.write_bytes(b"k" * (2 << 20))
    code, _, stderr = invoke(*args, str(huge))
    assert code == ExitCode.USAGE_ERROR
    assert stderr.startswith(f"error: --key-file {huge}: more than 1,048,576 bytes; expected")


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("{not json", "not a manifest incident wrote (Expecting property name"),
        ("[]", "not a manifest incident wrote (at list indices must be integers"),
        ('{"outputs": {}}', "not a manifest incident wrote (at 'inputs')"),
        (
            '{"outputs": {"users.csv": {"size": "big", "sha256": 1}}, "inputs": {}}',
            "not a manifest incident wrote (size and sha256 of '?')",
        ),
    ],
)
def test_a_malformed_manifest_fails_verification_naming_it(
    hostile_logs: Path, tmp_path: Path, manifest: str, problem: str
) -> None:
    out = tmp_path / "out"
    assert invoke("scan", str(hostile_logs), "--out", str(out), "-q")[0] == ExitCode.OK
    (out / "manifest.json").write_text(manifest)
    code, _, stderr = invoke("verify", str(out))
    assert code == ExitCode.VERIFICATION_FAILED
    assert stderr.startswith(f"error: {out / 'manifest.json'}: {problem}")
    assert stderr.count("\n") == 1


def test_breakdowns_that_add_up_to_more_say_why(run_scan: ScanFn, tmp_path: Path) -> None:
    # One event delivered before its grant and again after the revocation: two reasons.
    grants = [grant(1, 10, utc(2018, 3, 2), utc(2018, 3, 3))]
    rows = [delivery(1, utc(2018, 3, 1), 10, 1), delivery(1, utc(2018, 3, 4), 10, 1)]
    logs = tmp_path / "logs"
    write(rows, logs / "deliveries.parquet")
    write(grants, logs / "authorizations.parquet")
    code, _, stderr = invoke("scan", str(logs), "--out", str(tmp_path / "out"))
    assert code == ExitCode.OK
    note = (
        "Events are counted once per category they fall in: an event delivered several times "
        "can fall in more than one reason, so the events by reason (2) add up to more than the "
        "1 event misdelivered; deliveries always add up."
    )
    assert note in stderr.splitlines()
    assert note in (tmp_path / "out" / "summary.md").read_text().splitlines()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["totals"]["events_misdelivered"] == 1


def test_a_log_copied_twice_is_read_once_and_named(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    day = logs / "deliveries" / "day=2018-03-01"
    write(
        [delivery(1, utc(2018, 3, 1), 10, 1), delivery(2, utc(2018, 3, 1), 11, 1)],
        day / "part-0.parquet",
    )
    (day / "part-1.parquet").write_bytes((day / "part-0.parquet").read_bytes())
    write([grant(1, 10)], logs / "authorizations.parquet")
    out = tmp_path / "out"
    code, _, stderr = invoke("scan", str(logs), "--out", str(out))
    assert code == ExitCode.OK
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accounting"]["rows_read"] == 2
    assert summary["totals"]["deliveries_misdelivered"] == 1
    assert (
        f"warning: 1 deliveries files have the same bytes (SHA-256) as another and were read "
        f"once: {day / 'part-1.parquet'} = {day / 'part-0.parquet'}; see manifest.json"
    ) in stderr.splitlines()
    recorded = json.loads((out / "manifest.json").read_text())["inputs"]["deliveries"]
    assert [(f["path"], f.get("same_as")) for f in recorded] == [
        (str(day / "part-0.parquet"), None),
        (str(day / "part-1.parquet"), str(day / "part-0.parquet")),
    ]
    assert invoke("verify", str(out))[0] == ExitCode.OK
    (day / "part-1.parquet").write_bytes(b"changed")
    assert invoke("verify", str(out))[0] == ExitCode.VERIFICATION_FAILED


def test_copies_of_a_reported_row_count_once(run_scan: ScanFn) -> None:
    leak = delivery(2, utc(2018, 3, 1), 11, 1, delivery_id="d-2")
    retry = delivery(2, utc(2018, 3, 1, 0, 1), 11, 1, delivery_id="d-3")
    no_id = delivery(3, utc(2018, 3, 2), 11, 1)
    other = delivery(3, utc(2018, 3, 2), 11, 1, "direct_message")  # differs: not a copy
    rows = [delivery(1, utc(2018, 3, 1), 10, 1, delivery_id="d-1"), leak, retry, no_id, other]
    result = run_scan([*rows, leak, leak, no_id | {"delivery_id": None}], [grant(1, 10)])
    accounting = result.accounting
    assert (accounting.rows_read, accounting.rows_rejected) == (8, 3)
    assert (accounting.rows_authorized, accounting.rows_misdelivered) == (1, 4)
    assert result.misdeliveries.collect().height == 4
    rejected = pl.read_parquet(result.out / "rejected.parquet")
    assert rejected["reject_reason"].to_list() == ["duplicate"] * 3
    assert rejected["delivery_id"].to_list() == ["d-2", "d-2", None]  # sorted by event_id first
    assert result.summary.to_json()["rejected_by_reason"] == {"duplicate": 3}


def test_identical_files_under_different_partitions_that_are_read_are_not_copies(
    tmp_path: Path,
) -> None:
    """With the app read from the path (`app=A/`), two files of the same bytes hold the
    deliveries of two apps: both are read."""
    logs = tmp_path / "logs"
    rows = [delivery(1, utc(2018, 3, 1), 10, 1), delivery(2, utc(2018, 3, 1), 10, 2)]
    for app in ("11", "12"):
        frame = pl.DataFrame(rows).drop("app_id")
        write(frame, logs / "deliveries" / f"app={app}" / "part-0.parquet")
    write([grant(1, 10)], logs / "authorizations.parquet")
    out = tmp_path / "out"
    code, _, stderr = invoke("scan", str(logs), "--out", str(out), "--map", "deliveries.app_id=app")
    assert code == ExitCode.OK
    assert "same bytes" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accounting"]["rows_read"] == 4
    assert summary["totals"]["developers_exposed"] == 2


def test_a_delivery_id_shared_by_different_deliveries_is_not_a_copy(run_scan: ScanFn) -> None:
    rows = [
        delivery(1, utc(2018, 3, 1), 11, 1, delivery_id=7),
        delivery(2, utc(2018, 3, 1), 12, 2, delivery_id=7),  # per-webhook numbering
    ]
    result = run_scan(rows, [grant(1, 10)])
    assert (result.accounting.rows_misdelivered, result.accounting.rows_rejected) == (2, 0)
    assert result.summary.totals.users_exposed == 2
    assert result.summary.warnings[0].startswith("1 delivery_id values name misdelivered rows")


def test_categorical_and_binary_columns_are_safe_in_every_format(
    run_scan: ScanFn, tmp_path: Path
) -> None:
    frame = pl.DataFrame([delivery(1, utc(2018, 3, 1), 11, 1)]).with_columns(
        pl.lit(FORMULA).cast(pl.Categorical).alias("note"),
        pl.lit(b"\x00\xff").alias("raw"),
    )
    out = run_scan(frame, [grant(1, 10)]).out
    for fmt in ("csv", "tsv", "jsonl"):
        code, _, stderr = invoke("export", str(out), "--to", str(tmp_path / fmt), "--format", fmt)
        assert (code, stderr.count("error")) == (ExitCode.OK, 0), stderr
    cells = _csv_cells(tmp_path / "csv" / "misdeliveries.csv")
    assert "'" + FORMULA in cells
    assert "00ff" in cells


def test_an_interrupted_swap_puts_the_earlier_result_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from incident.cli import Interrupted
    from incident.outputs import staged_directory

    target = tmp_path / "out"
    target.mkdir()
    (target / "summary.json").write_text("earlier")
    real_replace = __import__("os").replace

    def interrupted(source: str | Path, destination: str | Path) -> None:
        if Path(destination) == target and Path(source).name.endswith(".partial"):
            raise Interrupted(15)  # after the earlier result was moved aside
        real_replace(source, destination)

    monkeypatch.setattr("incident.outputs.os.replace", interrupted)
    with pytest.raises(Interrupted), staged_directory(target, "--out") as staging:
        (staging / "summary.json").write_text("new")
    assert (target / "summary.json").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_window_from_year_one_reads_back(hostile_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, _ = invoke("scan", str(hostile_logs), "--out", str(out), "-q", "--since", "0001-01-01")
    assert code == ExitCode.OK
    assert json.loads((out / "summary.json").read_text())["window"]["since"] == (
        "0001-01-01T00:00:00Z"
    )
    assert invoke("report", str(out), "--html", str(tmp_path / "r.html"))[0] == ExitCode.OK
    assert invoke("diff", str(out), str(out))[0] == ExitCode.OK


def test_a_full_disk_is_the_destination_s_problem(
    hostile_logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("incident.api.write_result", full)
    out = tmp_path / "out"
    code, _, stderr = invoke("scan", str(hostile_logs), "--out", str(out), "-q")
    assert code == ExitCode.USAGE_ERROR
    assert stderr == f"error: --out {out}: cannot be written ([Errno 28] No space left on device)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def test_json_nested_too_deep_is_not_a_summary_or_a_manifest(
    hostile_logs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert invoke("scan", str(hostile_logs), "--out", str(out), "-q")[0] == ExitCode.OK
    (out / "manifest.json").write_text("[" * 200_000)
    code, _, stderr = invoke("verify", str(out))
    assert (code, stderr.count("\n")) == (ExitCode.VERIFICATION_FAILED, 1)
    (out / "summary.json").write_text('{"tool": {"name": "incident"}, "x": ' + "[" * 200_000)
    code, _, stderr = invoke("diff", str(out), str(out))
    assert (code, stderr.count("\n")) == (ExitCode.INPUT_ERROR, 1)
    assert "summary.json unreadable" in stderr


def test_notify_on_a_terminal_escapes_control_characters(
    run_scan: ScanFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [delivery(1, utc(2018, 3, 1), 11, "u\x1b[2J\x07", "tweet")]
    out = run_scan(rows, [grant(1, 10)]).out
    piped = invoke("notify", str(out))[1]
    assert "u\x1b[2J\x07" in piped  # a pipe or a file gets the exact value
    # A terminal: the runner's stdout, saying it is one.
    with CliRunner().isolation() as (stdout, _, _):
        import sys

        monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
        cli.main(["notify", str(out)], standalone_mode=False)
        shown = stdout.getvalue().decode("utf-8")
    assert "u\\x1b[2J\\x07" in shown
    assert controls(shown) == []


def test_file_names_with_glob_characters_are_read_as_names(tmp_path: Path) -> None:
    """A directory named `day=2018-03-01[1]*` is a name, not a pattern, once found."""
    logs = tmp_path / "logs"
    odd = logs / "deliveries" / "day=2018-03-01[1]*?\x1b[31m"
    write(
        [delivery(1, utc(2018, 3, 1), 10, 1), delivery(2, utc(2018, 3, 1), 11, 1)],
        odd / "part-0.parquet",
    )
    write([grant(1, 10)], logs / "authorizations.parquet")
    out = tmp_path / "out[1]"
    code, _, stderr = invoke("scan", str(logs), "--out", str(out), "-q")
    assert (code, stderr) == (ExitCode.OK, "")
    assert json.loads((out / "summary.json").read_text())["accounting"]["rows_misdelivered"] == 1
    assert invoke("export", str(out), "--to", str(tmp_path / "shared"))[0] == ExitCode.OK
