"""Finding an input's files, and opening each only once it is known to be sound.

An input path is a Parquet file, a directory (read recursively, symbolic links followed, a
directory reached twice read once) or a glob. Every file under it is read or named in an
error: a directory that cannot be listed, a broken link, anything that is not a regular file.
Hidden files and markers (`.x`, `_SUCCESS`) are not data.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
import stat
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from incident.errors import InputError
from incident.pipeline.integrity import Checked, check_parquet, check_stream
from incident.pipeline.thrift import ParquetDamage
from incident.schema import Input
from incident.storage import objects
from incident.storage.locations import NO_OPTIONS, StorageOptions, is_url

# What reading a damaged or unusual file can raise: polars' errors, I/O errors, and a panic
# of its Rust code, which derives from BaseException and so escapes `except Exception`.
READ_ERRORS: tuple[type[BaseException], ...] = (
    pl.exceptions.PolarsError,
    OSError,
    pl.exceptions.PanicException,
)


class NoFilesFound(InputError):
    """An input path that holds no file at all (nothing hidden or a marker aside)."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def find_files(input_: Input, path: str, storage: StorageOptions = NO_OPTIONS) -> tuple[str, ...]:
    """The Parquet files of an input path: a file, a directory tree, or a glob, in sorted order;
    in object storage (a URL), an object, every object under a prefix, or a glob.

    Symbolic links are followed. A directory that cannot be listed, a broken link or anything
    that is not a regular file is an `InputError` naming it: no file is skipped silently.
    """
    if is_url(path):
        return find_objects(input_, path, storage)
    kind = _kind(input_, path, missing_ok=True)
    if kind is None:
        if not glob.has_magic(path):
            raise InputError(f"{path}: {input_.value} input not found")
        files = [f for match in _glob(input_, path) for f in _files_at(input_, match)]
    else:
        files = _files_at(input_, path)
    if not files:
        raise NoFilesFound(f"{path}: no Parquet files found for {input_.value}")
    return tuple(sorted(set(files)))  # `**` matches a directory and those below it


