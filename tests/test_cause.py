"""Attribution: every misdelivery gets a cause, and collisions name the intended app."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import polars as pl
import pytest
from click.testing import CliRunner
from rich.console import Console

from incident import ScanResult
from incident.cli import cli
from incident.cli.terminal import render_summary
from incident.config import Attribution
from incident.errors import ExitCode
from incident.pipeline.normal import endpoint_ip, url_path
from incident.report.markdown import summary_markdown
from incident.summary import Summary
from tests.conftest import ScanFn, delivery, grant, utc, write

T = utc(2018, 3, 1, 12)
IP, OTHER_IP = "192.0.2.9", "198.51.100.4"
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)

# Apps 10 (A) and 20 (B) share IP and path: the incident's pre-condition. 30 shares the IP with
# another path, 40 the path on another IP; 50 (E) and 60 (F) share A's endpoint too.
APPS = [
    {
        "app_id": 10,
        "developer_id": "devA",
        "webhook_url": "https://a.example/hook",
        "resolved_ip": IP,
    },
    {
        "app_id": 20,
        "developer_id": "devB",
        "webhook_url": "https://b.example/hook",
        "resolved_ip": IP,
    },
    {
        "app_id": 30,
        "developer_id": "devC",
        "webhook_url": "https://c.example/other",
        "resolved_ip": IP,
    },
    {
        "app_id": 40,
        "developer_id": "devD",
        "webhook_url": "https://d.example/hook",
        "resolved_ip": OTHER_IP,
    },
    {
        "app_id": 50,
        "developer_id": "devE",
        "webhook_url": "https://e.example/hook?x=1",
        "resolved_ip": IP,
    },
    {
        "app_id": 60,
        "developer_id": "devF",
        "webhook_url": "http://f.example/hook",
        "resolved_ip": IP,
    },
]
URL = {row["app_id"]: row["webhook_url"] for row in APPS}
IP_OF = {row["app_id"]: row["resolved_ip"] for row in APPS}


def sent(
    event: int, at: Any, app: int, user: int, backend: str = "h1", **more: Any
) -> dict[str, Any]:
    """A delivery with its evidence: the app's own URL and IP, and the backend that sent it."""
    return delivery(
        event,
        at,
        app,
        user,
        more.pop("event_type", "direct_message"),
        sender_id=user,
        recipient_id=user + 1000,
        webhook_url=URL[app],
        resolved_ip=IP_OF[app],
        backend_host=backend,
        **more,
    )


def collision(
    trigger_at: Any = T - 2 * MINUTE, trigger_backend: str = "h1", intended: int = 10
) -> list[dict[str, Any]]:
    """User 1's event meant for `intended` also reaches app 20 (B), whose own user 2 had an
    event on `trigger_backend` at `trigger_at`."""
    return [
        sent(100, trigger_at, 20, 2, trigger_backend, event_type="tweet"),
        sent(101, T, intended, 1),
        sent(101, T + SECOND, 20, 1),
    ]


GRANTS = [grant(1, 10), grant(2, 20)]


def explained(result: ScanResult) -> list[dict[str, Any]]:
    return (
        result.misdeliveries.collect()
        .select(
            "event_id",
            "app_id",
            "cause",
            "intended_app_id",
            "intended_developer_id",
            "intended_app_candidates",
        )
        .to_dicts()
    )


def test_a_shared_endpoint_collision_names_the_intended_app_and_developer(run_scan: ScanFn) -> None:
    result = run_scan(collision(), GRANTS, APPS)
    assert explained(result) == [
        {
            "event_id": "101",
            "app_id": "20",
            "cause": "shared_endpoint_collision",
            "intended_app_id": "10",
            "intended_developer_id": "devA",
            "intended_app_candidates": 1,
        }
    ]
    assert result.summary.to_json()["by_cause"] == {
        "shared_endpoint_collision": {"events": 1, "deliveries": 1}
    }
    assert result.developers.select("developer_id", "intended_developer_ids").to_dicts() == [
        {"developer_id": "devB", "intended_developer_ids": ["devA"]}
    ]
    endpoints = pl.read_parquet(result.out / "endpoints.parquet")
    assert endpoints.drop("first_misdelivered_at", "last_misdelivered_at").to_dicts() == [
        {
            "resolved_ip": IP,
            "url_path": "/hook",
            "apps": 4,
            "app_ids": ["10", "20", "50", "60"],
            "developers": 4,
            "developer_ids": ["devA", "devB", "devE", "devF"],
            "misdeliveries": 1,
            "events": 1,
            "users_exposed": 2,  # the subscriber and the other party of the DM
        }
    ]
    assert endpoints["first_misdelivered_at"].to_list() == [T + SECOND]
    assert (result.out / "endpoints.csv").read_text().startswith("\ufeffresolved_ip,url_path,")


