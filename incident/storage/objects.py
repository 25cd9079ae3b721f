"""Objects in a store, through pyarrow.fs: listing, size, SHA-256, reading, writing, removing.

Local paths go through the same functions (`size`, `sha256`, `open_input`), so that the
callers, which find, hash and check input files, need not tell the two apart. Every failure
is an `OSError` as pyarrow raises it; `describe` turns one into a line fit for a message (the
first line, secrets replaced), which the caller frames as the input or destination error it is.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import BinaryIO, cast

import pyarrow.fs as pafs

from incident.storage.locations import Scheme, StorageOptions, is_url, split_url

_CHUNK = 1 << 20
# Connection failures should be named in seconds, not after minutes of retries.
_CONNECT_TIMEOUT = 10.0
_REQUEST_TIMEOUT = 60.0


# The environment variables the cloud SDKs read: a filesystem made under others is not reused.
_SDK_VARIABLES = ("AWS_", "AZURE_", "GOOGLE_")


def filesystem(scheme: Scheme, options: StorageOptions) -> pafs.FileSystem:
    """The pyarrow filesystem for `scheme`, configured by `options` and the environment."""
    environment = tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith(_SDK_VARIABLES))
    )
    return _filesystem(scheme, options, environment)


@cache
def _filesystem(
    scheme: Scheme, options: StorageOptions, _environment: tuple[tuple[str, str], ...]
) -> pafs.FileSystem:
    try:
        return _configured(scheme, options)
    except (ValueError, TypeError) as error:  # arguments pyarrow refuses: not a bug of ours
        raise OSError(str(error)) from None


def _configured(scheme: Scheme, options: StorageOptions) -> pafs.FileSystem:
    arguments = options.for_pyarrow(scheme)
    if scheme is Scheme.S3:
        arguments.setdefault("connect_timeout", _CONNECT_TIMEOUT)
        arguments.setdefault("request_timeout", _REQUEST_TIMEOUT)
        arguments.setdefault("retry_strategy", pafs.AwsStandardS3RetryStrategy(max_attempts=3))
        return pafs.S3FileSystem(**arguments)
    if scheme is Scheme.GS:
        return pafs.GcsFileSystem(**arguments)
    if "account_name" not in arguments:
        raise OSError(
            "no Azure storage account: set AZURE_STORAGE_ACCOUNT_NAME or "
            "--storage-option azure_storage_account_name=NAME"
        )
    return pafs.AzureFileSystem(**arguments)


def resolve(url: str, options: StorageOptions) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a URL and the object's path in it (`BUCKET/KEY`)."""
    scheme, path = split_url(url)
    return filesystem(scheme, options), path


def url_of(scheme_of: str, path: str) -> str:
    """The URL of `path` (`BUCKET/KEY`) in the store of the URL `scheme_of`."""
    scheme, _ = split_url(scheme_of)
    return f"{scheme.value}://{path}"


def describe(error: BaseException, options: StorageOptions) -> str:
    """One line for a message: the error's first line, without any secret."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return options.redact(text)


def info(url: str, options: StorageOptions) -> pafs.FileInfo:
    """What the store holds at `url`: a file, a directory (a prefix of objects), or nothing."""
    store, path = resolve(url, options)
    return store.get_file_info(path)


def bucket_exists(url: str, options: StorageOptions) -> bool:
    """True when the bucket (or container) of `url` exists, as far as the store says."""
    store, path = resolve(url, options)
    return bool(store.get_file_info(path.split("/", 1)[0]).type != pafs.FileType.NotFound)


def listing(url: str, options: StorageOptions) -> list[pafs.FileInfo]:
    """Everything under the prefix `url`, at any depth; empty when there is nothing."""
    store, path = resolve(url, options)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return sorted(store.get_file_info(selector), key=lambda found: str(found.path))


def size(location: str, options: StorageOptions) -> int:
    """The size in bytes of a local file or an object."""
    if not is_url(location):
        return os.stat(location).st_size
    found = info(location, options)
    if found.type != pafs.FileType.File:
        raise FileNotFoundError(f"{location}: no such object")
    return int(found.size)


# An object up to this size is read with one request when it is to be read in many places.
WHOLE_OBJECT = 64 << 20


@contextmanager
def open_input(location: str, options: StorageOptions) -> Iterator[BinaryIO]:
    """A local file or an object, open for reading at any offset (`seek`, `read`). An object
    of at most `WHOLE_OBJECT` bytes is read whole at once: each read of a store is a request,
    and checking a file's structure reads it in many places."""
    if not is_url(location):
        with open(location, "rb", buffering=0) as stream:
            yield stream
        return
    store, path = resolve(location, options)
    with store.open_input_file(path) as stream:
        if stream.size() <= WHOLE_OBJECT:
            yield io.BytesIO(stream.read())
        else:
            yield cast(BinaryIO, stream)


def sha256(location: str, options: StorageOptions) -> str:
    """The SHA-256 of a local file or an object, read in chunks (hashlib releases the GIL)."""
    digest = hashlib.sha256()
    if is_url(location):
        store, path = resolve(location, options)
        opened = store.open_input_stream(path)
    else:
        opened = open(location, "rb")  # noqa: SIM115 (closed below, both kinds alike)
    with opened as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def upload(source: Path, url: str, options: StorageOptions) -> None:
    """Copy the local file `source` to the object `url` (a new object appears whole or not
    at all: a store makes an upload visible only when it is complete)."""
    store, path = resolve(url, options)
    with source.open("rb") as local, store.open_output_stream(path) as remote:
        while chunk := local.read(_CHUNK):
            remote.write(chunk)


def download(url: str, target: Path, options: StorageOptions) -> None:
    """Copy the object `url` to the local file `target`."""
    store, path = resolve(url, options)
    with store.open_input_stream(path) as remote, target.open("wb") as local:
        while chunk := remote.read(_CHUNK):
            local.write(chunk)


def remove(url: str, options: StorageOptions) -> None:
    """Remove the object `url`; nothing when it is already gone."""
    store, path = resolve(url, options)
    try:
        store.delete_file(path)
    except FileNotFoundError:
        return


FILE = pafs.FileType.File
