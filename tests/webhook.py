"""Raw logs for the ingest tests: `incident sample` data written back as a platform would
keep it — webhook JSON lines with Account Activity payloads, full of content text, or CSV
with its own column names — compressed with gzip or zstd.

Every text field a payload carries (message and post text, user names, screen names,
descriptions, locations, URLs of media, quoted posts, the `users` map, fields the tool does
not know) holds `text`, so that a test can plant a marker there and look for it in every
byte the commands write.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

TEXT = "hello, nobody else should read this"


def iso(instant: datetime) -> str:
    """An instant as ISO-8601 UTC with microseconds."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def when(instant: datetime) -> str | int:
    """`delivered_at` as the platform writes it: epoch milliseconds when that is exact,
    ISO-8601 otherwise, so that both forms are read."""
    if instant.microsecond % 1000 == 0:
        return int(instant.timestamp() * 1000)
    return iso(instant)


def _user(user_id: Any, text: str, protected: bool = False) -> dict[str, Any]:
    return {
        "id": int(user_id),
        "id_str": str(user_id),
        "name": text,
        "screen_name": text,
        "description": text,
        "location": text,
        "url": f"https://example.com/{text}",
        "protected": protected,
        "entities": {"description": {"urls": [{"display_url": text}]}},
    }


def _event(row: dict[str, Any], text: str) -> tuple[str, dict[str, Any]]:
    """The event array and event of one sample delivery."""
    kind, event_id, sender = row["event_type"], row["event_id"], row["sender_id"]
    if kind == "direct_message":
        return "direct_message_events", {
            "type": "message_create",
            "id": str(event_id),
            "created_timestamp": str(when(row["delivered_at"])),
            "message_create": {
                "target": {"recipient_id": str(row["recipient_id"])},
                "sender_id": str(sender),
                "message_data": {
                    "text": text,
                    "entities": {"hashtags": [{"text": text}], "urls": []},
                    "attachment": {"media": {"media_url": text, "ext_alt_text": text}},
                },
            },
        }
    if kind in ("tweet", "protected_tweet"):
        return "tweet_create_events", {
            "id": event_id,
            "id_str": str(event_id),
            "text": text,
            "extended_tweet": {"full_text": text},
            "quoted_status": {"text": text, "user": _user(1, text)},
            "source": text,
            "user": _user(sender, text, protected=kind == "protected_tweet"),
        }
    if kind == "favorite":
        return "favorite_events", {
            "id": f"{event_id}",
            "favorited_status": {"text": text, "user": _user(row["for_user_id"], text)},
            "user": _user(sender, text),
        }
    return f"{kind}_events", {
        "type": kind,
        "id": event_id,
        "source": _user(sender, text),
        "target": _user(row["for_user_id"], text),
    }


def webhook_line(row: dict[str, Any], text: str = TEXT) -> dict[str, Any]:
    """One delivery as a webhook log line."""
    array, event = _event(row, text)
    return {
        "delivery_id": row["delivery_id"],
        "delivered_at": when(row["delivered_at"]),
        "app_id": row["app_id"],
        "webhook_url": row["webhook_url"],
        "resolved_ip": row["resolved_ip"],
        "backend_host": row["backend_host"],
        "http_status": row["http_status"],
        "request_body_preview": text,  # a field of the line the tool does not know
        "payload": {
            "for_user_id": str(row["for_user_id"]),
            array: [event],
            "users": {str(row["sender_id"]): {"name": text, "screen_name": text}},
            "apps": {str(row["app_id"]): {"name": text, "url": text}},
        },
    }


def deliveries(sample: Path) -> pl.DataFrame:
    """The deliveries of a sample, in file order."""
    return pl.read_parquet(sample / "deliveries", hive_partitioning=False)


def encoded(lines: Iterable[str], compression: str | None) -> bytes:
    """Lines joined, compressed with gzip, zstd or nothing."""
    data = "".join(line + "\n" for line in lines).encode()
    if compression is None:
        return data
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, compression) as stream:
        stream.write(data)
    return bytes(sink.getvalue().to_pybytes())


def json_lines(frame: pl.DataFrame, text: str = TEXT) -> Iterator[str]:
    """Webhook JSON lines of a deliveries frame."""
    for row in frame.iter_rows(named=True):
        yield json.dumps(webhook_line(row, text), ensure_ascii=False)


# CSV column names of another system, mapped with --map.
CSV_NAMES = {
    "event_id": "evt",
    "delivered_at": "ts",
    "app_id": "application",
    "for_user_id": "subscriber",
    "event_type": "kind",
    "delivery_id": "attempt",
}


def csv_text(frame: pl.DataFrame, names: dict[str, str]) -> str:
    """A frame as CSV with renamed columns, times as ISO-8601 or epoch milliseconds and a
    content column the tool must not read."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    columns = frame.columns
    writer.writerow([names.get(c, c) for c in columns] + ["message_text"])
    for row in frame.iter_rows(named=True):
        cells = [_cell(row[c]) for c in columns]
        writer.writerow([*cells, f'{TEXT}\nsecond line, "quoted"'])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return str(when(value))
    return str(value)


def mappings(names: dict[str, str], input_: str) -> list[str]:
    """`--map` items for renamed columns."""
    return [f"{input_}.{column}={name}" for column, name in names.items()]
