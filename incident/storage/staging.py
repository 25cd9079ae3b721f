"""The staging area a scan's tasks share: a local directory or a prefix in object storage.

Every read and write of the tasks' Parquet parts goes through `Staging`, so that a local
directory and a prefix in a store share the code. Object stores have no rename, so nothing
here renames: a part is one file, whole when it exists (a local one is written beside and
renamed, an object appears whole when its upload completes); a task's set of parts (a
partitioned sink) is written under a folder of its own attempt and is finished when a marker
object, written last, names that attempt. A task run twice (a retry, a lost worker's task run
again) leaves two attempts; a reader takes exactly one finished attempt, never a mix of two
or one still being written.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs

from incident.errors import ConfigError
from incident.storage import objects
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url, join

# The marker of a finished attempt: `ATTEMPT.finished`, beside the folder `ATTEMPT/`.
FINISHED = ".finished"
# The marker of a staging area in a store that is still in use: removed first, and a task
# writes nothing once it is gone (a local area has its directory for that).
OPEN = "_open"


@dataclass(frozen=True)
class Staging:
    """A place in a staging area: its `root` (a local directory or an object-storage URL),
    the options to reach it, and a `/`-separated name inside it ("" for the root)."""

    root: str
    storage: StorageOptions = NO_OPTIONS
    name: str = ""

    def __truediv__(self, name: str) -> Staging:
        return replace(self, name=f"{self.name}/{name}" if self.name else name)

    @property
    def location(self) -> str:
        """The path or URL of this place."""
        return str(join(self.root, self.name)) if self.name else self.root

    @property
    def in_store(self) -> bool:
        """True for a prefix in object storage."""
        return is_url(self.root)

    @property
    def options(self) -> dict[str, str] | None:
        """polars' `storage_options` for this place (None for a local directory)."""
        return self.storage.for_polars(self.root)

    def __str__(self) -> str:
        return self.location

    def create(self) -> None:
        """Make the staging area itself (this is its root): a directory, or the marker of a
        prefix in use; a `ConfigError` when it cannot be written."""
        try:
            if self.in_store:
                _put(self / OPEN, b"")
            else:
                Path(self.location).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            detail = objects.describe(error, self.storage)
            raise ConfigError(f"staging area {self.root}: cannot be written ({detail})") from None

    def folder(self) -> None:
        """Make this folder, in a parent that must exist: a task still running after its scan
        failed must not bring a removed staging area back."""
        if not self.in_store:
            Path(self.location).mkdir(exist_ok=True)

    def _check_open(self, written: Sequence[Staging] = ()) -> None:
        """Raise when the staging area was removed (a task still running after its scan
        failed), taking back `written` first. Checked before a write and after it: what was
        written before the area closed, its remover deletes; what was written after, the
        writer deletes here."""
        if self.in_store:
            is_open = objects.info(f"{self.root}/{OPEN}", self.storage).type == objects.FILE
        else:
            is_open = Path(self.root).is_dir()
        if not is_open:
            for place in written:
                place.remove()
            raise FileNotFoundError(f"{self.root}: the staging area was removed")

    def write(self, frame: pl.DataFrame) -> None:
        """`frame` as the Parquet part at this place, whole or not at all: a task that runs
        again replaces it whole."""
        self._check_open()
        if self.in_store:
            frame.write_parquet(self.location, storage_options=self.options)
            self._check_open(written=[self])
            return
        path = Path(self.location)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        frame.write_parquet(temporary)
        os.replace(temporary, path)

    def write_attempt(self, write: Callable[[Staging], None]) -> None:
        """A task's set of parts, written by `write` into a folder of this attempt's own
        under this one, then marked finished (`finished` reads one finished attempt)."""
        self.folder()
        self._check_open()
        attempt = uuid.uuid4().hex
        (self / attempt).folder()  # a partitioned sink of no rows makes no folder
        marker = self / f"{attempt}{FINISHED}"
        try:
            write(self / attempt)
            _put(marker, b"")
        finally:
            self._check_open(written=(marker, self / attempt))

    def files(self) -> list[str]:
        """The names of every file under this place, at any depth, relative to it, sorted."""
        if self.in_store:
            prefix = objects.resolve(self.location, self.storage)[1].rstrip("/") + "/"
            listed = objects.listing(self.location, self.storage)
            return [f.path[len(prefix) :] for f in listed if f.type == pafs.FileType.File]
        base = Path(self.location)
        if not base.is_dir():
            return []
        return sorted(
            (Path(folder, name).relative_to(base).as_posix())
            for folder, _, names in os.walk(base)
            for name in names
        )

    def finished(self) -> dict[str, list[Staging]]:
        """For each task's folder directly under this one, the files of one finished attempt
        (the first by name, when a task finished twice); a task without one is absent."""
        by_task: dict[str, list[str]] = {}
        for name in self.files():
            task, _, rest = name.partition("/")
            by_task.setdefault(task, []).append(rest)
        chosen: dict[str, list[Staging]] = {}
        for task, names in sorted(by_task.items()):
            markers = [n for n in names if n.endswith(FINISHED) and "/" not in n]
            attempts = sorted(n.removesuffix(FINISHED) for n in markers)
            if attempts:
                first = f"{attempts[0]}/"
                chosen[task] = [self / task / n for n in names if n.startswith(first)]
        return chosen

    def scan(self, parts: Sequence[Staging]) -> pl.LazyFrame:
        """The Parquet parts `parts` (of this staging area), read lazily as one frame."""
        return pl.scan_parquet(
            [part.location for part in parts], glob=False, storage_options=self.options
        )

    def remove(self) -> None:
        """Remove this place and everything under it; nothing when it is already gone. A
        `ConfigError` when the store refuses: parts left behind are named, not ignored."""
        try:
            self._remove()
        except OSError as error:
            detail = objects.describe(error, self.storage)
            raise ConfigError(
                f"staging area {self.location}: cannot be removed ({detail})"
            ) from None

    @contextmanager
    def removed_after(self) -> Iterator[Staging]:
        """This place, removed when the block ends. A failure to remove it fails the block,
        unless the block is failing already: its error stands, the removal's added as a note
        (the first error is what to fix; the second names parts to delete by hand)."""
        try:
            yield self
        except BaseException as error:
            try:
                self.remove()
            except Exception as removal:  # whatever it is, the block's own error comes first
                error.add_note(str(removal))
            raise
        self.remove()

    def _remove(self) -> None:
        if not self.in_store:
            local = Path(self.location)
            if local.is_dir() and not local.is_symlink():
                shutil.rmtree(local, ignore_errors=True)
            else:
                local.unlink(missing_ok=True)
            return
        store, path = objects.resolve(self.location, self.storage)
        if store.get_file_info(path).type == objects.FILE:
            objects.remove(self.location, self.storage)
            return
        objects.remove(f"{self.location}/{OPEN}", self.storage)  # first: tasks stop writing
        store.delete_dir_contents(path, missing_dir_ok=True)
        try:
            store.delete_dir(path)
        except (FileNotFoundError, OSError):
            return  # a prefix with no object left is no longer there


def _put(place: Staging, data: bytes) -> None:
    """A small file at `place` (a marker), whole when it exists."""
    if place.in_store:
        store, path = objects.resolve(place.location, place.storage)
        with store.open_output_stream(path) as stream:
            stream.write(data)
        return
    Path(place.location).write_bytes(data)
