"""The project configuration: `incident.toml`, the environment and the flags, resolved into
one `ScanConfig`, with where each value came from.

Precedence, highest first: a flag, an `INCIDENT_*` environment variable, the file, the default.
The file is `--config FILE`, else `$INCIDENT_CONFIG`, else `incident.toml` in the working
directory when there is one. A mapping file of old (`[map.INPUT]` tables only) is such a file.
Paths in the file are relative to the file's directory. A key the file may not hold is a
`ConfigError` naming the file and the key: a misspelt setting must not be ignored silently.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from incident.config import (
    DEFAULT_FORMATS,
    Attribution,
    ColumnMap,
    RejectLimit,
    ReportFormat,
    ScanConfig,
    Window,
    conventional_inputs,
    format_instant,
    parse_duration,
    parse_instant,
)
from incident.errors import ConfigError
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url

PROJECT_FILE = "incident.toml"
CONFIG_VARIABLE = "INCIDENT_CONFIG"


class Origin(StrEnum):
    """Where a setting's value came from, lowest precedence first."""

    DEFAULT = "default"
    FILE = "file"
    ENVIRONMENT = "environment"
    FLAG = "flag"


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return str(value)


def _instant(value: Any, where: str) -> datetime:
    """An instant from text, or from a TOML date-time or date (a local one is UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    try:
        return parse_instant(_text(value, where))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def _duration(value: Any, where: str) -> timedelta:
    return value if isinstance(value, timedelta) else parse_duration(_text(value, where), where)


def _limit(value: Any, where: str) -> RejectLimit:
    if isinstance(value, RejectLimit):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{where}: expected a count such as 100 or a percentage such as '0.5%'")
    try:
        return RejectLimit.parse(str(value))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text not in _TRUE | _FALSE:
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return text in _TRUE


def _formats(value: Any, where: str) -> tuple[ReportFormat, ...]:
    """Formats from a TOML list, or a comma-separated text (the environment's form)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(f"{where}: expected a list of formats such as ['parquet', 'csv']")
    try:
        return tuple(ReportFormat(str(item).strip()) for item in items)
    except ValueError:
        choices = ", ".join(f.value for f in ReportFormat)
        raise ConfigError(f"{where}: {value!r}: expected formats among {choices}") from None


def _count(value: Any, where: str) -> int:
    """A positive whole number, from TOML or from text (the environment's form)."""
    given = isinstance(value, int | str) and not isinstance(value, bool)
    text = str(value).strip() if given else ""
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{where}: expected a whole number of at least 1, got {value!r}")
    return int(text)


def _shown(value: Any) -> Any:
    """A value as JSON shows it."""
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
            if seconds and seconds % size == 0:
                return f"{int(seconds // size)}{unit}"
        return f"{seconds * 1000:g}ms"
    if isinstance(value, RejectLimit):
        return None if value == RejectLimit() else str(value)
    if isinstance(value, tuple):
        return [_shown(item) for item in value]
    return value


@dataclass(frozen=True)
class Setting:
    """One setting: its key in the file (`table.name`), the flag's parameter, its environment
    variable, how a value is read, its default, and whether it is a path."""

    key: str
    param: str
    parse: Callable[[Any, str], Any]
    default: Any = None
    path: bool = False

    @property
    def variable(self) -> str:
        """Its environment variable: `INCIDENT_` and the key's name in capitals."""
        return "INCIDENT_" + self.key.split(".")[-1].upper()


_DEFAULT_WINDOW, _DEFAULT_ATTRIBUTION = Window(), Attribution()
SETTINGS: tuple[Setting, ...] = (
    Setting("inputs.directory", "directory", _text, path=True),
    Setting("inputs.deliveries", "deliveries", _text, path=True),
    Setting("inputs.authorizations", "authorizations", _text, path=True),
    Setting("inputs.apps", "apps", _text, path=True),
    Setting("window.since", "since", _instant, _DEFAULT_WINDOW.since),
    Setting("window.until", "until", _instant, _DEFAULT_WINDOW.until),
    Setting(
        "attribution.collision_window",
        "collision_window",
        _duration,
        _DEFAULT_ATTRIBUTION.collision_window,
    ),
    Setting(
        "attribution.revocation_grace",
        "revocation_grace",
        _duration,
        _DEFAULT_ATTRIBUTION.revocation_grace,
    ),
    Setting("scan.max_rejected", "max_rejected", _limit, RejectLimit()),
    Setting("scan.fail_on_findings", "fail_on_findings", _flag, False),
    Setting("outputs.out", "out", _text, "incident-report", path=True),
    Setting("outputs.formats", "formats", _formats, DEFAULT_FORMATS),
    Setting("engine.cluster", "cluster", _text),
    Setting("engine.partition_rows", "partition_rows", _count),
    Setting("engine.grant_buckets", "grant_buckets", _count),
    Setting("engine.staging", "staging", _text, path=True),
)
_BY_KEY = {s.key: s for s in SETTINGS}
_INPUTS = ("deliveries", "authorizations", "apps")


@dataclass(frozen=True)
class Resolved:
    """A setting's value and where it came from: `where` names the file, the variable or the
    flag (empty for a default)."""

    value: Any
    origin: Origin
    where: str = ""


@dataclass(frozen=True)
class ProjectConfig:
    """The resolved configuration: every setting, the column mappings, and the file read."""

    file: Path | None
    values: Mapping[str, Resolved]
    columns: ColumnMap = field(default_factory=ColumnMap)
    mapping_origins: Mapping[str, Resolved] = field(default_factory=dict)
    # How the file was named: a flag, the environment, or found in the working directory.
    file_origin: Origin | None = None
    # Options for object storage (`--storage-option`), passed through to the scan.
    storage: StorageOptions = NO_OPTIONS

    def value(self, key: str) -> Any:
        """The value of the setting `key` (e.g. `window.since`)."""
        return self.values[key].value

    def scan_config(self) -> ScanConfig:
        """The scan these settings describe; a `ConfigError` when an input is missing."""
        deliveries, authorizations, apps = (self.value(f"inputs.{i}") for i in _INPUTS)
        if deliveries is None or authorizations is None:
            raise ConfigError(
                "give a DIR, or both --deliveries and --authorizations "
                f"(or [inputs] in {PROJECT_FILE})"
            )
        return ScanConfig(
            deliveries=deliveries,
            authorizations=authorizations,
            apps=apps,
            out=_location(self.value("outputs.out")),
            window=Window(self.value("window.since"), self.value("window.until")),
            columns=self.columns,
            max_rejected=self.value("scan.max_rejected"),
            formats=self.value("outputs.formats"),
            attribution=Attribution(
                self.value("attribution.collision_window"),
                self.value("attribution.revocation_grace"),
            ),
            cluster=self.value("engine.cluster"),
            partition_rows=self.value("engine.partition_rows"),
            grant_buckets=self.value("engine.grant_buckets"),
            staging=_staging(self.value("engine.staging")),
            storage=self.storage,
        )

    def from_environment(self) -> list[str]:
        """The environment variables that set a value."""
        return [r.where for r in self.values.values() if r.origin is Origin.ENVIRONMENT]

    def to_json(self) -> dict[str, Any]:
        """Every setting with its value and origin, the mappings after them."""

        def entry(resolved: Resolved) -> dict[str, Any]:
            return {
                "value": _shown(resolved.value),
                "origin": resolved.origin.value,
                "where": resolved.where or None,
            }

        settings = {key: entry(resolved) for key, resolved in self.values.items()}
        mappings = {key: entry(resolved) for key, resolved in self.mapping_origins.items()}
        return {
            "config_file": str(self.file) if self.file else None,
            "config_file_origin": self.file_origin.value if self.file_origin else None,
            "settings": {**settings, **mappings},
        }


def _flag_name(setting: Setting) -> str:
    names = {"directory": "DIR", "formats": "--format"}
    return names.get(setting.param, "--" + setting.param.replace("_", "-"))


def _location(value: str) -> Path | str:
    """`--out` as a scan takes it: an object-storage URL as text, else a path."""
    return value if is_url(value) else Path(value)


def _staging(value: str | None) -> Path | str | None:
    """`--staging` as a scan takes it: absent, an object-storage URL as text, else a path."""
    return None if value is None else _location(value)


def _relative_to(base: Path, value: str) -> str:
    """A path of the file, relative to the file's directory; a URL or absolute path as it is."""
    if "://" in value or Path(value).is_absolute():
        return value
    return str(base / value)


def read_project_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings (by key) and the `[map]` tables of a project file; a `ConfigError` naming
    the file and the key for anything it may not hold."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config: {error}") from None
    tables = sorted({key.split(".")[0] for key in _BY_KEY} | {"map"})
    values: dict[str, Any] = {}
    for table, content in document.items():
        if table not in tables:
            raise ConfigError(f"{path}: unknown key {table!r}; expected one of {', '.join(tables)}")
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: {table!r} must be a table ([{table}])")
        if table == "map":
            continue
        for name, value in content.items():
            key = f"{table}.{name}"
            if key not in _BY_KEY:
                known = ", ".join(k for k in _BY_KEY if k.startswith(f"{table}."))
                raise ConfigError(f"{path}: unknown key {key!r}; expected one of {known}")
            values[key] = value
    return values, document.get("map", {})


