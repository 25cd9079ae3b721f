"""Object storage: a round trip through an S3-compatible server the tests start on loopback.

moto in server mode listens on 127.0.0.1 (a port the system picks); every scan and every
reader goes through it with real HTTP, as against a store. Credentials come from the
environment, the endpoint from `--storage-option`; the secret key is a value no output may
hold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner
from moto.server import ThreadedMotoServer

from incident import ScanConfig, scan
from incident.cli import cli
from incident.errors import ConfigError, ExitCode
from incident.sample import generate_sample
from incident.storage import objects
from incident.storage.locations import (
    REDACTED,
    STORAGE_OPTIONS,
    Scheme,
    StorageOptions,
    split_url,
)
from tests import webhook

ACCESS_KEY = "AKIATESTINCIDENT"
SECRET_KEY = "s3cr3t-never-shown-7d41"
OPTION_SECRET = "option-secret-never-shown-93bc"
REPORTS = [
    f"{table}.{extension}"
    for table in ("users", "developers", "endpoints")
    for extension in ("parquet", "csv")
]


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    """An S3-compatible server on loopback, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials from the environment, as a user's shell would hold them."""
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def store(endpoint: str) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True)


def new_bucket(endpoint: str) -> str:
    name = f"incident-{uuid.uuid4().hex[:12]}"
    store(endpoint).create_dir(name)
    return name


def upload_tree(endpoint: str, local: Path, prefix: str) -> None:
    pafs.copy_files(str(local), prefix, destination_filesystem=store(endpoint))


def invoke(endpoint: str, *args: str) -> tuple[int, str, str]:
    """The command line with the server's endpoint as a storage option."""
    options = ["--storage-option", f"aws_endpoint_url={endpoint}"]
    result = CliRunner().invoke(cli, [*args, *options])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sample in a few files: deliveries in three partitions, grants, apps."""
    sample = tmp_path_factory.mktemp("sample")
    generate_sample(sample, deliveries=2_000, seed=7)
    logs = tmp_path_factory.mktemp("logs")
    deliveries = pl.read_parquet(sample / "deliveries", hive_partitioning=False)
    month = pl.col("delivered_at").dt.month() % 3
    for part, rows in deliveries.with_columns(month.alias("_p")).group_by("_p"):
        target = logs / "deliveries" / f"part={part[0]}" / "part-0.parquet"
        target.parent.mkdir(parents=True)
        rows.drop("_p").sort("delivery_id").write_parquet(target)
    for name in ("authorizations.parquet", "apps.parquet"):
        (logs / name).write_bytes((sample / name).read_bytes())
    return logs


def scan_args(prefix: str) -> list[str]:
    return [
        "scan",
        "--deliveries",
        f"{prefix}/deliveries",
        "--authorizations",
        f"{prefix}/authorizations.parquet",
        "--apps",
        f"{prefix}/apps.parquet",
        "-q",
    ]


@pytest.fixture(scope="module")
def published(
    endpoint: str, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """The sample scanned from a bucket into a bucket, and scanned locally."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        patch.setenv("AWS_REGION", "us-east-1")
        bucket = new_bucket(endpoint)
        upload_tree(endpoint, logs, f"{bucket}/logs")
        out = f"s3://{bucket}/results/first"
        code, _, stderr = invoke(endpoint, *scan_args(f"s3://{bucket}/logs"), "--out", out)
        assert (code, stderr) == (ExitCode.OK, "")
    local = tmp_path_factory.mktemp("local") / "out"
    code, _, stderr = invoke(endpoint, *scan_args(str(logs)), "--out", str(local))
    assert (code, stderr) == (ExitCode.OK, "")
    return out, local


def read_object(endpoint: str, url: str) -> bytes:
    with store(endpoint).open_input_stream(split_url(url)[1]) as stream:
        return bytes(stream.read())