def _kind(input_: Input, path: str, missing_ok: bool = False) -> str | None:
    """`dir` or `file` (symbolic links followed); None for a missing path when `missing_ok`."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if os.path.islink(path) and isinstance(error, FileNotFoundError | NotADirectoryError):
            raise InputError(
                f"{path}: broken symbolic link in the {input_.value} input; "
                "expected it to point to a file or directory"
            ) from None
        if missing_ok and isinstance(error, FileNotFoundError | NotADirectoryError):
            return None
        raise InputError(
            f"{path}: cannot open {input_.value} input ({error.strerror or error}); "
            "expected a readable file or directory"
        ) from None
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    raise InputError(
        f"{path}: not a regular file or directory in the {input_.value} input; "
        "expected Parquet files"
    )


def _hidden(name: str) -> bool:
    # Hidden files and markers such as _SUCCESS or _metadata are not data.
    return name.startswith((".", "_"))


def _listing(input_: Input, directory: str) -> list[str]:
    """The names in `directory`, sorted; a directory that cannot be listed is an input error."""
    try:
        with os.scandir(directory) as entries:
            return sorted(entry.name for entry in entries)
    except OSError as error:
        raise InputError(
            f"{directory}: cannot list {input_.value} directory ({error.strerror or error}); "
            "expected a readable directory"
        ) from None


def _files_at(input_: Input, path: str) -> list[str]:
    """The file `path`, or every non-hidden file under the directory `path`."""
    return [path] if _kind(input_, path) == "file" else _tree(input_, path)[1]


def _glob(input_: Input, pattern: str) -> list[str]:
    """The paths matching `pattern` (`*`, `?`, `[…]` within a name; `**` for any depth), as
    `glob(recursive=True)` finds them, except that a directory it cannot list is an input
    error rather than no match. A wildcard does not match hidden names (`.x`, `_SUCCESS`)."""
    absolute = pattern.startswith(os.sep)
    paths = [os.sep if absolute else ""]
    for part in pattern.split(os.sep)[1 if absolute else 0 :]:
        if part == "**":
            paths = [found for path in paths for found in _tree(input_, path)[0]]
        elif glob.has_magic(part):
            paths = [
                os.path.join(path, name)
                for path in paths
                if _kind(input_, path or ".", missing_ok=True) == "dir"
                for name in _listing(input_, path or ".")
                if fnmatch.fnmatchcase(name, part) and (not _hidden(name) or _hidden(part))
            ]
        else:
            paths = [os.path.join(path, part) for path in paths]
    return [path for path in paths if os.path.lexists(path)]


def _tree(input_: Input, top: str) -> tuple[list[str], list[str]]:
    """The non-hidden directories (with `top`) and files under the directory `top` ("" is
    the current one), links followed; none when `top` is not a directory. A directory
    already visited (a link back up the tree, or a second link to it) is not entered again,
    so that no file is read twice."""
    if _kind(input_, top or ".", missing_ok=True) != "dir":
        return [], []
    directories: list[str] = []
    files: list[str] = []
    visited: set[tuple[int, int]] = set()
    pending = [top]
    while pending:
        directory = pending.pop()
        status = os.stat(directory or ".")
        if (status.st_dev, status.st_ino) in visited:
            continue
        visited.add((status.st_dev, status.st_ino))
        directories.append(directory)
        for name in _listing(input_, directory or "."):
            child = os.path.join(directory, name)
            if not _hidden(name):
                (pending if _kind(input_, child) == "dir" else files).append(child)
    return directories, files


def read_schema(
    path: str, storage: StorageOptions = NO_OPTIONS, blank_checked: frozenset[str] = frozenset()
) -> tuple[pa.Schema, Checked]:
    """The Arrow schema of a Parquet file (or object), its rows and what its statistics (and
    the dictionaries of the text columns in `blank_checked`) prove, once its structure is
    checked; `InputError` naming it when it is damaged or not Parquet."""
    try:
        # Checked first: polars and pyarrow trust a file's counts, and abort on some damage.
        if is_url(path):
            with objects.open_input(path, storage) as stream:
                checked = check_stream(stream, blank_checked)
                metadata = pq.read_metadata(stream)
        else:
            checked = check_parquet(path, blank_checked)
            metadata = pq.read_metadata(path)
        schema = metadata.schema.to_arrow_schema().remove_metadata()
    except ParquetDamage as error:
        raise InputError(f"{path}: not a readable Parquet file (damaged: {error})") from None
    # pyarrow raises more than its own errors on a damaged footer (a column name that is not
    # UTF-8 is a UnicodeDecodeError): each is about the file.
    except (OSError, ValueError, LookupError, ArithmeticError, pa.ArrowException) as error:
        detail = storage.redact(first_line(error))
        raise InputError(f"{path}: not a readable Parquet file ({detail})") from None
    return schema, checked


_CHUNK = 1 << 20


def sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks (hashlib releases the GIL: it overlaps the scan)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _partition_values(path: str, partitions: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The `name=value` directories of `path` whose name is a column read from the path."""
    found = re.finditer(r"[/\\]([^/\\=]+)=([^/\\]*)(?=[/\\])", path)
    return tuple((m.group(1), m.group(2)) for m in found if m.group(1) in partitions)


