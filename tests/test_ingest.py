"""`incident ingest`: raw logs into the Parquet `scan` reads.

Round trips of `incident sample` data written as a platform keeps it (webhook JSON lines in
gzip and zstd, CSV with other column names) give the same reports as scanning the sample's
Parquet; damaged lines are quarantined with their line and reason and counted; the command
line exits as the contract says. The content-text test is in `test_ingest_content.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from incident.cli import cli
from incident.config import ColumnMap
from incident.errors import ExitCode
from incident.ingest import envelope, sources
from incident.ingest.envelope import event_digest
from tests import webhook

SAMPLE_DELIVERIES = 2_000
REPORTS = ("users", "developers", "endpoints")


def invoke(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`incident sample` data, and its scan as the reference (`reference/`)."""
    root = tmp_path_factory.mktemp("ingest")
    code, _, stderr = invoke(
        "sample", "--out", root / "logs", "--deliveries", SAMPLE_DELIVERIES, "--seed", 1
    )
    assert code == 0, stderr
    code, _, stderr = invoke("scan", root / "logs", "--out", root / "reference", "-q")
    assert code == 0, stderr
    return root


def scan(root: Path, deliveries: Path, authorizations: Path, apps: Path, out: Path) -> Path:
    code, _, stderr = invoke(
        "scan",
        "--deliveries",
        deliveries,
        "--authorizations",
        authorizations,
        "--apps",
        apps,
        "--out",
        out,
        "-q",
    )
    assert code == 0, stderr
    return out


def assert_same_reports(reference: Path, result: Path) -> None:
    """Reports byte for byte; misdeliveries and summary figures exactly (their paths differ)."""
    for name in REPORTS:
        for suffix in (".csv", ".parquet"):
            assert (result / f"{name}{suffix}").read_bytes() == (
                reference / f"{name}{suffix}"
            ).read_bytes(), name + suffix
    misdeliveries = [
        pl.read_parquet(r / "misdeliveries.parquet").drop("source_file")
        for r in (reference, result)
    ]
    assert misdeliveries[0].height > 0
    assert misdeliveries[0].equals(misdeliveries[1])
    summaries = [json.loads((r / "summary.json").read_text()) for r in (reference, result)]
    for summary in summaries:
        del summary["inputs"]
    assert summaries[0] == summaries[1]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_webhook_json_lines_round_trip_to_the_same_reports(
    sample: Path, tmp_path: Path, compression: str
) -> None:
    frame = webhook.deliveries(sample / "logs")
    lines = list(webhook.json_lines(frame))
    half = len(lines) // 2
    suffix = ".gz" if compression == "gzip" else ".zst"
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / f"a.jsonl{suffix}").write_bytes(webhook.encoded(lines[:half], compression))
    (raw / f"b.jsonl{suffix}").write_bytes(webhook.encoded(lines[half:], compression))
    code, stdout, stderr = invoke("ingest", raw, "--kind", "deliveries", "--out", tmp_path / "d")
    assert (code, stdout) == (0, ""), stderr
    assert f"read {SAMPLE_DELIVERIES:,} lines from 2 files: {SAMPLE_DELIVERIES:,} rows" in stderr
    assert "0 rejected" in stderr
    days = {p.parent.name for p in (tmp_path / "d").glob("day=*/part-*.parquet")}
    expected_days = {p.name for p in (sample / "logs" / "deliveries").iterdir()}
    assert days == expected_days
    logs = sample / "logs"
    result = scan(
        tmp_path,
        tmp_path / "d",
        logs / "authorizations.parquet",
        logs / "apps.parquet",
        tmp_path / "result",
    )
    assert_same_reports(sample / "reference", result)
    manifest = json.loads((tmp_path / "d" / "_manifest.json").read_text())
    assert [i["compression"] for i in manifest["inputs"]] == [compression, compression]
    assert manifest["accounting"]["rows_written"] == SAMPLE_DELIVERIES


