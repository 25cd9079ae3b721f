"""The HTML report: one self-contained page for analysts, the legal team and the regulator.

No script, no network, no external asset: inline CSS, and charts drawn here as inline SVG.
Every value that comes from the data (IDs, event types, paths, warnings) is HTML-escaped, and
a Content-Security-Policy forbids scripts and remote loads should anything slip through.
Same result, same bytes: nothing depends on the clock, the locale or where the result lies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from pathlib import Path

import polars as pl

from incident.config import format_instant
from incident.outputs import staged_file
from incident.pipeline.impact import regulator_figures
from incident.report.tables import iso_timestamps
from incident.results.read import Table, read_report, read_summary
from incident.schema import COUNT, Role
from incident.summary import Counts, RegulatorFigures, Summary

TOP = 10
# Up to this many days the timeline spans exactly the days with findings; beyond, whole months.
SHORT_SPAN_DAYS = 62
# The columns of misdeliveries.parquet that the report reads.
MISDELIVERY_COLUMNS = ("event_id", "delivered_at", "event_type")

_ACCOUNTING = (
    ("rows_rejected", "rejected (unusable rows, see rejected.parquet)"),
    ("rows_outside_window", "outside the window"),
    ("rows_authorized", "authorized (a grant covered the delivery)"),
    ("rows_misdelivered", "misdelivered"),
)


def _e(value: object) -> str:
    """Escape text for HTML content and attribute values alike."""
    return escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _figure(name: str, value: int | str, text: str | None = None) -> str:
    """A key figure with a stable `id` and its raw value in `data-value`, for tests and tools."""
    shown = text if text is not None else (_n(value) if isinstance(value, int) else _e(value))
    return (
        f'<span class="figure" id="{_e(name.replace("_", "-"))}" data-figure="{_e(name)}" '
        f'data-value="{_e(value)}">{shown}</span>'
    )


_CELL_CLASSES = {"t": "", "n": " class=num", "d": " class=when"}


def _table(
    headers: Sequence[str],
    rows: Iterable[tuple[str, Sequence[str]]],
    kinds: str = "",
    caption: str = "",
) -> str:
    """A table; each row is (its attributes, its cells, already escaped). `kinds` has one letter
    per column, `t` text, `n` number, `d` instant; by default text, then numbers."""
    classes = [_CELL_CLASSES[k] for k in kinds or "t" + "n" * (len(headers) - 1)]
    head = "".join(f"<th{c}>{_e(h)}</th>" for c, h in zip(classes, headers, strict=True))
    body = "".join(
        f"<tr{attributes}>"
        + "".join(f"<td{c}>{cell}</td>" for c, cell in zip(classes, cells, strict=True))
        + "</tr>"
        for attributes, cells in rows
    )
    caption_html = f"<caption>{caption}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table>{caption_html}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _time(instant: str | None) -> str:
    return f'<span class="time">{_e(instant)}</span>' if instant is not None else ""


def daily_events(misdeliveries: pl.DataFrame) -> pl.DataFrame:
    """Misdelivered events per UTC day: each event once, on the day of its first misdelivery,
    so that the days add up to `events_misdelivered`. Columns `day` (date) and `events`."""
    return (
        misdeliveries.group_by("event_id")
        .agg(pl.col("delivered_at").min().dt.date().alias("day"))
        .group_by("day")
        .agg(pl.len().cast(COUNT).alias("events"))
        .sort("day")
    )


def _nice_step(maximum: int, ticks: int = 5) -> int:
    """The smallest step of 1, 2 or 5 times a power of ten that reaches `maximum` in `ticks`."""
    power = 1
    while True:
        for factor in (1, 2, 5):
            if math.ceil(maximum / (factor * power)) <= ticks:
                return factor * power
        power *= 10


def _month_start(day: date, months: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _x_ticks(start: date, end: date) -> list[tuple[date, str]]:
    """Labelled ticks for the days `start`..`end`: days on a short span, months on a long one."""
    days = (end - start).days + 1
    if days <= SHORT_SPAN_DAYS:
        every = math.ceil(days / 10)
        return [
            (start + timedelta(i), (start + timedelta(i)).isoformat())
            for i in range(0, days, every)
        ]
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    every = math.ceil(months / 14)
    return [
        (_month_start(start, i), _month_start(start, i).strftime("%Y-%m"))
        for i in range(0, months, every)
    ]


@dataclass(frozen=True)
class _Plot:
    """The timeline's drawing area, in SVG user units."""

    width: int = 1000
    height: int = 300
    left: int = 64
    right: int = 16
    top: int = 16
    bottom: int = 64
    # Keeps the first and last bars off the axes.
    pad: int = 6

    @property
    def inner_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> int:
        return self.height - self.top - self.bottom

    @property
    def baseline(self) -> int:
        return self.height - self.bottom


