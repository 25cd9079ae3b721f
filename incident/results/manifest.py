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
from incident.errors import IncidentError, InputError, VerificationError
from incident.pipeline.files import find_files, sha256
from incident.pipeline.load import InputSource
from incident.results.read import MANIFEST
from incident.schema import Input
from incident.storage import objects
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url
from incident.version import __version__


@dataclass(frozen=True)
class FileEvidence:
    """One file as it was: where, how large, its SHA-256, and its Parquet rows for an input."""

    path: str
    size: int
    sha256: str
    rows: int | None = None
    same_as: str | None = None  # an input file not read: a copy of this one


def _input_evidence(
    path: str, rows: int, storage: StorageOptions, same_as: str | None = None
) -> FileEvidence:
    try:
        size, digest = objects.size(path, storage), objects.sha256(path, storage)
    except OSError as error:
        raise InputError(f"{path}: cannot read ({objects.describe(error, storage)})") from None
    return FileEvidence(path, size, digest, rows, same_as)


def hash_inputs(
    sources: Iterable[InputSource],
    pool: ThreadPoolExecutor,
    storage: StorageOptions = NO_OPTIONS,
) -> dict[Input, list[Future[FileEvidence]]]:
    """Start hashing every input file in `pool`, to run while the scan reads them; the files
    and their rows are those the inputs were loaded from, and a copy that was not read is
    recorded with the file it is a copy of (`same_as`). Objects are reached with `storage`."""
    hashed: dict[Input, list[Future[FileEvidence]]] = {}
    for source in sources:
        rows = dict(zip(source.files, source.file_rows, strict=True))
        hashed[source.input] = [
            pool.submit(_input_evidence, f, n, storage) for f, n in rows.items()
        ]
        hashed[source.input] += [
            pool.submit(_input_evidence, copy, rows[original], storage, original)
            for copy, original in source.copies
        ]
    return hashed


def _parameters(config: ScanConfig) -> dict[str, Any]:
    # Where object storage was reached, never with what credentials; absent for local inputs.
    storage = {"storage_options": config.storage.public()} if config.storage.public() else {}
    return {
        "deliveries": config.deliveries,
        "authorizations": config.authorizations,
        "apps": config.apps,
        "since": format_instant(config.window.since),
        "until": format_instant(config.window.until),
        "columns": {i.value: dict(m) for i, m in sorted(config.columns.renames.items())},
        "max_rejected": str(config.max_rejected),
        "formats": [f.value for f in config.formats],
        **storage,
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


def _compare(expected: FileEvidence, location: str, storage: StorageOptions) -> Iterable[str]:
    """How the file or object at `location` differs from what the manifest recorded."""
    try:
        if not (is_url(location) or Path(location).is_file()):
            raise FileNotFoundError(location)
        size = objects.size(location, storage)
        digest = objects.sha256(location, storage)
    except FileNotFoundError:
        yield f"{location}: missing"
        return
    except OSError as error:
        yield f"{location}: unreadable ({objects.describe(error, storage)})"
        return
    if size != expected.size:
        yield f"{location}: size {size}, expected {expected.size}"
    if digest != expected.sha256:
        yield f"{location}: sha256 {digest}, expected {expected.sha256}"
    if expected.rows is None or digest == expected.sha256:
        return  # not an input, or the same bytes and so the same rows
    try:
        with objects.open_input(location, storage) as stream:
            rows = pq.read_metadata(stream).num_rows
    except (OSError, pa.ArrowException):
        yield f"{location}: no longer a readable Parquet file"
        return
    if rows != expected.rows:
        yield f"{location}: {rows} rows, expected {expected.rows}"


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


def verify_outputs(result: Path, manifest: Manifest) -> list[str]:
    """Every difference between the outputs `manifest` records and the files in `result`:
    a file changed or missing, or one the manifest does not name."""
    problems: list[str] = []
    for expected in manifest.outputs:
        problems.extend(_compare(expected, str(result / expected.path), NO_OPTIONS))
    present = {p.name for p in result.iterdir()} - {MANIFEST}
    recorded = {evidence.path for evidence in manifest.outputs}
    problems.extend(f"{result / n}: not in the manifest" for n in sorted(present - recorded))
    return problems


def verify(result: Path, storage: StorageOptions = NO_OPTIONS) -> list[str]:
    """Every difference between `result/manifest.json` and the inputs (files or objects,
    reached with `storage`) and outputs as they are now; empty when everything matches.
    `VerificationError` when the manifest itself cannot be used."""
    manifest = read_manifest(result)
    problems = verify_outputs(result, manifest)
    for input_name, files in manifest.inputs.items():
        for evidence in files:
            problems.extend(_compare(evidence, evidence.path, storage))
        try:
            path = manifest.input_paths[input_name]
            now = set(find_files(Input(input_name), path, storage))
        except IncidentError:
            continue  # its files were reported missing above
        added = sorted(now - {evidence.path for evidence in files})
        problems.extend(f"{file}: a new {input_name} file, not in the manifest" for file in added)
    return problems