def test_csv_with_other_column_names_round_trips_every_input(sample: Path, tmp_path: Path) -> None:
    """Deliveries and grants as CSV under other names (gzip), apps as flat JSON lines."""
    logs = sample / "logs"
    frame = webhook.deliveries(logs)
    (tmp_path / "deliveries.csv.gz").write_bytes(
        webhook.encoded([webhook.csv_text(frame, webhook.CSV_NAMES)[:-1]], "gzip")
    )
    grant_names = {"for_user_id": "user", "granted_at": "created", "revoked_at": "ended"}
    grants = pl.read_parquet(logs / "authorizations.parquet")
    (tmp_path / "grants.csv").write_text(webhook.csv_text(grants, grant_names))
    apps = pl.read_parquet(logs / "apps.parquet")
    (tmp_path / "apps.ndjson.zst").write_bytes(
        webhook.encoded((json.dumps(r) for r in apps.iter_rows(named=True)), "zstd")
    )
    for kind, source, names in (
        ("deliveries", "deliveries.csv.gz", webhook.CSV_NAMES),
        ("authorizations", "grants.csv", grant_names),
        ("apps", "apps.ndjson.zst", {}),
    ):
        maps = [a for m in webhook.mappings(names, kind) for a in ("--map", m)]
        args = ("ingest", tmp_path / source, "--kind", kind, "--out", tmp_path / kind, *maps)
        code, _, stderr = invoke(*args)
        assert code == 0, stderr
        assert "0 rejected" in stderr
    result = scan(
        tmp_path,
        tmp_path / "deliveries",
        tmp_path / "authorizations",
        tmp_path / "apps",
        tmp_path / "result",
    )
    assert_same_reports(sample / "reference", result)
    manifest = json.loads((tmp_path / "deliveries" / "_manifest.json").read_text())
    assert manifest["inputs"][0]["columns_ignored"] == ["message_text"]
    # Each record spans two lines: its message text holds a line break.
    assert manifest["inputs"][0]["lines"] == 2 * SAMPLE_DELIVERIES + 1


def line(**fields: object) -> str:
    """A webhook line: one favorite event for user 1 to app 10, with `fields` replaced."""
    record: dict[str, object] = {
        "delivery_id": "d1",
        "delivered_at": "2018-03-01T00:00:00Z",
        "app_id": 10,
        "payload": {"for_user_id": "1", "favorite_events": [{"id": 6}]},
    }
    record.update(fields)
    return json.dumps(record)


DAMAGED = [
    line(),
    line(delivered_at="yesterday"),
    '{"delivery_id": "d3", "payload": ',
    "",
    line(app_id=1e20),
    line(payload={"for_user_id": 1.5, "favorite_events": [{"id": 6}]}),
    line(payload={"for_user_id": "1", "user_event": {"revoke": {}}}),
    line(delivered_at=1519862400000.5),
    "[1, 2]",
    line(payload={"for_user_id": "1", "favorite_events": [{"id": 7}, "x", {"id": 8.0}]}),
    line(app_id="  "),
    line(payload={"for_user_id": "1", "tweet_create_events": [{"id_str": "9", "user": {}}]}),
]


