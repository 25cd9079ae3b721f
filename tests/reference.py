"""A deliberately naive pure-Python model of `incident scan` (DESIGN.md rules 1-6).

It is used by property tests on small random inputs, so it favours being obviously right
over being fast: plain loops, sets and dicts, one small function per rule. polars is used only
to build the result frames at the end. It does not import the `incident` package.

Rows are dicts with the canonical column names. ID values may be ``int``, ``str``, an integral
``float`` or ``None``; timestamp values may be a ``datetime`` (naive means UTC), ``int`` epoch
milliseconds, an ISO-8601 ``str`` or ``None``. A missing key is the same as ``None``.
Internally every timestamp is an ``int`` of UTC epoch nanoseconds, so comparisons are exact.

Entry point: :func:`reference_scan`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import polars as pl

__all__ = ["Expected", "diff_expected", "normalize_id", "reference_scan", "to_utc_ns"]

DM = "direct_message"
PROTECTED = "protected_tweet"

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Expected:
    users: pl.DataFrame
    developers: pl.DataFrame
    misdeliveries: pl.DataFrame
    accounting: dict[str, int]


# ============================================================================================
# Normalisation (docs/decisions.md, "Normalising inputs")
# ============================================================================================

# Unicode White_Space: what polars' (Rust's) `strip_chars()` removes.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
WHITESPACE += "\u2028\u2029\u202f\u205f\u3000"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NS_PER_SECOND = 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ISO_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?"
)


def normalize_id(value: object) -> str | None:
    """An ID as text: ints as decimal text, integral floats too, strings stripped, '' -> None.

    Anything else (bool, NaN, a fractional float, a float beyond int64) is not an ID: None.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and -(2.0**63) <= value < 2.0**63:
            return str(int(value))
        return None
    if isinstance(value, str):
        text = value.strip(WHITESPACE)
        return text if text != "" else None
    return None


def is_blank(value: object) -> bool:
    """Null, or text that is empty once white space is stripped."""
    return value is None or (isinstance(value, str) and value.strip(WHITESPACE) == "")


def _in_ns_range(ns: int) -> int | None:
    return ns if INT64_MIN <= ns <= INT64_MAX else None


def datetime_to_ns(value: datetime) -> int:
    """Epoch nanoseconds of a datetime; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(microseconds=1) * 1000


def iso_to_ns(text: str) -> int | None:
    """Epoch nanoseconds of an ISO-8601 string; no offset means UTC. None if it doesn't parse."""
    match = ISO_RE.fullmatch(text.strip(WHITESPACE))
    if match is None:
        return None
    y, mo, d, h, mi, s, frac, _z, sign, oh, om = match.groups()
    try:
        day = date(int(y), int(mo), int(d))
    except ValueError:
        return None
    hour, minute, second = int(h or 0), int(mi or 0), int(s or 0)
    off_h, off_m = int(oh or 0), int(om or 0)
    if hour > 23 or minute > 59 or second > 59 or off_h > 23 or off_m > 59:
        return None
    days = day.toordinal() - date(1970, 1, 1).toordinal()
    seconds = days * 86400 + hour * 3600 + minute * 60 + second
    offset = (off_h * 3600 + off_m * 60) * (-1 if sign == "-" else 1)
    fraction_ns = int((frac or "0").ljust(9, "0"))
    return _in_ns_range((seconds - offset) * NS_PER_SECOND + fraction_ns)


