"""The generator's units, calendar and tunables, shared by every stage of the pipeline.

Times are integer microseconds since the epoch (numpy int64), the unit every stage computes
in; the logs' span, the default scan window and the revocation grace are converted to it
here once. The window, the grace and the names of event types, reasons and causes belong to
`incident.config` and `incident.schema`, which scans use, so a sample always matches what a
default scan expects. The tuples that generated arrays index into (EVENT_TYPES, REASONS,
CAUSES) are spelled out in index order, since any other order would change the output.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from incident.config import Attribution, Window
from incident.schema import Cause, EventType, Reason

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


def _us(instant: datetime) -> int:
    """Microseconds since the epoch of a whole-second instant."""
    return int(instant.timestamp()) * 1_000_000


def _us_span(duration: timedelta) -> int:
    """A duration in whole microseconds."""
    return duration // timedelta(microseconds=1)


SECOND = 1_000_000
MINUTE = 60 * SECOND
DAY = 86_400 * SECOND
LOG_START = _us(datetime(2017, 3, 1, tzinfo=UTC))
# Exclusive end of the logs, and the instant the authorizations snapshot was taken: a
# revocation after it has not happened yet, so it is written as null (still active).
LOG_END = _us(datetime(2018, 11, 1, tzinfo=UTC))
# The default scan window of DESIGN.md; truth.parquet only lists rows inside it.
DEFAULT_WINDOW = Window()
WINDOW_SINCE = _us(DEFAULT_WINDOW.since)
WINDOW_UNTIL = _us(DEFAULT_WINDOW.until)
NO_END = np.iinfo(np.int64).max  # revoked_at of an active grant, so `t < end` needs no null test
NULL_ID = -1

# Event ids are snowflakes: milliseconds since this epoch, shifted left, plus the event index.
SNOWFLAKE_EPOCH_MS = 1_288_834_974_657
MAX_EVENT_BITS = 25  # (LOG_END - epoch) in ms fits 38 bits; 38 + 25 stays below 2**63
MAX_DELIVERIES = 40_000_000
MIN_DELIVERIES = 1

EVENT_TYPES = (
    EventType.DIRECT_MESSAGE.value,
    EventType.PROTECTED_TWEET.value,
    "tweet",
    "favorite",
    "follow",
)
DM, PROTECTED, TWEET, FAVORITE, FOLLOW = range(5)
NORMAL_MIX = (0.16, 0.06, 0.34, 0.30, 0.14)
# Misroutes lean to sensitive types so that the sample exercises the DM and author paths.
INJECTED_MIX = (0.30, 0.15, 0.25, 0.20, 0.10)

# The rule-3 status of a generated delivery: covered, or the reason it is a misdelivery.
COVERED, NO_GRANT, AFTER_REVOCATION, BEFORE_GRANT = range(4)
REASONS = (
    "covered",
    Reason.NO_GRANT.value,
    Reason.AFTER_REVOCATION.value,
    Reason.BEFORE_GRANT.value,
)

CAUSES = (
    Cause.SHARED_ENDPOINT_COLLISION.value,
    Cause.REVOCATION_LAG.value,
    Cause.UNEXPLAINED.value,
)
COLLISION, LAG, UNEXPLAINED = range(3)
NO_CAUSE = -1  # authorized rows
# Base misroutes by mechanism, as shares of all of them; no_grant to a random or neighbouring
# app makes up the rest.
COLLISION_SHARE, LAG_SHARE, LATE_SHARE, BEFORE_SHARE = 0.38, 0.15, 0.12, 0.12
# A scan's default grace: a delivery at most this long after a revocation is lag. Lag is
# injected within MAX_LAG so that its retries (at most 30 s later) stay inside the grace;
# other deliveries after a revocation come more than MIN_LATE after the last one.
REVOCATION_GRACE = _us_span(Attribution().revocation_grace)
MAX_LAG = 270 * SECOND
MIN_LATE = 10 * MINUTE
# A collision's receiving app has its own delivery this long before the misroute, from the
# same backend host: inside the 6-minute period of the published mechanism, retries included.
TRIGGER_LEAD = (10 * SECOND, 5 * MINUTE)
TRIGGER_TRIES = 8  # random grants of the receiving app tried for the trigger's user

# Grant shapes per (user, app) key: most keys hold a single row.
SINGLE, REGRANT, OVERLAP, DUPLICATE, ZERO_LENGTH = range(5)
GRANT_SHAPE_MIX = (0.80, 0.10, 0.055, 0.04, 0.005)
KEYS_PER_USER = 1.7  # with the extra rows of the other shapes, about 2 grant rows per user

P_EXACT_GRANT_START = 0.002  # events delivered exactly at granted_at (a boundary case)
P_RETRY_NORMAL = 0.02
P_RETRY_INJECTED = 0.2
P_CLIENT_ERROR = 0.002  # 404/410 answers, which the platform does not retry
FAIL_STATUSES = np.array([500, 502, 503, 504], dtype=np.int32)
CLIENT_STATUSES = np.array([404, 410], dtype=np.int32)
N_BACKEND_HOSTS = 24
URL_PATHS = ("/webhook", "/webhooks/account", "/api/v1/events", "/callback", "/hooks/aaa")