def _timeline_svg(daily: pl.DataFrame) -> str:
    """Bars of misdelivered events per UTC day, with labelled axes."""
    days: list[date] = daily["day"].to_list()
    counts: list[int] = daily["events"].to_list()
    first, last = days[0], days[-1]
    if (last - first).days + 1 <= SHORT_SPAN_DAYS:
        start, end = first, last
    else:
        start, end = _month_start(first), _month_start(last, 1) - timedelta(1)
    span = (end - start).days + 1
    plot = _Plot()
    slot = (plot.inner_width - 2 * plot.pad) / span
    bar = slot * 0.8 if slot >= 3 else slot
    step = _nice_step(max(counts))
    top_value = step * math.ceil(max(counts) / step)
    scale = plot.inner_height / top_value

    parts = [
        f'<svg class="chart" id="timeline-chart" viewBox="0 0 {plot.width} {plot.height}" '
        'role="img" aria-labelledby="timeline-title timeline-desc" '
        f'data-start="{start.isoformat()}" data-end="{end.isoformat()}">',
        '<title id="timeline-title">Misdelivered events per UTC day</title>',
        f'<desc id="timeline-desc">{sum(counts)} events from {first.isoformat()} to '
        f"{last.isoformat()}; each event counted on the UTC day of its first misdelivery.</desc>",
    ]
    for value in range(0, top_value + 1, step):
        y = plot.baseline - value * scale
        parts.append(
            f'<line class="grid" x1="{plot.left}" y1="{y:.2f}" '
            f'x2="{plot.width - plot.right}" y2="{y:.2f}"/>'
            f'<text class="tick" x="{plot.left - 8}" y="{y + 4:.2f}" '
            f'text-anchor="end">{_n(value)}</text>'
        )
    for day, label in _x_ticks(start, end):
        x = plot.left + plot.pad + ((day - start).days + 0.5) * slot
        parts.append(
            f'<line class="axis" x1="{x:.2f}" y1="{plot.baseline}" x2="{x:.2f}" '
            f'y2="{plot.baseline + 6}"/>'
            f'<text class="tick" x="{x:.2f}" y="{plot.baseline + 20}" '
            f'text-anchor="middle">{_e(label)}</text>'
        )
    for day, count in zip(days, counts, strict=True):
        x = plot.left + plot.pad + (day - start).days * slot + (slot - bar) / 2
        height = count * scale
        parts.append(
            f'<rect class="bar" x="{x:.2f}" y="{plot.baseline - height:.2f}" '
            f'width="{bar:.2f}" height="{height:.2f}" data-day="{day.isoformat()}" '
            f'data-events="{count}"><title>{day.isoformat()}: {_n(count)} '
            f"event{'s' if count != 1 else ''}</title></rect>"
        )
    middle = plot.top + plot.inner_height / 2
    parts += [
        f'<line class="axis" x1="{plot.left}" y1="{plot.baseline}" '
        f'x2="{plot.width - plot.right}" y2="{plot.baseline}"/>',
        f'<line class="axis" x1="{plot.left}" y1="{plot.top}" x2="{plot.left}" '
        f'y2="{plot.baseline}"/>',
        f'<text class="axis-title" x="{plot.left + plot.inner_width / 2:.2f}" '
        f'y="{plot.height - 14}" text-anchor="middle">UTC day</text>',
        f'<text class="axis-title" x="18" y="{middle:.2f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {middle:.2f})">misdelivered events</text>',
        "</svg>",
    ]
    return "".join(parts)


def _bar(value: int, maximum: int) -> str:
    width = 160 * value / maximum if maximum else 0
    return (
        '<svg class="hbar" viewBox="0 0 160 12" width="160" height="12" aria-hidden="true">'
        f'<rect x="0" y="0" width="{width:.2f}" height="12"/></svg>'
    )