def to_utc_ns(value: object) -> int | None:
    """A timestamp as UTC epoch nanoseconds; None when null, empty or not a timestamp."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return _in_ns_range(datetime_to_ns(value))
    if isinstance(value, int):  # epoch milliseconds
        return _in_ns_range(value * 1_000_000)
    if isinstance(value, str):
        return iso_to_ns(value)
    return None


# ============================================================================================
# Records
# ============================================================================================


@dataclass(frozen=True)
class Delivery:
    event_id: str
    delivered_at: int  # epoch ns, UTC
    app_id: str
    for_user_id: str
    event_type: str
    sender_id: str | None
    recipient_id: str | None


@dataclass(frozen=True)
class Grant:
    user: str
    app: str
    granted_at: int
    revoked_at: int | None  # None = still active


@dataclass(frozen=True)
class Misdelivery:
    delivery: Delivery
    developer_id: str
    reason: str


# ============================================================================================
# Rule 1: valid rows
# ============================================================================================


def valid_delivery(row: Row) -> Delivery | None:
    """The normalised delivery, or None when the row must be rejected."""
    event_id = normalize_id(row.get("event_id"))
    delivered_at = to_utc_ns(row.get("delivered_at"))
    app_id = normalize_id(row.get("app_id"))
    for_user_id = normalize_id(row.get("for_user_id"))
    event_type = normalize_id(row.get("event_type"))
    if (
        event_id is None
        or delivered_at is None
        or app_id is None
        or for_user_id is None
        or event_type is None
    ):
        return None
    return Delivery(
        event_id=event_id,
        delivered_at=delivered_at,
        app_id=app_id,
        for_user_id=for_user_id,
        event_type=event_type,
        sender_id=normalize_id(row.get("sender_id")),
        recipient_id=normalize_id(row.get("recipient_id")),
    )


# ============================================================================================
# Rule 2: in window
# ============================================================================================


def in_window(delivery: Delivery, since_ns: int, until_ns: int) -> bool:
    return since_ns <= delivery.delivered_at < until_ns


# ============================================================================================
# Authorizations (decisions.md: rejected rows are not grants)
# ============================================================================================


def valid_grant(row: Row) -> Grant | None:
    """The grant, or None when the authorization row is rejected."""
    user = normalize_id(row.get("for_user_id"))
    app = normalize_id(row.get("app_id"))
    granted_at = to_utc_ns(row.get("granted_at"))
    raw_revoked = row.get("revoked_at")
    revoked_at = to_utc_ns(raw_revoked)
    if user is None or app is None or granted_at is None:
        return None
    if revoked_at is None and not is_blank(raw_revoked):
        return None  # revoked_at present but not a timestamp
    if revoked_at is not None and revoked_at < granted_at:
        return None
    return Grant(user=user, app=app, granted_at=granted_at, revoked_at=revoked_at)


def covers(grant: Grant, at: int) -> bool:
    """A grant covers the half-open interval [granted_at, revoked_at)."""
    return grant.granted_at <= at and (grant.revoked_at is None or at < grant.revoked_at)


# ============================================================================================
# Rule 3: misdelivery and its reason
# ============================================================================================


def misdelivery_reason(delivery: Delivery, grants: list[Grant]) -> str | None:
    """None when authorized; else no_grant, after_revocation or before_grant."""
    pair = [g for g in grants if g.user == delivery.for_user_id and g.app == delivery.app_id]
    if any(covers(g, delivery.delivered_at) for g in pair):
        return None
    if not pair:
        return "no_grant"
    at = delivery.delivered_at
    if any(g.revoked_at is not None and g.revoked_at <= at for g in pair):
        return "after_revocation"
    return "before_grant"


# ============================================================================================
# Developers (decisions.md, "Developers")
# ============================================================================================


def build_registry(apps: Iterable[Row] | None) -> dict[str, str | None] | None:
    """app_id -> developer_id (None = registered without one). None when there is no registry.

    An app registered with two different developer_ids is an input error.
    """
    if apps is None:
        return None
    registry: dict[str, str | None] = {}
    for row in apps:
        app = normalize_id(row.get("app_id"))
        developer = normalize_id(row.get("developer_id"))
        if app is None:
            continue
        known = registry.get(app)
        if known is not None and developer is not None and known != developer:
            raise ValueError(f"app {app!r} is registered with different developer_ids")
        if known is None:
            registry[app] = developer
    return registry


def developer_of(app_id: str, registry: dict[str, str | None] | None) -> str:
    if registry is None:
        return app_id
    developer = registry.get(app_id)
    return developer if developer is not None else "unknown:" + app_id


# ============================================================================================
# Rule 4: exposed users
# ============================================================================================


def exposures(delivery: Delivery) -> list[tuple[str, str]]:
    """(user_id, role) pairs exposed by one misdelivered row; null IDs expose nobody."""
    pairs: list[tuple[str | None, str]] = [(delivery.for_user_id, "subscriber")]
    if delivery.event_type == DM:
        pairs.append((delivery.sender_id, "sender"))
        pairs.append((delivery.recipient_id, "recipient"))
    if delivery.event_type == PROTECTED:
        pairs.append((delivery.sender_id, "author"))
    return [(user, role) for user, role in pairs if user is not None]


# ============================================================================================
# Rule 5: counting
# ============================================================================================


def user_rows(misdeliveries: list[Misdelivery]) -> list[dict[str, Any]]:
    roles: dict[str, set[str]] = {}
    events: dict[str, set[str]] = {}
    dms: dict[str, set[str]] = {}
    protected: dict[str, set[str]] = {}
    developers: dict[str, set[str]] = {}
    times: dict[str, list[int]] = {}
    for m in misdeliveries:
        d = m.delivery
        for user, role in exposures(d):
            roles.setdefault(user, set()).add(role)
            events.setdefault(user, set()).add(d.event_id)
            dms.setdefault(user, set())
            protected.setdefault(user, set())
            if d.event_type == DM:
                dms[user].add(d.event_id)
            if d.event_type == PROTECTED:
                protected[user].add(d.event_id)
            developers.setdefault(user, set()).add(m.developer_id)
            times.setdefault(user, []).append(d.delivered_at)
    return [
        {
            "user_id": user,
            "roles": sorted(roles[user]),
            "events": len(events[user]),
            "direct_messages": len(dms[user]),
            "protected_tweets": len(protected[user]),
            "developers": len(developers[user]),
            "developer_ids": sorted(developers[user]),
            "first_exposed_at": min(times[user]),
            "last_exposed_at": max(times[user]),
        }
        for user in sorted(roles)
    ]


def developer_rows(misdeliveries: list[Misdelivery]) -> list[dict[str, Any]]:
    apps: dict[str, set[str]] = {}
    events: dict[str, set[str]] = {}
    deliveries: dict[str, int] = {}
    dms: dict[str, set[str]] = {}
    protected: dict[str, set[str]] = {}
    users: dict[str, set[str]] = {}
    times: dict[str, list[int]] = {}
    for m in misdeliveries:
        d, dev = m.delivery, m.developer_id
        apps.setdefault(dev, set()).add(d.app_id)
        events.setdefault(dev, set()).add(d.event_id)
        deliveries[dev] = deliveries.get(dev, 0) + 1
        dms.setdefault(dev, set())
        protected.setdefault(dev, set())
        if d.event_type == DM:
            dms[dev].add(d.event_id)
        if d.event_type == PROTECTED:
            protected[dev].add(d.event_id)
        users.setdefault(dev, set()).update(user for user, _role in exposures(d))
        times.setdefault(dev, []).append(d.delivered_at)
    return [
        {
            "developer_id": dev,
            "app_ids": sorted(apps[dev]),
            "events": len(events[dev]),
            "deliveries": deliveries[dev],
            "direct_messages": len(dms[dev]),
            "protected_tweets": len(protected[dev]),
            "users_exposed": len(users[dev]),
            "first_received_at": min(times[dev]),
            "last_received_at": max(times[dev]),
        }
        for dev in sorted(apps)
    ]


# ============================================================================================
# Rule 6 and the scan
# ============================================================================================


def reference_scan(
    deliveries: list[dict[str, Any]],
    authorizations: list[dict[str, Any]],
    apps: list[dict[str, Any]] | None,
    since: datetime,
    until: datetime,
) -> Expected:
    since_ns, until_ns = datetime_to_ns(since), datetime_to_ns(until)
    grants = [g for g in (valid_grant(row) for row in authorizations) if g is not None]
    registry = build_registry(apps)

    rejected = outside = authorized = 0
    misdelivered: list[Misdelivery] = []
    reported: set[Delivery] = set()
    for row in deliveries:
        delivery = valid_delivery(row)
        if delivery is None:
            rejected += 1
            continue
        if not in_window(delivery, since_ns, until_ns):
            outside += 1
            continue
        reason = misdelivery_reason(delivery, grants)
        if reason is None:
            authorized += 1
            continue
        if delivery in reported:
            rejected += 1  # rule 1: a copy of a reported row counts once; the copy is rejected
            continue
        reported.add(delivery)
        developer = developer_of(delivery.app_id, registry)
        misdelivered.append(Misdelivery(delivery, developer, reason))

    users = user_rows(misdelivered)
    developers = developer_rows(misdelivered)
    accounting = {
        "rows_read": len(deliveries),
        "rows_rejected": rejected,
        "rows_outside_window": outside,
        "rows_authorized": authorized,
        "rows_misdelivered": len(misdelivered),
        "events_misdelivered": len({m.delivery.event_id for m in misdelivered}),
        "users_exposed": len(users),
        "developers_exposed": len(developers),
    }
    assert accounting["rows_read"] == rejected + outside + authorized + len(misdelivered)

    return Expected(
        users=_frame(users, USERS_SCHEMA, sort_by=["user_id"]),
        developers=_frame(developers, DEVELOPERS_SCHEMA, sort_by=["developer_id"]),
        misdeliveries=_frame(
            [_misdelivery_row(m) for m in misdelivered],
            MISDELIVERIES_SCHEMA,
            sort_by=list(MISDELIVERIES_SCHEMA),
        ),
        accounting=accounting,
    )


def _misdelivery_row(m: Misdelivery) -> dict[str, Any]:
    d = m.delivery
    return {
        "event_id": d.event_id,
        "delivered_at": d.delivered_at,
        "app_id": d.app_id,
        "for_user_id": d.for_user_id,
        "event_type": d.event_type,
        "developer_id": m.developer_id,
        "reason": m.reason,
    }


# ============================================================================================
# Result frames
# ============================================================================================

UTC_NS = pl.Datetime("ns", "UTC")

USERS_SCHEMA: dict[str, Any] = {
    "user_id": pl.String,
    "roles": pl.List(pl.String),
    "events": pl.Int64,
    "direct_messages": pl.Int64,
    "protected_tweets": pl.Int64,
    "developers": pl.Int64,
    "developer_ids": pl.List(pl.String),
    "first_exposed_at": UTC_NS,
    "last_exposed_at": UTC_NS,
}
DEVELOPERS_SCHEMA: dict[str, Any] = {
    "developer_id": pl.String,
    "app_ids": pl.List(pl.String),
    "events": pl.Int64,
    "deliveries": pl.Int64,
    "direct_messages": pl.Int64,
    "protected_tweets": pl.Int64,
    "users_exposed": pl.Int64,
    "first_received_at": UTC_NS,
    "last_received_at": UTC_NS,
}
MISDELIVERIES_SCHEMA: dict[str, Any] = {
    "event_id": pl.String,
    "delivered_at": UTC_NS,
    "app_id": pl.String,
    "for_user_id": pl.String,
    "event_type": pl.String,
    "developer_id": pl.String,
    "reason": pl.String,
}


def _frame(rows: list[dict[str, Any]], schema: dict[str, Any], sort_by: list[str]) -> pl.DataFrame:
    """Build a frame with exactly `schema`; datetime columns come in as epoch-ns ints."""
    columns: list[pl.Series] = []
    for name, dtype in schema.items():
        values = [row[name] for row in rows]
        if dtype == UTC_NS:
            series = pl.Series(name, values, dtype=pl.Int64).cast(pl.Datetime("ns"))
            columns.append(series.dt.replace_time_zone("UTC"))
        else:
            columns.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(columns).sort(sort_by)


# ============================================================================================
# Comparing two results (oracle, reference, or the package's own)
# ============================================================================================


class ExpectedLike(Protocol):
    @property
    def users(self) -> pl.DataFrame: ...
    @property
    def developers(self) -> pl.DataFrame: ...
    @property
    def misdeliveries(self) -> pl.DataFrame: ...
    @property
    def accounting(self) -> dict[str, int]: ...


def diff_expected(a: ExpectedLike, b: ExpectedLike) -> list[str]:
    """Human-readable differences between two results; empty when they agree exactly."""
    problems: list[str] = []
    for name in ("users", "developers", "misdeliveries"):
        left: pl.DataFrame = getattr(a, name)
        right: pl.DataFrame = getattr(b, name)
        if left.schema != right.schema:
            problems.append(f"{name}: schema {left.schema} != {right.schema}")
        elif not left.equals(right):
            problems.append(f"{name} differ:\n{_show(left)}\n!=\n{_show(right)}")
    for key in sorted(set(a.accounting) | set(b.accounting)):
        if a.accounting.get(key) != b.accounting.get(key):
            problems.append(
                f"accounting[{key}]: {a.accounting.get(key)} != {b.accounting.get(key)}"
            )
    return problems


def _show(df: pl.DataFrame) -> str:
    with pl.Config(tbl_rows=50, tbl_cols=-1, fmt_str_lengths=60):
        return str(df)