@pytest.mark.parametrize(
    ("trigger_at", "backend", "why"),
    [
        (T - 7 * MINUTE, "h1", "the receiving app's own traffic is too long before"),
        (
            T + SECOND + 6 * MINUTE + SECOND,
            "h1",
            "the receiving app's own traffic is too long after",
        ),
        (T - 2 * MINUTE, "h2", "the receiving app's own traffic came from another backend"),
    ],
)
def test_without_the_receiving_apps_own_traffic_nearby_there_is_no_collision(
    run_scan: ScanFn, trigger_at: Any, backend: str, why: str
) -> None:
    result = run_scan(collision(trigger_at, backend), GRANTS, APPS)
    assert [row["cause"] for row in explained(result)] == ["unexplained"], why


def test_the_collision_window_is_inclusive_and_configurable(run_scan: ScanFn) -> None:
    edge = collision(T + SECOND - 6 * MINUTE)
    assert explained(run_scan(edge, GRANTS, APPS))[0]["cause"] == "shared_endpoint_collision"
    late = collision(T - 9 * MINUTE)
    assert explained(run_scan(late, GRANTS, APPS))[0]["cause"] == "unexplained"
    wide = Attribution(collision_window=10 * MINUTE)
    result = run_scan(late, GRANTS, APPS, attribution=wide)
    assert explained(result)[0]["cause"] == "shared_endpoint_collision"
    assert result.summary.to_json()["attribution"]["collision_window_seconds"] == 600


def test_a_retry_of_the_same_event_is_not_the_receiving_apps_own_traffic(
    run_scan: ScanFn,
) -> None:
    deliveries = [sent(101, T, 10, 1), sent(101, T, 20, 1), sent(101, T + 20 * SECOND, 20, 1)]
    assert [r["cause"] for r in explained(run_scan(deliveries, GRANTS, APPS))] == [
        "unexplained",
        "unexplained",
    ]


@pytest.mark.parametrize(
    ("intended", "why"), [(30, "same IP, other path"), (40, "same path, other IP")]
)
def test_an_authorized_app_on_another_endpoint_is_not_the_intended_one(
    run_scan: ScanFn, intended: int, why: str
) -> None:
    result = run_scan(collision(intended=intended), [grant(1, intended), grant(2, 20)], APPS)
    assert [r["cause"] for r in explained(result)] == ["unexplained"], why


def test_the_intended_app_must_be_authorized_at_that_instant(run_scan: ScanFn) -> None:
    grants = [grant(1, 10, revoked_at=T - MINUTE), grant(2, 20)]
    causes = {r["app_id"]: r["cause"] for r in explained(run_scan(collision(), grants, APPS))}
    assert causes == {"10": "revocation_lag", "20": "unexplained"}


def test_of_several_candidates_the_one_that_received_the_event_is_chosen(
    run_scan: ScanFn,
) -> None:
    # User 1 authorized both 10 and 50 on B's endpoint; only 50 got the event itself (from
    # another backend), while 10 had other traffic on B's backend at that very instant.
    trigger, _, misdelivered = collision()
    deliveries = [
        trigger,
        misdelivered,
        sent(101, T, 50, 1, "h2"),
        sent(102, T + SECOND, 10, 1, event_type="tweet"),
    ]
    result = run_scan(deliveries, [*GRANTS, grant(1, 50)], APPS)
    row = explained(result)[0]
    assert (row["intended_app_id"], row["intended_developer_id"]) == ("50", "devE")
    assert row["intended_app_candidates"] == 2