def names_under(endpoint: str, url: str) -> list[str]:
    prefix = split_url(url)[1]
    found = store(endpoint).get_file_info(pafs.FileSelector(prefix, recursive=True))
    return sorted(f.path[len(prefix) + 1 :] for f in found if f.type == pafs.FileType.File)


def test_scan_from_and_to_a_bucket_gives_the_local_reports_byte_for_byte(
    endpoint: str, published: tuple[str, Path]
) -> None:
    out, local = published
    assert names_under(endpoint, out) == sorted(p.name for p in local.iterdir())
    for report in REPORTS:
        assert read_object(endpoint, f"{out}/{report}") == (local / report).read_bytes(), report
    remote = json.loads(read_object(endpoint, f"{out}/summary.json"))
    here = json.loads((local / "summary.json").read_text())
    assert remote["accounting"] == here["accounting"]
    assert remote["totals"] == here["totals"] and here["totals"]["users_exposed"] > 0
    # Misdeliveries name the file each row came from: a URL here, a path there.
    found = pl.read_parquet(read_object(endpoint, f"{out}/misdeliveries.parquet"))
    assert found["source_file"].str.starts_with("s3://").all()
    expected = pl.read_parquet(local / "misdeliveries.parquet")
    assert found.drop("source_file").equals(expected.drop("source_file"))


def test_the_manifest_records_each_object_with_its_sha256_and_size(
    endpoint: str, published: tuple[str, Path]
) -> None:
    out, local = published
    manifest = json.loads(read_object(endpoint, f"{out}/manifest.json"))
    files = manifest["inputs"]["deliveries"]
    assert len(files) == 3 and all(f["path"].startswith("s3://") for f in files)
    for entry in files:
        data = read_object(endpoint, entry["path"])
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["parameters"]["storage_options"] == {"aws_endpoint_url": endpoint}
    assert (
        manifest["outputs"].keys()
        == json.loads((local / "manifest.json").read_text())["outputs"].keys()
    )


def test_verify_passes_then_a_tampered_object_exits_6(endpoint: str, logs: Path) -> None:
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    out = f"s3://{bucket}/result"
    assert invoke(endpoint, *scan_args(f"s3://{bucket}/logs"), "--out", out)[0] == ExitCode.OK
    code, _, stderr = invoke(endpoint, "verify", out)
    assert (code, stderr) == (ExitCode.OK, f"verified: {out} matches its manifest.json\n")

    with store(endpoint).open_output_stream(f"{bucket}/result/users.csv") as stream:
        stream.write(b"user_id\n1\n")
    code, _, stderr = invoke(endpoint, "verify", out)
    assert code == ExitCode.VERIFICATION_FAILED
    assert f"mismatch: {out}/users.csv: size 10, expected" in stderr
    assert "incident-result-" not in stderr  # the URL is named, not the temporary copy
    # A reader refuses it too, before reading anything from it.
    code, _, stderr = invoke(endpoint, "notify", out)
    assert code == ExitCode.VERIFICATION_FAILED
    assert stderr.startswith(f"error: {out}/users.csv: size 10, expected")
    assert stderr.count("\n") == 1


def test_an_input_object_changed_after_the_scan_fails_verify(endpoint: str, logs: Path) -> None:
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    out = f"s3://{bucket}/result"
    assert invoke(endpoint, *scan_args(f"s3://{bucket}/logs"), "--out", out)[0] == ExitCode.OK
    store(endpoint).delete_file(f"{bucket}/logs/apps.parquet")
    code, _, stderr = invoke(endpoint, "verify", out)
    assert code == ExitCode.VERIFICATION_FAILED
    assert f"mismatch: s3://{bucket}/logs/apps.parquet: missing" in stderr


