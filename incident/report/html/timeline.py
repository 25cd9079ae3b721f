"""The timeline: misdelivered events per UTC day (`daily_events`), drawn as an inline SVG bar
chart with round value ticks and day or month ticks, and the page section that holds it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from incident.report.html.markup import esc, num, table
from incident.schema import COUNT

# Up to this many days the timeline spans exactly the days with findings; beyond, whole months.
SHORT_SPAN_DAYS = 62


def daily_events(misdeliveries: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Misdelivered events per UTC day: each event once, on the day of its first misdelivery,
    so that the days add up to `events_misdelivered`. Columns `day` (date) and `events`.
    Streamed: only the events' first days are held, never the misdeliveries' rows."""
    return (
        misdeliveries.lazy()
        .group_by("event_id")
        .agg(pl.col("delivered_at").min().dt.date().alias("day"))
        .group_by("day")
        .agg(pl.len().cast(COUNT).alias("events"))
        .sort("day")
        .collect(engine="streaming")
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


@dataclass(frozen=True)
class _Layout:
    """Where the days and counts of one timeline fall on the plot: the days `start`..`end`,
    each a `slot` wide with a `bar` in it, and the values up to `top_value` in ticks of `step`."""

    plot: _Plot
    start: date
    end: date
    slot: float
    bar: float
    step: int
    top_value: int

    @property
    def scale(self) -> float:
        """SVG units per event."""
        return self.plot.inner_height / self.top_value

    @classmethod
    def of(cls, days: list[date], counts: list[int]) -> _Layout:
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
        return cls(plot, start, end, slot, bar, step, top_value)


def _value_ticks(layout: _Layout) -> list[str]:
    """A grid line and a label for each value tick."""
    plot, scale = layout.plot, layout.scale
    parts = []
    for value in range(0, layout.top_value + 1, layout.step):
        y = plot.baseline - value * scale
        parts.append(
            f'<line class="grid" x1="{plot.left}" y1="{y:.2f}" '
            f'x2="{plot.width - plot.right}" y2="{y:.2f}"/>'
            f'<text class="tick" x="{plot.left - 8}" y="{y + 4:.2f}" '
            f'text-anchor="end">{num(value)}</text>'
        )
    return parts


def _day_ticks(layout: _Layout) -> list[str]:
    """A tick mark and a label for each labelled day or month."""
    plot = layout.plot
    parts = []
    for day, label in _x_ticks(layout.start, layout.end):
        x = plot.left + plot.pad + ((day - layout.start).days + 0.5) * layout.slot
        parts.append(
            f'<line class="axis" x1="{x:.2f}" y1="{plot.baseline}" x2="{x:.2f}" '
            f'y2="{plot.baseline + 6}"/>'
            f'<text class="tick" x="{x:.2f}" y="{plot.baseline + 20}" '
            f'text-anchor="middle">{esc(label)}</text>'
        )
    return parts


def _bars(layout: _Layout, days: list[date], counts: list[int]) -> list[str]:
    """One bar per day with findings, its day and count in data attributes and a tooltip."""
    plot, slot, bar, scale = layout.plot, layout.slot, layout.bar, layout.scale
    parts = []
    for day, count in zip(days, counts, strict=True):
        x = plot.left + plot.pad + (day - layout.start).days * slot + (slot - bar) / 2
        height = count * scale
        parts.append(
            f'<rect class="bar" x="{x:.2f}" y="{plot.baseline - height:.2f}" '
            f'width="{bar:.2f}" height="{height:.2f}" data-day="{day.isoformat()}" '
            f'data-events="{count}"><title>{day.isoformat()}: {num(count)} '
            f"event{'s' if count != 1 else ''}</title></rect>"
        )
    return parts


def _axes(plot: _Plot) -> list[str]:
    """The two axes and their titles."""
    middle = plot.top + plot.inner_height / 2
    return [
        f'<line class="axis" x1="{plot.left}" y1="{plot.baseline}" '
        f'x2="{plot.width - plot.right}" y2="{plot.baseline}"/>',
        f'<line class="axis" x1="{plot.left}" y1="{plot.top}" x2="{plot.left}" '
        f'y2="{plot.baseline}"/>',
        f'<text class="axis-title" x="{plot.left + plot.inner_width / 2:.2f}" '
        f'y="{plot.height - 14}" text-anchor="middle">UTC day</text>',
        f'<text class="axis-title" x="18" y="{middle:.2f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {middle:.2f})">misdelivered events</text>',
    ]


def _timeline_svg(daily: pl.DataFrame) -> str:
    """Bars of misdelivered events per UTC day, with labelled axes."""
    days: list[date] = daily["day"].to_list()
    counts: list[int] = daily["events"].to_list()
    layout = _Layout.of(days, counts)
    plot, start, end = layout.plot, layout.start, layout.end
    head = [
        f'<svg class="chart" id="timeline-chart" viewBox="0 0 {plot.width} {plot.height}" '
        'role="img" aria-labelledby="timeline-title timeline-desc" '
        f'data-start="{start.isoformat()}" data-end="{end.isoformat()}">',
        '<title id="timeline-title">Misdelivered events per UTC day</title>',
        f'<desc id="timeline-desc">{sum(counts)} events from {days[0].isoformat()} to '
        f"{days[-1].isoformat()}; each event counted on the UTC day of its first "
        "misdelivery.</desc>",
    ]
    return "".join(
        [
            *head,
            *_value_ticks(layout),
            *_day_ticks(layout),
            *_bars(layout, days, counts),
            *_axes(plot),
            "</svg>",
        ]
    )


def timeline_section(daily: pl.DataFrame) -> str:
    """The timeline section from the events per day (`daily_events`): the chart, how it
    counts, and the days as a table."""
    if daily.height:
        days = table(
            ("UTC day", "events"),
            (
                (f' data-day="{day.isoformat()}"', (day.isoformat(), num(events)))
                for day, events in daily.iter_rows()
            ),
        )
        timeline = (
            _timeline_svg(daily)
            + '<p class="muted">Each event is counted once, on the UTC day of its first '
            "misdelivery, so the bars add up to the events misdelivered.</p>"
            f"<details><summary>The {num(daily.height)} days with misdelivered events</summary>"
            f"{days}</details>"
        )
    else:
        timeline = '<p class="empty">No misdelivered events in the window.</p>'
    return f'<section id="timeline"><h2>Misdelivered events per UTC day</h2>{timeline}</section>'
