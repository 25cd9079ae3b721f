"""Click parameter types for the values the library parses: instants, durations and limits.

Each converts with the library's own parser, so that a flag and a config file accept the
same values, and turns its `ConfigError` into click's usage error (exit 2).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click

from incident.config import RejectLimit, parse_duration, parse_instant
from incident.errors import ConfigError


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