def test_of_several_candidates_the_nearest_on_the_same_backend_then_the_smallest_id(
    run_scan: ScanFn,
) -> None:
    grants = [*GRANTS, grant(1, 50)]
    both = [
        *collision()[::2],  # the trigger and the misdelivery, no delivery of event 101 to A
        # 10 was active closer in time, but from another backend than the misdelivery.
        sent(102, T, 10, 1, "h2", event_type="tweet"),
        sent(103, T - 1 * MINUTE, 50, 1, event_type="tweet"),
    ]
    assert explained(run_scan(both, grants, APPS))[0]["intended_app_id"] == "50"
    neither = collision()[::2]
    row = explained(run_scan(neither, grants, APPS))[0]
    assert (row["intended_app_id"], row["intended_app_candidates"]) == ("10", 2)


def test_a_collision_whose_receiving_app_is_authorized_is_no_misdelivery(
    run_scan: ScanFn,
) -> None:
    result = run_scan(collision(), [*GRANTS, grant(1, 20)], APPS)
    assert result.accounting.rows_misdelivered == 0
    assert result.accounting.rows_authorized == 3
    endpoints = pl.read_parquet(result.out / "endpoints.parquet")
    assert endpoints["misdeliveries"].to_list() == [0]
    assert result.summary.to_json()["by_cause"] == {}


def test_the_registry_gives_the_endpoint_when_the_deliveries_do_not(run_scan: ScanFn) -> None:
    bare = [
        {k: v for k, v in row.items() if k not in ("webhook_url", "resolved_ip")}
        for row in collision()
    ]
    result = run_scan(bare, GRANTS, APPS)
    assert explained(result)[0]["cause"] == "shared_endpoint_collision"
    assert result.summary.to_json()["attribution"]["evidence_missing"] == []


def test_the_deliveries_give_the_endpoint_when_the_registry_does_not(run_scan: ScanFn) -> None:
    registry = [{"app_id": r["app_id"], "developer_id": r["developer_id"]} for r in APPS]
    result = run_scan(collision(), GRANTS, registry)
    assert explained(result)[0]["intended_app_id"] == "10"
    without_registry = run_scan(collision(), GRANTS)
    assert explained(without_registry)[0]["intended_developer_id"] == "10"  # app is developer


def test_without_evidence_only_revocation_lag_or_unexplained_and_the_summary_says_why(
    run_scan: ScanFn,
) -> None:
    bare = [
        {k: v for k, v in row.items() if k not in ("webhook_url", "resolved_ip", "backend_host")}
        for row in collision()
    ]
    registry = [{"app_id": r["app_id"], "developer_id": r["developer_id"]} for r in APPS]
    result = run_scan(bare, GRANTS, registry)
    assert [r["cause"] for r in explained(result)] == ["unexplained"]
    assert result.summary.to_json()["attribution"]["evidence_missing"] == [
        "deliveries.backend_host",
        "deliveries.webhook_url",
        "deliveries.resolved_ip",
    ]
    assert any(
        "cannot be attributed to a shared endpoint" in w
        for w in result.summary.to_json()["warnings"]
    )
    assert pl.read_parquet(result.out / "endpoints.parquet").height == 0


@pytest.mark.parametrize(
    ("after", "cause"),
    [
        (timedelta(0), "revocation_lag"),
        (5 * MINUTE, "revocation_lag"),
        (5 * MINUTE + timedelta(microseconds=1), "unexplained"),
        (timedelta(days=3), "unexplained"),
    ],
)
def test_revocation_lag_is_a_delivery_within_the_grace_after_the_revocation(
    run_scan: ScanFn, after: timedelta, cause: str
) -> None:
    grants = [grant(1, 10, revoked_at=T), grant(1, 10, utc(2016, 1, 1), T - timedelta(days=9))]
    result = run_scan([delivery(1, T + after, 10, 1)], grants)
    assert explained(result)[0]["cause"] == cause


