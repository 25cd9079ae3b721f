"""Scan parameters: the window, input paths, column mappings and limits."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from incident.errors import ConfigError
from incident.schema import COLUMNS, Input
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 instant; without an offset it is UTC, a date alone is midnight UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"invalid time {text!r}: expected ISO-8601, e.g. 2018-03-01T09:00:00+09:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ConfigError(f"invalid time {text!r}: outside the years 1 to 9999 in UTC") from None


def format_instant(instant: datetime) -> str:
    """An instant as ISO-8601 UTC with `Z`, fractional seconds only when non-zero."""
    utc = instant.astimezone(UTC)
    fraction = f".{utc.microsecond:06d}".rstrip("0") if utc.microsecond else ""
    # Four-digit years always (strftime's %Y writes year 1 as "1", which no parser reads back).
    date = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
    return f"{date}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}{fraction}Z"


@dataclass(frozen=True)
class Window:
    """The half-open interval `[since, until)` of delivery times under investigation."""

    since: datetime = datetime(2017, 5, 1, tzinfo=UTC)
    until: datetime = datetime(2018, 9, 11, tzinfo=UTC)

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ConfigError("window bounds must be timezone-aware")
        if self.since >= self.until:
            raise ConfigError(
                f"empty window: --since {self.since.isoformat()} is not before "
                f"--until {self.until.isoformat()}"
            )


_DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|min|h)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}
# Longer windows or graces mean nothing for deliveries, and would overflow nanoseconds.
MAX_DURATION = timedelta(days=366)


def parse_duration(text: str, option: str) -> timedelta:
    """Parse a duration such as `6m`, `90s`, `1.5h` or `500ms`."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigError(
            f"invalid {option} {text!r}: expected a duration such as 6m, 90s, 1h or 500ms"
        )
    try:
        duration = timedelta(seconds=float(match["amount"]) * _UNITS[match["unit"]])
    except OverflowError:
        duration = MAX_DURATION * 2
    if duration > MAX_DURATION:
        raise ConfigError(f"invalid {option} {text!r}: expected at most {MAX_DURATION.days} days")
    return duration


@dataclass(frozen=True)
class Attribution:
    """How close in time the evidence of a misdelivery's cause must be."""

    # Activity of two apps on one endpoint within this time can mix their deliveries.
    collision_window: timedelta = timedelta(minutes=6)
    # A delivery this soon after a revocation is the platform catching up, not a leak.
    revocation_grace: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        for option, value in (
            ("--collision-window", self.collision_window),
            ("--revocation-grace", self.revocation_grace),
        ):
            if not timedelta(0) <= value <= MAX_DURATION:
                raise ConfigError(
                    f"{option}: expected a duration from 0 to {MAX_DURATION.days} days, got {value}"
                )


@dataclass(frozen=True)
class RejectLimit:
    """The most rejected delivery rows a scan accepts: a count, or a percentage of rows read."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> RejectLimit:
        """Parse `N` or `P%`."""
        spec = text.strip()
        try:
            if spec.endswith("%"):
                percent = float(spec[:-1])
                if not 0 <= percent <= 100:
                    raise ValueError
                return cls(percent=percent)
            count = int(spec)
            if count < 0:
                raise ValueError
            return cls(count=count)
        except ValueError:
            raise ConfigError(
                f"invalid --max-rejected {text!r}: expected a count such as 100 "
                "or a percentage such as 0.5%"
            ) from None

    def exceeded(self, rejected: int, read: int) -> bool:
        """True when `rejected` of `read` rows is over the limit."""
        if self.count is not None:
            return rejected > self.count
        if self.percent is not None:
            return rejected * 100 > self.percent * read
        return False

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        if self.percent is not None:
            return f"{self.percent:g}%"
        return "none"


class ReportFormat(StrEnum):
    """Formats of the reports: tables in Parquet, CSV, TSV or JSON Lines, and the whole result
    as one HTML page (`incident.report` has the writer of each)."""

    PARQUET = "parquet"
    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    HTML = "html"


DEFAULT_FORMATS = (ReportFormat.PARQUET, ReportFormat.CSV)
# The formats a result is read back from (`incident.results`): every scan writes one of them.
READABLE_FORMATS = (ReportFormat.PARQUET, ReportFormat.CSV)


_MAPPING = re.compile(r"^(?P<input>\w+)\.(?P<column>\w+)=(?P<source>.+)$")


@dataclass(frozen=True)
class ColumnMap:
    """Source column names per input, for logs whose names differ from the canonical ones."""

    renames: Mapping[Input, Mapping[str, str]] = field(default_factory=dict)

    def source(self, input_: Input, column: str) -> str:
        """The name of canonical `column` in the files of `input_`."""
        return self.renames.get(input_, {}).get(column, column)

    @classmethod
    def parse(cls, specs: Iterable[str], base: ColumnMap | None = None) -> ColumnMap:
        """Parse `input.column=source` items (as given to `--map`) on top of `base`."""
        renames = {k: dict(v) for k, v in (base.renames if base else {}).items()}
        for spec in specs:
            match = _MAPPING.match(spec.strip())
            if not match:
                raise ConfigError(
                    f"invalid mapping {spec!r}: expected INPUT.COLUMN=SOURCE, "
                    "e.g. deliveries.delivered_at=ts"
                )
            cls._add(renames, match["input"], match["column"], match["source"])
        return cls({k: v for k, v in renames.items()})

    @classmethod
    def from_toml(cls, path: Path) -> ColumnMap:
        """Read `[map.INPUT] column = "source"` tables from a TOML file (other tables are the
        project file's: `incident.settings` reads the whole file)."""
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"{path}: cannot read config: {error}") from None
        return cls.from_tables(document.get("map", {}), str(path))

    @classmethod
    def from_tables(cls, tables: Any, origin: str) -> ColumnMap:
        """Mappings from the `[map.INPUT] column = "source"` tables of the file `origin`."""
        renames: dict[Input, dict[str, str]] = {}
        if not isinstance(tables, dict):
            raise ConfigError(f"{origin}: [map] must be a table of inputs")
        for input_name, columns in tables.items():
            if not isinstance(columns, dict):
                raise ConfigError(f"{origin}: [map.{input_name}] must be a table of column names")
            for column, source in columns.items():
                if not isinstance(source, str):
                    raise ConfigError(f"{origin}: map.{input_name}.{column} must be a string")
                cls._add(renames, input_name, column, source, origin=origin)
        return cls(renames)

    @staticmethod
    def _add(
        renames: dict[Input, dict[str, str]],
        input_name: str,
        column: str,
        source: str,
        origin: str = "--map",
    ) -> None:
        try:
            input_ = Input(input_name)
        except ValueError:
            choices = ", ".join(i.value for i in Input)
            raise ConfigError(
                f"{origin}: unknown input {input_name!r} in mapping: expected one of {choices}"
            ) from None
        if column not in COLUMNS[input_]:
            choices = ", ".join(COLUMNS[input_])
            raise ConfigError(
                f"{origin}: unknown column {input_name}.{column}: expected one of {choices}"
            )
        renames.setdefault(input_, {})[column] = source


