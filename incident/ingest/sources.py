"""Finding the files to ingest, and reading each as numbered lines of bytes.

A source path is what `scan` accepts — a file, a directory (read recursively, hidden files and
markers skipped) or a glob — found by `incident.pipeline.files`, so that a later kind of path
(object storage) reaches ingest the same way. Each file is opened as a byte stream; gzip and
zstd are recognised by their first bytes and decompressed on the fly (pyarrow's
`CompressedInputStream`), whatever the file is called. The raw bytes are hashed (SHA-256) as
they are read, so that the manifest names exactly what was converted, in one pass.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import pyarrow as pa

from incident.errors import ConfigError, InputError
from incident.pipeline.files import NoFilesFound, distinct_files, find_files
from incident.schema import Input
from incident.storage import objects
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url


class SourceFormat(StrEnum):
    """How the lines of a source file are laid out."""

    JSONL = "jsonl"
    CSV = "csv"


# Names that tell a file's format, after any compression suffix.
_SUFFIXES = {
    ".jsonl": SourceFormat.JSONL,
    ".ndjson": SourceFormat.JSONL,
    ".json": SourceFormat.JSONL,
    ".csv": SourceFormat.CSV,
}
_COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd")
# First bytes of a gzip member and of a zstd frame.
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_CHUNK = 1 << 20
# A longer line is rejected and skipped, never held whole: memory stays bounded.
MAX_LINE_BYTES = 64 << 20


@dataclass(frozen=True)
class SourceFile:
    """One file to ingest, and the format its lines are read in."""

    path: str
    format: SourceFormat


def _format_of(path: str, given: SourceFormat | None) -> SourceFormat:
    if given is not None:
        return given
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    found = _SUFFIXES.get(os.path.splitext(name)[1])
    if found is None:
        raise ConfigError(
            f"{path}: cannot tell its format from the name; expected .jsonl, .ndjson, .json or "
            ".csv (optionally .gz or .zst), or give --format jsonl or --format csv"
        )
    return found


def find_sources(
    input_: Input,
    paths: tuple[str, ...],
    given: SourceFormat | None,
    storage: StorageOptions = NO_OPTIONS,
) -> tuple[tuple[SourceFile, ...], tuple[tuple[str, str], ...]]:
    """The files under `paths` (local, or URLs in object storage) in order, each with its
    format, and `(copy, original)` for each file with the same bytes as an earlier one (read
    once, as `scan` does)."""
    found: list[str] = []
    for path in paths:
        try:
            found += [f for f in find_files(input_, path, storage) if f not in found]
        except NoFilesFound:
            # The sources of ingest are not Parquet: the same finding, in its own words.
            raise InputError(f"{path}: no files found for {input_.value}") from None
    files, copies = distinct_files(tuple(found), storage=storage)
    return tuple(SourceFile(f, _format_of(f, given)) for f in files), copies


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _HashingReader(io.RawIOBase):
    """A file read through: every byte read is hashed and counted. `head`, the bytes already
    read from the stream to tell its compression, comes first."""

    def __init__(self, stream: _Readable, head: bytes) -> None:
        self._stream = stream
        self._head = head
        self.digest = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            data, self._head = self._head[: len(buffer)], self._head[len(buffer) :]
        else:
            data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        self.bytes_read += len(data)
        return len(data)

    def drain(self) -> None:
        """Hash what is left after the data ended (padding after a compressed stream)."""
        while self.readinto(memoryview(bytearray(_CHUNK))):
            pass


@dataclass
class Line:
    """One line of a source: its number (from 1), its bytes without the line break, and
    whether it was cut for being longer than `MAX_LINE_BYTES`."""

    number: int
    data: bytes
    too_long: bool = False


class SourceReader:
    """Numbered lines of one source file, decompressed as needed; `bytes_read` and `sha256`
    follow the raw file as it is consumed."""

    def __init__(
        self,
        path: str,
        progress: Callable[[int], None] | None = None,
        storage: StorageOptions = NO_OPTIONS,
    ) -> None:
        self.path = path
        self.compression: str | None = None
        self._progress = progress or (lambda _bytes: None)
        try:
            self._file = _open(path, storage)
            head = self._file.read(4)
        except OSError as error:
            local = not is_url(path) and error.strerror
            reason = error.strerror if local else objects.describe(error, storage)
            raise InputError(f"{path}: cannot be read ({reason})") from None
        self.compression = next((c for m, c in _MAGIC.items() if head.startswith(m)), None)
        self._raw = _HashingReader(self._file, head)

    @property
    def bytes_read(self) -> int:
        """Bytes of the file read so far."""
        return self._raw.bytes_read

    @property
    def sha256(self) -> str:
        """SHA-256 of the bytes read so far: of the whole file once `lines()` is exhausted."""
        return self._raw.digest.hexdigest()

    def close(self) -> None:
        """Release the file."""
        self._file.close()

    def _chunks(self) -> Iterator[bytes]:
        stream: pa.NativeFile = pa.PythonFile(self._raw, mode="r")
        if self.compression is not None:
            stream = pa.CompressedInputStream(stream, self.compression)
        try:
            while chunk := stream.read(_CHUNK):
                yield chunk
                self._progress(self.bytes_read)
            self._raw.drain()
        except OSError as error:
            what = f"damaged {self.compression} data" if self.compression else "read error"
            reason = re.sub(r"\s+", " ", str(error)).strip()[:200]
            raise InputError(
                f"{self.path}: cannot be read ({what} after {self.bytes_read:,} bytes: {reason}); "
                "expected a complete file"
            ) from None
        self._progress(self.bytes_read)

    def lines(self) -> Iterator[Line]:
        """Every line, numbered from 1; a final line without a line break is a line too. A
        line longer than `MAX_LINE_BYTES` is yielded empty with `too_long` set."""
        pending: list[bytes] = []
        pending_size, number, skipping = 0, 0, False
        for chunk in self._chunks():
            # Split at C speed: each piece but the last ends a line.
            *ended, rest = chunk.split(b"\n")
            for piece in ended:
                number += 1
                if skipping or pending_size + len(piece) > MAX_LINE_BYTES:
                    yield Line(number, b"", too_long=True)
                elif pending:
                    yield Line(number, _strip_cr(b"".join([*pending, piece])))
                else:
                    yield Line(number, _strip_cr(piece))
                pending, pending_size, skipping = [], 0, False
            if not skipping and rest:
                pending.append(rest)
                pending_size += len(rest)
            if pending_size > MAX_LINE_BYTES:
                pending, pending_size, skipping = [], 0, True
        if skipping or pending_size:
            yield Line(number + 1, _strip_cr(b"".join(pending)), too_long=skipping)


def _open(path: str, storage: StorageOptions) -> pa.NativeFile | io.BufferedReader:
    """A local file, or an object streamed from its store (read once, front to back)."""
    if not is_url(path):
        return open(path, "rb")
    store, key = objects.resolve(path, storage)
    return store.open_input_stream(key)


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def total_size(files: tuple[SourceFile, ...], storage: StorageOptions = NO_OPTIONS) -> int:
    """The bytes of all the files, for a progress bar."""
    return sum(objects.size(f.path, storage) for f in files)
