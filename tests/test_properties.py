"""Property test: on random small inputs, the scan agrees with a naive pure-Python reference."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incident import ScanConfig, ScanResult, Window, scan
from incident.errors import InputError
from tests.reference import Expected, diff_expected, reference_scan, valid_grant

SINCE = datetime(2018, 1, 1, tzinfo=UTC)
UNTIL = datetime(2018, 2, 1, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))
# Instants on and around every boundary, so that equal timestamps are common.
INSTANTS = [
    SINCE - timedelta(milliseconds=1),
    SINCE,
    SINCE + timedelta(milliseconds=1),
    SINCE + timedelta(days=10),
    SINCE + timedelta(days=10, milliseconds=1),
    SINCE + timedelta(days=20),
    UNTIL - timedelta(milliseconds=1),
    UNTIL,
]
USERS = [1, 2, 3, None]
APPS = [10, 11, 12]
EVENT_TYPES = ["direct_message", "protected_tweet", "tweet"]

# How an input writes its IDs and timestamps: each input picks one, so that inputs disagree.
ID_FORMS: dict[str, Callable[[int | None], int | str | None]] = {
    "int": lambda v: v,
    "text": lambda v: None if v is None else f" {v}",
}
DType = pl.DataType | type[pl.DataType]
TIME_FORMS: dict[str, tuple[Callable[[datetime], object], DType]] = {
    "aware_utc": (lambda t: t, pl.Datetime("us", "UTC")),
    "aware_tokyo": (lambda t: t.astimezone(TOKYO), pl.Datetime("ms", "Asia/Tokyo")),
    "naive": (lambda t: t.replace(tzinfo=None), pl.Datetime("ns")),
    "epoch_ms": (lambda t: int(t.timestamp() * 1000), pl.Int64),
    "iso_offset": (lambda t: t.astimezone(TOKYO).isoformat(), pl.String),
}

instants = st.sampled_from(INSTANTS)
deliveries_rows = st.lists(
    st.fixed_dictionaries(
        {
            "event_id": st.sampled_from([1, 2, 3, 4, None]),
            "delivered_at": st.one_of(instants, st.none()),
            "app_id": st.sampled_from(APPS),
            "for_user_id": st.sampled_from(USERS),
            "event_type": st.sampled_from(EVENT_TYPES),
            "sender_id": st.sampled_from(USERS),
            "recipient_id": st.sampled_from(USERS),
        }
    ),
    min_size=1,
    max_size=12,
)
grant_rows = st.lists(
    st.tuples(
        st.sampled_from(USERS[:-1]), st.sampled_from(APPS), instants, st.one_of(instants, st.none())
    )
    .filter(lambda g: g[3] is None or g[3] >= g[2])
    .map(lambda g: {"for_user_id": g[0], "app_id": g[1], "granted_at": g[2], "revoked_at": g[3]}),
    max_size=8,
)
app_rows = st.one_of(
    st.none(),
    st.lists(st.sampled_from(APPS), unique=True).flatmap(
        lambda apps: st.tuples(*(st.sampled_from(["d1", "d2"]) for _ in apps)).map(
            lambda devs: [{"app_id": a, "developer_id": d} for a, d in zip(apps, devs, strict=True)]
        )
    ),
)


def encode(
    rows: list[dict[str, Any]], ids: str, times: str, id_columns: list[str], time_columns: list[str]
) -> tuple[list[dict[str, Any]], pl.DataFrame]:
    """The rows in one input form: as Python values for the reference, and as a frame."""
    to_id = ID_FORMS[ids]
    to_time, time_dtype = TIME_FORMS[times]
    encoded = [
        {
            k: (
                to_id(v)
                if k in id_columns
                else None
                if v is None
                else to_time(v)
                if k in time_columns
                else v
            )
            for k, v in row.items()
        }
        for row in rows
    ]
    schema: dict[str, DType] = {c: (pl.String if ids == "text" else pl.Int64) for c in id_columns}
    schema |= {c: time_dtype for c in time_columns}
    columns = list(rows[0]) if rows else [*id_columns, *time_columns]
    frame = (
        pl.DataFrame(encoded, schema={c: schema.get(c, pl.String) for c in columns}, orient="row")
        if encoded
        else pl.DataFrame(schema=schema)
    )
    return encoded, frame


def as_expected(result: ScanResult) -> Expected:
    columns = [
        "event_id",
        "delivered_at",
        "app_id",
        "for_user_id",
        "event_type",
        "developer_id",
        "reason",
    ]
    return Expected(
        users=result.users,
        # The reference knows nothing of causes: attribution has tests of its own.
        developers=result.developers.drop("intended_developer_ids"),
        misdeliveries=result.misdeliveries.collect().select(columns).sort(columns),
        accounting={
            **{k: v for k, v in result.summary.to_json()["accounting"].items()},
            **{
                k: v
                for k, v in result.summary.to_json()["totals"].items()
                if k != "deliveries_misdelivered"
            },
        },
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deliveries=deliveries_rows,
    grants=grant_rows,
    apps=app_rows,
    delivery_form=st.tuples(st.sampled_from(sorted(ID_FORMS)), st.sampled_from(sorted(TIME_FORMS))),
    grant_form=st.tuples(st.sampled_from(sorted(ID_FORMS)), st.sampled_from(sorted(TIME_FORMS))),
)
def test_scan_matches_naive_reference(
    deliveries: list[dict[str, Any]],
    grants: list[dict[str, Any]],
    apps: list[dict[str, Any]] | None,
    delivery_form: tuple[str, str],
    grant_form: tuple[str, str],
) -> None:
    delivery_values, delivery_frame = encode(
        deliveries,
        *delivery_form,
        id_columns=["event_id", "app_id", "for_user_id", "sender_id", "recipient_id"],
        time_columns=["delivered_at"],
    )
    grant_values, grant_frame = encode(
        grants,
        *grant_form,
        id_columns=["for_user_id", "app_id"],
        time_columns=["granted_at", "revoked_at"],
    )
    expected = reference_scan(delivery_values, grant_values, apps, SINCE, UNTIL)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        delivery_frame.write_parquet(root / "deliveries.parquet")
        grant_frame.write_parquet(root / "authorizations.parquet")
        if apps is not None:
            pl.DataFrame(
                apps, schema={"app_id": pl.Int64, "developer_id": pl.String}
            ).write_parquet(root / "apps.parquet")
        config = ScanConfig(
            deliveries=str(root / "deliveries.parquet"),
            authorizations=str(root / "authorizations.parquet"),
            apps=str(root / "apps.parquet") if apps is not None else None,
            out=root / "out",
            window=Window(SINCE, UNTIL),
        )
        accounting = expected.accounting
        in_window = accounting["rows_authorized"] + accounting["rows_misdelivered"]
        if not in_window or not any(valid_grant(row) for row in grant_values):
            # DESIGN rule 7: a scan that can vouch for nothing is an input error.
            with pytest.raises(InputError):
                scan(config)
            assert not (root / "out").exists()
            return
        result = scan(config)
        # The misdeliveries are read from the result, which the directory holds.
        actual = as_expected(result)
    assert diff_expected(actual, expected) == []
