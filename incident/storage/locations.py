"""Where data lives: a local path or an object-storage URL, and the options to reach it.

A URL is `s3://BUCKET/KEY`, `gs://BUCKET/KEY` or `az://CONTAINER/KEY`. Credentials come
from the usual environment variables and profiles, which polars (object_store) and pyarrow
(the cloud SDKs) both read; `--storage-option KEY=VALUE` adds to them. Its keys are
object_store's names, as polars' `storage_options` documents them; `STORAGE_OPTIONS` maps each
to pyarrow.fs's argument, so that what lists, hashes and writes reaches the same endpoint with
the same credentials as what reads. A key that cannot be given to both is refused rather
than half applied. Secret values (keys, tokens) never appear in a message or a manifest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from incident.errors import ConfigError


class Scheme(StrEnum):
    """The object stores polars' cloud support reads, by URL scheme."""

    S3 = "s3"
    GS = "gs"
    AZ = "az"


_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<path>.*)$", re.DOTALL)


def is_url(location: str | Path) -> bool:
    """True for `scheme://…`: a location in object storage, never a local path."""
    return isinstance(location, str) and _URL.match(location) is not None


def split_url(url: str) -> tuple[Scheme, str]:
    """The scheme and the `BUCKET/KEY` path of a URL; `ConfigError` for a scheme not read,
    a URL without a bucket, or credentials written into the URL."""
    match = _URL.match(url)
    schemes = ", ".join(f"{s.value}://" for s in Scheme)
    if match is None or match["scheme"].lower() not in set(Scheme):
        raise ConfigError(f"{url}: unsupported location; expected a local path or {schemes}")
    path = match["path"].rstrip("/")
    bucket = path.split("/", 1)[0]
    if not bucket:
        raise ConfigError(f"{url}: no bucket; expected {match['scheme']}://BUCKET/PATH")
    if "@" in bucket and ":" in bucket.split("@", 1)[0]:
        # user:secret@bucket would put a secret in every message naming the URL.
        raise ConfigError(
            f"{match['scheme']}://…@{bucket.split('@', 1)[1]}: credentials in a URL are not "
            "accepted; use the environment or --storage-option"
        )
    return Scheme(match["scheme"].lower()), path


def join(location: str | Path, name: str) -> str | Path:
    """`name` inside a directory or prefix."""
    return f"{str(location).rstrip('/')}/{name}" if is_url(location) else Path(location) / name


@dataclass(frozen=True)
class StorageOption:
    """One `--storage-option` key: its names (object_store's, the first canonical), pyarrow's
    argument for it (None when pyarrow has none and only polars needs it), how pyarrow takes
    its value, and whether the value is a secret."""

    names: tuple[str, ...]
    pyarrow: str | None
    secret: bool = False
    boolean: bool = False
    # An endpoint URL, which pyarrow's Azure filesystem takes as host:port and scheme apart.
    endpoint: bool = False

    @property
    def name(self) -> str:
        """The canonical name, as polars receives it."""
        return self.names[0]


STORAGE_OPTIONS: dict[Scheme, tuple[StorageOption, ...]] = {
    Scheme.S3: (
        StorageOption(("aws_access_key_id",), "access_key", secret=True),
        StorageOption(("aws_secret_access_key",), "secret_key", secret=True),
        StorageOption(("aws_session_token", "aws_token"), "session_token", secret=True),
        StorageOption(("aws_region", "aws_default_region"), "region"),
        StorageOption(("aws_endpoint_url", "aws_endpoint"), "endpoint_override"),
        # pyarrow follows the endpoint's scheme; object_store wants http allowed explicitly.
        StorageOption(("aws_allow_http",), None, boolean=True),
        StorageOption(
            ("aws_virtual_hosted_style_request",), "force_virtual_addressing", boolean=True
        ),
        StorageOption(("aws_skip_signature",), "anonymous", boolean=True),
    ),
    Scheme.AZ: (
        StorageOption(("azure_storage_account_name",), "account_name"),
        StorageOption(("azure_storage_account_key",), "account_key", secret=True),
        StorageOption(
            ("azure_storage_sas_key", "azure_storage_sas_token"), "sas_token", secret=True
        ),
        StorageOption(("azure_client_id", "azure_storage_client_id"), "client_id"),
        StorageOption(
            ("azure_client_secret", "azure_storage_client_secret"), "client_secret", secret=True
        ),
        StorageOption(("azure_tenant_id", "azure_storage_tenant_id"), "tenant_id"),
        # An emulator's or a sovereign cloud's blob endpoint, e.g. azurite's
        # http://127.0.0.1:10000/devstoreaccount1 (the account in the path is object_store's).
        StorageOption(
            ("azure_storage_endpoint", "azure_endpoint"), "blob_storage_authority", endpoint=True
        ),
        StorageOption(("azure_allow_http",), None, boolean=True),
    ),
    # Google credentials: GOOGLE_APPLICATION_CREDENTIALS, which both libraries read.
    Scheme.GS: (),
}
# Read by pyarrow from the environment where its SDK does not read it itself, as object_store
# does: the same variables reach the same store from both.
_ENVIRONMENT: dict[tuple[Scheme, str], tuple[str, ...]] = {
    (Scheme.S3, "endpoint_override"): ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    (Scheme.S3, "region"): ("AWS_REGION", "AWS_DEFAULT_REGION"),
    (Scheme.AZ, "account_name"): ("AZURE_STORAGE_ACCOUNT_NAME",),
    (Scheme.AZ, "account_key"): ("AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY"),
    (Scheme.AZ, "sas_token"): ("AZURE_STORAGE_SAS_KEY", "AZURE_STORAGE_SAS_TOKEN"),
}
# Environment variables whose values are secrets: kept out of every message.
SECRET_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
)
_BY_NAME = {
    name: (scheme, option)
    for scheme, options in STORAGE_OPTIONS.items()
    for option in options
    for name in option.names
}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
REDACTED = "***"


