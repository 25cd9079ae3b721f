"""One test per rule of the design contract, on small hand-made inputs."""

from __future__ import annotations

import polars as pl
import pytest

from incident import RowAccounting, Window
from tests.conftest import ScanFn, delivery, grant, utc


def reasons(result_misdeliveries: pl.DataFrame) -> list[tuple[str, str]]:
    return [
        (row["event_id"], row["reason"])
        for row in result_misdeliveries.sort("event_id").iter_rows(named=True)
    ]


def test_rule_1_valid_row_rejects_nulls_and_unparseable_values(run_scan: ScanFn) -> None:
    deliveries = [
        delivery(event_id="1", delivered_at="2018-03-01T00:00:00Z"),
        delivery(event_id=None, delivered_at="2018-03-01T00:00:00Z"),
        delivery(event_id="3", delivered_at="not a time"),
        delivery(event_id="4", delivered_at=None),
        delivery(event_id="5", delivered_at="2018-03-01T00:00:00Z", app_id=None),
        delivery(event_id="6", delivered_at="2018-03-01T00:00:00Z", for_user_id="  "),
        delivery(event_id="7", delivered_at="2018-03-01T00:00:00Z", event_type=None),
    ]
    result = run_scan(deliveries, [grant(app_id=10, for_user_id=1)])
    rejected = pl.read_parquet(result.out / "rejected.parquet").sort("reject_reason")
    assert rejected["reject_reason"].to_list() == [
        "app_id: null",
        "delivered_at: not a timestamp",
        "delivered_at: null",
        "event_id: null",
        "event_type: null",
        "for_user_id: empty",
    ]
    # A rejected row is kept as read, every value as text.
    assert rejected.filter(pl.col("event_id") == "3")["delivered_at"].to_list() == ["not a time"]
    assert result.accounting.rows_rejected == 6
    assert result.accounting.rows_authorized == 1
    assert result.summary.to_json()["rejected_by_reason"]["delivered_at: null"] == 1


def test_rule_2_in_window_is_half_open(run_scan: ScanFn) -> None:
    window = Window(utc(2018, 1, 1), utc(2018, 2, 1))
    deliveries = [
        delivery(event_id=1, delivered_at=utc(2017, 12, 31, 23, 59, 59)),
        delivery(event_id=2, delivered_at=utc(2018, 1, 1)),  # since: inside
        delivery(event_id=3, delivered_at=utc(2018, 1, 31, 23, 59, 59)),
        delivery(event_id=4, delivered_at=utc(2018, 2, 1)),  # until: outside
    ]
    result = run_scan(deliveries, [], window=window)
    assert sorted(result.misdeliveries.collect()["event_id"].to_list()) == ["2", "3"]
    assert result.accounting.rows_outside_window == 2


def test_rule_3_misdelivery_reasons_and_half_open_grants(run_scan: ScanFn) -> None:
    grants = [
        # user 1: granted, revoked, then re-granted with an overlapping duplicate row
        grant(1, 10, utc(2018, 1, 1), utc(2018, 2, 1)),
        grant(1, 10, utc(2018, 3, 1), None),
        grant(1, 10, utc(2018, 3, 1), utc(2018, 3, 10)),
        # user 2: only a future grant
        grant(2, 10, utc(2018, 6, 1), None),
        # user 3: a grant that covers no instant
        grant(3, 10, utc(2018, 1, 1), utc(2018, 1, 1)),
    ]
    deliveries = [
        delivery(event_id="a", for_user_id=1, delivered_at=utc(2018, 1, 1)),  # at granted_at
        delivery(event_id="b", for_user_id=1, delivered_at=utc(2018, 2, 1)),  # at revoked_at
        delivery(event_id="c", for_user_id=1, delivered_at=utc(2018, 2, 15)),  # in the gap
        delivery(event_id="d", for_user_id=1, delivered_at=utc(2018, 3, 20)),  # open re-grant
        delivery(event_id="e", for_user_id=2, delivered_at=utc(2018, 5, 1)),
        delivery(event_id="f", for_user_id=2, delivered_at=utc(2018, 6, 1)),
        delivery(event_id="g", for_user_id=3, delivered_at=utc(2018, 1, 1)),
        delivery(event_id="h", for_user_id=4, delivered_at=utc(2018, 1, 1)),
        delivery(event_id="i", for_user_id=1, app_id=11, delivered_at=utc(2018, 1, 5)),
    ]
    result = run_scan(deliveries, grants)
    assert reasons(result.misdeliveries.collect()) == [
        ("b", "after_revocation"),
        ("c", "after_revocation"),
        ("e", "before_grant"),
        ("g", "after_revocation"),
        ("h", "no_grant"),
        ("i", "no_grant"),
    ]
    assert result.accounting.rows_authorized == 3