def _project_file(
    config_file: Path | None, environ: Mapping[str, str], cwd: Path
) -> tuple[Path | None, Origin | None]:
    """The project file to read: `--config`, else `$INCIDENT_CONFIG`, else `incident.toml` in
    the working directory, if there is one."""
    if config_file is not None:
        return config_file, Origin.FLAG
    named = environ.get(CONFIG_VARIABLE, "").strip()
    if named:
        if not Path(named).is_file():
            raise ConfigError(f"{CONFIG_VARIABLE}={named}: no such file")
        return Path(named), Origin.ENVIRONMENT
    found = cwd / PROJECT_FILE
    return (found, Origin.DEFAULT) if found.exists() else (None, None)


def _layers(
    file: Path | None,
    file_values: Mapping[str, Any],
    environ: Mapping[str, str],
    flags: Mapping[str, Any],
) -> list[tuple[Origin, dict[str, tuple[Any, str]]]]:
    """The values each origin gives, by key, with where each is from; lowest first."""
    by_param = {s.param: s for s in SETTINGS}
    return [
        (Origin.FILE, {key: (value, f"{file}: {key}") for key, value in file_values.items()}),
        (
            Origin.ENVIRONMENT,
            {s.key: (environ[s.variable], s.variable) for s in SETTINGS if s.variable in environ},
        ),
        (
            Origin.FLAG,
            {
                by_param[param].key: (value, _flag_name(by_param[param]))
                for param, value in flags.items()
                if param in by_param
            },
        ),
    ]


