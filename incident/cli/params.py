"""Click parameter types for the values the library parses: instants, durations and limits.

Each converts with the library's own parser, so that a flag and a config file accept the
same values, and turns its `ConfigError` into click's usage error (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from incident.config import RejectLimit, parse_duration, parse_instant
from incident.errors import ConfigError
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url, split_url

# Where the storage options of the running command are kept, for `redact`.
_STORAGE_KEY = "incident.storage_options"


class InstantType(click.ParamType[datetime]):
    """An ISO-8601 instant; without an offset it is UTC, a date alone is midnight UTC."""

    name = "instant"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(str(value))
        except ConfigError as error:
            self.fail(str(error), param, ctx)


class DurationType(click.ParamType[timedelta]):
    """A duration such as `6m`, `90s`, `1.5h` or `500ms`."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        option = param.opts[0] if param is not None and param.opts else "duration"
        try:
            return parse_duration(str(value), option)
        except ConfigError as error:
            self.fail(str(error), param, ctx)


class RejectLimitType(click.ParamType[RejectLimit]):
    """A count of rows such as `100`, or a percentage of rows read such as `0.5%`."""

    name = "N|P%"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> RejectLimit:
        if isinstance(value, RejectLimit):
            return value
        try:
            return RejectLimit.parse(str(value))
        except ConfigError as error:
            self.fail(str(error), param, ctx)


INSTANT = InstantType()
DURATION = DurationType()
REJECT_LIMIT = RejectLimitType()


class LocationType(click.ParamType[Path | str]):
    """A local path, checked as `local` checks it, or an object-storage URL (`s3://…`),
    kept as text."""

    name = "path|url"

    def __init__(self, local: click.Path) -> None:
        self.local = local

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Path | str:
        if isinstance(value, Path) or not is_url(value):
            converted = self.local.convert(value, param, ctx)
            return Path(converted) if not isinstance(converted, bytes) else Path(str(value))
        try:
            split_url(value)
        except ConfigError as error:
            self.fail(str(error), param, ctx)
        return str(value)


def _storage_options(ctx: click.Context, _param: click.Parameter, specs: Any) -> StorageOptions:
    try:
        storage = StorageOptions.parse(specs or ())
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None
    ctx.meta[_STORAGE_KEY] = storage
    return storage


F = TypeVar("F", bound=Callable[..., Any])


def storage_option(command: F) -> F:
    """`--storage-option KEY=VALUE`, repeatable, as a `StorageOptions` named `storage`."""
    return click.option(
        "--storage-option",
        "storage",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_storage_options,
        help="An option for object storage, as polars names it, e.g. "
        "aws_endpoint_url=http://127.0.0.1:9000 or aws_region=eu-west-1. Repeatable; "
        "credentials otherwise come from the environment.",
    )(command)


def redact(ctx: click.Context, text: str) -> str:
    """`text` without the secrets of the running command's storage options or environment."""
    storage = ctx.meta.get(_STORAGE_KEY, NO_OPTIONS)
    return storage.redact(text) if isinstance(storage, StorageOptions) else text