def test_a_result_without_its_manifest_is_refused_by_every_reader(
    endpoint: str, published: tuple[str, Path], tmp_path: Path
) -> None:
    out, _ = published
    bucket = new_bucket(endpoint)
    partial = f"s3://{bucket}/partial"
    for name in names_under(endpoint, out):
        if name != "manifest.json":
            data = read_object(endpoint, f"{out}/{name}")
            with store(endpoint).open_output_stream(f"{bucket}/partial/{name}") as stream:
                stream.write(data)
    for args in (
        ["verify", partial],
        ["export", partial, "--to", str(tmp_path / "export")],
        ["report", partial, "--html", str(tmp_path / "report.html")],
        ["notify", partial],
        ["diff", partial, partial],
    ):
        code, stdout, stderr = invoke(endpoint, *args)
        assert code == ExitCode.VERIFICATION_FAILED, args
        assert stdout == "" and stderr.count("\n") == 1, args
        assert f"{partial}/manifest.json: missing" in stderr, args
    assert not (tmp_path / "export").exists() and not (tmp_path / "report.html").exists()


def test_readers_read_a_result_from_a_bucket(
    endpoint: str, published: tuple[str, Path], tmp_path: Path
) -> None:
    out, local = published
    code, stdout, _ = invoke(endpoint, "notify", out)
    assert code == ExitCode.OK
    assert stdout == CliRunner().invoke(cli, ["notify", str(local)]).stdout
    code, stdout, _ = invoke(endpoint, "diff", out, str(local))
    assert (code, stdout) == (ExitCode.OK, f"old: {out}\nnew: {local}\nno differences\n")
    code, _, _ = invoke(endpoint, "export", out, "--to", str(tmp_path / "export"))
    assert code == ExitCode.OK
    assert (tmp_path / "export" / "users.csv").read_bytes() == (local / "users.csv").read_bytes()
    code, _, _ = invoke(endpoint, "report", out, "--html", str(tmp_path / "report.html"))
    assert code == ExitCode.OK and (tmp_path / "report.html").stat().st_size > 0


def test_a_missing_bucket_or_object_is_an_input_error_in_one_line(
    endpoint: str, logs: Path
) -> None:
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    grants = f"s3://{bucket}/logs/authorizations.parquet"
    cases = {
        f"s3://no-such-bucket-{bucket}/deliveries": "no such bucket for the deliveries input",
        f"s3://{bucket}/logs/missing.parquet": "no Parquet files found for deliveries",
    }
    for deliveries, expected in cases.items():
        args = ["scan", "--deliveries", deliveries, "--authorizations", grants, "-q"]
        code, _, stderr = invoke(endpoint, *args, "--out", f"s3://{bucket}/out")
        assert code == ExitCode.INPUT_ERROR, deliveries
        assert stderr == f"error: {deliveries}: {expected}\n"
    code, _, stderr = invoke(endpoint, "export", f"s3://{bucket}/nothing", "--to", "x")
    assert (code, stderr) == (
        ExitCode.INPUT_ERROR,
        f"error: s3://{bucket}/nothing: not an incident result (nothing there)\n",
    )


def test_an_unreachable_endpoint_is_an_input_error_naming_the_url() -> None:
    # Port 9 on loopback (discard): nothing listens there on a test machine.
    args = ["scan", "--deliveries", "s3://bucket/d", "--authorizations", "s3://bucket/a", "-q"]
    result = CliRunner().invoke(
        cli, [*args, "--storage-option", "aws_endpoint_url=http://127.0.0.1:9"]
    )
    assert result.exit_code == ExitCode.INPUT_ERROR
    assert result.stderr.startswith("error: s3://bucket/d: cannot list the deliveries input (")
    assert result.stderr.count("\n") == 1