def _breakdown(counts: Mapping[str, Counts], key: str, label: str) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1].events, item[0]))
    maximum = max((c.events for _, c in ordered), default=0)
    rows = [
        (
            f' data-breakdown="{_e(key)}" data-key="{_e(name)}" '
            f'data-events="{c.events}" data-deliveries="{c.deliveries}"',
            (
                f"<code>{_e(name)}</code>",
                _n(c.events),
                _n(c.deliveries),
                _bar(c.events, maximum),
            ),
        )
        for name, c in ordered
    ]
    if not rows:
        return f'<p class="empty">No misdelivered events, so no breakdown by {_e(label)}.</p>'
    return _table((label, "events", "deliveries", ""), rows)


def _listing(values: Sequence[str], most: int = 2) -> str:
    shown = ", ".join(f"<span class=nowrap>{_e(v)}</span>" for v in values[:most])
    if len(values) > most:
        shown += f" <span class=muted>(+{len(values) - most} more)</span>"
    return shown


def _top_developers(developers: pl.DataFrame) -> str:
    top = iso_timestamps(
        developers.sort(["events", "developer_id"], descending=[True, False]).head(TOP)
    )
    rows = [
        (
            f' data-developer-id="{_e(r["developer_id"])}" data-events="{r["events"]}"',
            (
                f"<code>{_e(r['developer_id'])}</code>",
                _listing(r["app_ids"]),
                _n(r["events"]),
                _n(r["deliveries"]),
                _n(r["direct_messages"]),
                _n(r["protected_tweets"]),
                _n(r["users_exposed"]),
                _time(r["first_received_at"]),
                _time(r["last_received_at"]),
            ),
        )
        for r in top.iter_rows(named=True)
    ]
    if not rows:
        return '<p class="empty">No developer received a misdelivered event.</p>'
    headers = (
        "developer",
        "apps",
        "events",
        "deliveries",
        "direct messages",
        "protected posts",
        "users exposed",
        "first received",
        "last received",
    )
    caption = f"Top {min(TOP, developers.height)} of {_n(developers.height)}, by events"
    return _table(headers, rows, "ttnnnnndd", caption)


def _top_users(users: pl.DataFrame) -> str:
    top = iso_timestamps(users.sort(["events", "user_id"], descending=[True, False]).head(TOP))
    rows = [
        (
            f' data-user-id="{_e(r["user_id"])}" data-events="{r["events"]}"',
            (
                f"<code>{_e(r['user_id'])}</code>",
                ", ".join(f"<span class=nowrap>{_e(role)}</span>" for role in r["roles"]),
                _n(r["events"]),
                _n(r["direct_messages"]),
                _n(r["protected_tweets"]),
                _n(r["developers"]),
                _time(r["first_exposed_at"]),
                _time(r["last_exposed_at"]),
            ),
        )
        for r in top.iter_rows(named=True)
    ]
    if not rows:
        return '<p class="empty">No user was exposed.</p>'
    headers = (
        "user",
        "roles",
        "events",
        "direct messages",
        "protected posts",
        "developers",
        "first exposed",
        "last exposed",
    )
    caption = f"Top {min(TOP, users.height)} of {_n(users.height)}, by events"
    return _table(headers, rows, "ttnnnndd", caption)


