"""A run's trajectories: sortable, filterable, searchable, paged from SQL.

Queries run in a thread worker (they are bounded, but a full-text search or a count over a
million rows should never freeze the keyboard); results come back through call_from_thread.
Every cell is literal text (format.cell): answers such as `[/INST]` are data, not markup.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import Header, Input, Static

from core.store.queries import (
    CAP,
    TrajectoryFilter,
    TrajectoryQuery,
    TrajectoryRow,
    count_trajectories,
    finish_reasons,
    page_trajectories,
    position,
)
from core.scoring.judges import judge_label
from inspector.literal import one_line
from inspector.tui.widgets.line import Line
from inspector.tui import format as fmt
from inspector.tui.reads import read
from inspector.tui.screens.live import LiveScreen
from inspector.tui.widgets.key_bar import KeyBar
from inspector.tui.widgets.paged_table import PagedTable

PAGE = 100
EVAL_COLUMNS = ("id", "correct", "reward", "tool_errors", "question", "final_answer", "gold_answer", "tool_calls",
                "finish_reason", "turns", "tokens")
"""The verdict columns first: at 80 columns correct, reward and tool errors stay on screen."""
TRAIN_COLUMNS = ("id", "step", "group_id", "correct", "reward", "advantage", "tool_errors", "question",
                 "final_answer", "gold_answer", "tool_calls", "finish_reason", "turns", "tokens")
TITLES = {"final_answer": "answer", "gold_answer": "gold", "tool_calls": "calls", "tool_errors": "errors",
          "finish_reason": "finish", "group_id": "group"}
TEXT_SHARE = {"question": 0.5, "final_answer": 0.3, "gold_answer": 0.2}
"""How the width left after the narrow columns is shared among the text columns."""
TEXT_MIN = {"question": 20, "final_answer": 12, "gold_answer": 10}
NUMERIC = {"id", "reward", "tool_errors", "tool_calls", "turns", "tokens", "step", "group_id", "advantage"}
DESCENDING_FIRST = {"reward", "tokens", "tool_errors", "tool_calls", "turns", "advantage"}
AUTO_LINT_MAX = 20_000
"""Runs up to this many trajectories are linted as their list opens (about 0.5 s at the limit),
to mark the id cells; larger ones when `l` asks."""
_MARKS = {"error": ("✘", "bold red"), "warning": ("!", "yellow")}
SEARCH_DEBOUNCE = 0.3
"""Seconds of quiet typing before the search box applies what is typed."""
_CYCLE = (None, True, False)
ENGINE_STOPS = {"template_mismatch", "context_length"}
"""Finish reasons where the engine, not the model, ended the trajectory (core.rollout.agent)."""


@dataclass(frozen=True)
class SearchTerms:
    """What the search box says: `step:N` anywhere, then `q:<text>` (question substring) or a
    full-text phrase. Combined with the other filters, never replacing them."""

    step: int | None = None
    question: str | None = None
    search: str | None = None


def parse_search(text: str, *, typing: bool = False) -> SearchTerms:
    """Split the box's text into criteria; while `typing`, the phrase's last word is a prefix."""
    step = None
    words = []
    for word in text.split():
        if word.startswith("step:") and word[5:].isdigit():
            step = int(word[5:])
        else:
            words.append(word)
    rest = " ".join(words)
    if rest.startswith("q:"):
        return SearchTerms(step, rest[2:].strip() or None, None)
    if typing and rest and not rest.endswith("*"):
        rest += "*"
    return SearchTerms(step, None, rest or None)


class TrajectoriesScreen(LiveScreen):
    """The trajectories of one run, a page at a time, with the current filter always shown."""

    BINDINGS = [
        Binding("enter", "open", "Open", id="traj.open"),
        Binding("slash", "search", "Search", id="traj.search"),
        Binding("c", "cycle_correct", "Correct?", id="traj.correct"),
        Binding("e", "cycle_errors", "Tool error?", id="traj.errors"),
        Binding("f", "cycle_finish", "Finish reason", id="traj.finish"),
        Binding("s", "sort", "Sort by column", id="traj.sort", tooltip="Sort by the column under the column "
                "cursor (←/→ move it); again to reverse"),
        Binding("x", "clear", "Clear filters", id="traj.clear"),
        Binding("g", "group", "Group", id="traj.group"),
        Binding("l", "cycle_lint", "Lint findings", id="traj.lint", tooltip="Only trajectories with mask-lint "
                "findings: any kind, then each kind found in turn, then all again (the run is linted once)"),
        Binding("right_square_bracket", "page(1)", "Next page", id="traj.next_page"),
        Binding("left_square_bracket", "page(-1)", "Prev page", id="traj.prev_page"),
        Binding("escape", "back", "Back", id="traj.back"),
    ]

    def __init__(self, run_id: int, step: int | None = None, open_trajectory: int | None = None):
        """`step`: open on that training step's trajectories, in group order (from the steps screen).
        `open_trajectory`: a trajectory of the run to open once the list has its page (Esc then
        lands on it in the list)."""
        super().__init__()
        self._open_after_load = open_trajectory
        self.run_id = run_id
        self.query_state = (TrajectoryQuery(run_id) if step is None else
                            TrajectoryQuery(run_id, TrajectoryFilter(step=step), sort="group_id"))
        self.page_offset = 0
        self.total: int | None = None
        self.rows: list[TrajectoryRow] = []
        self.run_info: dict | None = None
        self.columns: tuple[str, ...] = ()
        self._reasons: list[str] | None = None
        self._typing: Timer | None = None
        self._filled_widths: dict[str, int] = {}
        """The text columns' widths the page on screen was clipped to."""
        self._lint = None
        """The run's mask-lint report (core.lint.LintReport) once `l` asked for it, and the
        database version it was read at."""
        self._lint_version = -1
        self._lint_marks: dict[int, str] = {}
        """Trajectory id -> the severity of its worst finding ("error" or "warning")."""
        self._opened = None
        """The trajectory screen opened from here: on return the cursor goes to what it showed last."""
        self.shown: tuple[TrajectoryQuery, int] | None = None
        """The query and offset of the page on screen (for tests and benchmarks to wait on)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Line("", id="run-line", classes="status-line")
        yield Line("", id="filter-line", classes="filter-line")
        yield Input(placeholder="search messages (live, as a prefix) · Claess* prefix · q:<text> questions · "
                                "step:<n> · Enter applies, empty clears", id="search")
        yield PagedTable(id="trajectories", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.query_one(PagedTable).focus()
        if self._open_after_load is not None:
            self.loaded_version = self.app.data_version
            self._load(self.query_state, 0, 0, find=self._open_after_load)
        else:
            self.reload()

    # ------------------------------------------------------------------ loading
    def reload_data(self) -> None:
        table = self.query_one(PagedTable)
        self.total = None
        self.reload(keep_offset=True, cursor=table.cursor_row, keep_id=self._current_id())

    def reload(self, keep_offset: bool = False, cursor: int = 0, keep_id: int | None = None) -> None:
        if not keep_offset:
            self.page_offset = 0
        self.loaded_version = self.app.data_version
        self.query_one("#filter-line", Static).update(self._filter_text(loading=True))
        self._load(self.query_state, self.page_offset, cursor, keep_id)

    @work(thread=True, exclusive=True, group="page", exit_on_error=False)
    def _load(self, query: TrajectoryQuery, offset: int, cursor: int, keep_id: int | None = None,
              find: int | None = None) -> None:
        store = self.app.store
        try:
            run = read(self.app, store.run, self.run_id)
            if find is not None:
                before = read(self.app, position, store, query, find)
                if before is not None:
                    offset, cursor, keep_id = before // PAGE * PAGE, before % PAGE, find
            rows = read(self.app, page_trajectories, store, query, offset, PAGE)
            self.app.call_from_thread(self._show_page, run, query, offset, rows, cursor, keep_id)
            total = read(self.app, count_trajectories, store, query, cap=CAP)
        except sqlite3.DatabaseError as exc:
            self.app.call_from_thread(self._show_error, exc)
            return
        self.app.call_from_thread(self._show_total, query, total)

    def _show_error(self, exc: Exception) -> None:
        self.query_one("#filter-line", Static).update(
            Text(f"cannot read this page: {fmt.one_line(str(exc))}", style="bold red"))

    def _show_page(self, run: dict, query: TrajectoryQuery, offset: int, rows: list[TrajectoryRow], cursor: int,
                   keep_id: int | None) -> None:
        self.run_info = run
        if not self.columns:
            self._add_columns(run)
            if run["n_done"] <= AUTO_LINT_MAX:
                # After the first page is filled: the lint's first use imports transformers for the
                # run's tokenizer (seconds of a busy interpreter); started first, it delayed the page
                # (filled at 0.30 s, now 0.16 s, on sample_runs' demo database).
                self.call_after_refresh(self._run_lint, self.app.data_version, False)
        self._update_run_line()
        if query != self.query_state:
            return  # a newer query is on its way
        table = self.query_one(PagedTable)
        # A live run's refresh mostly brings back the page on screen unchanged (its first pages,
        # sorted by id): a refill would make DataTable render every visible cell again, ~200 ms
        # of the event loop per refresh on a slow 2-core machine (benchmarks/tui_live.py).
        same = (self.shown == (query, offset) and rows == self.rows and table.row_count == len(rows)
                and self._text_widths() == self._filled_widths)
        self.rows, self.page_offset = rows, offset
        self.shown = (query, offset)
        if not same:
            self._fill(table)
        if self._open_after_load is not None:
            tid, self._open_after_load = self._open_after_load, None
            self.call_after_refresh(self._open, tid)
        if rows:
            ids = [r.id for r in rows]
            if keep_id in ids:
                cursor = ids.index(keep_id)
            table.move_cursor(row=max(0, min(cursor if cursor >= 0 else len(rows) + cursor, len(rows) - 1)))
        if table.sorted_by != (query.sort, query.descending):  # relabelling re-measures every cell
            table.set_sorted(query.sort, query.descending)
        self.query_one("#filter-line", Static).update(self._filter_text())

    def _add_columns(self, run: dict) -> None:
        self.columns = TRAIN_COLUMNS if run["kind"] == "train" else EVAL_COLUMNS
        table = self.query_one(PagedTable)
        for key in self.columns:
            table.add_titled_column(TITLES.get(key, key), key)

    def _fill(self, table: PagedTable) -> None:
        table.clear()
        widths = self._filled_widths = self._text_widths()
        for row in self.rows:
            table.add_row(*self._cells(row, widths), key=str(row.id))

    def _text_widths(self) -> dict[str, int]:
        """Question, answer and gold share what the screen has left after the narrow columns."""
        narrow = sum(7 if key in NUMERIC else 9 for key in self.columns if key not in TEXT_SHARE)
        spare = max(0, self.app.size.width - narrow - 2 * len(self.columns) - 2)  # known before layout
        return {key: max(TEXT_MIN[key], int(spare * share)) for key, share in TEXT_SHARE.items()}

    def on_resize(self, event: events.Resize) -> None:
        if self.rows and self._text_widths() != self._filled_widths:
            table = self.query_one(PagedTable)
            row = table.cursor_row
            self._fill(table)
            table.move_cursor(row=min(row, len(self.rows) - 1))

    def _show_total(self, query: TrajectoryQuery, total: int) -> None:
        if query == self.query_state:
            self.total = total
            self.query_one("#filter-line", Static).update(self._filter_text())

    def _cells(self, row: TrajectoryRow, widths: dict[str, int]) -> tuple[Text, ...]:
        values = {
            "id": row.id, "question": row.question, "final_answer": row.final_answer,
            "gold_answer": row.gold_answer, "correct": fmt.yes_no(row.correct),
            "reward": fmt.num(row.reward), "tool_calls": row.tool_calls, "tool_errors": row.tool_errors or "",
            "finish_reason": row.finish_reason or row.status, "turns": row.turns, "tokens": fmt.count(row.tokens),
            "step": fmt.count(row.step), "group_id": fmt.count(row.group_id), "advantage": fmt.num(row.advantage),
        }
        styles = {"correct": "green" if row.correct else "red" if row.correct is False else "",
                  "tool_errors": "bold red" if row.tool_errors else "",
                  "finish_reason": "bold red" if row.finish_reason in ENGINE_STOPS else ""}
        mark = self._lint_marks.get(row.id)
        if mark is not None:  # the id cell carries the trajectory's worst mask-lint finding
            values["id"] = f"{_MARKS[mark][0]} {row.id}"
            styles["id"] = _MARKS[mark][1]
        return tuple(fmt.cell(values[key], widths.get(key, 16), style=styles.get(key, ""), right=key in NUMERIC)
                     for key in self.columns)

    def _update_run_line(self) -> None:
        # The figures first and the model last, so that at 80 columns the accuracy, what it left
        # out and the judge that decided it stay on screen (a long model name is what is cut).
        run = self.run_info
        acc = fmt.pct(run["n_correct"] / run["n_judged"]) if run["n_judged"] else fmt.DASH
        judge = judge_label(run.get("config"))
        unjudged = run["n_done"] - run["n_judged"]  # correct is NULL: the judge's reply had no yes/no
        left_out = (f"{unjudged:,} {'unparseable' if judge else 'not judged'}", "bold yellow") if unjudged > 0 else ""
        self.query_one("#run-line", Static).update(fmt.line(
            f"run {run['id']}", run["name"], (run["status"], "bold"),
            f"{run['n_done']:,}/{run['n_planned']:,} done", f"accuracy {acc}", left_out,
            f"judge {judge or fmt.DASH}", run["model"]))

    def _filter_text(self, loading: bool = False) -> Text:
        q = self.query_state
        described = q.filter.describe() or "no filter"
        order = f"sort {TITLES.get(q.sort, q.sort)} {'↓' if q.descending else '↑'}"
        if loading:
            where = "loading…"
        elif not self.rows:
            where = "no trajectories match"
        else:
            total = ("counting…" if self.total is None
                     else f"{self.total:,}+" if self.total >= CAP else f"{self.total:,}")
            where = f"rows {self.page_offset + 1:,}–{self.page_offset + len(self.rows):,} of {total}"
        text = Text("Filter: ", style="bold", no_wrap=True, overflow="ellipsis")
        return text.append_text(fmt.line(described, order, where, sep="  ·  "))

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

    def action_cycle_lint(self) -> None:
        """Filter by mask-lint findings: any, then each kind with trajectories, then none."""
        if self._lint is None or self._lint_version != self.app.data_version:
            self.query_one("#filter-line", Static).update(Text("Filter: mask lint: checking the run…", style="italic"))
            self._run_lint(self.app.data_version, True)
            return
        self._next_lint_filter()

    @work(thread=True, exclusive=True, group="lint", exit_on_error=False)
    def _run_lint(self, version: int, apply: bool) -> None:
        """Lint the run; mark the id cells; with `apply`, then step the lint filter (the `l` key)."""
        from core.store import StoreError

        try:
            report = read(self.app, lint_whole_run, self.app.store.path, self.run_id)
        except (sqlite3.DatabaseError, StoreError) as exc:
            self.app.call_from_thread(self._show_error, exc)
            return
        self.app.call_from_thread(self._lint_ready, report, version, apply)

    def _lint_ready(self, report, version: int, apply: bool) -> None:
        from core.lint import ERROR, WARNING

        self._lint, self._lint_version = report, version
        marks: dict[int, str] = {}
        for f in report.findings:
            if f.trajectory_id is not None and f.severity in (ERROR, WARNING):
                marks[f.trajectory_id] = ERROR if f.severity == ERROR else marks.get(f.trajectory_id, WARNING)
        self._lint_marks = marks
        if any(r.id in marks for r in self.rows):  # redraw only a page that gains marks
            table = self.query_one(PagedTable)
            row, column = table.cursor_coordinate
            self._fill(table)
            table.move_cursor(row=min(row, len(self.rows) - 1), column=column)
        if apply:
            self._next_lint_filter()

    def _next_lint_filter(self) -> None:
        report = self._lint
        kinds = [k for k in report.counts() if report.trajectory_ids(k)]
        if not kinds:
            self.notify("mask lint: no trajectory of this run has a finding", timeout=3)
            self.query_one("#filter-line", Static).update(self._filter_text())
            return
        labels = [None, "lint any", *(f"lint {k}" for k in kinds)]
        current = self.query_state.filter.ids_label
        label = labels[(labels.index(current) + 1) % len(labels)] if current in labels else labels[1]
        if label is None:
            self._set_filter(ids=None, ids_label=None)
        else:
            kind = None if label == "lint any" else label[len("lint "):]
            self._set_filter(ids=tuple(report.trajectory_ids(kind)), ids_label=label)

    def action_clear(self) -> None:
        self.query_state = TrajectoryQuery(self.run_id, sort=self.query_state.sort,
                                           descending=self.query_state.descending)
        self.query_one("#search", Input).value = ""
        self.query_one("#search", Input).display = False
        self.total = None
        self.reload()

    def action_sort(self, key: str | None = None) -> None:
        table = self.query_one(PagedTable)
        if not self.columns:
            return
        key = key or table.cursor_column_key
        q = self.query_state
        descending = not q.descending if q.sort == key else key in DESCENDING_FIRST
        self.query_state = replace(q, sort=key, descending=descending)
        self.reload()

    def on_data_table_header_selected(self, event: PagedTable.HeaderSelected) -> None:
        table = self.query_one(PagedTable)
        table.column_cursor = event.column_index
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

    def _apply_search(self, text: str, typing: bool) -> None:
        terms = parse_search(text, typing=typing)
        f = self.query_state.filter
        if (terms.step, terms.question, terms.search) != (f.step, f.question, f.search):
            self._set_filter(step=terms.step, question=terms.question, search=terms.search)

    def on_input_changed(self, event: Input.Changed) -> None:
        shown = one_line(event.value)
        if shown != event.value:
            # Pasted text with an ESC or a bidi override would reach the terminal raw through
            # the Input: keep it as its visible escapes (the search ignores them anyway).
            event.input.value = shown
            return
        if self._typing is not None:
            self._typing.stop()
        value = event.value
        self._typing = self.set_timer(SEARCH_DEBOUNCE, lambda: self._apply_search(value, typing=True))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self._typing is not None:
            self._typing.stop()
        self._apply_search(event.value, typing=False)
        event.input.display = bool(event.value.strip())
        self.query_one(PagedTable).focus()

    def action_back(self) -> None:
        box = self.query_one("#search", Input)
        if box.has_focus:
            box.display = bool(box.value)
            self.query_one(PagedTable).focus()
            return
        self.app.pop_screen()

    def on_screen_resume(self) -> None:
        """Back from a trajectory: the cursor goes to the one last shown there (n/p may have
        moved it off this page), then the usual re-read if the database changed meanwhile."""
        opened, self._opened = self._opened, None
        if opened is not None and opened.trajectory_id != self._current_id():
            self.loaded_version = self.app.data_version
            self._load(self.query_state, self.page_offset, 0, None, opened.trajectory_id)
            return
        super().on_screen_resume()

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

        self._opened = TrajectoryScreen(self.query_state, trajectory_id, self.run_info)
        self.app.push_screen(self._opened)

    def action_group(self) -> None:
        from inspector.tui.screens.group import GroupScreen

        tid = self._current_id()
        if tid is not None:
            self.app.push_screen(GroupScreen(tid, self.query_state, self.run_info))


def lint_whole_run(path, run_id: int):
    """core.lint.lint_run on a connection of its own (its read transaction lasts the whole run)."""
    from core.lint import lint_run
    from core.store import Store

    with Store.open_readonly(path) as store:
        return lint_run(store, run_id)
