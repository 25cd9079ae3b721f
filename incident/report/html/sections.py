"""The report's sections after the headline, but for the regulator's: the breakdowns by event
type, reason and cause, the top developers and users, the row accounting, the warnings and the
inputs. Each function returns one whole section (or nothing, when there is nothing to show)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from incident.report.html.markup import Row, esc, figure, num, table
from incident.report.tables import iso_timestamps
from incident.schema import FULL_EVIDENCE
from incident.summary import Counts, Summary

TOP = 10

_ACCOUNTING = (
    ("rows_rejected", "rejected (unusable rows, see rejected.parquet)"),
    ("rows_outside_window", "outside the window"),
    ("rows_authorized", "authorized (a grant covered the delivery)"),
    ("rows_misdelivered", "misdelivered"),
)


def _time(instant: str | None) -> str:
    return f'<span class="time">{esc(instant)}</span>' if instant is not None else ""


def _bar(value: int, maximum: int) -> str:
    width = 160 * value / maximum if maximum else 0
    return (
        '<svg class="hbar" viewBox="0 0 160 12" width="160" height="12" aria-hidden="true">'
        f'<rect x="0" y="0" width="{width:.2f}" height="12"/></svg>'
    )


def _listing(values: Sequence[str], most: int = 2) -> str:
    shown = ", ".join(f"<span class=nowrap>{esc(v)}</span>" for v in values[:most])
    if len(values) > most:
        shown += f" <span class=muted>(+{len(values) - most} more)</span>"
    return shown


def _breakdown(counts: Mapping[str, Counts], key: str, label: str) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1].events, item[0]))
    maximum = max((c.events for _, c in ordered), default=0)
    rows = [
        (
            f' data-breakdown="{esc(key)}" data-key="{esc(name)}" '
            f'data-events="{c.events}" data-deliveries="{c.deliveries}"',
            (
                f"<code>{esc(name)}</code>",
                num(c.events),
                num(c.deliveries),
                _bar(c.events, maximum),
            ),
        )
        for name, c in ordered
    ]
    if not rows:
        return f'<p class="empty">No misdelivered events, so no breakdown by {esc(label)}.</p>'
    return table((label, "events", "deliveries", ""), rows)


def _overcount_note(summary: Summary) -> str:
    """Under the breakdowns, why their events can add up to more than the headline."""
    note = summary.overcount_note()
    return f'<p class="muted" id="breakdowns-note">{esc(note)}</p>' if note else ""


def breakdowns_section(summary: Summary) -> str:
    """Events and deliveries by event type, by reason and by cause, and a note where the
    events of a breakdown add up to more than the events misdelivered."""
    return "".join(
        [
            '<section id="breakdowns" class="columns">',
            "<div><h2>By event type</h2>",
            _breakdown(summary.by_event_type, "by_event_type", "event type"),
            "</div><div><h2>By reason</h2>",
            _breakdown(summary.by_reason, "by_reason", "reason"),
            "</div><div><h2>By cause</h2>",
            _breakdown(summary.by_cause, "by_cause", "cause"),
            _evidence(summary),
            "</div></section>",
            _overcount_note(summary),
        ]
    )


def _evidence(summary: Summary) -> str:
    """Misdeliveries per evidence level: `full`, or the conditions that could not be checked."""
    by_evidence = summary.attribution.by_evidence if summary.attribution else {}
    if not by_evidence:
        return ""
    levels = sorted(by_evidence.items(), key=lambda item: (item[0] != FULL_EVIDENCE, item[0]))
    rows = [
        (
            f' data-evidence="{esc(level)}" data-deliveries="{count}"',
            (f"<code>{esc(level)}</code>", num(count)),
        )
        for level, count in levels
    ]
    return (
        '<h3 id="by-evidence">By evidence</h3>'
        '<p class="muted">Misdeliveries whose collision signature could be checked in full, '
        "or the conditions that the logs did not let us check.</p>"
        + table(("evidence", "deliveries"), rows)
    )


def _top_developers(developers: pl.DataFrame) -> str:
    top = iso_timestamps(
        developers.sort(["events", "developer_id"], descending=[True, False]).head(TOP)
    )
    rows = [
        (
            f' data-developer-id="{esc(r["developer_id"])}" data-events="{r["events"]}"',
            (
                f"<code>{esc(r['developer_id'])}</code>",
                _listing(r["app_ids"]),
                num(r["events"]),
                num(r["deliveries"]),
                num(r["direct_messages"]),
                num(r["protected_tweets"]),
                num(r["users_exposed"]),
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
    caption = f"Top {min(TOP, developers.height)} of {num(developers.height)}, by events"
    return table(headers, rows, "ttnnnnndd", caption)


def top_developers_section(developers: pl.DataFrame) -> str:
    """The developers who received the most misdelivered events."""
    return (
        f'<section id="top-developers"><h2>Top developers</h2>{_top_developers(developers)}'
        "</section>"
    )


def _top_users(users: pl.DataFrame) -> str:
    top = iso_timestamps(users.sort(["events", "user_id"], descending=[True, False]).head(TOP))
    rows = [
        (
            f' data-user-id="{esc(r["user_id"])}" data-events="{r["events"]}"',
            (
                f"<code>{esc(r['user_id'])}</code>",
                ", ".join(f"<span class=nowrap>{esc(role)}</span>" for role in r["roles"]),
                num(r["events"]),
                num(r["direct_messages"]),
                num(r["protected_tweets"]),
                num(r["developers"]),
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
    caption = f"Top {min(TOP, users.height)} of {num(users.height)}, by events"
    return table(headers, rows, "ttnnnndd", caption)


def top_users_section(users: pl.DataFrame) -> str:
    """The users whose events were misdelivered most."""
    return f'<section id="top-users"><h2>Top users</h2>{_top_users(users)}</section>'


def accounting_section(summary: Summary) -> str:
    """Where every delivery row went, and the check that the parts add up to the rows read."""
    accounting: dict[str, int] = vars(summary.accounting)
    read = accounting["rows_read"]
    parts = sum(accounting[name] for name, _ in _ACCOUNTING)

    def share(value: int) -> str:
        return f"{100 * value / read:.2f} %" if read else "n/a"

    rows: list[Row] = [
        (
            "",
            (
                f"<code>{name}</code> {esc(label)}",
                figure(name, accounting[name]),
                share(accounting[name]),
            ),
        )
        for name, label in _ACCOUNTING
    ]
    rows.append(
        (
            ' class="total"',
            ("<code>rows_read</code> delivery rows read", figure("rows_read", read), share(read)),
        )
    )
    check = (
        '<p class="check ok" id="accounting-check" data-value="ok">rejected + outside the window '
        "+ authorized + misdelivered = rows read: every row is accounted for.</p>"
        if parts == read
        else '<p class="check bad" id="accounting-check" data-value="mismatch">The parts add up '
        f"to {num(parts)}, not to the {num(read)} rows read.</p>"
    )
    return (
        '<section id="accounting"><h2>Row accounting</h2>'
        + table(("delivery rows", "rows", "share"), rows)
        + check
        + "</section>"
    )


def inputs_section(summary: Summary) -> str:
    """The inputs of the scan: paths, files, rows and rows rejected (none for old results)."""
    inputs = summary.inputs
    if inputs is None:
        return ""
    rows: list[Row] = []
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
                    esc(name),
                    f"<code>{esc(source.path)}</code>",
                    num(source.files),
                    num(source.rows),
                    num(rejected) if rejected is not None else "",
                ),
            )
        )
    return (
        '<section id="inputs"><h2>Inputs</h2>'
        + table(("input", "path", "files", "rows", "rows rejected"), rows, "ttnnn")
        + "</section>"
    )


def warnings_section(summary: Summary) -> str:
    """The scan's warnings, if any."""
    warnings = summary.warnings
    if not warnings:
        return ""
    items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    return f'<section id="warnings" class="warnings"><h2>Warnings</h2><ul>{items}</ul></section>'
