"""`incident export`: exact bytes per format, pseudonyms, and every error through the CLI."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from incident import ScanConfig, scan
from incident.cli import cli
from incident.config import ReportFormat
from incident.errors import ConfigError, ExitCode, IncidentError, InputError
from incident.report import FORMATS
from incident.results.export import (
    EXPORT_FORMATS,
    MIN_KEY_BYTES,
    IdKind,
    export_result,
    pseudonym,
    read_key,
)
from incident.schema import DEVELOPERS_SCHEMA, ENDPOINTS_SCHEMA, USERS_SCHEMA
from tests.conftest import delivery, grant, utc, write

BOM = b"\xef\xbb\xbf"
NOTE = 'café, "quoted"\nline two'


def _awkward_result(out: str, formats: tuple[ReportFormat, ...] = tuple(ReportFormat)) -> Path:
    """Scan a tiny input full of awkward values: long and zero-led IDs, unicode, commas, quotes,
    a line break, nulls, lists, fractional seconds and text that looks like a formula."""
    if not Path("in").exists():
        write(
            [
                delivery(
                    "9007199254740993123",
                    utc(2018, 3, 1, 9),
                    11,
                    "12345678901234567890",
                    "direct_message",
                    sender_id="0042",
                    recipient_id="12345678901234567890",
                    webhook_url="https://h.example/a?x=1,y=2",
                    http_status=200,
                    note=NOTE,
                ),
                delivery(
                    "2",
                    utc(2018, 3, 2, 0, 0, 0, 500000),
                    12,
                    "Zoë",
                    "protected_tweet",
                    sender_id="0042",
                    recipient_id=None,
                    webhook_url=None,
                    http_status=None,
                    note="=1+2",
                ),
                delivery(
                    "3",
                    utc(2018, 3, 3),
                    13,
                    "0042",
                    "tweet",
                    sender_id=None,
                    recipient_id=None,
                    webhook_url="@SUM(A1)",
                    http_status=500,
                    note=None,
                ),
                delivery(
                    "4",
                    utc(2018, 3, 3),
                    11,
                    "7",
                    "tweet",
                    sender_id=None,
                    recipient_id=None,
                    webhook_url=None,
                    http_status=200,
                    note="authorized",
                ),
            ],
            Path("in/deliveries.parquet"),
        )
        write([grant("7", 11)], Path("in/authorizations.parquet"))
        write(
            [
                {"app_id": 11, "developer_id": 'dev,"acme"'},
                {"app_id": 12, "developer_id": 'dev,"acme"'},
            ],
            Path("in/apps.parquet"),
        )
    scan(
        ScanConfig(
            deliveries="in/deliveries.parquet",
            authorizations="in/authorizations.parquet",
            apps="in/apps.parquet",
            out=Path(out),
            formats=formats,
        )
    )
    return Path(out)


@pytest.fixture
def result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The awkward result, scanned with relative paths so that `source_file` is stable."""
    monkeypatch.chdir(tmp_path)
    yield _awkward_result("result")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.key"
    path.write_bytes(bytes(range(32)))
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    outcome = CliRunner().invoke(cli, list(args))
    return outcome.exit_code, outcome.stdout, outcome.stderr