def test_only_a_revocation_makes_revocation_lag(run_scan: ScanFn) -> None:
    before_grant = [grant(1, 10, granted_at=T + MINUTE)]
    result = run_scan([delivery(1, T, 10, 1), delivery(2, T, 11, 1)], before_grant)
    assert [r["cause"] for r in explained(result)] == ["unexplained", "unexplained"]
    grace = Attribution(revocation_grace=timedelta(0))
    exact = run_scan([delivery(1, T, 10, 1)], [grant(1, 10, revoked_at=T)], attribution=grace)
    assert explained(exact)[0]["cause"] == "revocation_lag"


def test_a_collision_signature_outranks_revocation_lag(run_scan: ScanFn) -> None:
    grants = [*GRANTS, grant(1, 20, revoked_at=T - MINUTE)]
    result = run_scan(collision(), grants, APPS)
    assert explained(result)[0]["cause"] == "shared_endpoint_collision"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://a.example/hook", "/hook"),
        ("https://a.example:8443/hook/?x=1#f", "/hook/"),
        ("HTTPS://A.example", "/"),
        ("a.example/hook", "/hook"),
        ("https://a.example?x=/hook", "/"),
        ("https://a.example/Hook", "/Hook"),
        ("HTTPS://A.EXAMPLE:443/hook?crc_token=abc", "/hook"),
        ("https://[2001:DB8::1]:8443/hook#top", "/hook"),
        ("https://a.example/%7euser/%41b", "/~user/Ab"),
        ("https://a.example/a%2fb%3a", "/a%2Fb%3A"),
        ("https://a.example/%2541", "/%2541"),
        (None, None),
    ],
)
def test_url_path(url: str | None, path: str | None) -> None:
    frame = pl.DataFrame({"url": [url]}, schema={"url": pl.String})
    assert frame.select(url_path(pl.col("url")))["url"].to_list() == [path]


@pytest.mark.parametrize(
    ("ips", "form"),
    [
        (["[2001:DB8::1]", "2001:db8:0:0::1", "2001:0db8::0001"], "2001:db8::1"),
        (["192.0.2.9", " 192.0.2.9", "::ffff:192.0.2.9"], "192.0.2.9"),
        (["Not-An-IP"], "not-an-ip"),
    ],
)
def test_endpoint_ip_has_one_form(ips: list[str], form: str) -> None:
    frame = pl.DataFrame({"ip": [*ips, None]})
    assert frame.select(endpoint_ip(pl.col("ip")))["ip"].to_list() == [*[form] * len(ips), None]


def test_endpoints_written_differently_still_collide(run_scan: ScanFn) -> None:
    v6 = "2001:db8::9"
    apps = [
        {**APPS[0], "webhook_url": "HTTPS://A.example:443/%68ook", "resolved_ip": "[2001:DB8::9]"},
        {**APPS[1], "webhook_url": "https://b.example/hook?crc_token=1", "resolved_ip": v6},
    ]
    deliveries = [
        {**row, "resolved_ip": "2001:db8:0:0::9", "webhook_url": f"{row['webhook_url']}?crc=2"}
        for row in collision()
    ]
    result = run_scan(deliveries, GRANTS, apps)
    assert [(r["cause"], r["intended_app_id"]) for r in explained(result)] == [
        ("shared_endpoint_collision", "10")
    ]
    endpoints = pl.read_parquet(result.out / "endpoints.parquet")
    assert endpoints.select("resolved_ip", "url_path").to_dicts() == [
        {"resolved_ip": v6, "url_path": "/hook"}
    ]


def test_cli_durations_and_unexplained_first(tmp_path: Any) -> None:
    logs = tmp_path / "logs"
    write(
        [*collision(), sent(7, T, 40, 9)],
        logs / "deliveries.parquet",
    )
    write(GRANTS, logs / "authorizations.parquet")
    write(APPS, logs / "apps.parquet")
    runner = CliRunner()
    bad = runner.invoke(
        cli, ["scan", str(logs), "--out", str(tmp_path / "o"), "--collision-window", "6"]
    )
    assert bad.exit_code == ExitCode.USAGE_ERROR
    assert "expected a duration such as 6m" in bad.stderr
    ok = runner.invoke(
        cli,
        [
            "scan",
            str(logs),
            "--out",
            str(tmp_path / "o"),
            "--collision-window",
            "3m",
            "--revocation-grace",
            "1m",
        ],
    )
    assert ok.exit_code == ExitCode.OK, ok.stderr
    section = ok.stderr.split("By cause:")[1].split("By event type:")[0].splitlines()
    assert [line.split()[0] for line in section[2:4]] == [
        "unexplained",
        "shared_endpoint_collision",
    ]
    assert '"collision_window_seconds": 180' in (tmp_path / "o" / "summary.json").read_text()


