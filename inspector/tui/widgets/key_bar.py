"""The bottom line: the focused screen's keys, with help, quit and the palette always in view.

Textual's Footer lists the focused widget's keys first and the app's last, so at 80 columns
`?` and `q` were cut off. Here the Footer shows the screen's keys (scrolling if they overflow)
and a fixed hint on the right keeps the three keys a newcomer needs.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Static

HINT_KEYS = (("?", "help"), ("q", "quit"), ("^p", "keys"))


def hint_text() -> Text:
    text = Text(no_wrap=True)
    for i, (key, what) in enumerate(HINT_KEYS):
        text.append(f" {key} ", style="bold reverse")
        text.append(f" {what} ")
    return text


class KeyBar(Horizontal):
    """Footer of the screen's keys plus the always-visible hint."""

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 1fr;
        background: $footer-background;
    }
    KeyBar > Footer {
        dock: none;
        width: 1fr;
    }
    KeyBar > #key-hint {
        width: auto;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
    }
    """

    def compose(self) -> ComposeResult:
        yield Footer(show_command_palette=False)
        yield Static(hint_text(), id="key-hint")
