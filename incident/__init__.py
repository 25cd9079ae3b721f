"""incident: exact impact analysis for data-exposure incidents.

`scan(config)` reads delivery logs and authorization records, finds every delivery that went
to an app not authorized to receive it, and writes per-user and per-developer impact reports.
The names below are imported when first used, so that `import incident` (and the start of
the command line) does not wait for polars.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from incident.version import __version__

if TYPE_CHECKING:
    from incident.api import ScanResult, scan
    from incident.config import ColumnMap, RejectLimit, ReportFormat, ScanConfig, Window
    from incident.errors import ExitCode, IncidentError
    from incident.summary import RowAccounting, Summary

_HOMES = {
    "scan": "incident.api",
    "ScanResult": "incident.api",
    "ColumnMap": "incident.config",
    "RejectLimit": "incident.config",
    "ReportFormat": "incident.config",
    "ScanConfig": "incident.config",
    "Window": "incident.config",
    "ExitCode": "incident.errors",
    "IncidentError": "incident.errors",
    "RowAccounting": "incident.summary",
    "Summary": "incident.summary",
}

__all__ = [
    "ColumnMap",
    "ExitCode",
    "IncidentError",
    "RejectLimit",
    "ReportFormat",
    "RowAccounting",
    "ScanConfig",
    "ScanResult",
    "Summary",
    "Window",
    "__version__",
    "scan",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'incident' has no attribute {name!r}")
