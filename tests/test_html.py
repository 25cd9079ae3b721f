"""The HTML report: figures equal summary.json, hostile IDs escaped, no external resource, the
`incident report` command, and a real browser (headless Chromium) rendering the page."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from incident import ScanConfig, ScanResult, scan
from incident.cli import cli
from incident.config import ReportFormat
from incident.errors import ExitCode, InputError
from incident.report.html import daily_events, html_report, render_html, write_html
from tests.conftest import ScanFn, delivery, grant, utc

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_USER = "<script>alert(1)</script>"
SCRIPT_DEVELOPER = '"><script>alert("dev")</script>'
IMG_EVENT_TYPE = "<img src=x onerror=alert(1)>"
HOSTILE = (SCRIPT_USER, SCRIPT_DEVELOPER, IMG_EVENT_TYPE)
# Every element the report may contain: anything else would be injected markup.
ELEMENTS = {
    *("html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section"),
    *("h1", "h2", "h3", "p", "div", "span", "code", "ul", "li", "dl", "dt", "dd"),
    *("table", "caption", "thead", "tbody", "tr", "th", "td", "details", "summary"),
    *("svg", "rect", "line", "text", "desc"),
}
FIGURE_TOTALS = ("events_misdelivered", "deliveries_misdelivered", "users_exposed")


class Page(HTMLParser):
    """Every start tag with its attributes, and the `data-figure` values and texts."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.figures: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self._open: list[tuple[str, str]] = []  # (tag, figure name) of open figure elements
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        if "data-figure" in attributes:
            name = attributes["data-figure"]
            self.figures[name] = attributes["data-value"]
            self.texts[name] = ""
            self._open.append((tag, name))

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, name in self._open:
            self.texts[name] += data

    def rows(self, attribute: str) -> list[dict[str, str]]:
        return [a for tag, a in self.tags if tag == "tr" and attribute in a]


def expected_figures(summary: dict[str, Any]) -> dict[str, str]:
    """The key figures as summary.json states them."""
    totals, accounting = summary["totals"], summary["accounting"]
    figures = {name: str(totals[name]) for name in FIGURE_TOTALS}
    figures["developers_exposed"] = str(totals["developers_exposed"])
    figures["data_subjects"] = str(totals["users_exposed"])
    figures["data_records"] = str(totals["events_misdelivered"])
    figures["recipients"] = str(totals["developers_exposed"])
    figures |= {name: str(value) for name, value in accounting.items()}
    figures["window_since"] = summary["window"]["since"]
    figures["window_until"] = summary["window"]["until"]
    by_type = summary["by_event_type"]
    for name, event_type in (
        ("direct_messages", "direct_message"),
        ("protected_posts", "protected_tweet"),
    ):
        counts = by_type.get(event_type, {"events": 0, "deliveries": 0})
        figures[f"records_{name}"] = str(counts["events"])
        figures[f"records_{name}_deliveries"] = str(counts["deliveries"])
    return figures


def assert_figures_match(page: Page, summary: dict[str, Any]) -> None:
    for name, value in expected_figures(summary).items():
        assert page.figures[name] == value, name
        shown = page.texts[name].replace(",", "")
        assert shown == value, name
    breakdown = {
        (row["data-breakdown"], row["data-key"]): (
            int(row["data-events"]),
            int(row["data-deliveries"]),
        )
        for row in page.rows("data-breakdown")
    }
    assert breakdown == {
        (key, name): (counts["events"], counts["deliveries"])
        for key in ("by_event_type", "by_reason", "by_cause")
        for name, counts in summary[key].items()
    }