EXPECTED_CSV = {
    "users.csv": BOM
    + b"user_id,roles,events,direct_messages,protected_tweets,developers,developer_ids,"
    b"first_exposed_at,last_exposed_at\n"
    b'"=""0042""",author;sender;subscriber,3,1,1,2,"dev,""acme"";unknown:13",'
    b"2018-03-01T09:00:00Z,2018-03-03T00:00:00Z\n"
    b'"=""12345678901234567890""",recipient;subscriber,1,1,0,1,"dev,""acme""",'
    b"2018-03-01T09:00:00Z,2018-03-01T09:00:00Z\n"
    b'Zo\xc3\xab,subscriber,1,0,1,1,"dev,""acme""",'
    b"2018-03-02T00:00:00.500Z,2018-03-02T00:00:00.500Z\n",
    "developers.csv": BOM
    + b"developer_id,app_ids,events,deliveries,direct_messages,protected_tweets,users_exposed,"
    b"first_received_at,last_received_at,intended_developer_ids\n"
    b'"dev,""acme""",11;12,2,2,1,1,3,2018-03-01T09:00:00Z,2018-03-02T00:00:00.500Z,""\n'
    b'unknown:13,13,1,1,0,0,1,2018-03-03T00:00:00Z,2018-03-03T00:00:00Z,""\n',
    # No input has webhook evidence: no endpoint is known to be shared.
    "endpoints.csv": BOM
    + b"resolved_ip,url_path,apps,app_ids,developers,developer_ids,misdeliveries,events,"
    b"users_exposed,first_misdelivered_at,last_misdelivered_at\n",
    "misdeliveries.csv": BOM
    + b"event_id,delivered_at,app_id,for_user_id,event_type,delivery_id,sender_id,recipient_id,"
    b"webhook_url,resolved_ip,backend_host,http_status,note,source_file,developer_id,reason,"
    b"cause,evidence,intended_app_id,intended_developer_id,intended_app_candidates\n"
    b'2,2018-03-02T00:00:00.500Z,12,Zo\xc3\xab,protected_tweet,,"=""0042""",,,,,,\'=1+2,'
    b'in/deliveries.parquet,"dev,""acme""",no_grant,unexplained,full,,,0\n'
    b'3,2018-03-03T00:00:00Z,13,"=""0042""",tweet,,,,\'@SUM(A1),,,500,,'
    b"in/deliveries.parquet,unknown:13,no_grant,unexplained,full,,,0\n"
    b'"=""9007199254740993123""",2018-03-01T09:00:00Z,11,"=""12345678901234567890""",'
    b'direct_message,,"=""0042""","=""12345678901234567890""","https://h.example/a?x=1,y=2",'
    b',,200,"caf\xc3\xa9, ""quoted""\nline two",in/deliveries.parquet,"dev,""acme""",no_grant,'
    b"unexplained,full,,,0\n",
}


def test_csv_bytes_for_spreadsheets(result: Path) -> None:
    written = export_result(result, Path("shared"), ReportFormat.CSV)
    assert written == [Path("shared") / name for name in EXPECTED_CSV]
    assert {path.name: path.read_bytes() for path in written} == EXPECTED_CSV


def test_tsv_bytes_quote_only_what_a_tab_separated_cell_needs(result: Path) -> None:
    export_result(result, Path("shared"), ReportFormat.TSV)
    assert (Path("shared") / "developers.tsv").read_bytes() == (
        BOM + b"developer_id\tapp_ids\tevents\tdeliveries\tdirect_messages\tprotected_tweets\t"
        b"users_exposed\tfirst_received_at\tlast_received_at\tintended_developer_ids\n"
        b'"dev,""acme"""\t11;12\t2\t2\t1\t1\t3\t2018-03-01T09:00:00Z\t2018-03-02T00:00:00.500Z'
        b'\t""\n'
        b'unknown:13\t13\t1\t1\t0\t0\t1\t2018-03-03T00:00:00Z\t2018-03-03T00:00:00Z\t""\n'
    )
    lines = (Path("shared") / "misdeliveries.tsv").read_bytes().split(b"\n")
    assert lines[3] == (
        b'"=""9007199254740993123"""\t2018-03-01T09:00:00Z\t11\t"=""12345678901234567890"""\t'
        b'direct_message\t\t"=""0042"""\t"=""12345678901234567890"""\t'
        b'https://h.example/a?x=1,y=2\t\t\t200\t"caf\xc3\xa9, ""quoted""'
    )


def test_csv_reads_back_as_text_that_equals_the_parquet_report(result: Path) -> None:
    export_result(result, Path("shared"), ReportFormat.CSV)
    cells = pl.read_csv(Path("shared") / "users.csv", infer_schema=False)
    unwrapped = cells["user_id"].str.replace(r'^="(.*)"$', "$1")
    assert unwrapped.to_list() == pl.read_parquet(result / "users.parquet")["user_id"].to_list()