def test_an_impossible_destination_is_a_usage_error(endpoint: str, logs: Path) -> None:
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    inputs = scan_args(f"s3://{bucket}/logs")
    for out, expected in {
        f"s3://no-such-bucket-{bucket}/out": "no such bucket",
        f"s3://{bucket}": "name a prefix of its own below the bucket",
        f"s3://{bucket}/logs/deliveries/out": f"is inside the input prefix s3://{bucket}/logs/deliveries",
    }.items():
        code, _, stderr = invoke(endpoint, *inputs, "--out", out)
        assert (code, stderr) == (ExitCode.USAGE_ERROR, f"error: --out {out}: {expected}\n")
    # A prefix holding anything but an earlier result is never replaced.
    code, _, stderr = invoke(endpoint, *inputs, "--out", f"s3://{bucket}/logs")
    assert code == ExitCode.USAGE_ERROR
    assert "prefix is not empty and holds no incident result" in stderr


def test_replacing_a_result_leaves_exactly_the_new_one(endpoint: str, logs: Path) -> None:
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    out = f"s3://{bucket}/result"
    inputs = scan_args(f"s3://{bucket}/logs")
    assert invoke(endpoint, *inputs, "--out", out, "--format", "html")[0] == ExitCode.OK
    assert "report.html" in names_under(endpoint, out)
    assert invoke(endpoint, *inputs, "--out", out)[0] == ExitCode.OK
    assert "report.html" not in names_under(endpoint, out)  # not in the new manifest
    assert invoke(endpoint, "verify", out)[0] == ExitCode.OK