@pytest.fixture
def hostile(run_scan: ScanFn) -> ScanResult:
    """A small scan whose IDs and event types are markup, with every kind of row: a DM retried
    across midnight, a protected post, an event of a hostile type from an unregistered app, an
    authorized delivery, a rejected row and one outside the window."""
    return run_scan(
        [
            delivery(
                "dm-1",
                utc(2018, 3, 1, 23, 59, 59),
                11,
                SCRIPT_USER,
                "direct_message",
                sender_id="7",
                recipient_id=SCRIPT_USER,
            ),
            delivery(
                "dm-1",
                utc(2018, 3, 2, 0, 0, 30),
                11,
                SCRIPT_USER,
                "direct_message",
                sender_id="7",
                recipient_id=SCRIPT_USER,
            ),
            delivery("pt-1", utc(2018, 3, 2, 9), 11, "5", "protected_tweet", sender_id="6"),
            delivery("x-1", utc(2018, 3, 5, 12), 12, "5", IMG_EVENT_TYPE),
            delivery("ok-1", utc(2018, 3, 5, 12), 10, "1", "tweet"),
            delivery(None, utc(2018, 3, 5, 12), 10, "1", "tweet"),
            delivery("late-1", utc(2019, 1, 1), 11, "5", "tweet"),
        ],
        [grant("1", 10)],
        apps=[
            {"app_id": 10, "developer_id": "dev-a"},
            {"app_id": 11, "developer_id": SCRIPT_DEVELOPER},
        ],
    )


