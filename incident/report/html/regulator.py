"""The section for the supervisory authority, after GDPR Art. 33(3)(a): the categories and
number of data subjects, the categories and number of personal data records, and the period of
exposure and its recipients."""

from __future__ import annotations

from incident.config import format_instant
from incident.report.html.markup import Row, esc, figure, num, table
from incident.schema import Role
from incident.summary import RegulatorFigures, Summary, Totals


def _subject_rows(figures: RegulatorFigures, totals: Totals) -> list[Row]:
    """The data subjects by category, then all of them (each person once)."""
    subjects = dict(figures.subjects)
    subjects["correspondents"] = figures.correspondents
    return [
        (
            "",
            (
                "Account holders whose subscription data was delivered "
                "<span class=muted>(role subscriber)</span>",
                figure("subjects_subscriber", subjects[Role.SUBSCRIBER.value]),
            ),
        ),
        (
            "",
            (
                "Senders and recipients of direct messages "
                f"<span class=muted>({num(subjects[Role.SENDER.value])} as sender, "
                f"{num(subjects[Role.RECIPIENT.value])} as recipient)</span>",
                figure("subjects_correspondents", subjects["correspondents"]),
            ),
        ),
        (
            "",
            (
                "Authors of protected posts <span class=muted>(role author)</span>",
                figure("subjects_author", subjects[Role.AUTHOR.value]),
            ),
        ),
        (
            ' class="total"',
            (
                "Number of data subjects "
                "<span class=muted>(distinct users, exact for the scanned logs)</span>",
                figure("data_subjects", totals.users_exposed),
            ),
        ),
    ]


def _record_rows(figures: RegulatorFigures, totals: Totals) -> list[Row]:
    """The misdelivered events and deliveries by category of record, then all of them."""

    def record(name: str, label: str, note: str = "") -> Row:
        counts = figures.records[name]
        return (
            "",
            (
                label + note,
                figure(f"records_{name}", counts.events),
                figure(f"records_{name}_deliveries", counts.deliveries),
            ),
        )

    others = ", ".join(f"<code>{esc(t)}</code>" for t in figures.other_event_types)
    return [
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
                "Number of personal data records "
                "<span class=muted>(exact for the scanned logs)</span>",
                figure("data_records", totals.events_misdelivered),
                num(totals.deliveries_misdelivered),
            ),
        ),
    ]


def _period(figures: RegulatorFigures) -> str:
    """The first and last misdelivery, or an empty pair of figures when there was none."""
    first, last = figures.first_misdelivered_at, figures.last_misdelivered_at
    if first is not None and last is not None:
        return f"{figure('exposure_first', first)} to {figure('exposure_last', last)}"
    return (
        f"{figure('exposure_first', '', 'none')} {figure('exposure_last', '', '')}"
        "<span class=muted>(no misdelivery)</span>"
    )


def regulator_section(summary: Summary, figures: RegulatorFigures) -> str:
    """The GDPR Art. 33(3)(a) section: subjects, records, exposure period and recipients."""
    totals, window = summary.totals, summary.window
    return (
        '<section id="regulator" class="regulator">'
        "<h2>For the supervisory authority: GDPR Art. 33(3)(a)</h2>"
        '<p class="lead">The nature of the breach: events of account holders delivered to '
        "registered developers whose apps held no authorization of that account at the time. "
        "The counts are exact for the scanned logs (Art. 33(3)(a) asks for at least "
        "approximate numbers); one person can belong to several categories.</p>"
        '<div class="columns"><div>'
        "<h3>Categories and number of data subjects</h3>"
        + table(("category", "data subjects"), _subject_rows(figures, totals))
        + "</div><div>"
        "<h3>Categories and number of personal data records</h3>"
        + table(("category", "events", "deliveries"), _record_rows(figures, totals))
        + "</div></div>"
        "<h3>Exposure period</h3>"
        '<dl class="period">'
        f"<dt>First and last misdelivery</dt><dd>{_period(figures)}</dd>"
        f"<dt>Scan window</dt><dd>{figure('window_since', format_instant(window.since))} to "
        f"{figure('window_until', format_instant(window.until))} <span class=muted>(end exclusive)"
        "</span></dd>"
        f"<dt>Recipients</dt><dd>{figure('recipients', totals.developers_exposed)} "
        "developers received the data</dd>"
        "</dl></section>"
    )