def test_jsonl_round_trip(result: Path) -> None:
    written = export_result(result, Path("shared"), ReportFormat.JSONL)
    assert [path.name for path in written] == [
        "users.jsonl",
        "developers.jsonl",
        "endpoints.jsonl",
        "misdeliveries.jsonl",
    ]
    first = json.loads((Path("shared") / "users.jsonl").read_text(encoding="utf-8").split("\n")[0])
    assert first == {
        "user_id": "0042",
        "roles": ["author", "sender", "subscriber"],
        "events": 3,
        "direct_messages": 1,
        "protected_tweets": 1,
        "developers": 2,
        "developer_ids": ['dev,"acme"', "unknown:13"],
        "first_exposed_at": "2018-03-01T09:00:00Z",
        "last_exposed_at": "2018-03-03T00:00:00Z",
    }
    assert not (Path("shared") / "users.jsonl").read_bytes().startswith(BOM)
    for path in written:
        original = pl.read_parquet(result / f"{path.stem}.parquet")
        read_back = pl.read_ndjson(
            path, schema={n: _json_type(t) for n, t in original.schema.items()}
        )
        restored = read_back.with_columns(
            pl.col(name).str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC", time_unit="ns")
            for name, dtype in original.schema.items()
            if isinstance(dtype, pl.Datetime)
        )
        assert restored.equals(original), path.name


def _json_type(dtype: pl.DataType) -> pl.DataType:
    return pl.String() if isinstance(dtype, pl.Datetime) else dtype


def test_every_format_writes_four_reports(result: Path) -> None:
    for export_format in EXPORT_FORMATS:
        to = Path(f"shared-{export_format.value}")
        written = export_result(result, to, export_format)
        extension = FORMATS[export_format].extension
        assert [p.name for p in written] == [
            f"{name}.{extension}" for name in ("users", "developers", "endpoints", "misdeliveries")
        ]
        assert sorted(p.name for p in to.iterdir()) == sorted(p.name for p in written)


def test_a_csv_only_result_exports_the_same_bytes(result: Path) -> None:
    csv_only = _awkward_result("csv-only", formats=(ReportFormat.CSV,))
    assert not (csv_only / "users.parquet").exists()
    for export_format in EXPORT_FORMATS:
        a = export_result(result, Path(f"a-{export_format.value}"), export_format)
        b = export_result(csv_only, Path(f"b-{export_format.value}"), export_format)
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_a_csv_only_result_with_a_semicolon_in_an_id_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write([delivery(1, app_id="a;b")], Path("in/deliveries.parquet"))
    write([grant(2, 10)], Path("in/authorizations.parquet"))
    scan(
        ScanConfig(
            deliveries="in/deliveries.parquet",
            authorizations="in/authorizations.parquet",
            out=Path("r"),
            formats=(ReportFormat.CSV,),
        )
    )
    code, _, stderr = invoke("export", "r", "--to", "shared")
    assert code == ExitCode.INPUT_ERROR
    assert stderr == (
        "error: r/users.csv: a developer_id contains ';', so the developer_ids lists cannot be "
        "split; re-run the scan with --format parquet\n"
    )
    assert not Path("shared").exists()


def test_cli_export_writes_files_and_says_where(result: Path) -> None:
    code, stdout, stderr = invoke("export", "result", "--to", "shared", "--format", "tsv")
    assert (code, stdout) == (ExitCode.OK, "")
    assert stderr == (
        "wrote shared/users.tsv\nwrote shared/developers.tsv\nwrote shared/endpoints.tsv\n"
        "wrote shared/misdeliveries.tsv\n"
    )
    assert sorted(p.name for p in Path().iterdir()) == ["in", "result", "shared"]


def test_cli_export_into_an_existing_empty_directory(result: Path) -> None:
    Path("shared").mkdir()
    code, _, _ = invoke("export", "result", "--to", "shared")
    assert code == ExitCode.OK
    assert (Path("shared") / "users.csv").read_bytes() == EXPECTED_CSV["users.csv"]


