"""The command line: a thin face over the library. `main` is the `incident` command.

The command group (`incident.cli.commands`) is imported only once the signal handlers are in
place, so that an interrupt while polars loads is answered like any other: one line, exit 130
(SIGINT) or 143 (SIGTERM), no traceback, no partial result.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click


class Interrupted(BaseException):
    """A signal asked the tool to stop; outputs being written are discarded on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def main() -> None:
    """Entry point of the `incident` command."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        from incident.cli.commands import cli

        cli(prog_name="incident")
    except Interrupted as stop:
        name = signal.Signals(stop.signum).name
        print(
            f"interrupted ({name}): no result written; an earlier one is untouched", file=sys.stderr
        )
        sys.exit(128 + stop.signum)


def __getattr__(name: str) -> Any:
    # `from incident.cli import cli` for tests and embedding, without importing it at start.
    if name == "cli":
        from incident.cli.commands import cli

        return cli
    raise AttributeError(name)


if TYPE_CHECKING:
    cli: click.Group
