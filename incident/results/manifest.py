"""Evidence that a result came from these inputs with these parameters: `manifest.json`.

The manifest names every input file with its size, SHA-256 and row count, the versions of the
tool and its engines, the full parameters, and the SHA-256 of every output. `verify` recomputes
all of it and lists each difference.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from incident.config import ScanConfig, format_instant
from incident.errors import IncidentError, VerificationError
from incident.pipeline.files import find_files, sha256
from incident.pipeline.load import InputSource
from incident.results.read import MANIFEST
from incident.schema import Input
from incident.version import __version__


@dataclass(frozen=True)
class FileEvidence:
    """One file as it was: where, how large, its SHA-256, and its Parquet rows for an input."""

    path: str
    size: int
    sha256: str
    rows: int | None = None
    same_as: str | None = None  # an input file not read: a copy of this one


def _input_evidence(path: str, rows: int, same_as: str | None = None) -> FileEvidence:
    return FileEvidence(path, Path(path).stat().st_size, sha256(Path(path)), rows, same_as)


def hash_inputs(
    sources: Iterable[InputSource], pool: ThreadPoolExecutor
) -> dict[Input, list[Future[FileEvidence]]]:
    """Start hashing every input file in `pool`, to run while the scan reads them; the files
    and their rows are those the inputs were loaded from, and a copy that was not read is
    recorded with the file it is a copy of (`same_as`)."""
    hashed: dict[Input, list[Future[FileEvidence]]] = {}
    for source in sources:
        rows = dict(zip(source.files, source.file_rows, strict=True))
        hashed[source.input] = [pool.submit(_input_evidence, f, n) for f, n in rows.items()]
        hashed[source.input] += [
            pool.submit(_input_evidence, copy, rows[original], original)
            for copy, original in source.copies
        ]
    return hashed


def _parameters(config: ScanConfig) -> dict[str, Any]:
    return {
        "deliveries": config.deliveries,
        "authorizations": config.authorizations,
        "apps": config.apps,
        "since": format_instant(config.window.since),
        "until": format_instant(config.window.until),
        "columns": {i.value: dict(m) for i, m in sorted(config.columns.renames.items())},
        "max_rejected": str(config.max_rejected),
        "formats": [f.value for f in config.formats],
    }


def _without_nulls(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def write_manifest(
    config: ScanConfig, out: Path, inputs: dict[Input, list[Future[FileEvidence]]]
) -> Path:
    """Write `out/manifest.json` for the outputs already in `out`."""
    outputs = sorted(p for p in out.iterdir() if p.name != MANIFEST)
    document = {
        "tool": {"name": "incident", "version": __version__},
        "versions": {
            "python": platform.python_version(),
            "polars": pl.__version__,
            "pyarrow": pa.__version__,
        },
        "parameters": _parameters(config),
        "inputs": {
            input_.value: [_without_nulls(asdict(f.result())) for f in futures]
            for input_, futures in inputs.items()
        },
        "outputs": {p.name: {"size": p.stat().st_size, "sha256": sha256(p)} for p in outputs},
    }
    path = out / MANIFEST
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def _compare(expected: FileEvidence, path: Path) -> Iterable[str]:
    if not path.is_file():
        yield f"{path}: missing"
        return
    size = path.stat().st_size
    if size != expected.size:
        yield f"{path}: size {size}, expected {expected.size}"
    digest = sha256(path)
    if digest != expected.sha256:
        yield f"{path}: sha256 {digest}, expected {expected.sha256}"
    if expected.rows is None or digest == expected.sha256:
        return  # not an input, or the same bytes and so the same rows
    try:
        rows = pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        yield f"{path}: no longer a readable Parquet file"
        return
    if rows != expected.rows:
        yield f"{path}: {rows} rows, expected {expected.rows}"


@dataclass(frozen=True)
class Manifest:
    """What `manifest.json` records, checked to have the shape this version writes."""

    outputs: tuple[FileEvidence, ...]
    inputs: dict[str, tuple[FileEvidence, ...]]
    input_paths: dict[str, str]


def _evidence(entry: Any, is_input: bool) -> FileEvidence:
    size, digest, rows = entry["size"], entry["sha256"], entry.get("rows")
    if not (isinstance(size, int) and isinstance(digest, str)):
        raise ValueError(f"size and sha256 of {entry.get('path', '?')!r}")
    if is_input and not (isinstance(entry["path"], str) and isinstance(rows, int)):
        raise ValueError(f"path and rows of {entry.get('path', '?')!r}")
    same_as = entry.get("same_as")
    return FileEvidence(
        str(entry.get("path", "")), size, digest, rows if is_input else None, same_as
    )


def read_manifest(result: Path) -> Manifest:
    """The manifest of `result`; `VerificationError` naming it when it is missing, unreadable
    or not of the shape incident writes."""
    path = result / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        outputs = tuple(
            replace(_evidence(entry, False), path=str(name))
            for name, entry in document["outputs"].items()
        )
        inputs = {
            Input(name).value: tuple(_evidence(entry, True) for entry in files)
            for name, files in document["inputs"].items()
        }
        paths = {name: str(document["parameters"][name]) for name in inputs}
    except FileNotFoundError:
        raise VerificationError(f"{path}: missing, nothing to verify against") from None
    except OSError as error:
        raise VerificationError(f"{path}: unreadable ({error.strerror})") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError too; nesting too deep
        raise VerificationError(f"{path}: not a manifest incident wrote ({error})") from None
    except (KeyError, TypeError, AttributeError) as error:
        raise VerificationError(f"{path}: not a manifest incident wrote (at {error})") from None
    return Manifest(outputs, inputs, paths)


def verify(result: Path) -> list[str]:
    """Every difference between `result/manifest.json` and the inputs and outputs as they are
    now; empty when everything matches. `VerificationError` when the manifest itself cannot
    be used."""
    manifest = read_manifest(result)
    problems: list[str] = []
    for expected in manifest.outputs:
        problems.extend(_compare(expected, result / expected.path))
    present = {p.name for p in result.iterdir()} - {MANIFEST}
    recorded = {evidence.path for evidence in manifest.outputs}
    problems.extend(f"{result / n}: not in the manifest" for n in sorted(present - recorded))
    for input_name, files in manifest.inputs.items():
        for evidence in files:
            problems.extend(_compare(evidence, Path(evidence.path)))
        try:
            now = set(find_files(Input(input_name), manifest.input_paths[input_name]))
        except IncidentError:
            continue  # its files were reported missing above
        added = sorted(now - {evidence.path for evidence in files})
        problems.extend(f"{file}: a new {input_name} file, not in the manifest" for file in added)
    return problems
