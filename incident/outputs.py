"""Publishing outputs: destination checks, and atomic publication of directories and files.

Everything is written to a hidden staging path beside its destination and renamed into place
at the end, so that a failure or an interruption never leaves a partial output, and an
earlier output stays untouched until the new one is whole. Every command that writes (scan,
export, report, notify) goes through here. A destination that cannot be used is a usage
error (`ConfigError`, exit 2) naming the option and the path.

Object stores have no rename. A result published to a prefix (`staged_prefix`) is staged in
a local directory and uploaded when whole, its manifest last and the earlier manifest removed
first: a reader that requires the manifest (every one does) never takes a partial or
half-replaced output for a whole one, and an interrupted upload leaves no manifest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from incident.errors import ConfigError
from incident.storage import objects
from incident.storage.locations import StorageOptions, join, split_url


@cache
def _umask() -> int:
    # The umask can only be read by setting it: read once, set back at once.
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _cannot_write(option: str, path: Path, error: OSError) -> ConfigError:
    reason = error.strerror or str(error) or type(error).__name__
    return ConfigError(f"{option} {path}: cannot be written ({reason})")


def check_directory(
    path: Path, option: str, replaceable: Callable[[Path], bool] | None = None
) -> None:
    """A directory to write a new output to: not the working directory or a root, not a
    file, and empty (or, with `replaceable`, holding what it accepts)."""
    target = path.resolve()
    if target in (Path.cwd(), Path(target.anchor)):
        raise ConfigError(f"{option} {path}: name a directory of its own for the output")
    # The path as given: a link such as /dev/stdout may resolve to no name at all.
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a directory")
    try:
        occupied = path.is_dir() and any(path.iterdir())
    except OSError as error:
        raise _cannot_write(option, path, error) from None
    if occupied and replaceable is None:
        raise ConfigError(
            f"{option} {path}: directory is not empty; choose a new or empty directory"
        )
    if occupied and replaceable is not None and not replaceable(path):
        raise ConfigError(
            f"{option} {path}: directory is not empty and holds no incident result; "
            "choose a new directory"
        )


def check_outside(
    path: Path, option: str, directory: Path, what: str, hint: str = "choose a path outside"
) -> None:
    """`path` must not lie inside `directory` (a result, an input, an export)."""
    if path.resolve().is_relative_to(directory.resolve()):
        raise ConfigError(f"{option} {path}: is inside {what} {directory}; {hint}")


def check_new_file(path: Path, option: str, why: str = "") -> None:
    """A file that must not exist yet (`why`: what it may be the only copy of)."""
    if path.exists() or path.is_symlink():
        reason = f" ({why})" if why else ""
        raise ConfigError(
            f"{option} {path}: exists; move it away or choose another {option}{reason}"
        )


def _make_parent(path: Path, option: str, shown: Path) -> None:
    """Create the missing directories above `path`; a file in the way is named."""
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{option} {shown}: {blocking} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(option, shown, error) from None


@contextmanager
def staged_directory(destination: Path, option: str) -> Iterator[Path]:
    """A new, empty staging directory beside `destination`; when the block ends without an
    error, it replaces `destination` (and whatever was there) at once. Otherwise it is
    removed, and `destination` is untouched."""
    target = destination.resolve()
    _make_parent(target, option, destination)
    try:
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        )
    except OSError as error:
        raise _cannot_write(option, destination, error) from None
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; outputs are to share
        yield staging
        _replace_directory(staging, target, option, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_directory(staging: Path, target: Path, option: str, shown: Path) -> None:
    try:
        if not target.exists():
            os.replace(staging, target)
            return
        retired = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
        )
        earlier = retired / target.name
        try:
            os.replace(target, earlier)
            os.replace(staging, target)
        except BaseException:
            # Interrupted or failed between the two renames: the earlier output goes back.
            if earlier.exists() and not target.exists():
                os.replace(earlier, target)
            raise
        finally:
            shutil.rmtree(retired, ignore_errors=True)
    except OSError as error:
        raise _cannot_write(option, shown, error) from None


@contextmanager
def staged_file(destination: Path, option: str, private: bool = False) -> Iterator[Path]:
    """A staging file beside `destination`, renamed onto it when the block ends without an
    error and removed otherwise. `private`: readable by its owner only."""
    _make_parent(destination, option, destination)
    try:
        descriptor, name = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
        )  # mkstemp creates it with mode 0600
        os.close(descriptor)
    except OSError as error:
        raise _cannot_write(option, destination, error) from None
    staging = Path(name)
    try:
        yield staging
        if not private:
            staging.chmod(0o666 & ~_umask())
        os.replace(staging, destination)
    except OSError as error:
        raise _cannot_write(option, destination, error) from None
    finally:
        staging.unlink(missing_ok=True)


def _cannot_publish(option: str, url: str, error: OSError, storage: StorageOptions) -> ConfigError:
    return ConfigError(f"{option} {url}: cannot be written ({objects.describe(error, storage)})")


def check_prefix(
    url: str,
    option: str,
    storage: StorageOptions,
    replaceable: Callable[[list[str]], bool],
) -> None:
    """A prefix in object storage to publish a new output to: below a bucket that exists,
    and empty, or holding only objects directly under it whose names `replaceable` accepts."""
    _, path = split_url(url)
    if "/" not in path:
        raise ConfigError(f"{option} {url}: name a prefix of its own below the bucket")
    try:
        if not objects.bucket_exists(url, storage):
            raise ConfigError(f"{option} {url}: no such bucket")
        listed = [found.path[len(path) + 1 :] for found in objects.listing(url, storage)]
    except OSError as error:
        raise _cannot_publish(option, url, error, storage) from None
    if listed and ("/" in "".join(listed) or not replaceable(listed)):
        raise ConfigError(
            f"{option} {url}: prefix is not empty and holds no incident result; choose a new prefix"
        )


@contextmanager
def staged_prefix(url: str, option: str, storage: StorageOptions, last: str) -> Iterator[Path]:
    """A new local staging directory; when the block ends without an error, its files are
    published under the prefix `url`: the earlier `last` (the manifest) removed first, every
    other file uploaded, objects of an earlier output that the new one lacks removed, and
    `last` uploaded at the end. Otherwise nothing is uploaded."""
    try:
        staging = Path(tempfile.mkdtemp(prefix="incident-", suffix=".partial"))
    except OSError as error:
        raise _cannot_write(option, Path(tempfile.gettempdir()), error) from None
    try:
        yield staging
        _publish(staging, url, option, storage, last)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, url: str, option: str, storage: StorageOptions, last: str) -> None:
    names = sorted(path.name for path in staging.iterdir())
    try:
        _, prefix = split_url(url)
        earlier = {found.path[len(prefix) + 1 :] for found in objects.listing(url, storage)}
        objects.remove(str(join(url, last)), storage)
        for name in names:
            if name != last:
                objects.upload(staging / name, str(join(url, name)), storage)
        for name in sorted(earlier - set(names)):
            objects.remove(str(join(url, name)), storage)
        if last in names:
            objects.upload(staging / last, str(join(url, last)), storage)
    except OSError as error:
        raise _cannot_publish(option, url, error, storage) from None