def test_cli_pseudonymize_writes_the_mapping_beside_the_export(
    result: Path, key_file: Path
) -> None:
    code, stdout, stderr = invoke(
        "export", "result", "--to", "shared", "--pseudonymize", "--key-file", str(key_file)
    )
    assert (code, stdout) == (ExitCode.OK, "")
    assert stderr == (
        "wrote shared/users.csv\nwrote shared/developers.csv\nwrote shared/endpoints.csv\n"
        "wrote shared/misdeliveries.csv\nwrote shared.mapping.csv\n"
        "keep shared.mapping.csv apart from shared: it re-identifies the export\n"
    )
    mapping = Path("shared.mapping.csv")
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    rows = [
        ("developer", '"dev,""acme"""', 'dev,"acme"'),
        ("developer", "unknown:13", "unknown:13"),
        ("user", "0042", "0042"),
        ("user", "12345678901234567890", "12345678901234567890"),
        ("user", "Zoë", "Zoë"),
    ]
    assert mapping.read_text(encoding="utf-8") == "kind,id,pseudonym\n" + "".join(
        f"{kind},{cell},{pseudonym(key, IdKind(kind), original)}\n" for kind, cell, original in rows
    )

    exported = b"".join(p.read_bytes() for p in Path("shared").iterdir())
    for original in (b"0042", b"12345678901234567890", "Zoë".encode(), b"acme", b"unknown:13"):
        assert original not in exported
    users = pl.read_csv(Path("shared") / "users.csv", infer_schema=False)
    assert users["user_id"].to_list() == sorted(users["user_id"].to_list())
    assert all(re.fullmatch(r"u_[0-9a-f]{32}", u) for u in users["user_id"])
    developer_ids = users["developer_ids"].str.split(";").to_list()
    assert all(ids == sorted(ids) and ids[0].startswith("d_") for ids in developer_ids)
    # App IDs and event IDs are not personal data of users: they stay.
    assert b"11;12" in (Path("shared") / "developers.csv").read_bytes()


def test_cli_pseudonymize_with_an_explicit_mapping_and_jsonl(result: Path, key_file: Path) -> None:
    code, _, stderr = invoke(
        "export",
        "result",
        "--to",
        "shared",
        "--format",
        "jsonl",
        "--pseudonymize",
        "--key-file",
        str(key_file),
        "--mapping",
        "vault/ids.csv",
    )
    assert code == ExitCode.OK
    assert "wrote vault/ids.csv\n" in stderr
    mapping = pl.read_csv("vault/ids.csv", infer_schema=False)
    back = dict(zip(mapping["pseudonym"], mapping["id"], strict=True))
    users = pl.read_ndjson(Path("shared") / "users.jsonl")
    original = pl.read_parquet(result / "users.parquet")
    assert sorted(back[u] for u in users["user_id"]) == original["user_id"].to_list()


