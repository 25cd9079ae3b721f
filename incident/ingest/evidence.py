"""`_manifest.json` of an ingest: what was read (each file's size, SHA-256, lines and rows),
with which parameters, the row accounting, and every file written with its SHA-256.

Its evidence entries are `incident.results.manifest.FileEvidence`, as in a scan's manifest.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from incident.ingest.parts import MANIFEST
from incident.pipeline.files import sha256
from incident.results.manifest import FileEvidence
from incident.version import __version__

COMMAND = "ingest"


@dataclass(frozen=True)
class SourceEvidence:
    """One source file as read: its evidence (rows = rows read from it), its format and
    compression, and where its rows went."""

    evidence: FileEvidence
    format: str
    compression: str | None
    lines: int
    blank_lines: int
    rows_written: int
    rows_rejected: int
    columns_ignored: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The entry of `inputs` in the manifest."""
        fields = {k: v for k, v in asdict(self.evidence).items() if v is not None}
        own = {k: v for k, v in asdict(self).items() if k != "evidence"}
        own["columns_ignored"] = list(self.columns_ignored)
        return {**fields, **own}


def write_manifest(
    out: Path,
    parameters: dict[str, Any],
    sources: list[SourceEvidence],
    accounting: dict[str, int],
    rejected_by_reason: dict[str, int],
    rows: dict[str, int],
) -> None:
    """Write `out/_manifest.json` for the files already in `out` (`rows`: of each)."""
    outputs = {
        name: asdict(FileEvidence(name, (out / name).stat().st_size, sha256(out / name), n))
        for name, n in sorted(rows.items())
    }
    document = {
        "tool": {"name": "incident", "version": __version__, "command": COMMAND},
        "versions": {
            "python": platform.python_version(),
            "polars": pl.__version__,
            "pyarrow": pa.__version__,
        },
        "parameters": parameters,
        "inputs": [source.to_json() for source in sources],
        "accounting": accounting,
        "rejected_by_reason": dict(sorted(rejected_by_reason.items())),
        "outputs": {
            name: {k: v for k, v in e.items() if k != "path" and v is not None}
            for name, e in outputs.items()
        },
    }
    (out / MANIFEST).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def is_ingest_output(directory: Path) -> bool:
    """True for a directory an earlier ingest wrote (its manifest says so): `--out` may
    replace it."""
    try:
        document = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        tool = document["tool"]
        return bool(tool["name"] == "incident" and tool["command"] == COMMAND)
    except (OSError, ValueError, KeyError, TypeError):
        return False