def summary_of(result: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((result / "summary.json").read_text(encoding="utf-8"))
    return summary


# The document as HTML text


def test_figures_equal_summary_json(hostile: ScanResult) -> None:
    summary = summary_of(hostile.out)
    page = Page(render_html(hostile.out))
    assert_figures_match(page, summary)
    assert summary["totals"]["events_misdelivered"] == 3  # the test exercises real findings
    assert page.figures["records_other_events"] == "1"
    assert page.figures["records_other_events_deliveries"] == "1"
    # Subjects by role, from the users report: SCRIPT_USER is subscriber and recipient.
    assert page.figures["subjects_subscriber"] == "2"
    assert page.figures["subjects_correspondents"] == "2"
    assert page.figures["subjects_author"] == "1"
    assert page.figures["exposure_first"] == "2018-03-01T23:59:59Z"
    assert page.figures["exposure_last"] == "2018-03-05T12:00:00Z"


def test_hostile_ids_and_event_types_are_escaped(hostile: ScanResult) -> None:
    document = render_html(hostile.out)
    page = Page(document)
    assert {tag for tag, _ in page.tags} <= ELEMENTS
    assert "<script" not in document.lower()
    assert "<img" not in document.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert not [name for _, a in page.tags for name in a if name.startswith("on")]
    # Escaped, the values still read back exactly as they are in the data.
    assert [r["data-developer-id"] for r in page.rows("data-developer-id")] == [
        SCRIPT_DEVELOPER,
        "unknown:12",
    ]
    assert SCRIPT_USER in [r["data-user-id"] for r in page.rows("data-user-id")]
    assert IMG_EVENT_TYPE in [r["data-key"] for r in page.rows("data-breakdown")]


def test_no_external_resource_and_no_script(hostile: ScanResult, tmp_path: Path) -> None:
    for document in (render_html(hostile.out), render_html(sample_result(tmp_path))):
        page = Page(document)
        assert "http://" not in document
        assert "https://" not in document
        assert "url(" not in document
        assert "@import" not in document
        links = {"src", "href", "xlink:href", "srcset", "action", "poster", "data"}
        assert not [(tag, a) for tag, a in page.tags if links & set(a)]
        csp = [a["content"] for tag, a in page.tags if a.get("http-equiv")]
        assert csp == ["default-src 'none'; style-src 'unsafe-inline'; img-src data:"]
    assert "src=" not in document  # the sample's IDs hold no markup


def sample_result(tmp_path: Path) -> Path:
    """sample_logs/ scanned as the quick start does."""
    sample = ROOT / "sample_logs"
    out = tmp_path / "sample-result"
    scan(
        ScanConfig(
            deliveries=str(sample / "deliveries"),
            authorizations=str(sample / "authorizations.parquet"),
            apps=str(sample / "apps.parquet"),
            out=out,
        )
    )
    return out


def test_same_result_same_bytes_in_memory_or_from_disk(hostile: ScanResult) -> None:
    document = render_html(hostile.out)
    assert render_html(hostile.out) == document
    in_memory = html_report(
        hostile.summary, hostile.users, hostile.developers, hostile.misdeliveries
    )
    assert in_memory == document


def test_csv_only_result_gives_the_same_report(run_scan: ScanFn, hostile: ScanResult) -> None:
    deliveries = pl.read_parquet(hostile.out.parent / "deliveries.parquet")
    grants = pl.read_parquet(hostile.out.parent / "authorizations.parquet")
    apps = pl.read_parquet(hostile.out.parent / "apps.parquet")
    csv_only = run_scan(deliveries, grants, apps, formats=(ReportFormat.CSV,))
    assert not (csv_only.out / "users.parquet").exists()
    # Only the input paths differ: the same rows were written to another case directory.
    document = render_html(csv_only.out).replace(str(csv_only.out.parent), str(hostile.out.parent))
    assert document == render_html(hostile.out)


def test_timeline_counts_each_event_once_on_its_first_day(hostile: ScanResult) -> None:
    daily = daily_events(hostile.misdeliveries)
    assert daily.rows() == [(date(2018, 3, 1), 1), (date(2018, 3, 2), 1), (date(2018, 3, 5), 1)]
    page = Page(render_html(hostile.out))
    bars = [
        (a["data-day"], a["data-events"])
        for tag, a in page.tags
        if tag == "rect" and "data-day" in a
    ]
    assert bars == [("2018-03-01", "1"), ("2018-03-02", "1"), ("2018-03-05", "1")]
    chart = next(a for tag, a in page.tags if a.get("id") == "timeline-chart")
    assert (chart["data-start"], chart["data-end"]) == ("2018-03-01", "2018-03-05")


def test_a_long_span_is_drawn_in_whole_months(run_scan: ScanFn) -> None:
    result = run_scan(
        [delivery(1, utc(2017, 5, 20), 11), delivery(2, utc(2018, 9, 9), 11)], [grant(1, 10)]
    )
    page = Page(render_html(result.out))
    chart = next(a for tag, a in page.tags if a.get("id") == "timeline-chart")
    assert (chart["data-start"], chart["data-end"]) == ("2017-05-01", "2018-09-30")
    ticks = [a for tag, a in page.tags if tag == "text" and a.get("class") == "tick"]
    assert len(ticks) > 3


def test_a_scan_without_findings_still_renders(run_scan: ScanFn) -> None:
    result = run_scan([delivery(1, utc(2018, 3, 1), 10, 1)], [grant(1, 10)])
    document = render_html(result.out)
    page = Page(document)
    assert_figures_match(page, summary_of(result.out))
    assert page.figures["events_misdelivered"] == "0"
    assert page.figures["exposure_first"] == ""
    assert "No misdelivered events in the window." in document
    assert not [a for tag, a in page.tags if a.get("id") == "timeline-chart"]


def test_exact_counts_are_not_called_approximate(hostile: ScanResult) -> None:
    # GDPR Art. 33(3)(a) asks for approximate numbers at least; ours are exact counts.
    document = render_html(hostile.out)
    assert "Approximate" not in document
    assert "approximate number of" not in document.lower()
    assert (
        "<td>Number of data subjects <span class=muted>(distinct users, exact for the scanned "
        "logs)</span></td>" in document
    )
    assert (
        "<td>Number of personal data records <span class=muted>(exact for the scanned logs)"
        "</span></td>" in document
    )
    assert "The counts are exact for the scanned logs" in document


def test_breakdowns_say_when_their_events_add_up_to_more(
    run_scan: ScanFn, hostile: ScanResult
) -> None:
    # One event, delivered before its grant and retried after the revocation: two reasons.
    result = run_scan(
        [delivery(1, utc(2018, 3, 1), 11), delivery(1, utc(2018, 3, 4), 11)],
        [grant(1, 11, utc(2018, 3, 2), utc(2018, 3, 3))],
    )
    summary = summary_of(result.out)
    assert summary["totals"]["events_misdelivered"] == 1
    assert sum(c["events"] for c in summary["by_reason"].values()) == 2
    assert sum(c["deliveries"] for c in summary["by_reason"].values()) == 2
    assert summary["by_cause"] == {"unexplained": {"events": 1, "deliveries": 2}}
    assert (
        '<p class="muted" id="breakdowns-note">Events are counted once per category they fall '
        "in: an event delivered several times can fall in more than one reason, so the events "
        "by reason (2) add up to more than the 1 event misdelivered; deliveries always add up.</p>"
    ) in render_html(result.out)
    # Where every breakdown adds up to the events misdelivered, there is nothing to explain.
    assert 'id="breakdowns-note"' not in render_html(hostile.out)


def test_not_a_result_is_an_input_error(tmp_path: Path, hostile: ScanResult) -> None:
    with pytest.raises(InputError, match=r"no summary\.json"):
        render_html(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        render_html(tmp_path / "missing")
    (tmp_path / "summary.json").write_text('{"tool": {"name": "other"}}')
    with pytest.raises(
        InputError, match=r"not an incident result \(summary\.json not written by incident\)"
    ):
        render_html(tmp_path)
    (hostile.out / "developers.parquet").write_text("not parquet")
    with pytest.raises(InputError, match=r"developers\.parquet: not a readable developers report"):
        render_html(hostile.out)


def test_write_html_is_whole_or_nothing(tmp_path: Path) -> None:
    target = write_html("<!doctype html>\n", tmp_path / "report.html")
    assert target.read_text(encoding="utf-8") == "<!doctype html>\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


# The command line


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_report_writes_the_html_file(hostile: ScanResult, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    code, stdout, stderr = invoke("report", str(hostile.out), "--html", str(target))
    assert (code, stdout, stderr) == (ExitCode.OK, "", f"wrote {target}\n")
    assert target.read_text(encoding="utf-8") == render_html(hostile.out)


def test_report_on_a_directory_that_is_not_a_result_exits_4(tmp_path: Path) -> None:
    code, stdout, stderr = invoke("report", str(tmp_path), "--html", str(tmp_path / "r.html"))
    assert code == ExitCode.INPUT_ERROR
    assert stdout == ""
    assert stderr == f"error: {tmp_path}: not an incident result (no summary.json)\n"
    assert not (tmp_path / "r.html").exists()
    code, _, stderr = invoke("report", str(tmp_path / "nope"), "--html", str(tmp_path / "r.html"))
    assert code == ExitCode.INPUT_ERROR
    assert stderr == f"error: {tmp_path / 'nope'}: not an incident result (does not exist)\n"


def test_report_to_an_unwritable_file_is_a_clear_error(hostile: ScanResult, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "report.html"
    code, stdout, stderr = invoke("report", str(hostile.out), "--html", str(target))
    assert code == ExitCode.USAGE_ERROR
    assert stdout == ""
    assert stderr == f"error: --html {target}: {tmp_path / 'a-file'} is not a directory\n"
    code, _, stderr = invoke("report", str(hostile.out), "--html", str(tmp_path))
    assert code == ExitCode.USAGE_ERROR
    assert f"Invalid value for '--html': File '{tmp_path}' is a directory." in stderr
    code, _, stderr = invoke("report", str(hostile.out))
    assert code == ExitCode.USAGE_ERROR
    assert "Missing option '--html'" in stderr


def test_report_refuses_to_write_into_the_result(hostile: ScanResult) -> None:
    before = sorted(p.name for p in hostile.out.iterdir())
    target = hostile.out / "report.html"
    code, _, stderr = invoke("report", str(hostile.out), "--html", str(target))
    assert code == ExitCode.USAGE_ERROR
    assert "inside the result directory" in stderr
    assert sorted(p.name for p in hostile.out.iterdir()) == before


# A real browser

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium in .ci/run)")
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


def test_chromium_renders_the_figures_of_summary_json(hostile: ScanResult, tmp_path: Path) -> None:
    page_file = write_html(render_html(hostile.out), tmp_path / "report.html")
    dom = chromium(tmp_path, "--dump-dom", page_file.as_uri()).stdout
    page = Page(dom)
    assert_figures_match(page, summary_of(hostile.out))
    assert not [tag for tag, _ in page.tags if tag in {"script", "img"}]
    assert SCRIPT_DEVELOPER in [r["data-developer-id"] for r in page.rows("data-developer-id")]
    assert [a["data-events"] for tag, a in page.tags if tag == "rect" and "data-day" in a] == [
        "1",
        "1",
        "1",
    ]


def test_chromium_screenshot_of_the_sample_report(tmp_path: Path) -> None:
    page_file = write_html(render_html(sample_result(tmp_path)), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", page_file.as_uri())
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1280, 2400)
    assert len(png) > 50_000  # a blank or error page compresses to a few kilobytes