def _resolve_values(
    file: Path | None, layers: list[tuple[Origin, dict[str, tuple[Any, str]]]]
) -> dict[str, Resolved]:
    """Every setting from the highest origin that gives it. A directory replaces the inputs
    of lower origins with its convention; an input named beside it, in the same origin, wins."""
    values = {s.key: Resolved(s.default, Origin.DEFAULT) for s in SETTINGS}
    for origin, given in layers:
        for key, (raw, where) in given.items():
            setting = _BY_KEY[key]
            value = setting.parse(raw, where)
            if setting.path and origin is Origin.FILE and file is not None:
                value = _relative_to(file.parent, value)
            values[key] = Resolved(value, origin, where)
        if "inputs.directory" in given:
            directory = values["inputs.directory"]
            for name, path in conventional_inputs(directory.value).items():
                if f"inputs.{name}" not in given:
                    values[f"inputs.{name}"] = Resolved(
                        path, origin, f"by convention from {directory.where}"
                    )
    return values


def _mappings(
    file: Path | None, tables: Any, specs: Sequence[str]
) -> tuple[ColumnMap, dict[str, Resolved]]:
    """The column mappings of the file, then of `--map` (which win), with their origins."""
    base = ColumnMap.from_tables(tables, str(file)) if file is not None else ColumnMap()
    columns = ColumnMap.parse(specs, base=base)
    origins: dict[str, Resolved] = {}
    for input_, renames in base.renames.items():
        for column, source in renames.items():
            origins[f"map.{input_}.{column}"] = Resolved(source, Origin.FILE, str(file))
    for spec in specs:
        for input_, renames in ColumnMap.parse([spec]).renames.items():
            for column, source in renames.items():
                origins[f"map.{input_}.{column}"] = Resolved(source, Origin.FLAG, "--map")
    return columns, dict(sorted(origins.items()))


def resolve(
    flags: Mapping[str, Any],
    mappings: Sequence[str] = (),
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProjectConfig:
    """The configuration from the flags given (by parameter name, e.g. `since`), the `--map`
    items, the project file and the environment (`os.environ` by default)."""
    environ = os.environ if environ is None else environ
    file, file_origin = _project_file(config_file, environ, cwd or Path())
    file_values, tables = read_project_file(file) if file else ({}, {})
    values = _resolve_values(file, _layers(file, file_values, environ, flags))
    columns, mapping_origins = _mappings(file, tables, mappings)
    return ProjectConfig(file, values, columns, mapping_origins, file_origin)


def environment_variables() -> dict[str, str]:
    """Each setting's environment variable, by key (and the project file's)."""
    return {"config": CONFIG_VARIABLE, **{s.key: s.variable for s in SETTINGS}}
