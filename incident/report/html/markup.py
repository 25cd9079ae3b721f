"""The report's building blocks: escaping, numbers, key figures, tables and headline cards.

Every value that comes from the data goes through `esc` before it reaches the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

# A table row: its attributes (each with a leading space) and its cells, already escaped.
Row = tuple[str, Sequence[str]]

_CELL_CLASSES = {"t": "", "n": " class=num", "d": " class=when"}


def esc(value: object) -> str:
    """Escape text for HTML content and attribute values alike."""
    return escape(str(value), quote=True)


def num(value: int) -> str:
    """An integer with thousands separators."""
    return f"{value:,}"


def figure(name: str, value: int | str, text: str | None = None) -> str:
    """A key figure with a stable `id` and its raw value in `data-value`, for tests and tools."""
    shown = text if text is not None else (num(value) if isinstance(value, int) else esc(value))
    return (
        f'<span class="figure" id="{esc(name.replace("_", "-"))}" data-figure="{esc(name)}" '
        f'data-value="{esc(value)}">{shown}</span>'
    )


def table(
    headers: Sequence[str],
    rows: Iterable[Row],
    kinds: str = "",
    caption: str = "",
) -> str:
    """A table; each row is (its attributes, its cells, already escaped). `kinds` has one letter
    per column, `t` text, `n` number, `d` instant; by default text, then numbers."""
    classes = [_CELL_CLASSES[k] for k in kinds or "t" + "n" * (len(headers) - 1)]
    head = "".join(f"<th{c}>{esc(h)}</th>" for c, h in zip(classes, headers, strict=True))
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


def card(name: str, value: int, label: str, note: str) -> str:
    """A headline card: a key figure, its label and a note on what it counts."""
    return (
        f'<div class="card"><div class="value">{figure(name, value)}</div>'
        f'<div class="label">{esc(label)}</div><div class="note">{esc(note)}</div></div>'
    )
