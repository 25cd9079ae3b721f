"""The project configuration: incident.toml, INCIDENT_* variables and flags, their precedence,
and `incident config show`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from incident.cli import cli
from incident.config import RejectLimit, ReportFormat
from incident.errors import ConfigError, ExitCode
from incident.schema import Input
from incident.settings import Origin, resolve
from tests.conftest import delivery, grant, utc, write

runner = CliRunner()

PROJECT = """
[inputs]
directory = "logs"

[map.deliveries]
delivered_at = "ts"

[window]
since = "2018-01-01"
until = 2018-06-01T00:00:00Z

[attribution]
collision_window = "10m"

[scan]
max_rejected = "1%"
fail_on_findings = true

[outputs]
out = "report"
formats = ["csv", "html"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory: incident.toml and logs whose delivery time is named `ts`."""
    folder = tmp_path / "project"
    write(
        [
            {**delivery(1, None, 10, 1), "ts": utc(2018, 3, 1)},
            {**delivery(2, None, 11, 1), "ts": utc(2018, 3, 1)},
        ],
        folder / "logs" / "deliveries" / "part-0.parquet",
    )
    for path in (folder / "logs" / "deliveries").glob("*.parquet"):
        pl.read_parquet(path).drop("delivered_at").write_parquet(path)
    # App 11 holds no grant: one misdelivery.
    write([grant(1, 10)], folder / "logs" / "authorizations.parquet")
    (folder / "incident.toml").write_text(PROJECT, encoding="utf-8")
    return folder


def test_file_values_and_paths_relative_to_the_file(project: Path, tmp_path: Path) -> None:
    resolved = resolve({}, config_file=project / "incident.toml", environ={}, cwd=tmp_path)
    config = resolved.scan_config()
    assert config.deliveries == str(project / "logs" / "deliveries")
    assert config.authorizations == str(project / "logs" / "authorizations.parquet")
    assert config.apps is None
    assert config.out == project / "report"
    assert (config.window.since, config.window.until) == (utc(2018, 1, 1), utc(2018, 6, 1))
    assert config.attribution.collision_window == timedelta(minutes=10)
    assert config.max_rejected == RejectLimit(percent=1.0)
    assert config.formats == (ReportFormat.CSV, ReportFormat.HTML)
    assert config.columns.source(Input.DELIVERIES, "delivered_at") == "ts"
    assert resolved.value("scan.fail_on_findings") is True
    assert resolved.values["window.since"].origin is Origin.FILE
    assert resolved.values["attribution.revocation_grace"].origin is Origin.DEFAULT


@pytest.mark.parametrize(
    ("flag", "variable", "in_file", "expected", "origin"),
    [
        ("2018-03-01", "2018-02-01", True, utc(2018, 3, 1), Origin.FLAG),
        (None, "2018-02-01", True, utc(2018, 2, 1), Origin.ENVIRONMENT),
        (None, None, True, utc(2018, 1, 1), Origin.FILE),
        (None, None, False, utc(2017, 5, 1), Origin.DEFAULT),
    ],
)
def test_precedence_flag_environment_file_default(
    project: Path,
    flag: str | None,
    variable: str | None,
    in_file: bool,
    expected: object,
    origin: Origin,
) -> None:
    if not in_file:
        (project / "incident.toml").write_text('[inputs]\ndirectory = "logs"\n')
    flags = {"since": flag} if flag else {}
    environ = {"INCIDENT_SINCE": variable} if variable else {}
    resolved = resolve(flags, environ=environ, cwd=project)
    assert resolved.values["window.since"].value == expected
    assert resolved.values["window.since"].origin is origin
    assert resolved.file == project / "incident.toml"
    assert resolved.file_origin is Origin.DEFAULT


def test_the_file_is_named_by_flag_then_environment_then_found(project: Path) -> None:
    other = project / "other.toml"
    other.write_text('[window]\nsince = "2018-02-02"\n')
    assert resolve({}, environ={"INCIDENT_CONFIG": str(other)}, cwd=project).file == other
    flagged = resolve({}, config_file=project / "incident.toml", environ={}, cwd=project.parent)
    assert flagged.file_origin is Origin.FLAG
    assert resolve({}, environ={}, cwd=project.parent).file is None
    with pytest.raises(ConfigError, match=r"INCIDENT_CONFIG=nope\.toml: no such file"):
        resolve({}, environ={"INCIDENT_CONFIG": "nope.toml"}, cwd=project)


def test_a_directory_replaces_the_inputs_of_lower_origins(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write([delivery()], other / "deliveries.parquet")
    resolved = resolve({"directory": other}, environ={}, cwd=project)
    assert resolved.value("inputs.deliveries") == str(other / "deliveries.parquet")
    assert resolved.values["inputs.deliveries"].where == "by convention from DIR"
    # An input named beside the directory wins over its convention.
    both = resolve({"directory": other, "apps": "apps.parquet"}, environ={}, cwd=project)
    assert both.value("inputs.apps") == "apps.parquet"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[window]\nsinse = "2018-01-01"\n', "unknown key 'window.sinse'; expected one of"),
        ('[maps.deliveries]\nts = "x"\n', "unknown key 'maps'; expected one of attribution,"),
        ('window = "2018"\n', "'window' must be a table ([window])"),
        ('[window]\nsince = "soon"\n', "window.since: invalid time 'soon'"),
        ("[scan]\nmax_rejected = true\n", "scan.max_rejected: expected a count"),
        ('[outputs]\nformats = ["xlsx"]\n', "outputs.formats: ['xlsx']: expected formats among"),
        ('[map.deliveries]\nnope = "x"\n', "unknown column deliveries.nope"),
        ("[window\n", "cannot read config"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "incident.toml"
    path.write_text(text)
    result = runner.invoke(cli, ["config", "show", "--config", str(path)])
    assert result.exit_code == ExitCode.USAGE_ERROR
    assert result.stderr.startswith(f"error: {path}: ")
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_bad_environment_value_is_a_config_error(tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["config", "show"], env={"INCIDENT_REVOCATION_GRACE": "soon", "INCIDENT_CONFIG": ""}
    )
    assert result.exit_code == ExitCode.USAGE_ERROR
    assert result.stderr == (
        "error: invalid INCIDENT_REVOCATION_GRACE 'soon': expected a duration such as 6m, "
        "90s, 1h or 500ms\n"
    )


def test_config_show_prints_values_and_origins(project: Path) -> None:
    args = ["config", "show", "--config", str(project / "incident.toml"), "--until", "2018-05-01"]
    result = runner.invoke(
        cli, [*args, "--map", "deliveries.app_id=app"], env={"INCIDENT_OUT": "x"}
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    lines = result.stdout.splitlines()
    toml = project / "incident.toml"
    assert lines[0] == f"config file: {toml} (flag)"
    assert (
        f"window.since                 = 2018-01-01T00:00:00Z  [file ({toml}: window.since)]"
        in (lines)
    )
    assert "window.until                 = 2018-05-01T00:00:00Z  [flag (--until)]" in lines
    assert "outputs.out                  = x  [environment (INCIDENT_OUT)]" in lines
    assert "attribution.revocation_grace = 5m  [default]" in lines
    assert f"map.deliveries.delivered_at  = ts  [file ({toml})]" in lines
    assert "map.deliveries.app_id        = app  [flag (--map)]" in lines
    document = json.loads(runner.invoke(cli, [*args, "--json"], env={"INCIDENT_OUT": "x"}).stdout)
    assert document["settings"]["outputs.out"] == {
        "value": "x",
        "origin": "environment",
        "where": "INCIDENT_OUT",
    }
    assert document["settings"]["outputs.formats"]["value"] == ["csv", "html"]
    assert document["config_file_origin"] == "flag"


def test_scan_reads_incident_toml_from_the_working_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    result = runner.invoke(cli, ["scan"], env={"INCIDENT_CONFIG": ""})
    # fail_on_findings = true in the file, and app 11 received a delivery without a grant.
    assert result.exit_code == ExitCode.FINDINGS, result.stderr
    assert result.stderr.splitlines()[0] == "note: settings from incident.toml"
    summary = json.loads((project / "report" / "summary.json").read_text())
    assert summary["window"]["since"] == "2018-01-01T00:00:00Z"
    assert (project / "report" / "report.html").exists()
    assert not (project / "report" / "users.parquet").exists()
    flagged = runner.invoke(cli, ["scan", "--out", "flagged", "--no-fail-on-findings", "-q"])
    assert (flagged.exit_code, flagged.stderr) == (0, "")
    assert (project / "flagged" / "summary.json").exists()


def test_an_old_mapping_file_still_works(project: Path, tmp_path: Path) -> None:
    old = tmp_path / "columns.toml"
    old.write_text('[map.deliveries]\ndelivered_at = "ts"\n')
    logs = project / "logs"
    args = ["scan", str(logs), "--config", str(old), "--out", str(tmp_path / "out"), "-q"]
    result = runner.invoke(cli, args, env={"INCIDENT_CONFIG": ""})
    assert result.exit_code == ExitCode.OK, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["accounting"]["rows_read"] == 2


def test_how_a_scan_runs_comes_from_the_file_the_environment_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "incident.toml"
    path.write_text('[engine]\ncluster = "local:2"\npartition_rows = 700\ngrant_buckets = 3\n')
    config = resolve({"directory": "logs"}, (), path).scan_config()
    assert (config.cluster, config.partition_rows, config.grant_buckets) == ("local:2", 700, 3)
    flagged = resolve({"directory": "logs", "grant_buckets": 1}, (), path).scan_config()
    assert flagged.grant_buckets == 1


def test_the_staging_area_comes_from_the_file_relative_to_it_or_as_a_url(tmp_path: Path) -> None:
    path = tmp_path / "project" / "incident.toml"
    path.parent.mkdir()
    path.write_text('[engine]\nstaging = "scratch"\n')
    assert resolve({"directory": "logs"}, (), path).scan_config().staging == path.parent / "scratch"
    flagged = resolve({"directory": "logs", "staging": "s3://b/tmp"}, (), path).scan_config()
    assert flagged.staging == "s3://b/tmp"
    environment = {"INCIDENT_STAGING": "az://c/tmp"}
    assert resolve({"directory": "logs"}, (), environ=environment).scan_config().staging == (
        "az://c/tmp"
    )
    assert resolve({"directory": "logs"}, (), environ={}).scan_config().staging is None


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_count_of_the_engine_must_be_a_whole_number_of_at_least_one(value: str) -> None:
    result = runner.invoke(
        cli, ["config", "show"], env={"INCIDENT_GRANT_BUCKETS": value, "INCIDENT_CONFIG": ""}
    )
    assert result.exit_code == ExitCode.USAGE_ERROR
    assert "INCIDENT_GRANT_BUCKETS" in result.stderr
    assert "expected a whole number of at least 1" in result.stderr
