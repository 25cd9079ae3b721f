"""Where a scan's detection tasks write their parts (`incident.storage.staging.Staging`), and
the checks of `--staging`.

By default the parts go to a folder of the result's local staging directory, which the tasks
in this process or on a cluster on this machine reach. A remote cluster cannot reach it
unless it is on a filesystem the workers share; with `--out` in object storage the parts go
to a prefix of the scan's own beside `--out`'s instead. `--staging` names the place, local or
in a store, for any engine. Each scan works in a place of its own, removed after it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from incident.config import ScanConfig
from incident.engine import is_local
from incident.errors import ConfigError
from incident.storage import objects
from incident.storage.locations import is_url, join, split_url
from incident.storage.staging import Staging


def for_scan(config: ScanConfig, local: Path) -> Staging:
    """Where the detection tasks write their parts: a place of this scan's own inside
    `--staging`; else, for a remote cluster with `--out` in object storage, a prefix of its
    own beside `--out`'s; else `local` (which a remote cluster must reach as a shared path)."""
    unique = uuid.uuid4().hex
    if isinstance(config.staging, Path):
        # Absolute: a worker resolves a relative path from a working directory of its own.
        return Staging(str(config.staging.resolve() / f"scan-{unique}"), config.storage)
    if config.staging is not None:
        return Staging(str(join(config.staging, f"scan-{unique}")), config.storage)
    remote = config.cluster is not None and not is_local(config.cluster)
    if remote and isinstance(config.out, str):
        return Staging(f"{config.out.rstrip('/')}.staging-{unique}", config.storage)
    return Staging(str(local), config.storage)


def _inside(location: str, prefix: str) -> bool:
    """True when `location` is `prefix` or under it (URLs, compared by their text)."""
    prefix = prefix.rstrip("/")
    return location.rstrip("/") == prefix or location.startswith(prefix + "/")


def _static_part(source: str) -> str:
    """An input's location up to its first glob character: what a glob can match under."""
    cut = min((source.find(c) for c in "*?[" if c in source), default=len(source))
    return source[:cut].rsplit("/", 1)[0] if cut < len(source) else source


def check(config: ScanConfig) -> None:
    """`--staging` must lie apart from every input and from `--out` (an input would read a
    task's parts in a later scan; a result would publish them), and in a bucket that exists:
    a `ConfigError` naming what is in the way."""
    staging = config.staging
    if staging is None:
        return
    sources = [s for s in (config.deliveries, config.authorizations, config.apps) if s]
    if isinstance(staging, Path):
        for directory in (Path(_static_part(s)) for s in sources if not is_url(s)):
            if directory.is_dir() and staging.resolve().is_relative_to(directory.resolve()):
                raise ConfigError(f"--staging {staging}: is inside the input directory {directory}")
        out = config.out
        if isinstance(out, Path) and (
            staging.resolve().is_relative_to(out.resolve())
            or out.resolve().is_relative_to(staging.resolve())
        ):
            raise ConfigError(f"--staging {staging}: --out {out} must lie apart from it")
        return
    split_url(staging)  # a scheme that is read, a bucket
    for source in sources:
        if is_url(source) and _inside(staging, _static_part(source)):
            raise ConfigError(f"--staging {staging}: is inside the input prefix {source}")
    if isinstance(config.out, str) and (
        _inside(staging, config.out) or _inside(config.out, staging)
    ):
        raise ConfigError(f"--staging {staging}: --out {config.out} must lie apart from it")
    try:
        found = objects.bucket_exists(staging, config.storage)
    except OSError as error:
        detail = objects.describe(error, config.storage)
        raise ConfigError(f"--staging {staging}: cannot be reached ({detail})") from None
    if not found:
        raise ConfigError(f"--staging {staging}: no such bucket")
