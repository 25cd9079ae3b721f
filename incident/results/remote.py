"""A result in object storage, read back: downloaded whole, then checked against its manifest.

Results are small beside their inputs, so a reader (`verify`, `export`, `report`, `notify`,
`diff`) downloads the prefix into a temporary directory and reads that. Object stores have
no rename, so a result is published file by file, its manifest last (`incident.outputs`): a
prefix without `manifest.json` is an unfinished or interrupted publication, and one whose
files do not match their manifest is being replaced or was changed. Either is refused (exit 6)
before anything is read from it. Messages name the URL, never the temporary copy.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from incident.errors import IncidentError, InputError, VerificationError
from incident.results.manifest import read_manifest, verify_outputs
from incident.results.read import MANIFEST
from incident.storage import objects
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url, split_url


@contextmanager
def local_result(
    location: str | Path, storage: StorageOptions = NO_OPTIONS, whole: bool = True
) -> Iterator[Path]:
    """The result at `location` as a local directory: a local one as it is; one in object
    storage downloaded into a temporary directory, removed afterwards. With `whole`, a
    downloaded result must have a manifest that its files match (`VerificationError`
    otherwise); `verify` asks for it without, to name each mismatch itself. An error raised
    in the block names `location` instead of the temporary copy."""
    if not is_url(location):
        yield Path(location)
        return
    url = str(location).rstrip("/")
    copy = Path(tempfile.mkdtemp(prefix="incident-result-"))
    try:
        _download(url, copy, storage)
        if whole:
            _check_whole(copy)
        yield copy
    except IncidentError as error:
        raise type(error)(str(error).replace(str(copy), url)) from None
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _download(url: str, copy: Path, storage: StorageOptions) -> None:
    """Every object under the prefix `url` into `copy`; `InputError` naming the URL when it
    cannot be listed or read, or holds nothing."""
    try:
        _, prefix = split_url(url)
        found = [f for f in objects.listing(url, storage) if f.type == objects.FILE]
        if not found:
            why = "no such bucket" if not objects.bucket_exists(url, storage) else "nothing there"
            raise InputError(f"{url}: not an incident result ({why})")
        for item in found:
            target = copy / item.path[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            objects.download(objects.url_of(url, item.path), target, storage)
    except OSError as error:
        raise InputError(
            f"{url}: cannot read the result ({objects.describe(error, storage)})"
        ) from None


def _check_whole(copy: Path) -> None:
    """Refuse a downloaded result without its manifest, or with files that do not match it."""
    if not (copy / MANIFEST).is_file():
        raise VerificationError(
            f"{copy / MANIFEST}: missing; an unfinished or interrupted publication, "
            "not a result to read"
        )
    problems = verify_outputs(copy, read_manifest(copy))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VerificationError(
            f"{problems[0]}{more}; the result does not match its manifest, not read"
        )