def test_damaged_lines_are_quarantined_with_line_numbers_and_counted(tmp_path: Path) -> None:
    source = tmp_path / "log.jsonl"
    source.write_bytes("\n".join(DAMAGED).encode() + b"\n\xff\xfe{}\n")
    code, _, stderr = invoke("ingest", source, "--kind", "deliveries", "--out", tmp_path / "d")
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "read 13 lines (1 blank) from 1 file: 14 rows, 3 written, 11 rejected" in stderr
    rejected = pl.read_parquet(tmp_path / "d" / "_rejected.parquet")
    found = rejected.select("line", "event_index", "reject_reason").rows()
    not_exact = "not an exact integer ID (a Float64 that is fractional, not finite, or beyond"
    assert [(n, e, r.split(" ±")[0]) for n, e, r in found] == [
        (2, 0, "delivered_at: not a timestamp"),
        (3, None, "not JSON (Expecting value)"),
        (5, 0, f"app_id: {not_exact}"),
        (6, 0, f"for_user_id: {not_exact}"),
        (7, None, "payload: no event array (expected a key ending in _events)"),
        (8, 0, "delivered_at: not a timestamp"),
        (9, None, "expected a JSON object"),
        (10, 1, "payload.favorite_events[1]: expected a JSON object"),
        (11, 0, "app_id: empty"),
        (12, 0, "event_type: user.protected is not true or false"),
        (13, None, "not UTF-8 text (at byte 0)"),
    ]
    assert rejected["source_file"].unique().to_list() == [str(source)]
    # Whitelisted fields as read, to show what was wrong; a line that is not JSON has none.
    assert rejected["delivered_at"].to_list()[:2] == ["yesterday", None]
    assert rejected["app_id"][2] == "1e+20"
    written = pl.read_parquet(next((tmp_path / "d").glob("day=*/part-*.parquet")))
    assert written["event_id"].to_list() == ["6", "7", "8"]  # 8.0 is exactly 8
    manifest = json.loads((tmp_path / "d" / "_manifest.json").read_text())
    assert manifest["accounting"] == {
        "files": 1,
        "lines_read": 13,
        "blank_lines": 1,
        "rows_read": 14,
        "rows_written": 3,
        "rows_rejected": 11,
    }


def test_csv_cells_follow_the_scan_rules(tmp_path: Path) -> None:
    """Float IDs are exact or rejected; digits are epoch ms; a short record is rejected."""
    source = tmp_path / "d.csv"
    source.write_bytes(
        b"event_id,delivered_at,app_id,for_user_id,event_type,note\n"
        b"1,1519862400000,10,123.0,tweet,x\n"
        b"2,2018-03-01T09:00:00+09:00,10,1e20,tweet,x\n"
        b"3,2018-03-01,0042,7,tweet\n"
        b"4,2018-03-01,10,7,\xff,x\n"
        b"5,not a time,10,7,tweet,x\n"
    )
    code, _, stderr = invoke("ingest", source, "--kind", "deliveries", "--out", tmp_path / "d")
    assert code == 0, stderr
    written = pl.read_parquet(tmp_path / "d" / "day=2018-03-01" / "part-00000.parquet")
    assert written.select("event_id", "for_user_id").rows() == [("1", "123")]
    assert str(written["delivered_at"][0]) == "2018-03-01 00:00:00+00:00"
    rejected = pl.read_parquet(tmp_path / "d" / "_rejected.parquet")
    assert [r.split(" (")[0] for r in rejected["reject_reason"]] == [
        "for_user_id: not an exact integer ID",
        "expected 6 fields, found 5",
        "not UTF-8 text",
        "delivered_at: not a timestamp",
    ]
    assert rejected["line"].to_list() == [3, 4, 5, 6]


def test_several_events_give_a_row_each_and_an_event_without_id_a_stable_digest(
    tmp_path: Path,
) -> None:
    follow = {"type": "follow", "source": {"id": "4"}, "target": {"id": "1"}}
    payload = {
        "for_user_id": "1",
        "follow_events": [follow],
        "direct_message_events": [
            {"id": "5", "message_create": {"sender_id": "1", "target": {"recipient_id": "2"}}}
        ],
        "tweet_create_events": [{"id": 6, "user": {"id_str": "1", "protected": True}}],
    }
    source = tmp_path / "d.jsonl"
    source.write_text(line(payload=payload) + "\n" + line(app_id=11, payload=payload) + "\n")
    code, _, stderr = invoke("ingest", source, "--kind", "deliveries", "--out", tmp_path / "d")
    assert code == 0, stderr
    rows = pl.read_parquet(tmp_path / "d" / "day=2018-03-01").select(
        "app_id", "event_id", "event_type", "sender_id", "recipient_id"
    )
    digest = event_digest("follow_events", follow)
    assert digest == event_digest("follow_events", json.loads(json.dumps(follow)))
    assert digest.startswith("sha256:") and len(digest) == 7 + 32
    assert rows.rows() == [
        (app, *event)
        for app in ("10", "11")
        for event in [
            ("5", "direct_message", "1", "2"),
            (digest, "follow", "4", None),
            ("6", "protected_tweet", "1", None),
        ]
    ]


