"""The webhook JSON-lines format: one delivery per line, its payload an Account Activity event
envelope, flattened into one delivery row per event.

A line is `{"delivery_id", "delivered_at", "app_id", "webhook_url", "resolved_ip",
"backend_host", "http_status", "payload": {"for_user_id", "<name>_events": [event, …], …}}`.
Only the fields named here are read — a whitelist: message and post text, user names,
descriptions, media and every other field of the payload are never copied anywhere, not even
into the quarantine or an error message. A field that holds an object or array where a value
is expected is read as `NESTED`, never as its contents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from incident.config import ColumnMap
from incident.schema import EventType, Input


class Nested:
    """An object or array found where a plain value was expected; its contents are dropped."""

    def __repr__(self) -> str:
        return "NESTED"


NESTED: Final = Nested()
# What a whitelisted field holds once read: a JSON scalar, or the mark of a nested value.
Scalar = str | int | float | bool | Nested | None

# Fields of the line itself; their names can be mapped (`--map deliveries.app_id=app`).
LINE_FIELDS = (
    "delivery_id",
    "delivered_at",
    "app_id",
    "webhook_url",
    "resolved_ip",
    "backend_host",
    "http_status",
)
# Columns taken from the payload, which the format names: a mapping cannot move them.
PAYLOAD_FIELDS = ("event_id", "for_user_id", "event_type", "sender_id", "recipient_id")
ARRAY_SUFFIX = "_events"

Path = tuple[str, ...]


@dataclass(frozen=True)
class EventArray:
    """How the events of one array of the envelope become delivery rows: their event type
    (None: decided per event) and where the sender and recipient are."""

    event_type: str | None
    sender: tuple[Path, ...] = ()
    recipient: tuple[Path, ...] = ()


_USER = (("user", "id_str"), ("user", "id"))
ARRAYS: dict[str, EventArray] = {
    "direct_message_events": EventArray(
        EventType.DIRECT_MESSAGE.value,
        sender=(("message_create", "sender_id"),),
        recipient=(("message_create", "target", "recipient_id"),),
    ),
    # The author; `user.protected` makes the post a protected_tweet.
    "tweet_create_events": EventArray(None, sender=_USER),
    # The account that liked, or followed: the one acting.
    "favorite_events": EventArray("favorite", sender=_USER),
    "follow_events": EventArray("follow", sender=(("source", "id_str"), ("source", "id"))),
}
EVENT_ID: tuple[Path, ...] = (("id_str",), ("id",))


def scalar(value: Any) -> Scalar:
    """A JSON value as a field holds it: objects and arrays only as `NESTED`."""
    if isinstance(value, dict | list):
        return NESTED
    return value  # type: ignore[no-any-return]


def _at(event: Mapping[str, Any], path: Path) -> Any:
    value: Any = event
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _first(event: Mapping[str, Any], paths: tuple[Path, ...]) -> Scalar:
    return next((scalar(v) for p in paths if (v := _at(event, p)) is not None), None)


def event_digest(array: str, event: Mapping[str, Any]) -> str:
    """The `event_id` of an event without `id` or `id_str`: `sha256:` and 32 hex digits of
    the SHA-256 of its array name and canonical JSON (sorted keys, no spaces), so that the
    same event delivered to several apps, or retried, gets the same ID in every run."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(b"incident-event-v1\0" + array.encode() + b"\0" + canonical.encode())
    return f"sha256:{digest.hexdigest()[:32]}"


@dataclass
class EventRow:
    """One event of a line as a delivery row: whitelisted values by canonical column, and
    why the event cannot be used when that is known before its values are normalised."""

    values: dict[str, Scalar]
    problem: str | None = None
    index: int | None = field(default=None)


def _event_row(array: str, spec: EventArray, event: Any, index: int) -> EventRow:
    if not isinstance(event, dict):
        return EventRow({}, f"payload.{array}[{index}]: expected a JSON object", index)
    event_id = _first(event, EVENT_ID)
    if event_id is None:
        try:
            event_id = event_digest(array, event)
        except (ValueError, RecursionError):
            return EventRow({}, f"payload.{array}[{index}]: cannot be hashed for event_id", index)
    values: dict[str, Scalar] = {
        "event_id": event_id,
        "event_type": spec.event_type,
        "sender_id": _first(event, spec.sender),
        "recipient_id": _first(event, spec.recipient),
    }
    problem = None
    if spec.event_type is None:
        protected = _at(event, ("user", "protected"))
        if isinstance(protected, bool):
            kind = EventType.PROTECTED_TWEET.value if protected else "tweet"
            values["event_type"] = kind
        else:
            problem = "event_type: user.protected is not true or false"
    return EventRow(values, problem, index)


def _arrays(payload: Mapping[str, Any]) -> list[tuple[str, EventArray]]:
    """The event arrays of an envelope by name, in sorted order: any key ending in
    `_events`; those not in `ARRAYS` give their name as the event type."""
    names = sorted(k for k in payload if isinstance(k, str) and k.endswith(ARRAY_SUFFIX))
    return [(n, ARRAYS.get(n, EventArray(n.removesuffix(ARRAY_SUFFIX)))) for n in names]


def flatten(record: Any, columns: ColumnMap) -> list[EventRow] | str:
    """The delivery rows of one parsed line, one per event; or, when the line holds no event
    that can be found, why (a line-level problem). Values not whitelisted are never read."""
    if not isinstance(record, dict):
        return "expected a JSON object"
    line = {
        name: scalar(record.get(columns.source(Input.DELIVERIES, name))) for name in LINE_FIELDS
    }
    payload = record.get("payload")
    if not isinstance(payload, dict):
        return "payload: missing" if payload is None else "payload: expected a JSON object"
    arrays = _arrays(payload)
    if not arrays:
        return "payload: no event array (expected a key ending in _events)"
    rows: list[EventRow] = []
    for name, spec in arrays:
        events = payload[name]
        if not isinstance(events, list):
            rows.append(EventRow({}, f"payload.{name}: expected an array", len(rows)))
            continue
        rows += [_event_row(name, spec, event, len(rows) + i) for i, event in enumerate(events)]
    if not rows:
        return "payload: no events (every event array is empty)"
    subscriber = scalar(payload.get("for_user_id"))
    for row in rows:
        row.values = {**line, "for_user_id": subscriber, **row.values}
    return rows