def _regulator(summary: Summary, figures: RegulatorFigures) -> str:
    totals, window = summary.totals, summary.window
    subjects = dict(figures.subjects)
    subjects["correspondents"] = figures.correspondents
    records = figures.records
    first, last = figures.first_misdelivered_at, figures.last_misdelivered_at
    other_types = figures.other_event_types

    def record(name: str, label: str, note: str = "") -> tuple[str, Sequence[str]]:
        events, deliveries = records[name].events, records[name].deliveries
        return (
            "",
            (
                label + note,
                _figure(f"records_{name}", events),
                _figure(f"records_{name}_deliveries", deliveries),
            ),
        )

    subject_rows: list[tuple[str, Sequence[str]]] = [
        (
            "",
            (
                "Account holders whose subscription data was delivered "
                "<span class=muted>(role subscriber)</span>",
                _figure("subjects_subscriber", subjects[Role.SUBSCRIBER.value]),
            ),
        ),
        (
            "",
            (
                "Senders and recipients of direct messages "
                f"<span class=muted>({_n(subjects[Role.SENDER.value])} as sender, "
                f"{_n(subjects[Role.RECIPIENT.value])} as recipient)</span>",
                _figure("subjects_correspondents", subjects["correspondents"]),
            ),
        ),
        (
            "",
            (
                "Authors of protected posts <span class=muted>(role author)</span>",
                _figure("subjects_author", subjects[Role.AUTHOR.value]),
            ),
        ),
        (
            ' class="total"',
            (
                "Approximate number of data subjects <span class=muted>(distinct users)</span>",
                _figure("data_subjects", totals.users_exposed),
            ),
        ),
    ]
    others = ", ".join(f"<code>{_e(t)}</code>" for t in other_types)
    record_rows = [
        record("direct_messages", "Direct messages"),
        record("protected_posts", "Protected posts"),
        record(
            "other_events",
            "Other account events",
            f" <span class=muted>({others})</span>" if others else "",
        ),
        (
            ' class="total"',
            (
                "Approximate number of personal data records",
                _figure("data_records", totals.events_misdelivered),
                _n(totals.deliveries_misdelivered),
            ),
        ),
    ]
    if first is not None and last is not None:
        period = f"{_figure('exposure_first', first)} to {_figure('exposure_last', last)}"
    else:
        period = (
            f"{_figure('exposure_first', '', 'none')} {_figure('exposure_last', '', '')}"
            "<span class=muted>(no misdelivery)</span>"
        )
    return (
        '<section id="regulator" class="regulator">'
        "<h2>For the supervisory authority: GDPR Art. 33(3)(a)</h2>"
        '<p class="lead">The nature of the breach: events of account holders delivered to '
        "registered developers whose apps held no authorization of that account at the time. "
        "The counts are exact for the scanned logs; one person can belong to several "
        "categories.</p>"
        '<div class="columns"><div>'
        "<h3>Categories and number of data subjects</h3>"
        + _table(("category", "data subjects"), subject_rows)
        + "</div><div>"
        "<h3>Categories and number of personal data records</h3>"
        + _table(("category", "events", "deliveries"), record_rows)
        + "</div></div>"
        "<h3>Exposure period</h3>"
        '<dl class="period">'
        f"<dt>First and last misdelivery</dt><dd>{period}</dd>"
        f"<dt>Scan window</dt><dd>{_figure('window_since', format_instant(window.since))} to "
        f"{_figure('window_until', format_instant(window.until))} <span class=muted>(end exclusive)"
        "</span></dd>"
        f"<dt>Recipients</dt><dd>{_figure('recipients', totals.developers_exposed)} "
        "developers received the data</dd>"
        "</dl></section>"
    )


def _accounting(summary: Summary) -> str:
    accounting: dict[str, int] = vars(summary.accounting)
    read = accounting["rows_read"]
    parts = sum(accounting[name] for name, _ in _ACCOUNTING)

    def share(value: int) -> str:
        return f"{100 * value / read:.2f} %" if read else "n/a"

    rows = [
        (
            "",
            (
                f"<code>{name}</code> {_e(label)}",
                _figure(name, accounting[name]),
                share(accounting[name]),
            ),
        )
        for name, label in _ACCOUNTING
    ]
    rows.append(
        (
            ' class="total"',
            ("<code>rows_read</code> delivery rows read", _figure("rows_read", read), share(read)),
        )
    )
    check = (
        '<p class="check ok" id="accounting-check" data-value="ok">rejected + outside the window '
        "+ authorized + misdelivered = rows read: every row is accounted for.</p>"
        if parts == read
        else '<p class="check bad" id="accounting-check" data-value="mismatch">The parts add up '
        f"to {_n(parts)}, not to the {_n(read)} rows read.</p>"
    )
    return (
        '<section id="accounting"><h2>Row accounting</h2>'
        + _table(("delivery rows", "rows", "share"), rows)
        + check
        + "</section>"
    )