def test_ingest_output_is_deterministic_and_batch_size_does_not_matter(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = webhook.deliveries(sample / "logs").head(300)
    source = tmp_path / "d.jsonl"
    source.write_text("\n".join(webhook.json_lines(frame)) + "\n")
    assert invoke("ingest", source, "--kind", "deliveries", "--out", tmp_path / "a")[0] == 0
    # Small batches and few open files: many row groups and reopened days, the same rows.
    monkeypatch.setattr("incident.ingest.run.IngestConfig.batch_rows", 7)
    monkeypatch.setattr("incident.ingest.parts.MAX_OPEN", 2)
    assert invoke("ingest", source, "--kind", "deliveries", "--out", tmp_path / "b")[0] == 0
    read = [
        pl.read_parquet(tmp_path / d / "day=*" / "*.parquet", hive_partitioning=False)
        for d in ("a", "b")
    ]
    key = ["delivery_id", "event_id"]
    assert read[0].sort(key).equals(read[1].sort(key))
    assert invoke("ingest", source, "--kind", "deliveries", "--out", tmp_path / "c")[0] == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert files == sorted(
        p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*.parquet")
    )
    assert all(
        (tmp_path / "a" / f).read_bytes() == (tmp_path / "c" / f).read_bytes() for f in files
    )


def test_a_line_longer_than_the_limit_is_rejected_not_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1_000)
    source = tmp_path / "d.jsonl"
    source.write_text(line() + "\n" + line(delivery_id="x" * 5_000) + "\n" + line(app_id=11))
    code, _, stderr = invoke("ingest", source, "--kind", "deliveries", "--out", tmp_path / "d")
    assert code == 0, stderr
    rejected = pl.read_parquet(tmp_path / "d" / "_rejected.parquet")
    assert rejected.select("line", "reject_reason").rows() == [(2, "line longer than 1,000 bytes")]
    assert "2 written, 1 rejected" in stderr


def test_mapping_a_payload_column_of_webhook_lines_is_a_usage_error(tmp_path: Path) -> None:
    source = tmp_path / "d.jsonl"
    source.write_text(line() + "\n")
    out = tmp_path / "d"
    code, _, stderr = invoke(
        "ingest", source, "--kind", "deliveries", "--out", out, "--map", "deliveries.event_id=x"
    )
    assert code == ExitCode.USAGE_ERROR
    assert stderr.startswith("error: --map deliveries.event_id: ") and "payload" in stderr
    code, _, stderr = invoke(
        "ingest", source, "--kind", "deliveries", "--out", out, "--map", "apps.app_id=x"
    )
    assert code == ExitCode.USAGE_ERROR
    assert "does not apply to --kind deliveries" in stderr
    # The line's own fields map: app_id read from "application".
    source.write_text(line(application=12).replace('"app_id": 10, ', "") + "\n")
    code, _, stderr = invoke(
        "ingest",
        source,
        "--kind",
        "deliveries",
        "--out",
        out,
        "--map",
        "deliveries.app_id=application",
    )
    assert code == 0, stderr
    assert pl.read_parquet(out / "day=2018-03-01")["app_id"].to_list() == ["12"]


