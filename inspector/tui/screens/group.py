"""A GRPO group: the samples of one question side by side with their rewards and advantages."""

from __future__ import annotations

import sqlite3

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from core.data.records import RewardResult
from core.store.queries import TrajectoryQuery, TrajectoryRow, group_rows
from inspector.tui.widgets.table import Table
from inspector.tui.widgets.line import Line
from inspector.tui import format as fmt
from inspector.tui.reads import read
from inspector.tui.screens.live import LiveScreen
from inspector.tui.widgets.key_bar import KeyBar


class GroupScreen(LiveScreen):
    BINDINGS = [
        Binding("enter", "open", "Open", id="group.open"),
        Binding("escape", "back", "Back", id="group.back"),
    ]

    def __init__(self, trajectory_id: int, query: TrajectoryQuery, run_info: dict):
        super().__init__()
        self.trajectory_id = trajectory_id
        self.list_query = query
        self.run_info = run_info
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Line("", id="group-line", classes="status-line")
        yield Table(id="group-table", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.reload_data()

    def reload_data(self) -> None:
        self.loaded_version = self.app.data_version
        self._load()

    @work(thread=True, exclusive=True, group="group", exit_on_error=False)
    def _load(self) -> None:
        store = self.app.store
        try:
            rows = read(self.app, group_rows, store, self.trajectory_id)
            rewards = {r.id: read(self.app, store.rewards, r.id) for r in rows}
        except sqlite3.DatabaseError as exc:
            self.app.call_from_thread(self._show_error, exc)
            return
        self.app.call_from_thread(self._show, rows, rewards)

    def _show_error(self, exc: Exception) -> None:
        self.query_one("#group-line", Static).update(
            Text(f"cannot read this group: {fmt.one_line(str(exc))}", style="bold red"))

    def _show(self, rows: list[TrajectoryRow], rewards: dict[int, list[RewardResult]]) -> None:
        names = list(dict.fromkeys(x.name for r in rows for x in rewards[r.id]))
        table = self.query_one(DataTable)
        at = table.cursor_row if self.loaded else None
        table.clear(columns=True)
        c = fmt.cell
        for title in ("id", "sample", "correct", "reward", "advantage", *names, "errors", "answer", "calls",
                      "finish", "tokens"):
            table.add_column(c(title), key=f"col-{len(table.columns)}")
        for r in rows:
            values = {x.name: x.value for x in rewards[r.id]}
            table.add_row(c(r.id, right=True), c(r.sample, right=True), c(fmt.yes_no(r.correct)),
                          c(fmt.num(r.reward), right=True), c(fmt.num(r.advantage), right=True),
                          *(c(fmt.num(values.get(n)), right=True) for n in names),
                          c(r.tool_errors or "", style="bold red", right=True), c(r.final_answer, 30),
                          c(r.tool_calls, right=True), c(r.finish_reason or r.status), c(fmt.count(r.tokens), right=True),
                          key=str(r.id))
        first = rows[0] if rows else None
        where = (f"step {first.step} · group {first.group_id}" if first and first.group_id is not None
                 else f"question {first.qidx}" if first else "")
        correct = sum(1 for r in rows if r.correct)
        rewards_seen = [r.reward for r in rows if r.reward is not None]
        spread = "" if len(rewards_seen) < 2 else (
            ("no reward spread: this group gives no gradient", "bold yellow")
            if max(rewards_seen) == min(rewards_seen) else "")
        self.query_one("#group-line", Static).update(fmt.line(
            f"{len(rows)} samples of “{fmt.clip(first.question if first else '', 60)}”", where,
            f"{correct}/{len(rows)} correct", spread))
        if at is None:
            at = next((i for i, r in enumerate(rows) if r.id == self.trajectory_id), 0)
        if rows:
            table.move_cursor(row=min(at, len(rows) - 1))
        self.loaded = True

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self._open(int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def _open(self, trajectory_id: int) -> None:
        from inspector.tui.screens.trajectory import TrajectoryScreen

        self.app.push_screen(TrajectoryScreen(self.list_query, trajectory_id, self.run_info))

    def action_back(self) -> None:
        self.app.pop_screen()