def test_rule_3_ids_match_across_integer_and_text_inputs(run_scan: ScanFn) -> None:
    deliveries = [delivery(event_id=1, app_id=10, for_user_id=123)]
    grants = [grant(for_user_id=" 123", app_id="10")]
    apps = [{"app_id": 10.0, "developer_id": "dev-a"}]
    result = run_scan(deliveries, grants, apps)
    assert result.accounting.rows_authorized == 1
    result = run_scan(deliveries, [grant(for_user_id="0123", app_id="10")], apps)
    assert result.misdeliveries.collect()["developer_id"].to_list() == ["dev-a"]


def test_rule_4_exposed_users_by_role(run_scan: ScanFn) -> None:
    deliveries = [
        delivery(
            1, app_id=10, for_user_id=1, event_type="direct_message", sender_id=2, recipient_id=1
        ),
        delivery(2, app_id=10, for_user_id=3, event_type="protected_tweet", sender_id=3),
        delivery(3, app_id=10, for_user_id=4, event_type="tweet", sender_id=5),
        delivery(
            4, app_id=10, for_user_id=6, event_type="direct_message", sender_id=None, recipient_id=7
        ),
    ]
    result = run_scan(deliveries, [])
    roles = {row["user_id"]: row["roles"] for row in result.users.iter_rows(named=True)}
    assert roles == {
        "1": ["recipient", "subscriber"],
        "2": ["sender"],
        "3": ["author", "subscriber"],
        "4": ["subscriber"],  # the author of a public tweet is not exposed
        "6": ["subscriber"],
        "7": ["recipient"],
    }


def test_rule_5_counting_events_deliveries_and_developers(run_scan: ScanFn) -> None:
    deliveries = [
        # one DM, retried to app 10 and fanned out to app 11 of the same developer, and app 12
        delivery("dm", utc(2018, 3, 1), 10, 1, "direct_message", sender_id=1, recipient_id=2),
        delivery(
            "dm", utc(2018, 3, 1, 0, 0, 5), 10, 1, "direct_message", sender_id=1, recipient_id=2
        ),
        delivery("dm", utc(2018, 3, 2), 11, 1, "direct_message", sender_id=1, recipient_id=2),
        delivery("dm", utc(2018, 3, 3), 12, 2, "direct_message", sender_id=1, recipient_id=2),
        delivery("pt", utc(2018, 4, 1), 12, 2, "protected_tweet", sender_id=2),
    ]
    apps = [
        {"app_id": 10, "developer_id": "d1"},
        {"app_id": 11, "developer_id": "d1"},
        {"app_id": 12, "developer_id": "d2"},
    ]
    result = run_scan(deliveries, [], apps)
    developers = {row["developer_id"]: row for row in result.developers.iter_rows(named=True)}
    assert developers["d1"]["app_ids"] == ["10", "11"]
    assert (developers["d1"]["events"], developers["d1"]["deliveries"]) == (1, 3)
    assert developers["d1"]["users_exposed"] == 2
    assert (developers["d2"]["events"], developers["d2"]["deliveries"]) == (2, 2)
    assert (developers["d2"]["direct_messages"], developers["d2"]["protected_tweets"]) == (1, 1)
    users = {row["user_id"]: row for row in result.users.iter_rows(named=True)}
    assert users["1"]["events"] == 1
    assert users["1"]["developer_ids"] == ["d1", "d2"]
    assert users["1"]["first_exposed_at"] == utc(2018, 3, 1)
    assert users["1"]["last_exposed_at"] == utc(2018, 3, 3)
    assert users["2"]["events"] == 2
    assert users["2"]["protected_tweets"] == 1
    assert result.summary.to_json()["totals"] == {
        "events_misdelivered": 2,
        "deliveries_misdelivered": 5,
        "users_exposed": 2,
        "developers_exposed": 2,
    }
    assert result.summary.to_json()["by_event_type"]["direct_message"] == {
        "events": 1,
        "deliveries": 4,
    }


def test_rule_5_unregistered_app_is_its_own_unknown_developer(run_scan: ScanFn) -> None:
    deliveries = [delivery(1, app_id=10), delivery(2, app_id=20), delivery(3, app_id=30)]
    apps = [{"app_id": 10, "developer_id": "d1"}, {"app_id": 30, "developer_id": None}]
    result = run_scan(deliveries, [], apps)
    assert result.developers["developer_id"].to_list() == ["d1", "unknown:20", "unknown:30"]
    result = run_scan(deliveries, [])
    assert result.developers["developer_id"].to_list() == ["10", "20", "30"]