def _inputs(summary: Summary) -> str:
    inputs = summary.inputs
    if inputs is None:
        return ""
    rows = []
    for name, source in vars(inputs).items():
        if source is None:
            continue
        rejected = source.rows_rejected
        if name == "deliveries":
            rejected = summary.accounting.rows_rejected
        rows.append(
            (
                "",
                (
                    _e(name),
                    f"<code>{_e(source.path)}</code>",
                    _n(source.files),
                    _n(source.rows),
                    _n(rejected) if rejected is not None else "",
                ),
            )
        )
    return (
        '<section id="inputs"><h2>Inputs</h2>'
        + _table(("input", "path", "files", "rows", "rows rejected"), rows, "ttnnn")
        + "</section>"
    )


def _warnings(summary: Summary) -> str:
    warnings = summary.warnings
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return f'<section id="warnings" class="warnings"><h2>Warnings</h2><ul>{items}</ul></section>'


def _card(name: str, value: int, label: str, note: str) -> str:
    return (
        f'<div class="card"><div class="value">{_figure(name, value)}</div>'
        f'<div class="label">{_e(label)}</div><div class="note">{_e(note)}</div></div>'
    )


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


def html_report(
    summary: Summary,
    users: pl.DataFrame,
    developers: pl.DataFrame,
    misdeliveries: pl.DataFrame,
) -> str:
    """The HTML report of one scan, from its summary and its users, developers and
    misdeliveries reports (misdeliveries needs `event_id`, `delivered_at` and `event_type`)."""
    totals, window = summary.totals, summary.window
    # Results written before the summary held them: the same figures, from the reports.
    figures = summary.regulator or regulator_figures(users, misdeliveries)
    daily = daily_events(misdeliveries)
    if daily.height:
        days = _table(
            ("UTC day", "events"),
            (
                (f' data-day="{day.isoformat()}"', (day.isoformat(), _n(events)))
                for day, events in daily.iter_rows()
            ),
        )
        timeline = (
            _timeline_svg(daily)
            + '<p class="muted">Each event is counted once, on the UTC day of its first '
            "misdelivery, so the bars add up to the events misdelivered.</p>"
            f"<details><summary>The {_n(daily.height)} days with misdelivered events</summary>"
            f"{days}</details>"
        )
    else:
        timeline = '<p class="empty">No misdelivered events in the window.</p>'
    version = summary.version
    body = "".join(
        [
            "<header><h1>Misdelivery impact report</h1>",
            f'<p class="muted">Scan window {_e(format_instant(window.since))} to '
            f"{_e(format_instant(window.until))} "
            "(end exclusive). Misdelivery: a delivery to an app that held no authorization of "
            "that account at the time.</p></header>",
            '<section class="cards" id="headline" aria-label="Headline figures">',
            _card(
                "events_misdelivered",
                totals.events_misdelivered,
                "events misdelivered",
                "distinct event IDs",
            ),
            _card(
                "deliveries_misdelivered",
                totals.deliveries_misdelivered,
                "deliveries",
                "webhook calls, retries included",
            ),
            _card("users_exposed", totals.users_exposed, "users exposed", "distinct user IDs"),
            _card(
                "developers_exposed",
                totals.developers_exposed,
                "developers",
                "received misdelivered data",
            ),
            "</section>",
            f'<section id="timeline"><h2>Misdelivered events per UTC day</h2>{timeline}</section>',
            '<section id="breakdowns" class="columns">',
            "<div><h2>By event type</h2>",
            _breakdown(summary.by_event_type, "by_event_type", "event type"),
            "</div><div><h2>By reason</h2>",
            _breakdown(summary.by_reason, "by_reason", "reason"),
            "</div><div><h2>By cause</h2>",
            _breakdown(summary.by_cause, "by_cause", "cause"),
            "</div></section>",
            _regulator(summary, figures),
            f'<section id="top-developers"><h2>Top developers</h2>{_top_developers(developers)}'
            "</section>",
            f'<section id="top-users"><h2>Top users</h2>{_top_users(users)}</section>',
            _accounting(summary),
            _warnings(summary),
            _inputs(summary),
            f"<footer>Made by <code>incident report</code> from a result of incident "
            f"{_e(version)}: summary.json and the users, developers and misdeliveries "
            "reports. Self-contained: no scripts, no network. IDs are shown as they appear "
            "in the logs.</footer>",
        ]
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Misdelivery impact report</title>"
        f"<style>{_CSS}</style></head>\n"
        f"<body><main>{body}</main></body></html>\n"
    )


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