def _boolean(key: str, value: str) -> bool:
    if value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ConfigError(f"--storage-option {key}: expected true or false, got {value!r}")


def _azure_endpoint(url: str) -> dict[str, str]:
    """pyarrow's arguments for an Azure blob endpoint URL: its host:port and scheme, for the
    blob and the Data Lake (dfs) services alike (an emulator serves both on one port)."""
    scheme, _, rest = url.partition("://")
    authority = rest.split("/", 1)[0]
    if not _ or not authority or scheme.lower() not in ("http", "https"):
        raise ConfigError(
            f"--storage-option azure_storage_endpoint: expected http(s)://HOST[:PORT][/ACCOUNT], "
            f"got {url!r}"
        )
    return {
        "blob_storage_authority": authority,
        "blob_storage_scheme": scheme.lower(),
        "dfs_storage_authority": authority,
        "dfs_storage_scheme": scheme.lower(),
    }


@dataclass(frozen=True)
class StorageOptions:
    """The `--storage-option` values given, by canonical name."""

    values: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> StorageOptions:
        """Parse `KEY=VALUE` items; `ConfigError` naming a key that is not supported."""
        values: dict[str, str] = {}
        for spec in specs:
            key, equals, value = spec.partition("=")
            key = key.strip().lower()
            if not equals or key not in _BY_NAME:
                known = ", ".join(o.name for opts in STORAGE_OPTIONS.values() for o in opts)
                shown = key if equals else "(no '=')"
                raise ConfigError(
                    f"--storage-option {shown}: expected KEY=VALUE with KEY one of {known}"
                )
            option = _BY_NAME[key][1]
            if option.boolean:
                _boolean(key, value)
            if option.endpoint:
                _azure_endpoint(value)
            values[option.name] = value
        if ("aws_access_key_id" in values) != ("aws_secret_access_key" in values):
            raise ConfigError(
                "--storage-option: give aws_access_key_id and aws_secret_access_key together"
            )
        return cls(tuple(sorted(values.items())))

    def _given(self, scheme: Scheme) -> list[tuple[StorageOption, str]]:
        given = dict(self.values)
        return [(o, given[o.name]) for o in STORAGE_OPTIONS[scheme] if o.name in given]

    def for_polars(self, location: str) -> dict[str, str] | None:
        """polars' `storage_options` for reading `location`; None for a local path."""
        if not is_url(location):
            return None
        scheme, _ = split_url(location)
        options = {option.name: value for option, value in self._given(scheme)}
        for endpoint, allow in (
            ("aws_endpoint_url", "aws_allow_http"),
            ("azure_storage_endpoint", "azure_allow_http"),
        ):
            if options.get(endpoint, "").lower().startswith("http://"):
                # An http endpoint, named on purpose: pyarrow follows it, object_store must too.
                options.setdefault(allow, "true")
        return options

    def for_pyarrow(self, scheme: Scheme) -> dict[str, Any]:
        """pyarrow.fs's arguments for `scheme`: the options given, else the environment
        variables that object_store reads and pyarrow's SDK does not."""
        arguments: dict[str, Any] = {
            option.pyarrow: _boolean(option.name, value) if option.boolean else value
            for option, value in self._given(scheme)
            if option.pyarrow is not None and not option.endpoint
        }
        for option, value in self._given(scheme):
            if option.endpoint:
                arguments.update(_azure_endpoint(value))
        for (for_scheme, argument), variables in _ENVIRONMENT.items():
            found = next((os.environ[v] for v in variables if os.environ.get(v)), None)
            if for_scheme is scheme and argument not in arguments and found is not None:
                arguments[argument] = found
        return arguments

    def public(self) -> dict[str, str]:
        """The options that are not secrets, to record where a result's inputs were read."""
        return {name: value for name, value in self.values if not _BY_NAME[name][1].secret}

    def redact(self, text: str) -> str:
        """`text` with every secret value, given or in the environment, replaced by `***`."""
        secrets = [v for name, v in self.values if _BY_NAME[name][1].secret]
        secrets += [os.environ.get(variable, "") for variable in SECRET_VARIABLES]
        for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text


# No option given: the environment alone (and local paths, which need none).
NO_OPTIONS = StorageOptions()