def test_input_columns_named_like_working_columns_pass_through(run_scan: ScanFn) -> None:
    odd = {"path": "/x", "ip": "1.2.3.4", "_m": 7, "_lag": True, "_ip": "x", "_path": "y"}
    rows = [row | odd for row in collision()]
    result = run_scan(rows, GRANTS, APPS)
    assert explained(result)[0]["cause"] == "shared_endpoint_collision"
    assert result.misdeliveries.collect().select(list(odd)).to_dicts() == [odd]
    endpoints = pl.read_parquet(result.out / "endpoints.parquet")
    assert endpoints["misdeliveries"].to_list() == [1]


def test_zero_durations_are_values(tmp_path: Any) -> None:
    logs = tmp_path / "logs"
    write(collision(), logs / "deliveries.parquet")
    write(GRANTS, logs / "authorizations.parquet")
    write(APPS, logs / "apps.parquet")
    out = tmp_path / "o"
    args = ["scan", str(logs), "--out", str(out), "-q", "--json"]
    zero = CliRunner().invoke(cli, [*args, "--collision-window", "0s", "--revocation-grace", "0s"])
    assert zero.exit_code == ExitCode.OK, zero.stderr
    assert '"collision_window_seconds": 0,' in zero.stdout
    assert '"revocation_grace_seconds": 0,' in zero.stdout
    assert '"unexplained"' in zero.stdout and "shared_endpoint_collision" not in zero.stdout
    huge = CliRunner().invoke(cli, [*args, "--collision-window", "99999999999999h"])
    assert huge.exit_code == ExitCode.USAGE_ERROR
    assert "expected at most 366 days" in huge.stderr


def test_a_candidate_without_nearby_traffic_is_not_ranked_below_one_with_other_traffic(
    run_scan: ScanFn,
) -> None:
    # 10 and 60 both qualify; 60 was active, but on another backend: no evidence for either.
    rows = [collision()[0], sent(600, T - MINUTE, 60, 3, "h2"), collision()[2]]
    grants = [*GRANTS, grant(1, 60), grant(3, 60)]
    row = explained(run_scan(rows, grants, APPS))[0]
    assert (row["intended_app_id"], row["intended_app_candidates"]) == ("10", 2)


def test_misdeliveries_are_not_the_receiving_apps_own_traffic(run_scan: ScanFn) -> None:
    # App 20 has no authorized traffic at all: its two misdeliveries do not vouch for each other.
    rows = [sent(101, T, 20, 1), sent(102, T + MINUTE, 20, 1)]
    assert [r["cause"] for r in explained(run_scan(rows, GRANTS, APPS))] == [
        "unexplained",
        "unexplained",
    ]


def test_the_same_event_delivered_for_the_receiving_apps_own_user_is_its_traffic(
    run_scan: ScanFn,
) -> None:
    # A DM between users 2 and 1: app 20 gets it for its own user 2, and wrongly for user 1.
    rows = [sent(101, T, 20, 2), sent(101, T, 10, 1), sent(101, T + SECOND, 20, 1)]
    row = explained(run_scan(rows, GRANTS, APPS))[0]
    assert (row["cause"], row["intended_app_id"]) == ("shared_endpoint_collision", "10")


def test_a_backend_column_without_values_is_missing_evidence(run_scan: ScanFn) -> None:
    rows = [row | {"backend_host": None} for row in collision()]
    result = run_scan(rows, GRANTS, APPS)
    assert result.summary.to_json()["attribution"]["evidence_missing"] == [
        "deliveries.backend_host"
    ]


