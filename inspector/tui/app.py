"""The rl-inspect TUI: runs → trajectories → one trajectory (transcript or tokens).

The app opens the database read-only and never writes to it. Every screen pages from SQL
through `core.store.queries`; nothing loads a whole run into Python.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from core.store import Store, StoreError
from inspector.tui.screens.help import HelpScreen
from inspector.tui.screens.runs import RunsScreen
from inspector.tui.tokenizers import TokenizerCache


class RLInspectApp(App):
    """Browse the runs of one database."""

    CSS_PATH = "app.tcss"
    TITLE = "rl-inspect"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+t", "toggle_dark", "Light/dark", id="app.theme"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, store: Store, *, refresh_seconds: float = 1.0, open_run: int | None = None):
        super().__init__()
        self.store = store
        self.open_run = open_run
        """A run to open straight away (after an eval, the run it just made)."""
        """The read-only store every screen queries."""
        self.refresh_seconds = refresh_seconds
        """How often screens re-read a running run (0 turns following off, as tests do)."""
        self.tokenizers = TokenizerCache()
        self.failure: str | None = None
        """Why the app stopped early, for the command line to print."""
        self.sub_title = store.path.name

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        if self.open_run is not None:
            from inspector.tui.screens.trajectories import TrajectoriesScreen

            self.push_screen(TrajectoriesScreen(self.open_run))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers the current screen's actions, then the app's."""
        for binding in _described_bindings(screen):
            yield SystemCommand(binding.description, f"key: {binding.key}",
                                _runner(screen, binding.action))
        yield SystemCommand("Toggle light/dark theme", "key: ctrl+t", self.action_toggle_dark)
        yield from super().get_system_commands(screen)

    def on_unmount(self) -> None:
        self.store.close()

    def _handle_exception(self, error: Exception) -> None:
        # A database that breaks under us (truncated, corrupted, locked for too long) ends the
        # app with one line instead of a traceback; the file is left as it is.
        if isinstance(error, sqlite3.DatabaseError):
            self.failure = f"{self.store.path}: the database cannot be read ({error})"
            self.exit(return_code=2)
            return
        super()._handle_exception(error)


def _described_bindings(screen: Screen) -> list[Binding]:
    out = []
    for binding in getattr(screen, "BINDINGS", []):
        if isinstance(binding, Binding) and binding.description:
            out.append(binding)
    return out


def _runner(screen: Screen, action: str):
    async def run() -> None:
        await screen.run_action(action)

    return run


def create_app(db_path: str | Path, *, refresh_seconds: float = 1.0, open_run: int | None = None) -> RLInspectApp:
    """Open `db_path` read-only and build the app; raises StoreError with a one-line message."""
    store = Store.open_readonly(db_path)
    try:
        store.runs()  # the pages the first screen needs: a damaged file is caught before drawing
    except sqlite3.DatabaseError as exc:
        store.close()
        raise StoreError(f"{db_path}: the database cannot be read ({exc})") from None
    return RLInspectApp(store, refresh_seconds=refresh_seconds, open_run=open_run)
