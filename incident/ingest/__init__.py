"""Raw logs into canonical Parquet: webhook JSON lines and CSV, gzip or zstd, streamed.

`ingest(IngestConfig(kind, sources, out))` reads deliveries, authorizations or apps from JSON
lines or CSV and writes the Parquet that `scan` reads, with the scan's own normalisation; rows
that cannot be used are quarantined with their file, line and reason; nothing of a payload but
its whitelisted fields is read. The modules follow the data: sources (find, decompress, hash),
envelope (the webhook payload flattened per event), records (lines to raw rows), normalise,
parts (the Parquet files) and evidence (the manifest); run ties them together.
"""

from incident.ingest.run import IngestAccounting, IngestConfig, IngestResult, Progress, ingest
from incident.ingest.sources import SourceFormat

__all__ = [
    "IngestAccounting",
    "IngestConfig",
    "IngestResult",
    "Progress",
    "SourceFormat",
    "ingest",
]
