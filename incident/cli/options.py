"""The flags of the project configuration, shared by `scan`, `validate` and `config show`, and
their resolution with the environment and `incident.toml` (`incident.settings`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from incident.cli.messages import say
from incident.cli.params import DURATION, INSTANT, REJECT_LIMIT, LocationType, storage_option
from incident.report import FORMATS
from incident.settings import Origin, ProjectConfig, resolve
from incident.storage.locations import NO_OPTIONS

F = TypeVar("F", bound=Callable[..., Any])

_FORMAT_HELP = "; ".join(f"{name}: {spec.description}" for name, spec in FORMATS.items())


def _apply(function: F, decorators: list[Callable[[F], F]]) -> F:
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def input_options(function: F) -> F:
    """DIR, the inputs, the column mappings, the project file and the window."""
    return _apply(
        function,
        [
            click.argument(
                "directory",
                required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path),
                metavar="[DIR]",
            ),
            click.option(
                "--deliveries",
                help="Deliveries: Parquet file, directory or glob; or an s3://, gs://, az:// URL.",
            ),
            click.option(
                "--authorizations", help="Authorizations (grants): Parquet file, directory or glob."
            ),
            click.option("--apps", help="Optional apps registry (app_id -> developer_id)."),
            click.option(
                "--map",
                "mappings",
                multiple=True,
                metavar="INPUT.COLUMN=SOURCE",
                help="Read a canonical column from another name, e.g. "
                "deliveries.delivered_at=ts. Repeatable.",
            ),
            click.option(
                "--config",
                "config_file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Project file (TOML) [default: $INCIDENT_CONFIG, else ./incident.toml "
                'if present]; a file of [map.deliveries] delivered_at = "ts" tables works too.',
            ),
            storage_option,
            click.option(
                "--since",
                type=INSTANT,
                help="Window start, inclusive (ISO-8601; no offset means UTC) "
                "[default: 2017-05-01T00:00:00Z].",
            ),
            click.option(
                "--until",
                type=INSTANT,
                help="Window end, exclusive (ISO-8601; no offset means UTC) "
                "[default: 2018-09-11T00:00:00Z].",
            ),
        ],
    )


def scan_options(function: F) -> F:
    """What a scan writes and how it judges: out, formats, limits and attribution."""
    return _apply(
        function,
        [
            click.option(
                "--out",
                type=LocationType(click.Path(file_okay=False, path_type=Path)),
                help="Directory or object-storage prefix (s3://, gs://, az://) for the "
                "reports; replaced whole if it holds an earlier result [default: "
                "incident-report].",
            ),
            click.option(
                "--fail-on-findings/--no-fail-on-findings",
                default=False,
                help="Exit 3 when any delivery was misdelivered (for CI).",
            ),
            click.option(
                "--max-rejected",
                type=REJECT_LIMIT,
                help="Exit 5 when more delivery rows are rejected, e.g. 100 or 0.5% "
                "[default: no limit].",
            ),
            click.option(
                "--format",
                "formats",
                multiple=True,
                type=click.Choice([f.value for f in FORMATS]),
                help=f"{_FORMAT_HELP}. Tables are the users, developers and endpoints reports. "
                "Repeatable [default: parquet and csv; without parquet or csv, they are added].",
            ),
            click.option(
                "--collision-window",
                type=DURATION,
                help="A misdelivery is a shared-endpoint collision when the receiving app had "
                "its own traffic from the same backend within this time, e.g. 6m or 90s "
                "[default: 6m].",
            ),
            click.option(
                "--revocation-grace",
                type=DURATION,
                help="A delivery this soon after its grant was revoked is revocation lag "
                "[default: 5m].",
            ),
            click.option(
                "--cluster",
                metavar="ADDRESS",
                help="Run detection on Dask: local, local:N (N workers on this machine) or a "
                "scheduler address like tcp://HOST:8786. Needs pip install 'incident[dask]' "
                "[default: this process].",
            ),
            click.option(
                "--partition-rows",
                type=click.IntRange(min=1),
                help="Delivery rows per detection task, cut at file boundaries [default: a "
                "group whole in this process; a few tasks per worker on a cluster].",
            ),
            click.option(
                "--grant-buckets",
                type=click.IntRange(min=1),
                help="Split the grants into N key tables, the deliveries exchanged to match; 1 "
                "is one key table shared by every task [default: enough for about 1 GB each].",
            ),
            click.option(
                "--staging",
                metavar="LOCATION",
                help="Where detection tasks write their parts: a directory or an object-storage "
                "prefix (s3://, gs://, az://) that every worker reaches; the scan uses a place of "
                "its own inside it and removes it after [default: beside the result; for a "
                "remote --cluster with --out in object storage, a prefix beside --out].",
            ),
        ],
    )


def project_config(ctx: click.Context) -> ProjectConfig:
    """The configuration of this command: the flags given on its command line, over the
    environment, over the project file, over the defaults."""
    given = {
        name: value
        for name, value in ctx.params.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    project = resolve(given, ctx.params.get("mappings", ()), ctx.params.get("config_file"))
    # Options for object storage come from flags alone: they may carry credentials.
    return replace(project, storage=ctx.params.get("storage", NO_OPTIONS))


def note_origins(project: ProjectConfig) -> None:
    """Say where settings came from when no flag of this command named it: a project file
    found on its own, and environment variables. A setting nobody typed should not be hidden."""
    if project.file is not None and project.file_origin is not Origin.FLAG:
        say(f"note: settings from {project.file}")
    variables = project.from_environment()
    if variables:
        say(f"note: settings from the environment: {', '.join(variables)}")
