"""Cells and lines for the tables and status lines: numbers, durations, dates, and literal text.

Every string that comes from a database (a run name, a question, a model's answer, a reward's
name) is data. Textual reads a plain `str` handed to a DataTable cell or a Static as markup, so
`[/INST]` raises and `[bold red]` restyles; these helpers return `rich.text.Text` instead, with
control characters made visible (an ANSI escape would otherwise move the terminal's cursor and
shift the columns) and newlines shown as ↵ so a cell stays one line (inspector.literal).
No Textual import: the CLI's tables use the same functions.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from inspector.literal import ELLIPSIS  # noqa: F401  (re-exported: a clipped cell ends with it)
from inspector.literal import one_line as literal_one_line

DASH = "–"


def pct(x: float | None) -> str:
    return DASH if x is None else f"{x:.1%}"


def num(x: float | None, digits: int = 3) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def count(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s // 60 % 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{seconds:.1f}s"


def when(timestamp: float | None) -> str:
    return DASH if timestamp is None else datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def yes_no(x: bool | int | None) -> str:
    return DASH if x is None else ("✔" if x else "✘")


def one_line(text: str | None) -> str:
    """The text on one line, literally (see inspector.literal.one_line); – for None."""
    return DASH if text is None else literal_one_line(str(text))


def clip(text: str | None, width: int) -> str:
    """`one_line(text)` cut to at most `width` terminal cells (wide CJK counts 2), with … when cut."""
    return DASH if text is None else literal_one_line(str(text), width)


def cell(value: object, width: int | None = None, *, style: str = "", right: bool = False) -> Text:
    """A table cell that shows `value` literally: never parsed as markup, one line, at most
    `width` cells (None: unclipped). Numbers and counts are right-aligned with `right=True`."""
    text = one_line(value) if width is None else clip(value, width)
    return Text(text, style=style, justify="right" if right else "left", no_wrap=True, overflow="ellipsis")


def line(*parts: str | tuple[str, str] | Text, sep: str = " · ") -> Text:
    """A status line assembled from literal parts; (text, style) pairs are styled, empty parts dropped."""
    out = Text(no_wrap=True, overflow="ellipsis")
    first = True
    for part in parts:
        if isinstance(part, tuple):
            body, style = part
        elif isinstance(part, Text):
            body, style = part, ""
        else:
            body, style = part, ""
        if not body:
            continue
        if not first:
            out.append(sep, style="dim")
        first = False
        if isinstance(body, Text):
            out.append_text(body)
        else:
            out.append(one_line(body), style=style)
    return out