def test_a_collision_of_pseudonyms_is_never_silent(
    result: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("incident.results.export.PSEUDONYM_HEX_DIGITS", 0)
    with pytest.raises(IncidentError, match="two IDs have the same pseudonym"):
        export_result(result, Path("shared"), ReportFormat.CSV, key=key_file.read_bytes())
    assert not Path("shared").exists()
    assert not Path("shared.mapping.csv").exists()


def test_a_failed_export_leaves_nothing_behind(
    result: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls: list[str] = []

    def publish_fails(source: str | Path, target: str | Path) -> None:
        calls.append(Path(target).name)
        if Path(target).name == "shared":
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr("incident.outputs.os.replace", publish_fails)
    with pytest.raises(ConfigError, match="disk full"):
        export_result(result, Path("shared"), ReportFormat.CSV, key=key_file.read_bytes())
    # The mapping was in place before the export failed to publish, and is taken back.
    assert calls == ["shared.mapping.csv", "shared"]
    assert sorted(p.name for p in Path().iterdir()) == ["in", "result", "secret.key"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--to", "result/inside"],
            "error: --to result/inside: is inside the result result; choose a directory outside\n",
        ),
        (
            ["--to", "in"],
            "error: --to in: directory is not empty; choose a new or empty directory\n",
        ),
        (
            ["--to", "in/deliveries.parquet"],
            "error: --to in/deliveries.parquet: exists and is not a directory\n",
        ),
        (
            ["--to", "shared", "--pseudonymize", "--key-file", "nokey"],
            "error: --key-file nokey: no such file; expected a file of at least 32 random "
            "bytes, e.g. made with: head -c 32 /dev/urandom > nokey\n",
        ),
        (
            ["--to", "shared", "--pseudonymize", "--key-file", "short.key"],
            "error: --key-file short.key: 31 bytes; expected a file of at least 32 random "
            "bytes, e.g. made with: head -c 32 /dev/urandom > short.key\n",
        ),
        (
            ["--to", "shared", "--pseudonymize", "--key-file", "in"],
            "error: --key-file in: cannot be read (Is a directory); expected a file of at least "
            "32 random bytes, e.g. made with: head -c 32 /dev/urandom > in\n",
        ),
        (
            ["--to", "shared", "--pseudonymize", "--key-file", "KEY", "--mapping", "shared/m.csv"],
            "error: --mapping shared/m.csv: is inside --to shared; keep the re-identification "
            "mapping out of the folder that is shared\n",
        ),
        (
            ["--to", "shared", "--pseudonymize", "--key-file", "KEY", "--mapping", "result/m.csv"],
            "error: --mapping result/m.csv: is inside the result result; choose a path outside\n",
        ),
        (
            ["--to", "shared", "--pseudonymize", "--key-file", "KEY", "--mapping", "KEY"],
            "error: --mapping KEY: exists; move it away or choose another --mapping "
            "(it may be the only way back from an earlier export)\n",
        ),
    ],
)
def test_usage_errors_exit_2(result: Path, key_file: Path, args: list[str], message: str) -> None:
    Path("short.key").write_bytes(b"k" * (MIN_KEY_BYTES - 1))
    args = [str(key_file) if a == "KEY" else a for a in args]
    code, stdout, stderr = invoke("export", "result", *args)
    assert (code, stdout) == (ExitCode.USAGE_ERROR, "")
    assert stderr == message.replace("KEY", str(key_file))
    assert not Path("shared").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pseudonymize"], "Error: --pseudonymize needs --key-file FILE"),
        (["--key-file", "k"], "Error: --key-file and --mapping go with --pseudonymize"),
        (["--mapping", "m.csv"], "Error: --key-file and --mapping go with --pseudonymize"),
        (["--format", "xlsx"], "Error: Invalid value for '--format': 'xlsx' is not one of"),
        ([], "Error: Missing option '--to'."),
    ],
)
def test_flag_errors_exit_2(result: Path, args: list[str], message: str) -> None:
    to = [] if not args else ["--to", "shared"]
    code, stdout, stderr = invoke("export", "result", *to, *args)
    assert (code, stdout) == (ExitCode.USAGE_ERROR, "")
    assert stderr.splitlines()[-1].startswith(message)


def test_not_a_result_exits_4_naming_it(result: Path) -> None:
    code, stdout, stderr = invoke("export", "in", "--to", "shared")
    assert (code, stdout, stderr) == (
        ExitCode.INPUT_ERROR,
        "",
        "error: in: not an incident result (no summary.json)\n",
    )
    code, _, stderr = invoke("export", "nowhere", "--to", "shared")
    assert (code, stderr) == (
        ExitCode.INPUT_ERROR,
        "error: nowhere: not an incident result (does not exist)\n",
    )
    Path("fake").mkdir()
    (Path("fake") / "summary.json").write_text('{"tool": {"name": "other"}}')
    code, _, stderr = invoke("export", "fake", "--to", "shared")
    assert (code, stderr) == (
        ExitCode.INPUT_ERROR,
        "error: fake: not an incident result (summary.json not written by incident)\n",
    )
    assert not Path("shared").exists()


