"""`incident verify RESULT`: does a result still match its manifest?"""

from __future__ import annotations

from pathlib import Path

import click

from incident.cli.messages import say
from incident.cli.params import LocationType, storage_option
from incident.errors import VerificationError
from incident.results.manifest import verify
from incident.results.remote import local_result
from incident.storage.locations import StorageOptions


@click.command("verify")
@click.argument(
    "result",
    type=LocationType(click.Path(exists=True, file_okay=False, path_type=Path)),
    metavar="RESULT",
)
@storage_option
def verify_command(result: Path | str, storage: StorageOptions) -> None:
    """Check that a result's inputs and outputs still match its manifest.json.

    RESULT is a directory or an object-storage prefix (s3://, gs://, az://). Exits 6 naming
    every mismatch; input paths are read as recorded (relative to where the scan ran).
    """
    with local_result(result, storage, whole=False) as copy:
        problems = [
            problem.replace(str(copy), str(result).rstrip("/")) for problem in verify(copy, storage)
        ]
    for problem in problems:
        say(f"mismatch: {problem}")
    if problems:
        raise VerificationError(f"{result}: {len(problems)} mismatches with its manifest.json")
    say(f"verified: {result} matches its manifest.json")
