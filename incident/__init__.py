"""incident: exact impact analysis for data-exposure incidents.

`scan(config)` reads delivery logs and authorization records, finds every delivery that went
to an app not authorized to receive it, and writes per-user and per-developer impact reports.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("incident")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from incident.api import RowAccounting, ScanResult, scan
from incident.config import ColumnMap, RejectLimit, ReportFormat, ScanConfig, Window
from incident.errors import ExitCode, IncidentError

__all__ = [
    "ColumnMap",
    "ExitCode",
    "IncidentError",
    "RejectLimit",
    "ReportFormat",
    "RowAccounting",
    "ScanConfig",
    "ScanResult",
    "Window",
    "__version__",
    "scan",
]