def test_rule_6_row_accounting_adds_up(run_scan: ScanFn) -> None:
    deliveries = [
        delivery(1, utc(2016, 1, 1)),
        delivery(2, utc(2018, 1, 1)),
        delivery(3, utc(2018, 1, 1), for_user_id=2),
        delivery(None, utc(2018, 1, 1)),
    ]
    result = run_scan(deliveries, [grant()])
    assert result.accounting == RowAccounting(4, 1, 1, 1, 1)
    assert result.summary.to_json()["accounting"] == {
        "rows_read": 4,
        "rows_rejected": 1,
        "rows_outside_window": 1,
        "rows_authorized": 1,
        "rows_misdelivered": 1,
    }
    with pytest.raises(Exception, match="row accounting"):
        RowAccounting(4, 1, 1, 1, 0)


def test_rule_1_registry_rows_without_app_are_counted(run_scan: ScanFn) -> None:
    apps = [{"app_id": 10, "developer_id": "d1"}, {"app_id": None, "developer_id": "d2"}]
    result = run_scan([delivery()], [], apps)
    assert result.summary.to_json()["inputs"]["apps"]["rows_rejected"] == 1
    assert "1 apps registry rows rejected (no app_id)" in result.summary.to_json()["warnings"]


def test_rule_3_a_key_with_many_separate_grants(run_scan: ScanFn) -> None:
    # More islands than the key table holds in columns: the rest are checked against gaps.
    grants = [grant(1, 10, utc(2018, m, 1), utc(2018, m, 10)) for m in (1, 2, 3, 4)]
    grants.append(grant(1, 10, utc(2018, 5, 1), None))
    deliveries = [delivery(f"in{m}", utc(2018, m, 5), for_user_id=1) for m in (1, 2, 3, 4, 5)] + [
        delivery(f"gap{m}", utc(2018, m, 20), for_user_id=1) for m in (1, 2, 3, 4)
    ]
    deliveries.append(delivery("before", utc(2017, 12, 20), for_user_id=1))
    result = run_scan(deliveries, grants)
    assert result.accounting.rows_authorized == 5
    assert reasons(result.misdeliveries.collect()) == [
        ("before", "before_grant"),
        ("gap1", "after_revocation"),
        ("gap2", "after_revocation"),
        ("gap3", "after_revocation"),
        ("gap4", "after_revocation"),
    ]


@pytest.mark.parametrize(
    ("users", "apps"),
    [
        # Narrow ranges: keys are 64-bit offsets, and an ID outside the grants' range has none.
        ((0, 1, 3), (0, 1, 3)),
        ((1_000_000_000_000, 1_000_000_000_001, 1_000_000_000_003), (-5, -4, -2)),
        # Ranges too wide for 64 bits: both IDs in one 128-bit key.
        ((-(2**63), 0, 2**63 - 1), (-(2**63), 1, 2**63 - 1)),
    ],
)
def test_rule_3_integer_keys_never_alias(
    run_scan: ScanFn, users: tuple[int, int, int], apps: tuple[int, int, int]
) -> None:
    # Grants on the corners and the middle of the ID ranges.
    (u0, u1, u2), (a0, a1, a2) = users, apps
    granted = [(u0, a0), (u1, a1), (u2, a2), (u0, a2)]
    just_outside = [(u0, a2 + 1), (u0 - 1, a0), (u2 + 1, a2), (u1, a0 - 1)]
    representable = [(u, a) for u, a in just_outside if -(2**63) <= min(u, a) <= max(u, a) < 2**63]
    # Pairs inside both ranges that no grant names: an offset key must not alias another.
    ungranted = [(u0, a1), (u1, a0), (u2, a0), (u1, a2)]
    cases = [*granted, *representable, *ungranted]
    deliveries = [delivery(i, utc(2018, 3, 1), a, u) for i, (u, a) in enumerate(cases)]
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "event_id": pl.Int64,
        "delivered_at": pl.Datetime("us", "UTC"),
        "app_id": pl.Int64,
        "for_user_id": pl.Int64,
        "event_type": pl.String,
    }
    grant_schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "for_user_id": pl.Int64,
        "app_id": pl.Int64,
        "granted_at": pl.Datetime("us", "UTC"),
        "revoked_at": pl.Datetime("us", "UTC"),
    }
    result = run_scan(
        pl.DataFrame(deliveries, schema=schema),
        pl.DataFrame([grant(u, a) for u, a in granted], schema=grant_schema),
    )
    misdelivered = {
        (int(u), int(a))
        for u, a in result.misdeliveries.collect().select("for_user_id", "app_id").rows()
    }
    assert misdelivered == set(representable) | set(ungranted)
    assert set(result.misdeliveries.collect()["reason"]) == {"no_grant"}
