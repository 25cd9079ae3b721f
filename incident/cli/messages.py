"""What the command line says on stderr, and how data is made safe to show on a terminal.

Messages are plain lines that never wrap, whatever the terminal width or path length, so
that scripts can grep them. Values from the data (IDs, event types, paths) may hold control
characters: ESC and OSC sequences that retitle or recolour a terminal, BEL, CR and LF that
break a table or forge a line. They are always shown escaped (`\\x1b`, `\\n`).
"""

from __future__ import annotations

import re

import click

# C0 controls, DEL and C1 controls, and the bidirectional formatting characters (which make a
# terminal show text in another order than it is: a spoofed ID or path): shown as escapes,
# never sent to a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with every control character escaped, backslashes in escapes made plain."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), _escape(m.group())), text)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable_lines(text: str) -> str:
    """`text` with every control character but the line break escaped: data for a terminal
    that keeps its lines."""
    return "\n".join(printable(line) for line in text.split("\n"))


def say(message: str) -> None:
    """One line on stderr."""
    click.echo(printable(message), err=True)


def one_line(error: BaseException | str) -> str:
    """The first line of an error's message (polars adds hints below it)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
