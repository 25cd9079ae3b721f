"""`incident verify RESULT_DIR`: does a result still match its manifest?"""

from __future__ import annotations

from pathlib import Path

import click

from incident.cli.messages import say
from incident.errors import VerificationError
from incident.results.manifest import verify


@click.command("verify")
@click.argument(
    "result", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="RESULT_DIR"
)
def verify_command(result: Path) -> None:
    """Check that a result's inputs and outputs still match its manifest.json.

    Exits 6 naming every mismatch; input paths are read as recorded (relative to where the
    scan ran).
    """
    problems = verify(result)
    for problem in problems:
        say(f"mismatch: {problem}")
    if problems:
        raise VerificationError(f"{result}: {len(problems)} mismatches with its manifest.json")
    say(f"verified: {result} matches its manifest.json")
