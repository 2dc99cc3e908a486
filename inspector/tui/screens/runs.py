"""The first screen: every run in the database, newest first."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from core.store.queries import RunRow, run_rows
from inspector.tui import format as fmt

COLUMNS = ("id", "kind", "name", "model", "status", "done", "accuracy", "reward", "tool err", "tokens",
           "started", "duration")


class RunsScreen(Screen):
    """A table of runs; Enter opens one. Re-reads itself while any run is running."""

    BINDINGS = [
        Binding("enter", "open_run", "Open run", id="runs.open"),
        Binding("r", "reload", "Reload", id="runs.reload"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-status", classes="status-line")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.action_reload()
        if self.app.refresh_seconds:
            self.set_interval(self.app.refresh_seconds, self._follow)

    def action_reload(self) -> None:
        rows = run_rows(self.app.store)
        table = self.query_one(DataTable)
        selected = table.cursor_row
        table.clear()
        for run in rows:
            table.add_row(*_cells(run), key=str(run.id))
        if rows:
            table.move_cursor(row=min(selected, len(rows) - 1))
        running = sum(1 for r in rows if r.status == "running")
        status = f"{len(rows)} runs" + (f" · {running} running" if running else "")
        if not rows:
            status = "No runs yet. Start one from a terminal: rl-inspect eval --db " + str(self.app.store.path)
        self.query_one("#runs-status", Static).update(status)
        self._any_running = running > 0

    def _follow(self) -> None:
        if getattr(self, "_any_running", False):
            self.action_reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def action_open_run(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self._open(int(key.value))

    def _open(self, run_id: int) -> None:
        from inspector.tui.screens.trajectories import TrajectoriesScreen

        self.app.push_screen(TrajectoriesScreen(run_id))


def _cells(run: RunRow) -> tuple:
    return (
        run.id, run.kind, fmt.clip(run.name, 32), fmt.clip(run.model, 24), run.status,
        f"{run.n_done:,}/{run.n_planned:,}", fmt.pct(run.accuracy), fmt.num(run.mean_reward),
        fmt.pct(run.tool_error_rate), fmt.count(run.generated_tokens), fmt.when(run.created_at),
        fmt.duration(run.duration),
    )
