"""One base exception; each subclass carries the exit code that the CLI maps it to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the command line (DESIGN, "Exit codes")."""

    OK = 0
    INTERNAL_ERROR = 1
    USAGE_ERROR = 2
    FINDINGS = 3
    INPUT_ERROR = 4
    TOO_MANY_REJECTED = 5
    VERIFICATION_FAILED = 6


class IncidentError(Exception):
    """Base of every error the tool reports to its user; `exit_code` says how it exits."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR


class ConfigError(IncidentError):
    """Bad parameters: a malformed window, mapping or limit."""

    exit_code = ExitCode.USAGE_ERROR


class InputError(IncidentError):
    """An input that cannot be read: missing file, not Parquet, missing column, bad type."""

    exit_code = ExitCode.INPUT_ERROR


class TooManyRejectedError(IncidentError):
    """More rejected delivery rows than `--max-rejected` allows."""

    exit_code = ExitCode.TOO_MANY_REJECTED


class VerificationError(IncidentError):
    """A result no longer matches its manifest: an input or an output changed."""

    exit_code = ExitCode.VERIFICATION_FAILED
