"""A run's trajectories: sortable, filterable, searchable, paged from SQL.

Queries run in a thread worker (they are bounded, but a full-text search or a count over a
million rows should never freeze the keyboard); results come back through call_from_thread.
"""

from __future__ import annotations

from dataclasses import replace

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from core.store.queries import (
    CAP,
    TrajectoryQuery,
    TrajectoryRow,
    count_trajectories,
    finish_reasons,
    page_trajectories,
)
from inspector.tui import format as fmt
from inspector.tui.widgets.paged_table import PagedTable

PAGE = 100
EVAL_COLUMNS = ("id", "question", "final_answer", "gold_answer", "correct", "reward", "tool_calls", "tool_errors",
                "finish_reason", "turns", "tokens")
TRAIN_COLUMNS = ("step", "group_id", "advantage")
TITLES = {"final_answer": "answer", "gold_answer": "gold", "tool_calls": "calls", "tool_errors": "errors",
          "finish_reason": "finish", "group_id": "group"}
_CYCLE = (None, True, False)


class TrajectoriesScreen(Screen):
    """The trajectories of one run, a page at a time, with the current filter always shown."""

    BINDINGS = [
        Binding("enter", "open", "Open", id="traj.open"),
        Binding("slash", "search", "Search", id="traj.search"),
        Binding("c", "cycle_correct", "Correct?", id="traj.correct"),
        Binding("e", "cycle_errors", "Tool error?", id="traj.errors"),
        Binding("f", "cycle_finish", "Finish reason", id="traj.finish"),
        Binding("s", "sort", "Sort by column", id="traj.sort"),
        Binding("x", "clear", "Clear filters", id="traj.clear"),
        Binding("g", "group", "Group", id="traj.group"),
        Binding("right_square_bracket", "page(1)", "Next page", id="traj.next_page"),
        Binding("left_square_bracket", "page(-1)", "Prev page", id="traj.prev_page"),
        Binding("escape", "back", "Back", id="traj.back"),
    ]

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.query_state = TrajectoryQuery(run_id)
        self.page_offset = 0
        self.total: int | None = None
        self.rows: list[TrajectoryRow] = []
        self._reasons: list[str] | None = None
        self.shown: tuple[TrajectoryQuery, int] | None = None
        """The query and offset of the page on screen (for tests and benchmarks to wait on)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-line", classes="status-line")
        yield Static("", id="filter-line", classes="filter-line")
        yield Input(placeholder="search messages…   q:<text> filters questions · step:<n> · enter to apply, "
                                "empty to clear", id="search")
        yield PagedTable(id="trajectories", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        run = self.app.store.run(self.run_id)
        self.run_info = run
        self.columns = EVAL_COLUMNS + (TRAIN_COLUMNS if run["kind"] == "train" else ())
        table = self.query_one(PagedTable)
        for key in self.columns:
            table.add_column(TITLES.get(key, key), key=key)
        self.query_one("#search", Input).display = False
        self._update_run_line()
        self.reload()
        table.focus()
        if self.app.refresh_seconds and run["status"] == "running":
            self._follower = self.set_interval(self.app.refresh_seconds, self._follow)

    def _follow(self) -> None:
        """While the run is being written, re-read its line and the page on screen."""
        self.run_info = self.app.store.run(self.run_id)
        self._update_run_line()
        if self.run_info["status"] != "running":
            self._follower.stop()
        self.total = None
        self.reload(keep_offset=True, cursor=self.query_one(PagedTable).cursor_row)

    # ------------------------------------------------------------------ loading
    def reload(self, keep_offset: bool = False, cursor: int = 0) -> None:
        if not keep_offset:
            self.page_offset = 0
        self.query_one("#filter-line", Static).update(self._filter_text(loading=True))
        self._load(self.query_state, self.page_offset, cursor)

    @work(thread=True, exclusive=True, group="page")
    def _load(self, query: TrajectoryQuery, offset: int, cursor: int) -> None:
        rows = page_trajectories(self.app.store, query, offset, PAGE)
        self.app.call_from_thread(self._show_page, query, offset, rows, cursor)
        total = count_trajectories(self.app.store, query, cap=CAP)
        self.app.call_from_thread(self._show_total, query, total)

    def _show_page(self, query: TrajectoryQuery, offset: int, rows: list[TrajectoryRow], cursor: int) -> None:
        if query != self.query_state:
            return  # a newer query is on its way
        self.rows, self.page_offset = rows, offset
        self.shown = (query, offset)
        table = self.query_one(PagedTable)
        table.clear()
        for row in rows:
            table.add_row(*self._cells(row), key=str(row.id))
        if rows:
            table.move_cursor(row=max(0, min(cursor if cursor >= 0 else len(rows) + cursor, len(rows) - 1)))
        self.query_one("#filter-line", Static).update(self._filter_text())

    def _show_total(self, query: TrajectoryQuery, total: int) -> None:
        if query == self.query_state:
            self.total = total
            self.query_one("#filter-line", Static).update(self._filter_text())

    def _cells(self, row: TrajectoryRow) -> tuple:
        values = {
            "id": row.id, "question": fmt.clip(row.question, 40), "final_answer": fmt.clip(row.final_answer, 24),
            "gold_answer": fmt.clip(row.gold_answer, 18), "correct": fmt.yes_no(row.correct),
            "reward": fmt.num(row.reward), "tool_calls": row.tool_calls, "tool_errors": row.tool_errors or "",
            "finish_reason": row.finish_reason or row.status, "turns": row.turns, "tokens": fmt.count(row.tokens),
            "step": fmt.count(row.step), "group_id": fmt.count(row.group_id), "advantage": fmt.num(row.advantage),
        }
        return tuple(values[key] for key in self.columns)

    def _update_run_line(self) -> None:
        run = self.run_info
        acc = fmt.pct(run["n_correct"] / run["n_judged"]) if run["n_judged"] else fmt.DASH
        self.query_one("#run-line", Static).update(
            f"run {run['id']} · {run['name']} · {run['model']} · {run['status']} · "
            f"{run['n_done']:,}/{run['n_planned']:,} done · accuracy {acc}")

    def _filter_text(self, loading: bool = False) -> str:
        q = self.query_state
        described = q.filter.describe() or "no filter"
        order = f"sort {q.sort} {'↓' if q.descending else '↑'}"
        if loading:
            where = "loading…"
        elif not self.rows:
            where = "no trajectories match"
        else:
            total = ("counting…" if self.total is None
                     else f"{self.total:,}+" if self.total >= CAP else f"{self.total:,}")
            where = f"rows {self.page_offset + 1:,}–{self.page_offset + len(self.rows):,} of {total}"
        return f"Filter: {described}  ·  {order}  ·  {where}"

    def _set_filter(self, **changes) -> None:
        self.query_state = replace(self.query_state, filter=replace(self.query_state.filter, **changes))
        self.total = None
        self.reload()

    # ------------------------------------------------------------------ actions
    def action_cycle_correct(self) -> None:
        current = self.query_state.filter.correct
        self._set_filter(correct=_CYCLE[(_CYCLE.index(current) + 1) % 3])

    def action_cycle_errors(self) -> None:
        current = self.query_state.filter.has_tool_error
        self._set_filter(has_tool_error=_CYCLE[(_CYCLE.index(current) + 1) % 3])

    def action_cycle_finish(self) -> None:
        if self._reasons is None:
            self._reasons = finish_reasons(self.app.store, self.run_id)
        choices = [None, *self._reasons]
        current = self.query_state.filter.finish_reason
        nxt = choices[(choices.index(current) + 1) % len(choices)] if current in choices else None
        self._set_filter(finish_reason=nxt)

    def action_clear(self) -> None:
        self.query_state = TrajectoryQuery(self.run_id, sort=self.query_state.sort,
                                           descending=self.query_state.descending)
        self.query_one("#search", Input).value = ""
        self.total = None
        self.reload()

    def action_sort(self, key: str | None = None) -> None:
        table = self.query_one(PagedTable)
        key = key or self.columns[table.cursor_column]
        q = self.query_state
        descending = not q.descending if q.sort == key else key in ("reward", "tokens", "tool_errors", "tool_calls",
                                                                      "turns", "advantage")
        self.query_state = replace(q, sort=key, descending=descending)
        self.reload()

    def on_data_table_header_selected(self, event: PagedTable.HeaderSelected) -> None:
        self.action_sort(str(event.column_key.value))

    def action_page(self, direction: int) -> None:
        new = self.page_offset + direction * PAGE
        if new < 0 or (direction > 0 and len(self.rows) < PAGE):
            self.notify("no more trajectories this way", timeout=1.5)
            return
        self.page_offset = new
        self.reload(keep_offset=True, cursor=0 if direction > 0 else -1)

    def on_paged_table_edge_reached(self, event: PagedTable.EdgeReached) -> None:
        self.action_page(event.direction)

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        question = search = step = None
        if text.startswith("q:"):
            question = text[2:].strip() or None
        elif text.startswith("step:") and text[5:].strip().isdigit():
            step = int(text[5:].strip())
        elif text:
            search = text
        self._set_filter(question=question, search=search, step=step)
        event.input.display = bool(text)
        self.query_one(PagedTable).focus()

    def action_back(self) -> None:
        box = self.query_one("#search", Input)
        if box.has_focus:
            box.display = bool(box.value)
            self.query_one(PagedTable).focus()
            return
        self.app.pop_screen()

    def _current_id(self) -> int | None:
        table = self.query_one(PagedTable)
        if not table.row_count:
            return None
        return int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def on_data_table_row_selected(self, event: PagedTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def action_open(self) -> None:
        tid = self._current_id()
        if tid is not None:
            self._open(tid)

    def _open(self, trajectory_id: int) -> None:
        from inspector.tui.screens.trajectory import TrajectoryScreen

        self.app.push_screen(TrajectoryScreen(self.query_state, trajectory_id, self.run_info))

    def action_group(self) -> None:
        from inspector.tui.screens.group import GroupScreen

        tid = self._current_id()
        if tid is not None:
            self.app.push_screen(GroupScreen(tid, self.query_state, self.run_info))
