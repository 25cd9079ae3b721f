"""The key tables of detection against a naive merge of each key's grants into islands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from incident.config import Window
from incident.pipeline.detect import (
    ISLANDS,
    STATUS,
    KeyTables,
    Status,
    classify,
    key_queries,
    report,
)
from incident.schema import TIMESTAMP

EPOCH = datetime(2018, 1, 1, tzinfo=UTC)
END_OF_TIME = 2**63 - 1

grants_strategy = st.lists(
    st.tuples(
        st.sampled_from([1, 2, 3]),
        st.sampled_from([10, 11]),
        st.integers(0, 12),
        st.one_of(st.none(), st.integers(0, 6)),
    ),
    max_size=14,
)


def naive_islands(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`[start, end)` intervals merged where they touch or overlap (an empty one stays)."""
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def instant(units: int) -> datetime:
    return EPOCH + timedelta(hours=units)


def key_tables(grants: pl.DataFrame) -> KeyTables:
    return KeyTables.build(pl.collect_all(key_queries(grants.lazy(), ["u", "a"])), ["u", "a"])


def grant_frame(grants: list[tuple[int, int, int, int | None]]) -> pl.DataFrame:
    """(u, a, granted_at, revoked_at) of generated grants (user, app, start, length)."""
    rows = [
        (user, app, instant(start), None if length is None else instant(start + length))
        for user, app, start, length in grants
    ]
    return pl.DataFrame(
        rows,
        schema={"u": pl.Int64, "a": pl.Int64, "granted_at": TIMESTAMP, "revoked_at": TIMESTAMP},
        orient="row",
    )


@settings(max_examples=200, deadline=None)
@given(grants=grants_strategy)
def test_key_tables_hold_each_keys_islands(
    grants: list[tuple[int, int, int, int | None]],
) -> None:
    frame = grant_frame(grants)
    rows = frame.rows()
    keys = key_tables(frame)
    table = (
        keys.first.join(keys.later, on=["u", "a"], how="left")
        .with_columns(pl.col("_more").fill_null(False))
        .sort("u", "a")
    )

    nanos: dict[tuple[int, int], list[tuple[int, int]]] = {
        key: [] for key in sorted({(u, a) for u, a, _, _ in rows})
    }
    for u, a, granted, revoked in rows:
        start = int(granted.timestamp()) * 10**9
        end = END_OF_TIME if revoked is None else int(revoked.timestamp()) * 10**9
        nanos[(u, a)].append((start, end))
    expected, expected_rest = [], []
    for (u, a), intervals in nanos.items():
        merged = naive_islands(intervals)
        bounds = [
            b for i in range(ISLANDS) for b in (merged[i] if i < len(merged) else (None,) * 2)
        ]
        expected.append((u, a, *bounds, len(merged) > ISLANDS))
        expected_rest += [(u, a, start, end) for start, end in merged[ISLANDS:]]
    columns = [f"_{b}{i}" for i in range(ISLANDS) for b in "se"]
    got = table.select(
        "u", "a", *(pl.col(c).dt.epoch("ns") for c in columns), pl.col("_more")
    ).rows()
    assert got == expected
    rest = keys.rest.select("u", "a", pl.col("start", "end").dt.epoch("ns"))
    assert sorted(rest.rows()) == expected_rest


@settings(max_examples=200, deadline=None)
@given(
    grants=grants_strategy,
    deliveries=st.lists(
        st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([10, 11]), st.integers(-1, 20)),
        max_size=20,
    ),
)
def test_rows_to_report_are_those_no_island_covers(
    grants: list[tuple[int, int, int, int | None]], deliveries: list[tuple[int, int, int]]
) -> None:
    # The deliveries join the first island; the rows it leaves open meet the later ones, and
    # the rows of keys with more islands than the columns hold meet those keys' gaps.
    islands: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for user, app, start, length in grants:
        end = 10**6 if length is None else start + length
        islands.setdefault((user, app), []).append((start, end))
    expected = []
    for row, (user, app, at) in enumerate(deliveries):
        merged = naive_islands(islands.get((user, app), []))
        if any(start <= at < end for start, end in merged):
            continue
        if not merged:
            status = Status.NO_GRANT
        elif at < merged[0][0]:
            status = Status.BEFORE_GRANT
        else:
            status = Status.AFTER_REVOCATION
        expected.append((row, status.value))
    keys = key_tables(grant_frame(grants))
    delivery_frame = pl.DataFrame(
        [(row, u, a, instant(at), True) for row, (u, a, at) in enumerate(deliveries)],
        schema={
            "_row": pl.Int64,
            "u": pl.Int64,
            "a": pl.Int64,
            "delivered_at": TIMESTAMP,
            "_valid": pl.Boolean,
        },
        orient="row",
    )
    window = Window(EPOCH - timedelta(days=1), EPOCH + timedelta(days=30))
    counts, open_rows = classify(delivery_frame.lazy(), keys, ["u", "a"], window)
    reported = report(open_rows.collect(), keys, ["u", "a"])
    got = reported.select("_row", pl.col(STATUS).cast(pl.String)).sort("_row").rows()
    assert got == expected
    assert counts.collect().row(0) == (len(deliveries), 0)