def distinct_files(
    files: tuple[str, ...],
    partitions: frozenset[str] = frozenset(),
    storage: StorageOptions = NO_OPTIONS,
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The files with distinct contents, and `(copy, original)` for each file whose bytes
    are those of an earlier one (a log copied twice, two links to one file): a copy is read
    once. Files under different values of a partition column that is read (`partitions`,
    e.g. `app_id=A/` and `app_id=B/`) hold different rows even with the same bytes: they are
    never copies. Only files of the same size are hashed, so that a scan does not read every
    file twice to find copies, which are rare."""
    by_size: dict[tuple[int, tuple[tuple[str, str], ...]], list[str]] = {}
    for file in files:
        key = (_size(file, storage), _partition_values(file, partitions))
        by_size.setdefault(key, []).append(file)
    originals: dict[str, str] = {}
    for same_size in (group for group in by_size.values() if len(group) > 1):
        first: dict[str, str] = {}
        for file in same_size:
            digest = _sha256(file, storage)
            if digest in first:
                originals[file] = first[digest]
            else:
                first[digest] = file
    kept = tuple(file for file in files if file not in originals)
    return kept, tuple((file, originals[file]) for file in files if file in originals)


def _size(file: str, storage: StorageOptions) -> int:
    try:
        return objects.size(file, storage)
    except OSError as error:
        raise InputError(f"{file}: cannot read ({objects.describe(error, storage)})") from None


def _sha256(file: str, storage: StorageOptions) -> str:
    try:
        return objects.sha256(file, storage)
    except OSError as error:
        raise InputError(f"{file}: cannot read ({objects.describe(error, storage)})") from None


def find_objects(input_: Input, url: str, storage: StorageOptions) -> tuple[str, ...]:
    """The Parquet objects of an input URL: one object, every object under a prefix (at any
    depth), or those a glob matches, with the rules of local paths: hidden names and markers
    are not data, a wildcard does not match them, and everything else is read or named."""
    try:
        if glob.has_magic(url):
            files = _glob_objects(input_, url, storage)
        else:
            found = objects.info(url, storage)
            if found.type == pafs.FileType.File:
                files = [objects.url_of(url, found.path)]
            elif found.type == pafs.FileType.Directory:
                files = _objects_under(objects.listing(url, storage), found.path, url)
            else:
                files = []
        if not files and not objects.bucket_exists(url, storage):
            raise InputError(f"{url}: no such bucket for the {input_.value} input")
    except OSError as error:
        raise InputError(
            f"{url}: cannot list the {input_.value} input ({objects.describe(error, storage)}); "
            "expected a readable bucket and prefix"
        ) from None
    if not files:
        raise NoFilesFound(f"{url}: no Parquet files found for {input_.value}")
    return tuple(sorted(set(files)))


def _objects_under(listed: list[pafs.FileInfo], prefix: str, url: str) -> list[str]:
    """The objects of `listed` under `prefix` whose names below it are none hidden."""
    start = len(prefix.rstrip("/")) + 1
    return [
        objects.url_of(url, found.path)
        for found in listed
        if found.type == pafs.FileType.File
        and found.path.startswith(prefix.rstrip("/") + "/")
        and not any(_hidden(name) for name in found.path[start:].split("/"))
    ]


def _glob_objects(input_: Input, url: str, storage: StorageOptions) -> list[str]:
    """The objects a glob URL matches, as `_glob` matches files: the prefix before the first
    wildcard is listed once, and each object's path matched part by part below it."""
    parts = url.split("://", 1)[1].rstrip("/").split("/")
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    if fixed == 0:
        raise InputError(
            f"{url}: a wildcard in the bucket name of the {input_.value} input; expected one bucket"
        )
    prefix, pattern = "/".join(parts[:fixed]), parts[fixed:]
    listed = objects.listing(objects.url_of(url, prefix), storage)
    files = _objects_under(listed, prefix, url) if _matches([], pattern) else []
    for found in listed:
        relative = found.path[len(prefix) + 1 :].split("/")
        if not _matches(relative, pattern):
            continue
        if found.type == pafs.FileType.File:
            files.append(objects.url_of(url, found.path))
        else:
            files += _objects_under(listed, found.path, url)
    return files


def _matches(names: list[str], pattern: list[str]) -> bool:
    """True when the path `names` matches the glob `pattern`, part by part (`**`: any number
    of non-hidden directories; a wildcard matches no hidden name unless it is hidden itself)."""
    if not pattern:
        return not names
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        deeper = bool(names) and not _hidden(names[0]) and _matches(names[1:], pattern)
        return _matches(names, rest) or deeper
    if not names:
        return False
    name = names[0]
    if glob.has_magic(head):
        matched = fnmatch.fnmatchcase(name, head) and (not _hidden(name) or _hidden(head))
    else:
        matched = name == head
    return matched and _matches(names[1:], rest)