def moved(app: int, ip: str = OTHER_IP) -> list[dict[str, Any]]:
    """APPS as a registry snapshot taken after `app` moved to `ip`."""
    return [{**row, "resolved_ip": ip} if row["app_id"] == app else row for row in APPS]


def test_a_candidates_own_deliveries_place_it_before_the_registry_does(run_scan: ScanFn) -> None:
    # The registry, a later snapshot, has app 10 on another IP; its delivery of the event at T
    # shows it on the shared endpoint then.
    result = run_scan(collision(), GRANTS, moved(10))
    assert [(r["cause"], r["intended_app_id"]) for r in explained(result)] == [
        ("shared_endpoint_collision", "10")
    ]


def test_a_candidate_seen_elsewhere_is_not_placed_by_the_registry(run_scan: ScanFn) -> None:
    deliveries = collision()
    deliveries[1] = {**deliveries[1], "webhook_url": "https://a.example/elsewhere"}
    result = run_scan(deliveries, GRANTS, APPS)
    assert [r["cause"] for r in explained(result)] == ["unexplained"]


def test_where_a_bare_misdelivery_went_comes_from_the_apps_traffic_first(
    run_scan: ScanFn,
) -> None:
    # The leak's row has no endpoint; app 20's own delivery two minutes earlier shows the
    # shared endpoint, while the registry has already moved it.
    deliveries = collision()
    deliveries[2] = {**deliveries[2], "webhook_url": None, "resolved_ip": None}
    result = run_scan(deliveries, GRANTS, moved(20))
    assert [(r["cause"], r["intended_app_id"]) for r in explained(result)] == [
        ("shared_endpoint_collision", "10")
    ]


def test_a_full_collision_says_so(run_scan: ScanFn) -> None:
    result = run_scan(collision(), GRANTS, APPS)
    assert result.misdeliveries.collect()["evidence"].to_list() == ["full"]
    assert result.summary.to_json()["attribution"]["by_evidence"] == {"full": 1}


def test_a_misdelivery_without_a_backend_is_classified_and_says_what_went_unchecked(
    run_scan: ScanFn,
) -> None:
    rows = collision()
    rows[2] = {**rows[2], "backend_host": None}
    other = sent(200, T, 40, 7)  # a leak with a backend: the input has the evidence
    result = run_scan([*rows, other], GRANTS, APPS)
    found = result.misdeliveries.collect().sort("event_id")
    assert found.select("event_id", "cause", "evidence", "intended_app_id").rows() == [
        ("101", "shared_endpoint_collision", "backend", "10"),
        ("200", "unexplained", "full", None),
    ]
    assert result.summary.to_json()["attribution"]["by_evidence"] == {"backend": 1, "full": 1}
    markdown = summary_markdown(result.summary, result.developers)
    assert "## By evidence\n\n| evidence | deliveries |\n| --- | ---: |\n| full | 1 |\n" in markdown
    assert "| backend | 1 |" in markdown
    console = Console(file=io.StringIO(), width=120)
    with patch("incident.cli.terminal.say", lambda line: console.print(line, markup=False)):
        render_summary(console, result)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert "By evidence:" in printed
    assert [line.split() for line in printed.split("By evidence:")[1].splitlines()[1:4]] == [
        ["evidence", "deliveries"],
        ["full", "1"],
        ["backend", "1"],
    ]


def test_traffic_without_a_backend_vouches_with_the_backend_unchecked(run_scan: ScanFn) -> None:
    rows = collision()
    rows[0] = {**rows[0], "backend_host": None}
    result = run_scan(rows, GRANTS, APPS)
    assert result.misdeliveries.collect().select("cause", "evidence").rows() == [
        ("shared_endpoint_collision", "backend")
    ]


def test_a_summary_without_evidence_counts_still_reads(run_scan: ScanFn) -> None:
    document = run_scan(collision(), GRANTS, APPS).summary.to_json()
    del document["attribution"]["by_evidence"]
    summary = Summary.from_json(document, "summary.json")
    assert summary.attribution is not None
    assert summary.attribution.by_evidence == {}
