"""The page: its header, headline cards and footer, the CSS and the Content-Security-Policy,
and the assembly of all sections into one document (`html_report`), from a result directory
(`render_html`) and to a file (`write_html`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from incident.config import Window, format_instant
from incident.outputs import staged_file
from incident.pipeline.impact import regulator_figures
from incident.report.html.markup import card, esc
from incident.report.html.regulator import regulator_section
from incident.report.html.sections import (
    accounting_section,
    breakdowns_section,
    inputs_section,
    top_developers_section,
    top_users_section,
    warnings_section,
)
from incident.report.html.timeline import daily_events, timeline_section
from incident.results.read import Table, read_report, read_summary
from incident.summary import Summary, Totals

# The columns of misdeliveries.parquet that the report reads.
MISDELIVERY_COLUMNS = ("event_id", "delivered_at", "event_type")

_CSS = """
:root{--ink:#1d2433;--muted:#5b6472;--line:#d8dde5;--soft:#f4f6f9;--accent:#b42318;
--bar:#c2410c}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--ink);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:32px 32px 48px}
header{border-bottom:3px solid var(--accent);padding-bottom:12px;margin-bottom:24px}
h1{font-size:28px;margin:0 0 4px}
h2{font-size:20px;margin:36px 0 12px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:20px 0 8px}
p{margin:6px 0}
.muted,.note,caption,.lead{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:16px}
.card{background:var(--soft);border:1px solid var(--line);border-left:5px solid var(--accent);
border-radius:6px;padding:14px 18px}
.card .value{font-size:34px;font-weight:700;line-height:1.2}
.card .label{font-weight:600}
.card .note{font-size:13px}
.columns{display:grid;grid-template-columns:1fr 1fr;gap:32px}
table{border-collapse:collapse;width:100%;font-size:14px;margin:4px 0 8px}
caption{text-align:left;font-size:13px;padding-bottom:4px}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;line-height:1.25}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
.nowrap{white-space:nowrap}
tr.total td{font-weight:700;border-top:2px solid var(--ink)}
code,.time{font:13px/1.4 ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace}
code{overflow-wrap:break-word}
.time{font-size:12px;white-space:nowrap}
.scroll{overflow-x:auto}
.chart{width:100%;height:auto;display:block}
.chart .bar{fill:var(--bar)}
.chart .grid{stroke:var(--line);stroke-width:1}
.chart .axis{stroke:var(--ink);stroke-width:1.2}
.chart .tick{font-size:12px;fill:var(--muted)}
.chart .axis-title{font-size:13px;fill:var(--ink);font-weight:600}
.hbar rect{fill:var(--bar)}
.regulator{background:#fbf8f3;border:1px solid #eadfcd;border-radius:8px;padding:4px 24px 16px;
margin-top:36px}
.regulator h2{border-bottom-color:#eadfcd}
.period{display:grid;grid-template-columns:220px 1fr;gap:6px 16px;margin:0}
.period dt{font-weight:600}
.period dd{margin:0}
.period .figure{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:14px}
.check.ok{color:#166534}
.check.bad{color:var(--accent);font-weight:700}
.warnings{border-left:4px solid #b45309;padding-left:16px}
.empty{color:var(--muted);font-style:italic}
details summary{cursor:pointer;color:var(--muted);margin-top:8px}
footer{margin-top:40px;color:var(--muted);font-size:13px;border-top:1px solid var(--line);
padding-top:10px}
@media print{main{padding:0}.regulator{break-inside:avoid}}
""".strip()

# Defence in depth: even an escaping bug could neither run a script nor load anything.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _header(window: Window) -> str:
    """The title, the scan window and what a misdelivery is."""
    return (
        "<header><h1>Misdelivery impact report</h1>"
        f'<p class="muted">Scan window {esc(format_instant(window.since))} to '
        f"{esc(format_instant(window.until))} "
        "(end exclusive). Misdelivery: a delivery to an app that held no authorization of "
        "that account at the time.</p></header>"
    )


def _cards(totals: Totals) -> str:
    """The four headline figures."""
    return "".join(
        [
            '<section class="cards" id="headline" aria-label="Headline figures">',
            card(
                "events_misdelivered",
                totals.events_misdelivered,
                "events misdelivered",
                "distinct event IDs",
            ),
            card(
                "deliveries_misdelivered",
                totals.deliveries_misdelivered,
                "deliveries",
                "webhook calls, retries included",
            ),
            card("users_exposed", totals.users_exposed, "users exposed", "distinct user IDs"),
            card(
                "developers_exposed",
                totals.developers_exposed,
                "developers",
                "received misdelivered data",
            ),
            "</section>",
        ]
    )


def _footer(version: str) -> str:
    """What made the page, from what."""
    return (
        f"<footer>Made by <code>incident report</code> from a result of incident "
        f"{esc(version)}: summary.json and the users, developers and misdeliveries "
        "reports. Self-contained: no scripts, no network. IDs are shown as they appear "
        "in the logs.</footer>"
    )


def _document(body: str) -> str:
    """The whole page around `body`: inline CSS, and a policy that forbids anything else."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Misdelivery impact report</title>"
        f"<style>{_CSS}</style></head>\n"
        f"<body><main>{body}</main></body></html>\n"
    )


def html_report(
    summary: Summary,
    users: pl.DataFrame,
    developers: pl.DataFrame,
    misdeliveries: pl.DataFrame | pl.LazyFrame,
) -> str:
    """The HTML report of one scan, from its summary and its users, developers and
    misdeliveries reports (misdeliveries needs `event_id`, `delivered_at` and `event_type`;
    a scan of files is only aggregated, never held)."""
    # Results written before the summary held them: the same figures, from the reports.
    figures = summary.regulator or regulator_figures(users, misdeliveries)
    body = "".join(
        [
            _header(summary.window),
            _cards(summary.totals),
            timeline_section(daily_events(misdeliveries)),
            breakdowns_section(summary),
            regulator_section(summary, figures),
            top_developers_section(developers),
            top_users_section(users),
            accounting_section(summary),
            warnings_section(summary),
            inputs_section(summary),
            _footer(summary.version),
        ]
    )
    return _document(body)


def render_html(result: Path) -> str:
    """The HTML report of the result directory `result`; `InputError` if it is not one."""
    summary = read_summary(result)
    return html_report(
        summary,
        read_report(result, Table.USERS),
        read_report(result, Table.DEVELOPERS),
        read_report(result, Table.MISDELIVERIES, columns=MISDELIVERY_COLUMNS),
    )


def write_html(document: str, file: Path, option: str = "--html") -> Path:
    """Write `document` to `file` whole or not at all; `ConfigError` naming the file when it
    cannot be written."""
    with staged_file(file, option) as staging:
        staging.write_text(document, encoding="utf-8", newline="\n")
    return file