def test_broken_reports_exit_4(result: Path) -> None:
    (result / "users.parquet").unlink()
    (result / "users.csv").write_text("user_id,roles\n1,subscriber\n")
    code, _, stderr = invoke("export", "result", "--to", "shared")
    assert code == ExitCode.INPUT_ERROR
    assert stderr == (
        "error: result/users.csv: missing columns 'events', 'direct_messages', "
        "'protected_tweets', 'developers', 'developer_ids', 'first_exposed_at', "
        "'last_exposed_at' of the users report\n"
    )
    (result / "users.csv").unlink()
    code, _, stderr = invoke("export", "result", "--to", "shared")
    assert (code, stderr) == (
        ExitCode.INPUT_ERROR,
        "error: result: incomplete incident result (no users.parquet or users.csv)\n",
    )
    (result / "misdeliveries.parquet").write_text("not parquet")
    code, _, stderr = invoke("export", "result", "--to", "shared")
    assert code == ExitCode.INPUT_ERROR
    # The reason in parentheses is the Parquet reader's own, one line.
    assert re.fullmatch(
        r"error: result/misdeliveries\.parquet: not a readable misdeliveries report \([^\n]+\)\n",
        stderr,
    )


def test_library_errors(result: Path, key_file: Path) -> None:
    with pytest.raises(ConfigError, match="only with a key"):
        export_result(result, Path("shared"), ReportFormat.CSV, mapping=Path("m.csv"))
    with pytest.raises(ConfigError, match="key: 3 bytes; expected at least 32"):
        export_result(result, Path("shared"), ReportFormat.CSV, key=b"abc")
    with pytest.raises(InputError, match="not an incident result"):
        export_result(Path("in"), Path("shared"), ReportFormat.CSV)
    assert read_key(key_file) == bytes(range(32))


# --- pseudonyms: a property test on hand-made reports --------------------------------------

_ID = st.one_of(
    st.integers(0, 10**22).map(str),
    st.from_regex(r"0[0-9]{1,20}", fullmatch=True),
    st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=10)
    .map(str.strip)
    .filter(bool),
)
_KEY = st.binary(min_size=MIN_KEY_BYTES, max_size=64)
_T = datetime(2018, 3, 1)


