"""The HTML report: one self-contained page for analysts, the legal team and the regulator.

No script, no network, no external asset: inline CSS, and charts drawn here as inline SVG.
Every value that comes from the data (IDs, event types, paths, warnings) is HTML-escaped, and
a Content-Security-Policy forbids scripts and remote loads should anything slip through.
Same result, same bytes: nothing depends on the clock, the locale or where the result lies.

`page` assembles the document; `timeline`, `sections` and `regulator` draw its sections from
the building blocks in `markup`.
"""

from __future__ import annotations

from incident.report.html.page import html_report, render_html, write_html
from incident.report.html.timeline import daily_events

__all__ = ["daily_events", "html_report", "render_html", "write_html"]
