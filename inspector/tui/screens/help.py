"""`?`: every key of the screen it was opened from, widgets' keys included, and how screens fit."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from inspector.tui.keys import heading_of, screen_keys

GUIDE = (
    "Runs → Enter opens a run's trajectories (a train run's steps first) → Enter opens one trajectory.\n"
    "In a trajectory, t switches between the transcript and its tokens (green: trained by the loss; "
    "dim: masked), n/p move through the filtered list, y copies it as JSON. Esc goes back.\n"
    "On the runs screen, c marks a run as A and c on another compares them question by question; "
    "Enter on a question sets its two transcripts side by side. e launches an evaluation into the "
    "database (x cancels it, R resumes, o shows its log).\n"
    "Ctrl+P opens the command palette with every key of this screen."
)


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the screen it was opened from, grouped by where they act."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, under: Screen):
        super().__init__()
        self.under = under
        self.rows: list[tuple[str, str, str]] = []
        """(heading, key, description) as listed."""

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        heading = None
        for key in screen_keys(self.under):
            if key.heading != heading:
                heading = key.heading
                table.add_row(Text(heading, style="bold underline"), "")
            shown = self.app.get_key_display(key.binding)
            self.rows.append((key.heading, shown, key.binding.description))
            table.add_row(Text(shown), Text(key.binding.description))
        with VerticalScroll(id="help-box"):
            yield Static(Text(f"Keys — {heading_of(self.under)}", style="bold"))
            yield Static(table)
            yield Static(Text(GUIDE), id="help-guide")