@dataclass(frozen=True)
class ScanConfig:
    """Everything a scan needs: where the inputs are, the window, and what to write."""

    deliveries: str
    authorizations: str
    apps: str | None = None
    # A local directory, or a prefix in object storage (`s3://…`, kept as text).
    out: Path | str = Path("incident-report")
    window: Window = field(default_factory=Window)
    columns: ColumnMap = field(default_factory=ColumnMap)
    max_rejected: RejectLimit = field(default_factory=RejectLimit)
    formats: tuple[ReportFormat, ...] = DEFAULT_FORMATS
    attribution: Attribution = field(default_factory=Attribution)
    # How the scan runs, never what it finds: no part of a result depends on these.
    cluster: str | None = None  # None: in this process; else `local`, `local:N` or an address
    partition_rows: int | None = None  # rows per detection task; None: chosen by the engine
    grant_buckets: int | None = None  # key tables; None: as many as the grants need
    # Where detection tasks write their parts, shared by every worker: a local directory or
    # a prefix in object storage (kept as text). None: the result's local staging, or, for a
    # remote cluster with `out` in object storage, a prefix of its own beside `out`.
    staging: Path | str | None = None
    # Options for inputs and `out` in object storage, beside the environment's credentials.
    storage: StorageOptions = NO_OPTIONS

    def __post_init__(self) -> None:
        for name in ("partition_rows", "grant_buckets"):
            value = getattr(self, name)
            if value is not None and value < 1:
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{option} {value}: expected a whole number of at least 1")
        # Accept a str for the output directory, as a notebook user would write it.
        if not is_url(self.out):
            object.__setattr__(self, "out", Path(self.out))
        if self.staging is not None and not is_url(self.staging):
            object.__setattr__(self, "staging", Path(self.staging))
        # Every other command reads a result from its Parquet or CSV tables: a scan asked for
        # other formats alone (html, say) writes the default tables too.
        chosen = tuple(dict.fromkeys(ReportFormat(f) for f in self.formats))
        if not any(f in READABLE_FORMATS for f in chosen):
            chosen = DEFAULT_FORMATS + chosen
        object.__setattr__(self, "formats", chosen)

    @classmethod
    def from_directory(cls, directory: Path | str, **options: Any) -> ScanConfig:
        """The inputs of `DIR` by convention: `DIR/deliveries/` (or `DIR/deliveries.parquet`),
        `DIR/authorizations.parquet` and, if present, `DIR/apps.parquet`; `options` are the
        other fields, and an input given among them wins over the convention."""
        given = {name: value for name, value in options.items() if value is not None}
        return cls(**{**conventional_inputs(directory), **given})


def conventional_inputs(directory: Path | str) -> dict[str, str | None]:
    """The inputs of `DIR` by convention: `DIR/deliveries/` (or `DIR/deliveries.parquet`),
    `DIR/authorizations.parquet` and, if present, `DIR/apps.parquet`."""
    root = Path(directory)
    folder = root / "deliveries"
    return {
        "deliveries": str(folder if folder.exists() else root / "deliveries.parquet"),
        "authorizations": str(root / "authorizations.parquet"),
        "apps": str(root / "apps.parquet") if (root / "apps.parquet").exists() else None,
    }