def _fake_result(directory: Path, users: list[str], developers: list[str]) -> Path:
    """A result holding only what export reads: its summary and three reports."""
    directory.mkdir()
    (directory / "summary.json").write_text('{"tool": {"name": "incident"}}')
    n = len(users)
    owner = [developers[i % len(developers)] for i in range(n)]
    pl.DataFrame(
        {
            "user_id": users,
            "roles": [["subscriber"]] * n,
            "events": [1] * n,
            "direct_messages": [0] * n,
            "protected_tweets": [0] * n,
            "developers": [1] * n,
            "developer_ids": [[d] for d in owner],
            "first_exposed_at": [_T] * n,
            "last_exposed_at": [_T] * n,
        },
        schema=USERS_SCHEMA,
    ).write_parquet(directory / "users.parquet")
    pl.DataFrame(
        {
            "developer_id": developers,
            "app_ids": [["1"]] * len(developers),
            "events": [1] * len(developers),
            "deliveries": [1] * len(developers),
            "direct_messages": [0] * len(developers),
            "protected_tweets": [0] * len(developers),
            "users_exposed": [1] * len(developers),
            "first_received_at": [_T] * len(developers),
            "last_received_at": [_T] * len(developers),
            # Each received the data of the next one's users.
            "intended_developer_ids": [
                [developers[(i + 1) % len(developers)]] for i in range(len(developers))
            ],
        },
        schema=DEVELOPERS_SCHEMA,
    ).write_parquet(directory / "developers.parquet")
    pl.DataFrame(
        {
            "resolved_ip": ["192.0.2.1"],
            "url_path": ["/webhook"],
            "apps": [1],
            "app_ids": [["1"]],
            "developers": [len(developers)],
            "developer_ids": [sorted(developers)],
            "misdeliveries": [n],
            "events": [n],
            "users_exposed": [n],
            "first_misdelivered_at": [_T],
            "last_misdelivered_at": [_T],
        },
        schema=ENDPOINTS_SCHEMA,
    ).write_parquet(directory / "endpoints.parquet")
    pl.DataFrame(
        {
            "event_id": [str(i) for i in range(n)],
            "for_user_id": users,
            "sender_id": [users[(i + 1) % n] if i % 2 else None for i in range(n)],
            "recipient_id": [users[i - 1] for i in range(n)],
            "developer_id": owner,
        }
    ).write_parquet(directory / "misdeliveries.parquet")
    return directory


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    users=st.lists(_ID, min_size=1, max_size=25, unique=True),
    developers=st.lists(_ID, min_size=1, max_size=5, unique=True),
    key=_KEY,
    other_key=_KEY,
)
def test_pseudonyms_are_keyed_stable_injective_and_invertible(
    users: list[str], developers: list[str], key: bytes, other_key: bytes
) -> None:
    assume(key != other_key)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        result = _fake_result(base / "result", users, developers)

        def export(name: str, secret: bytes) -> dict[str, bytes]:
            paths = export_result(result, base / name, ReportFormat.JSONL, key=secret)
            return {p.name: p.read_bytes() for p in paths}

        first, again, other = export("a", key), export("b", key), export("c", other_key)
        mapping = pl.read_csv(base / "a.mapping.csv", infer_schema=False)
        other_mapping = pl.read_csv(base / "c.mapping.csv", infer_schema=False)

        # Stable for one key: the same bytes, whatever the export is called.
        assert [first[n] for n in sorted(first) if n != "a.mapping.csv"] == [
            again[n] for n in sorted(again) if n != "b.mapping.csv"
        ]
        assert first["a.mapping.csv"] == again["b.mapping.csv"]
        # Injective: one pseudonym per (kind, ID), each kind's IDs all there.
        assert mapping["pseudonym"].n_unique() == mapping.height
        by_kind = {k: set(g["id"]) for (k,), g in mapping.group_by("kind")}
        assert by_kind == {"user": set(users), "developer": set(developers)}
        # Another key: no pseudonym in common.
        assert not set(mapping["pseudonym"]) & set(other_mapping["pseudonym"])
        assert other != first
        # The mapping inverts the export, column by column and list by list.
        back = dict(zip(mapping["pseudonym"], mapping["id"], strict=True))
        exported_users = pl.read_ndjson(base / "a" / "users.jsonl")
        assert sorted(back[u] for u in exported_users["user_id"]) == sorted(users)
        assert exported_users["user_id"].to_list() == sorted(exported_users["user_id"])
        exported_misdeliveries = pl.read_ndjson(
            base / "a" / "misdeliveries.jsonl",
            schema=dict.fromkeys(
                ["event_id", "for_user_id", "sender_id", "recipient_id", "developer_id"],
                pl.String,
            ),
        ).sort(pl.col("event_id").cast(pl.Int64))
        original = pl.read_parquet(result / "misdeliveries.parquet")
        restored = exported_misdeliveries.with_columns(
            pl.col(c).replace_strict(back, default=None)
            for c in ("for_user_id", "sender_id", "recipient_id", "developer_id")
        )
        assert restored.equals(original)
        restored_lists = [
            sorted(back[d] for d in ids) for ids in exported_users["developer_ids"].to_list()
        ]
        original_users = pl.read_parquet(result / "users.parquet")
        assert sorted(restored_lists) == sorted(original_users["developer_ids"].to_list())
        # Developer IDs are pseudonymised wherever they appear, lists included.
        exported_developers = pl.read_ndjson(base / "a" / "developers.jsonl")
        restored_pairs = {
            (back[d], back[intended])
            for d, (intended,) in exported_developers.select(
                "developer_id", "intended_developer_ids"
            ).iter_rows()
        }
        original_developers = pl.read_parquet(result / "developers.parquet")
        assert restored_pairs == {
            (d, intended)
            for d, (intended,) in original_developers.select(
                "developer_id", "intended_developer_ids"
            ).iter_rows()
        }
        exported_endpoints = pl.read_ndjson(base / "a" / "endpoints.jsonl")
        assert sorted(back[d] for d in exported_endpoints["developer_ids"][0]) == sorted(developers)
