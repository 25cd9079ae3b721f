"""Canonical column names, types and choices shared by every stage of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import polars as pl

# IDs are compared as text so that 123 in one input matches "123" in another.
ID = pl.String
# Nanoseconds, so that no boundary comparison is changed by rounding.
TIMESTAMP = pl.Datetime("ns", "UTC")
COUNT = pl.Int64


class Input(StrEnum):
    """The three inputs of a scan."""

    DELIVERIES = "deliveries"
    AUTHORIZATIONS = "authorizations"
    APPS = "apps"


# The column of a misdelivery that holds its `Reason`.
REASON = "reason"


class Reason(StrEnum):
    """Why a delivery was not covered by a grant (DESIGN rule 3)."""

    NO_GRANT = "no_grant"
    AFTER_REVOCATION = "after_revocation"
    BEFORE_GRANT = "before_grant"


# The columns `incident.pipeline.cause` adds to a misdelivery.
CAUSE = "cause"
# Which conditions of the cause could not be checked: `full`, or their names joined by `;`.
EVIDENCE = "evidence"
FULL_EVIDENCE = "full"
INTENDED_APP = "intended_app_id"
INTENDED_DEVELOPER = "intended_developer_id"
CANDIDATES = "intended_app_candidates"
ATTRIBUTION_COLUMNS = (CAUSE, EVIDENCE, INTENDED_APP, INTENDED_DEVELOPER, CANDIDATES)


class Cause(StrEnum):
    """Why a misdelivery happened, as far as the evidence shows; the most specific first."""

    SHARED_ENDPOINT_COLLISION = "shared_endpoint_collision"
    REVOCATION_LAG = "revocation_lag"
    UNEXPLAINED = "unexplained"


class Role(StrEnum):
    """How a user's data was in a misdelivered event (DESIGN rule 4)."""

    SUBSCRIBER = "subscriber"
    SENDER = "sender"
    RECIPIENT = "recipient"
    AUTHOR = "author"


class EventType(StrEnum):
    """Event types with a meaning for exposure; other types pass through as text."""

    DIRECT_MESSAGE = "direct_message"
    PROTECTED_TWEET = "protected_tweet"


class Kind(StrEnum):
    """How a column's values are normalised."""

    ID = "id"
    TIMESTAMP = "timestamp"
    TEXT = "text"
    INT = "int"


@dataclass(frozen=True)
class Column:
    """A canonical input column: its kind, whether the file must have it, and whether a row
    with a null value in it is still usable."""

    kind: Kind
    required: bool = False
    nullable: bool = True
    # A time past the representable range (e.g. 9999-12-31) means "never", read as null.
    open_ended: bool = False


def _key(kind: Kind) -> Column:
    return Column(kind, required=True, nullable=False)


DELIVERY_COLUMNS: dict[str, Column] = {
    "event_id": _key(Kind.ID),
    "delivered_at": _key(Kind.TIMESTAMP),
    "app_id": _key(Kind.ID),
    "for_user_id": _key(Kind.ID),
    "event_type": _key(Kind.TEXT),
    "delivery_id": Column(Kind.ID),
    "sender_id": Column(Kind.ID),
    "recipient_id": Column(Kind.ID),
    "webhook_url": Column(Kind.TEXT),
    "resolved_ip": Column(Kind.TEXT),
    "backend_host": Column(Kind.TEXT),
    "http_status": Column(Kind.INT),
}
AUTHORIZATION_COLUMNS: dict[str, Column] = {
    "for_user_id": _key(Kind.ID),
    "app_id": _key(Kind.ID),
    "granted_at": _key(Kind.TIMESTAMP),
    # Null means still active; the column itself is required, so that a log whose revocation
    # column is named differently is not read as "never revoked".
    "revoked_at": Column(Kind.TIMESTAMP, required=True, open_ended=True),
}
APP_COLUMNS: dict[str, Column] = {
    "app_id": _key(Kind.ID),
    # Null means the app's developer is unknown.
    "developer_id": Column(Kind.ID, required=True),
    "app_name": Column(Kind.TEXT),
    "developer_name": Column(Kind.TEXT),
    "webhook_url": Column(Kind.TEXT),
    "resolved_ip": Column(Kind.TEXT),
}
COLUMNS: dict[Input, dict[str, Column]] = {
    Input.DELIVERIES: DELIVERY_COLUMNS,
    Input.AUTHORIZATIONS: AUTHORIZATION_COLUMNS,
    Input.APPS: APP_COLUMNS,
}

USERS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": ID(),
    "roles": pl.List(pl.String),
    "events": COUNT(),
    "direct_messages": COUNT(),
    "protected_tweets": COUNT(),
    "developers": COUNT(),
    "developer_ids": pl.List(ID),
    "first_exposed_at": TIMESTAMP,
    "last_exposed_at": TIMESTAMP,
}
DEVELOPERS_SCHEMA: dict[str, pl.DataType] = {
    "developer_id": ID(),
    "app_ids": pl.List(ID),
    "events": COUNT(),
    "deliveries": COUNT(),
    "direct_messages": COUNT(),
    "protected_tweets": COUNT(),
    "users_exposed": COUNT(),
    "first_received_at": TIMESTAMP,
    "last_received_at": TIMESTAMP,
    "intended_developer_ids": pl.List(ID),
}
ENDPOINTS_SCHEMA: dict[str, pl.DataType] = {
    "resolved_ip": pl.String(),
    "url_path": pl.String(),
    "apps": COUNT(),
    "app_ids": pl.List(ID),
    "developers": COUNT(),
    "developer_ids": pl.List(ID),
    "misdeliveries": COUNT(),
    "events": COUNT(),
    "users_exposed": COUNT(),
    "first_misdelivered_at": TIMESTAMP,
    "last_misdelivered_at": TIMESTAMP,
}
