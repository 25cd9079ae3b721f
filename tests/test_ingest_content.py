"""No content text in any byte written: a marker planted in every text field of webhook
payloads (message and post text, user names, descriptions, media, unknown fields, damaged
lines) is searched for in every file that ingest, scan, export, report, notify, diff and
verify write, and in everything they, validate and config show print. Parquet files are
searched value by value (their pages are compressed, so their raw bytes would hide the
marker), every other file byte by byte. A control run plants the marker in a whitelisted
field and must find it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from incident.cli import cli
from tests import webhook

MARKER = "zq-planted-7f3a9c"


def run(*args: object) -> tuple[int, str]:
    """Run a command; its exit code and everything it printed."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout + result.stderr


def found_in(path: Path) -> bool:
    """True when the marker is in the file: in its bytes, or in any value, column name or
    metadata of a Parquet file."""
    data = path.read_bytes()
    if MARKER.encode() in data:
        return True
    if path.suffix != ".parquet":
        return False
    file = pq.ParquetFile(path)
    if MARKER in str(file.schema_arrow) or MARKER in str(file.metadata.metadata):
        return True
    table = file.read()
    return any(MARKER in str(value) for column in table.columns for value in column.to_pylist())


def damaged_lines(frame_row: dict[str, object]) -> list[str]:
    """Lines with the marker that are rejected, or read with nothing of their text."""
    good = webhook.webhook_line(frame_row, MARKER)
    bad_time = {**good, "delivered_at": "tomorrow"}
    no_id = json.loads(json.dumps(good))
    for events in no_id["payload"].values():
        if isinstance(events, list):
            for event in events:
                event.pop("id", None)
                event.pop("id_str", None)
    nested_id = {**good, "app_id": {"text": MARKER}, "delivery_id": [MARKER]}
    return [
        json.dumps(bad_time),
        json.dumps(no_id),
        json.dumps(nested_id),
        json.dumps(good)[:-40],  # cut: not JSON, the marker inside
        f'{{"delivery_id": "{MARKER}"',
        json.dumps({**good, "payload": {"for_user_id": "1", "note": MARKER}}),
        json.dumps({**good, "payload": {"for_user_id": "1", "favorite_events": [MARKER]}}),
    ]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample's deliveries as webhook lines, the marker in every text field."""
    root = tmp_path_factory.mktemp("content")
    assert run("sample", "--out", root / "logs", "--deliveries", 2_000, "--seed", 2)[0] == 0
    frame = webhook.deliveries(root / "logs")
    lines = list(webhook.json_lines(frame, MARKER))
    lines += damaged_lines(frame.row(0, named=True))
    (root / "raw").mkdir()
    (root / "raw" / "deliveries.jsonl.gz").write_bytes(webhook.encoded(lines, "gzip"))
    return root


def test_search_finds_the_marker_in_a_whitelisted_field(raw: Path, tmp_path: Path) -> None:
    """The control: planted where it belongs in the output, the search must find it."""
    row = webhook.deliveries(raw / "logs").row(0, named=True)
    planted = {**webhook.webhook_line(row), "backend_host": MARKER}
    source = tmp_path / "d.jsonl"
    source.write_text(json.dumps(planted) + "\n")
    code, printed = run("ingest", source, "--kind", "deliveries", "--out", tmp_path / "d")
    assert code == 0, printed
    assert any(found_in(p) for p in (tmp_path / "d").rglob("part-*.parquet"))
    assert not found_in(tmp_path / "d" / "_manifest.json")


def every_command(raw: Path, out: Path) -> list[tuple[object, ...]]:
    """Ingest the planted lines, then every command that writes or prints, on the result."""
    logs = raw / "logs"
    (raw / "key").write_bytes(bytes(range(32)))
    return [
        ("ingest", raw / "raw", "--kind", "deliveries", "--out", out / "deliveries"),
        *(
            (
                "scan",
                "--deliveries",
                out / "deliveries",
                "--authorizations",
                logs / "authorizations.parquet",
                "--apps",
                logs / "apps.parquet",
                "--out",
                out / name,
                *formats,
                "--json",
            )
            for name, formats in (
                ("result", ("--format", "csv", "--format", "tsv", "--format", "jsonl")),
                ("result-html", ("--format", "html", "--since", "2018-01-01")),
            )
        ),
        *(
            (
                *command,
                "--deliveries",
                out / "deliveries",
                "--authorizations",
                logs / "authorizations.parquet",
                "--apps",
                logs / "apps.parquet",
            )
            for command in (("validate", "--full", "--json"), ("validate",), ("config", "show"))
        ),
        ("export", out / "result", "--to", out / "export"),
        ("export", out / "result", "--to", out / "export-jsonl", "--format", "jsonl"),
        (
            "export",
            out / "result",
            "--to",
            out / "pseudo",
            "--pseudonymize",
            "--key-file",
            raw / "key",
        ),
        ("report", out / "result", "--html", out / "report.html"),
        ("notify", out / "result", "--to", out / "notices.csv"),
        ("notify", out / "result"),
        ("diff", out / "result", out / "result-html", "--json"),
        ("diff", out / "result", out / "result-html"),
        ("verify", out / "result"),
    ]


def test_no_content_text_in_any_byte_written(raw: Path) -> None:
    out = raw / "out"
    printed = []
    for command in every_command(raw, out):
        code, text = run(*command)
        assert code == 0, (command, text)
        printed.append(text)
    # A failing ingest: every row rejected, the marker in each line.
    failing = raw / "failing.jsonl"
    lines = damaged_lines(webhook.deliveries(raw / "logs").row(0, named=True))
    failing.write_text("\n".join(lines[i] for i in (0, 3, 4, 5, 6)))
    code, text = run("ingest", failing, "--kind", "deliveries", "--out", out / "nothing")
    assert code == 4, text
    printed.append(text)

    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) > 500  # day partitions, reports, exports, the page, the notices
    assert [p for p in written if found_in(p)] == []
    assert [t for t in printed if MARKER in t] == []
    rejected = pq.read_table(out / "deliveries" / "_rejected.parquet").to_pylist()
    assert [(r["line"], r["reject_reason"]) for r in rejected] == [
        (2001, "delivered_at: not a timestamp"),
        (2003, "app_id: not an ID"),
        (2004, "not JSON (Unterminated string starting at)"),
        (2005, "not JSON (Expecting ',' delimiter)"),
        (2006, "payload: no event array (expected a key ending in _events)"),
        (2007, "payload.favorite_events[0]: expected a JSON object"),
    ]
