"""incident: exact impact analysis for data-exposure incidents.

`scan(config)` reads delivery logs and authorization records, finds every delivery that went
to an app not authorized to receive it, and writes per-user and per-developer impact reports.
"""

from incident.api import RowAccounting, ScanResult, scan
from incident.config import ColumnMap, RejectLimit, ReportFormat, ScanConfig, Window
from incident.errors import ExitCode, IncidentError
from incident.version import __version__

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