def test_an_interrupted_upload_leaves_no_manifest(
    endpoint: str, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    out = f"s3://{bucket}/result"
    assert invoke(endpoint, *scan_args(f"s3://{bucket}/logs"), "--out", out)[0] == ExitCode.OK
    uploaded = objects.upload
    calls = iter(range(100))

    def interrupted(source: Path, url: str, storage: StorageOptions) -> None:
        if next(calls) == 3:
            raise KeyboardInterrupt
        uploaded(source, url, storage)

    monkeypatch.setattr(objects, "upload", interrupted)
    storage = StorageOptions.parse([f"aws_endpoint_url={endpoint}"])
    prefix = f"s3://{bucket}/logs"
    config = ScanConfig(
        deliveries=f"{prefix}/deliveries",
        authorizations=f"{prefix}/authorizations.parquet",
        out=out,
        storage=storage,
    )
    with pytest.raises(KeyboardInterrupt):
        scan(config)
    assert "manifest.json" not in names_under(endpoint, out)
    assert len(names_under(endpoint, out)) > 3  # the earlier result was partly replaced
    code, _, stderr = invoke(endpoint, "notify", out)
    assert code == ExitCode.VERIFICATION_FAILED and "manifest.json: missing" in stderr
    monkeypatch.setattr(objects, "upload", uploaded)
    # What an interrupted upload left is replaced by the next scan.
    assert invoke(endpoint, *scan_args(prefix), "--out", out)[0] == ExitCode.OK
    assert invoke(endpoint, "verify", out)[0] == ExitCode.OK


def test_every_object_is_read_or_named(endpoint: str, logs: Path) -> None:
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    fs = store(endpoint)
    fs.copy_file(f"{bucket}/logs/deliveries/part=0/part-0.parquet", f"{bucket}/logs/copy.parquet")
    with fs.open_output_stream(f"{bucket}/logs/deliveries/_SUCCESS") as stream:
        stream.write(b"")
    args = scan_args(f"s3://{bucket}/logs")
    # A copy under a glob is read once, with a warning; a marker is not data.
    glob = f"s3://{bucket}/logs/*/part=*/part-*.parquet"
    code, _, stderr = invoke(endpoint, *args[:2], glob, *args[3:], "--out", f"s3://{bucket}/o")
    assert (code, stderr) == (ExitCode.OK, "")
    manifest = json.loads(read_object(endpoint, f"s3://{bucket}/o/manifest.json"))
    assert len(manifest["inputs"]["deliveries"]) == 3
    fs.copy_file(
        f"{bucket}/logs/deliveries/part=0/part-0.parquet",
        f"{bucket}/logs/deliveries/part=3/part-0.parquet",
    )
    code, _, stderr = invoke(endpoint, *args[:-1], "--out", f"s3://{bucket}/o")
    assert code == ExitCode.OK
    assert "read once" in stderr or "same bytes" in stderr
    manifest = json.loads(read_object(endpoint, f"s3://{bucket}/o/manifest.json"))
    copies = [f for f in manifest["inputs"]["deliveries"] if "same_as" in f]
    assert [c["path"] for c in copies] == [f"s3://{bucket}/logs/deliveries/part=3/part-0.parquet"]
    # Anything else under the prefix is named.
    with fs.open_output_stream(f"{bucket}/logs/deliveries/notes.txt") as stream:
        stream.write(b"not parquet")
    code, _, stderr = invoke(endpoint, *args, "--out", f"s3://{bucket}/o")
    assert code == ExitCode.INPUT_ERROR
    assert stderr.startswith(f"error: s3://{bucket}/logs/deliveries/notes.txt: not a readable")


def test_no_secret_reaches_a_message_the_manifest_or_the_summary(endpoint: str, logs: Path) -> None:
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    out = f"s3://{bucket}/result"
    secret = [
        *("--storage-option", f"aws_access_key_id={ACCESS_KEY}"),
        *("--storage-option", f"aws_secret_access_key={SECRET_KEY}"),
    ]
    said = []
    for args in (
        [*scan_args(f"s3://{bucket}/logs"), "--out", out, *secret],
        ["verify", out, *secret],
        ["scan", "--deliveries", "s3://x/d", "--authorizations", "s3://x/a", *secret],
        ["verify", f"s3://no-such-{bucket}/r", *secret],
    ):
        code, stdout, stderr = invoke(endpoint, *args)
        assert code in (ExitCode.OK, ExitCode.INPUT_ERROR), stderr
        said.append(stdout + stderr)
    manifest = read_object(endpoint, f"{out}/manifest.json").decode()
    summary = read_object(endpoint, f"{out}/summary.json").decode()
    for text in [*said, manifest, summary]:
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    # A message quoting an option's secret shows it redacted.
    storage = StorageOptions.parse(
        ["aws_access_key_id=AKIAOTHER", f"aws_secret_access_key={OPTION_SECRET}"]
    )
    assert storage.redact(f"denied for {OPTION_SECRET} and {SECRET_KEY}") == (
        f"denied for {REDACTED} and {REDACTED}"
    )
    assert storage.public() == {}


def test_every_storage_option_reaches_polars_and_pyarrow() -> None:
    for scheme, options in STORAGE_OPTIONS.items():
        for option in options:
            value = "true" if option.boolean else "value-1234"
            value = "https://host-1234:10000/account" if option.endpoint else value
            for name in option.names:
                pair = {"aws_access_key_id": "aws_secret_access_key"}
                pair |= {v: k for k, v in pair.items()}
                given = [f"{name.upper()}={value}"]
                given += [f"{pair[option.name]}=other"] if option.name in pair else []
                storage = StorageOptions.parse(given)
                url = f"{scheme.value}://bucket/key"
                assert (storage.for_polars(url) or {})[option.name] == value, name
                pyarrow = storage.for_pyarrow(scheme)
                if option.pyarrow is not None:
                    expected = "host-1234:10000" if option.endpoint else value
                    assert pyarrow[option.pyarrow] in (expected, True), name
                assert (option.name in storage.public()) is not option.secret
    with pytest.raises(ConfigError, match="together"):
        StorageOptions.parse(["aws_secret_access_key=x"])
    assert StorageOptions.parse(["aws_region=x"]).for_polars("/local/path") is None
    http = StorageOptions.parse(["aws_endpoint_url=http://127.0.0.1:1"])
    assert http.for_polars("s3://b/k") == {
        "aws_endpoint_url": "http://127.0.0.1:1",
        "aws_allow_http": "true",
    }
    assert http.for_pyarrow(Scheme.S3)["endpoint_override"] == "http://127.0.0.1:1"


def test_a_bad_storage_option_or_url_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE with KEY one of aws_access_key_id"):
        StorageOptions.parse(["aws_profile=x"])
    with pytest.raises(ConfigError, match="expected true or false"):
        StorageOptions.parse(["aws_allow_http=maybe"])
    with pytest.raises(ConfigError, match="unsupported location"):
        split_url("ftp://host/x")
    with pytest.raises(ConfigError, match="credentials in a URL are not accepted"):
        split_url(f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/x")
    result = CliRunner().invoke(cli, ["scan", "x", "--storage-option", "nope=1"])
    assert result.exit_code == ExitCode.USAGE_ERROR
    assert "--storage-option nope: expected KEY=VALUE" in result.stderr
    result = CliRunner().invoke(cli, ["verify", "http://host/result"])
    assert result.exit_code == ExitCode.USAGE_ERROR
    assert "unsupported location" in result.stderr


def test_ingest_reads_webhook_lines_from_a_bucket_as_from_a_disk(
    endpoint: str, logs: Path, tmp_path: Path
) -> None:
    lines = list(webhook.json_lines(pl.read_parquet(logs / "deliveries")))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl.zst").write_bytes(webhook.encoded(lines[:900], "zstd"))
    (raw / "b.jsonl.gz").write_bytes(webhook.encoded(lines[900:], "gzip"))
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, raw, f"{bucket}/raw")
    local = CliRunner().invoke(
        cli, ["ingest", str(raw), "--kind", "deliveries", "--out", str(tmp_path / "local"), "-q"]
    )
    assert local.exit_code == 0, local.output
    code, _, stderr = invoke(
        endpoint,
        "ingest",
        f"s3://{bucket}/raw",
        "--kind",
        "deliveries",
        "--out",
        str(tmp_path / "remote"),
        "-q",
    )
    assert (code, stderr) == (0, "")
    parts = sorted(
        p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.parquet")
    )
    assert parts == sorted(
        p.relative_to(tmp_path / "remote") for p in (tmp_path / "remote").rglob("*.parquet")
    )
    for part in parts:
        written = pl.read_parquet(tmp_path / "remote" / part)
        expected = pl.read_parquet(tmp_path / "local" / part)
        # The rows are the same; only where each came from differs.
        assert written.drop("source_file", strict=False).equals(
            expected.drop("source_file", strict=False)
        )
    manifest = json.loads((tmp_path / "remote" / "_manifest.json").read_text())
    assert [s["path"] for s in manifest["inputs"]] == [
        f"s3://{bucket}/raw/a.jsonl.zst",
        f"s3://{bucket}/raw/b.jsonl.gz",
    ]
    assert SECRET_KEY not in json.dumps(manifest)


def test_ingest_names_a_missing_source_object(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(endpoint)
    code, _, stderr = invoke(
        endpoint,
        "ingest",
        f"s3://{bucket}/nothing",
        "--kind",
        "deliveries",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == ExitCode.INPUT_ERROR
    assert stderr.startswith(f"error: s3://{bucket}/nothing: ")
    assert len(stderr.splitlines()) == 1


def test_validate_reads_footers_from_the_store_it_is_given(endpoint: str, logs: Path) -> None:
    """Through --storage-option, not the default endpoint: the time range is the footers'."""
    bucket = new_bucket(endpoint)
    upload_tree(endpoint, logs, f"{bucket}/logs")
    code, stdout, stderr = invoke(
        endpoint,
        "validate",
        "--deliveries",
        f"s3://{bucket}/logs/deliveries",
        "--authorizations",
        f"s3://{bucket}/logs/authorizations.parquet",
        "--json",
        "-q",
    )
    assert (code, stderr) == (0, "")
    deliveries = json.loads(stdout)["inputs"]["deliveries"]
    assert deliveries["time_ranges"]["delivered_at"]["basis"] == "footer"
