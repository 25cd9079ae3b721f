"""Synthetic webhook-delivery logs with exact ground truth.

`generate_sample` writes a data set in the layout `incident scan DIR` reads (DESIGN.md):
hive-partitioned `deliveries/`, `authorizations.parquet`, `apps.parquet`, plus
`truth.parquet`, the misdeliveries a correct scan of the default window must report, each
labelled with the mechanism that produced it (`cause`) and, for a collision, `intended_app_id`.

The population mimics the 2017-2018 incident: users authorize a few apps (with revocations,
re-grants and duplicate grant rows), apps belong to developers and some share a webhook IP
and path, events fan out to every authorized app of every party, failed calls are retried,
and a small number of deliveries are misrouted to apps that held no grant at that instant.
About a third of the misroutes follow the incident's bug: an event meant for app A also
reaches app B on the same IP and URL path, while B has its own traffic from the same backend
host a few minutes earlier (`shared_endpoint_collision`). Some arrive within minutes of a
revocation (`revocation_lag`); the rest have no mechanism (`unexplained`). Everything is
vectorised with numpy; the only Python loops run over batches and day partitions. The same
`(deliveries, seed)` gives byte-identical files.

With `realistic=True` (realistic.py) the evidence is messier, as in real logs: co-hosted apps
move to a new IP together mid-incident, URLs carry a port and a query string, backend hosts
go missing; the rows and truth.parquet stay the same.

The modules follow the pipeline: constants (units, calendar, tunables), population, grants,
events (authorized traffic), misroutes, assembly, truth and writing, and realistic (optional
messier evidence); generate ties them together. This package only re-exports the public names.
"""

from incident.sample.constants import MAX_DELIVERIES
from incident.sample.generate import SampleSummary, generate_sample
from incident.sample.writing import DELIVERY_WRITE_OPTIONS, TABLE_WRITE_OPTIONS

__all__ = [
    "DELIVERY_WRITE_OPTIONS",
    "MAX_DELIVERIES",
    "TABLE_WRITE_OPTIONS",
    "SampleSummary",
    "generate_sample",
]