def test_cli_errors_name_the_file_and_publish_nothing(tmp_path: Path) -> None:
    source = tmp_path / "d.jsonl"
    source.write_text(line(delivered_at="never") + "\n" + line(delivered_at="soon") + "\n")
    out = tmp_path / "d"
    code, _, stderr = invoke("ingest", source, "--kind", "deliveries", "--out", out)
    assert code == ExitCode.INPUT_ERROR
    assert stderr == (
        f"error: {source}: every row was rejected (delivered_at: not a timestamp (2)); "
        "nothing written\n"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == [source]

    broken = tmp_path / "d.jsonl.gz"
    broken.write_bytes(webhook.encoded([line()] * 1000, "gzip")[:-20])
    code, _, stderr = invoke("ingest", broken, "--kind", "deliveries", "--out", out)
    assert code == ExitCode.INPUT_ERROR
    assert stderr.startswith(f"error: {broken}: cannot be read (damaged gzip data after ")
    assert not out.exists()

    unknown = tmp_path / "d.log"
    unknown.write_text(line() + "\n")
    code, _, stderr = invoke("ingest", unknown, "--kind", "deliveries", "--out", out)
    assert code == ExitCode.USAGE_ERROR
    assert stderr.startswith(f"error: {unknown}: cannot tell its format from the name")
    assert (
        invoke("ingest", unknown, "--kind", "deliveries", "--out", out, "--format", "jsonl")[0] == 0
    )

    code, _, stderr = invoke(
        "ingest", tmp_path, "--kind", "deliveries", "--out", tmp_path / "x", "--format", "jsonl"
    )
    assert code == ExitCode.USAGE_ERROR
    assert "is inside the source directory" in stderr

    missing = tmp_path / "grants.csv"
    missing.write_text("for_user_id,app_id,granted_at\n1,2,2018-01-01\n")
    code, _, stderr = invoke("ingest", missing, "--kind", "authorizations", "--out", tmp_path / "g")
    assert code == ExitCode.INPUT_ERROR
    assert stderr == (
        f"error: {missing}: missing required column 'revoked_at'; "
        "map another column with --map authorizations.revoked_at=NAME\n"
    )


def test_output_replaces_an_earlier_ingest_only(tmp_path: Path) -> None:
    source = tmp_path / "d.jsonl"
    source.write_text(line() + "\n" + line(delivered_at="bad") + "\n")
    out = tmp_path / "d"
    assert invoke("ingest", source, "--kind", "deliveries", "--out", out)[0] == 0
    source.write_text(line(delivered_at="2018-04-01T00:00:00Z") + "\n")
    assert invoke("ingest", source, "--kind", "deliveries", "--out", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "_manifest.json",
        "_rejected.parquet",
        "day=2018-04-01",
    ]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, stderr = invoke("ingest", source, "--kind", "deliveries", "--out", other)
    assert code == ExitCode.USAGE_ERROR
    assert "directory is not empty" in stderr


def test_max_rejected_publishes_then_exits_5(tmp_path: Path) -> None:
    source = tmp_path / "d.jsonl"
    source.write_text(line() + "\n" + line(delivered_at="bad") + "\n")
    out = tmp_path / "d"
    code, _, stderr = invoke(
        "ingest", source, "--kind", "deliveries", "--out", out, "--max-rejected", "10%"
    )
    assert code == ExitCode.TOO_MANY_REJECTED
    assert stderr == (
        f"error: {source}: 1 of 2 rows rejected, over --max-rejected 10%; "
        f"see {out / '_rejected.parquet'}\n"
    )
    assert (out / "_manifest.json").is_file()


def test_envelope_reads_only_whitelisted_fields() -> None:
    """A nested value where an ID belongs is kept as NESTED, never as its contents."""
    rows = envelope.flatten(
        json.loads(line(app_id={"text": "secret"}, delivery_id=["secret"])), ColumnMap()
    )
    assert not isinstance(rows, str)
    assert rows[0].values["app_id"] is envelope.NESTED
    assert rows[0].values["delivery_id"] is envelope.NESTED
    assert "secret" not in repr(rows)


def test_a_source_holding_no_file_is_named_in_ingest_words(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "_SUCCESS").write_text("")  # a marker is not data
    code, _, stderr = invoke(
        "ingest", tmp_path / "raw", "--kind", "deliveries", "--out", tmp_path / "o"
    )
    assert code == ExitCode.INPUT_ERROR
    assert stderr == f"error: {tmp_path / 'raw'}: no files found for deliveries\n"
