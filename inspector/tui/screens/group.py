"""A GRPO group: the samples of one question side by side with their rewards and advantages."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from core.store.queries import TrajectoryQuery, group_rows
from inspector.tui import format as fmt


class GroupScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Open", id="group.open"),
        Binding("escape", "back", "Back", id="group.back"),
    ]

    def __init__(self, trajectory_id: int, query: TrajectoryQuery, run_info: dict):
        super().__init__()
        self.trajectory_id = trajectory_id
        self.list_query = query
        self.run_info = run_info

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="group-line", classes="status-line")
        yield DataTable(id="group-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        rows = group_rows(self.app.store, self.trajectory_id)
        names = self._reward_names(rows)
        table = self.query_one(DataTable)
        for title in ("id", "sample", "answer", "correct", "reward", "advantage", *names, "calls", "errors",
                      "finish", "tokens"):
            table.add_column(title, key=title)
        rewards = {r.id: {x.name: x.value for x in self.app.store.rewards(r.id)} for r in rows}
        for r in rows:
            table.add_row(r.id, r.sample, fmt.clip(r.final_answer, 30), fmt.yes_no(r.correct), fmt.num(r.reward),
                          fmt.num(r.advantage), *(fmt.num(rewards[r.id].get(n)) for n in names), r.tool_calls,
                          r.tool_errors or "", r.finish_reason or r.status, fmt.count(r.tokens), key=str(r.id))
        first = rows[0] if rows else None
        where = (f"step {first.step} · group {first.group_id}" if first and first.group_id is not None
                 else f"question {first.qidx}" if first else "")
        correct = sum(1 for r in rows if r.correct)
        self.query_one("#group-line", Static).update(
            f"{len(rows)} samples of “{fmt.clip(first.question if first else '', 60)}” · {where} · "
            f"{correct}/{len(rows)} correct")
        for i, r in enumerate(rows):
            if r.id == self.trajectory_id:
                table.move_cursor(row=i)
        table.focus()

    def _reward_names(self, rows) -> list[str]:
        names: list[str] = []
        for r in rows[:1]:
            names = [x.name for x in self.app.store.rewards(r.id)]
        return names

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
