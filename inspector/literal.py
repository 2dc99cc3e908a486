"""Text from a model, a user file or a database, made safe to print: shown, never obeyed.

Two forms, used by the TUI and the CLI alike (no Textual and no numpy here, so `rl-inspect runs`
stays light):
- `visible(text)` keeps newlines and tabs (for transcripts) and shows every character that
  would move the terminal's cursor or reorder text: ESC as ␛, other controls as \\xNN, line and
  paragraph separators and bidi overrides as \\uNNNN.
- `one_line(text, max_cells)` is a table cell: newlines as ↵, tabs as ⇥, also format
  characters (zero-width joiners, bidi marks) and lone surrogates as \\uNNNN, clipped to a
  width in terminal cells (a CJK character is two) with ….
Markup such as `[bold red]` or `[/INST]` is never interpreted here; callers hand the result to
Rich as `Text`, never as a markup string.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Control, format (bidi marks, zero-width joiners), surrogate and line/paragraph separators."""
ELLIPSIS = "…"


def visible(text: str | None) -> str:
    """The text with control characters shown (ESC as ␛, others as \\xNN); \\n and \\t kept."""
    if not text:
        return ""
    return _CONTROL.sub(show_escape, text)


def show_escape(match: re.Match[str]) -> str:
    """The escape shown for one matched character (a `re.sub` callback): ␛, \\xNN, \\uNNNN, or
    \\UNNNNNNNN above U+FFFF (Python's own escapes, so each reads back as one character)."""
    ch = match.group(0)
    if ch == "\x1b":
        return "␛"
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def one_line(text: str | None, max_cells: int | None = None) -> str:
    """`text` as it should reach a terminal cell: literally, on one line, at most `max_cells`
    terminal cells wide (None: unclipped). Clipped text ends with …."""
    from rich.cells import get_character_cell_size

    out: list[str] = []
    for ch in visible(text):
        if ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("⇥")
        elif unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    if max_cells is None:
        return "".join(out)
    if max_cells <= 0:
        return ""
    widths = [get_character_cell_size(piece) if len(piece) == 1 else len(piece) for piece in out]
    if sum(widths) <= max_cells:
        return "".join(out)
    shown, used = [], 0
    for piece, width in zip(out, widths):
        if used + width > max_cells - 1:
            break
        shown.append(piece)
        used += width
    return "".join(shown) + ELLIPSIS
