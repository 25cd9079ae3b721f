"""The fast path of webhook lines (`incident.ingest.blocks`) gives exactly what the
line-by-line path gives: the same valid rows, the same quarantine, the same counts, for any
mix of good and damaged lines; and on sound lines it takes every line itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incident.config import ColumnMap
from incident.ingest import blocks
from incident.ingest.normalise import normalise, normalise_frame
from incident.ingest.records import LineCounts, RawRow, json_rows
from incident.ingest.sources import Line
from incident.schema import Input
from tests import webhook

KINDS = ("direct_message", "tweet", "protected_tweet", "favorite", "follow")


def sample_row(n: int) -> dict[str, Any]:
    """A delivery as `incident sample` writes it."""
    return {
        "delivery_id": f"d{n:06d}",
        "event_id": 10_000 + n // 2,
        "delivered_at": datetime(2018, 3, 1, tzinfo=UTC) + timedelta(seconds=n, microseconds=n),
        "app_id": 100 + n % 3,
        "for_user_id": 7 + n % 5,
        "event_type": KINDS[n % len(KINDS)],
        "sender_id": 20 + n % 4,
        "recipient_id": 30 + n % 2,
        "webhook_url": "https://a.example/hook",
        "resolved_ip": "192.0.2.1",
        "backend_host": "web-1",
        "http_status": 200,
    }


def good(n: int) -> dict[str, Any]:
    return webhook.webhook_line(sample_row(n))


def _events(line: dict[str, Any]) -> list[dict[str, Any]]:
    return next(v for k, v in line["payload"].items() if k.endswith("_events"))


def _array(line: dict[str, Any]) -> str:
    return str(next(k for k in line["payload"] if k.endswith("_events")))


# Each turns a good line (as an object) into a damaged or unusual one (as text).
DAMAGES: list[Callable[[dict[str, Any]], str]] = [
    lambda d: json.dumps({**d, "delivered_at": "yesterday"}),
    lambda d: json.dumps({**d, "delivered_at": 1519862400000}),
    lambda d: json.dumps({**d, "delivered_at": 1519862400000.5}),
    lambda d: json.dumps({**d, "app_id": 1e20}),
    lambda d: json.dumps({**d, "app_id": 8.0}),
    lambda d: json.dumps({**d, "app_id": "  "}),
    lambda d: json.dumps({**d, "app_id": str(d["app_id"])}),
    lambda d: json.dumps({**d, "app_id": 2**63}),
    lambda d: json.dumps({**d, "app_id": True}),
    lambda d: json.dumps({**d, "app_id": {"text": "x"}}),
    lambda d: json.dumps({**d, "http_status": "200"}),
    lambda d: json.dumps({**d, "delivery_id": None}),
    lambda d: json.dumps({k: v for k, v in d.items() if k != "delivered_at"}),
    lambda d: json.dumps({**d, "payload": None}),
    lambda d: json.dumps({**d, "payload": [1]}),
    lambda d: json.dumps({**d, "payload": {"for_user_id": "1", "user_event": {}}}),
    lambda d: json.dumps({**d, "payload": {**d["payload"], "block_events": [{"id": "5"}]}}),
    lambda d: json.dumps({**d, "payload": {**d["payload"], "favorite_events": None}}),
    lambda d: json.dumps({**d, "payload": {**d["payload"], "favorite_events": []}}),
    lambda d: json.dumps({**d, "payload": {**d["payload"], "follow_events": [None, "x"]}}),
    lambda d: json.dumps({**d, "payload": {**d["payload"], "for_user_id": 12}}),
    lambda d: json.dumps({**d, "payload": {**d["payload"], "for_user_id": 1.5}}),
    lambda d: json.dumps({**d, "payload": {"for_user_id": "1", _array(d): []}}),
    lambda d: json.dumps(
        {**d, "payload": {**d["payload"], _array(d): [{"user": {"protected": None}}]}}
    ),
    lambda d: json.dumps(
        {**d, "payload": {**d["payload"], _array(d): [*_events(d), {"id_str": 5, "id": "6"}]}}
    ),
    lambda d: json.dumps(
        {**d, "payload": {**d["payload"], _array(d): [{"id": 5, "user": {"id": 9}}]}}
    ),
    lambda d: json.dumps(d).replace('"app_id"', '"app\\u005fid"'),
    lambda d: json.dumps(d).replace('"app_id": ', '"app_id": "1", "app_id": '),
    lambda d: json.dumps(d) + json.dumps(d),
    lambda d: json.dumps(d)[:-30],
    lambda d: json.dumps({**d, "note": [[]] * 150}),
    lambda d: json.dumps(d)[:-1] + ', "deep": ' + "[" * 3000 + "]" * 3000 + "}",
    lambda d: "\ufeff" + json.dumps(d),
    lambda d: "   ",
    lambda d: "",
    lambda d: "[1, 2]",
    lambda d: json.dumps(d).replace('"', "'", 2),
    lambda d: json.dumps({**d, "note": float("nan")}),
    lambda d: json.dumps({**d, "note": "\ud800"}, ensure_ascii=True),
    lambda d: " " + json.dumps(d) + " ",
    lambda d: json.dumps(d, indent=None, separators=(",", ":")),
]


def as_lines(texts: list[str | bytes]) -> list[Line]:
    return [
        Line(n, t if isinstance(t, bytes) else t.encode()) for n, t in enumerate(texts, start=1)
    ]


def both_paths(lines: list[Line]) -> tuple[Any, Any, list[int]]:
    """The normalised batch and counts through each path, and the lines the fast path left."""
    slow_counts, fast_counts = LineCounts(), LineCounts()
    rows = list(json_rows(lines, Input.DELIVERIES, ColumnMap(), slow_counts))
    slow = normalise(rows, Input.DELIVERIES, "f.jsonl")
    left: list[int] = []

    def spy(taken: Any, *args: Any) -> Any:
        taken = list(taken)
        left.extend(line.number for line in taken)
        return json_rows(taken, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("incident.ingest.blocks.json_rows", spy)
        frame = blocks.block_frame(blocks.Reader(ColumnMap()), lines, fast_counts)
    fast = normalise_frame(frame, Input.DELIVERIES, "f.jsonl")
    slow_counts.lines = len(lines)
    return (slow, slow_counts.blank), (fast, fast_counts.blank), left


def assert_same(lines: list[Line]) -> list[int]:
    (slow, slow_blank), (fast, fast_blank), left = both_paths(lines)
    assert fast.valid.schema == slow.valid.schema
    assert fast.valid.equals(slow.valid)
    assert fast.rejected.equals(slow.rejected), (fast.rejected, slow.rejected)
    assert fast_blank == slow_blank
    return left


def test_sound_lines_all_take_the_fast_path() -> None:
    lines = as_lines([json.dumps(good(n)) for n in range(60)])
    assert assert_same(lines) == []


def test_each_damage_gives_the_same_rows_either_way() -> None:
    texts: list[str | bytes] = [json.dumps(good(n)) for n in range(5)]
    for i, damage in enumerate(DAMAGES):
        texts += [damage(good(i)), json.dumps(good(100 + i))]
    texts += [b'{"delivery_id": "\xff\xfe"}', b"{\xff}"]
    left = assert_same(as_lines(texts))
    assert 1 not in left  # a sound line stays on the fast path among damaged ones


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 999), st.one_of(st.none(), st.integers(0, len(DAMAGES) - 1))),
        min_size=1,
        max_size=40,
    )
)
def test_random_mixes_give_the_same_rows_either_way(mix: list[tuple[int, int | None]]) -> None:
    texts: list[str | bytes] = [
        json.dumps(good(n)) if damage is None else DAMAGES[damage](good(n)) for n, damage in mix
    ]
    assert_same(as_lines(texts))


def test_payload_types_are_learnt_and_mixed_line_types_grouped() -> None:
    """Integer IDs of direct messages (sample's are text) are learnt; epoch and ISO times in
    one block are read as two groups; all on the fast path."""
    lines = [good(n) for n in range(40)]
    for line in lines[::5]:  # the direct messages
        _events(line)[0]["id"] = int(_events(line)[0]["id"])
    for line in lines[::3]:
        line["delivered_at"] = 1519862400000 + len(line["delivery_id"])
    assert assert_same(as_lines([json.dumps(line) for line in lines])) == []


@pytest.mark.parametrize("name", ["payload", "app id"])
def test_a_mapping_the_patterns_cannot_follow_goes_line_by_line(name: str) -> None:
    columns = ColumnMap.parse([f"deliveries.app_id={name}"])
    assert not blocks.Reader(columns).usable
    assert blocks.Reader(ColumnMap()).usable
    assert pl.DataFrame().is_empty()


def test_a_batch_of_rows_without_values_gives_no_valid_row() -> None:
    """A select of literals alone is one row: a batch of unreadable lines gave a row of nulls."""
    batch = normalise([RawRow(1, {}, "not JSON (Expecting value)")], Input.DELIVERIES, "f")
    assert (batch.valid.height, batch.rejected.height) == (0, 1)
