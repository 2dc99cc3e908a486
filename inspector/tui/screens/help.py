"""`?`: what this screen's keys do, and how the screens fit together."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GUIDE = (
    "Runs → Enter opens a run's trajectories → Enter opens one trajectory.\n"
    "In a trajectory, t switches between the transcript and its tokens (green: trained by the loss; "
    "dim: masked), n/p move through the filtered list, y copies it as JSON. Esc goes back.\n"
    "Ctrl+P opens the command palette with this screen's actions."
)


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the screen it was opened from."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, under: Screen):
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        seen = set()
        for binding in [*getattr(self.under, "BINDINGS", []), *self.app.BINDINGS]:
            if isinstance(binding, Binding) and binding.description and binding.action not in seen:
                seen.add(binding.action)
                table.add_row(self.app.get_key_display(binding), binding.description)
        with VerticalScroll(id="help-box"):
            yield Static(Text(f"Keys — {type(self.under).__name__.removesuffix('Screen')}", style="bold"))
            yield Static(table)
            yield Static(Text(GUIDE), id="help-guide")
