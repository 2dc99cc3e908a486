"""The first screen: every run in the database, newest first, following new and running runs."""

from __future__ import annotations

import sqlite3
import time

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from core.store.pace import Pace, PaceTracker
from core.store.queries import RunRow, run_rows
from inspector.tui.widgets.table import Table
from inspector.tui.widgets.line import Line
from inspector.tui import format as fmt
from inspector.tui.reads import read
from inspector.tui.screens.live import LiveScreen
from inspector.tui.widgets.key_bar import KeyBar

COLUMNS = ("id", "name", "status", "done", "accuracy", "reward", "tool err", "lint", "judge", "tok/s", "eta",
           "kind", "model", "tokens", "started", "duration")
"""The figures a user compares come first, so they stay on screen at 80 columns. "lint" is the
mask lint's count when the run ended (✔ none; N✘ errors; N! warnings; – not checked). "judge" is
the judge that decided the accuracy (core.scoring.judges.judge_label: f1, exact, contains,
llm:<model>; – when the run's configuration names none). "tok/s" is generated tokens per second
and "eta" the time left, for a running run from the counters read while it is watched
(core.store.pace); a finished run shows its average tok/s. At 80 columns they are off to the
right, so the status line repeats them for the running runs."""
_JUDGE_WIDTH = 13
"""Cells of the judge column: "contains", or "llm:" and the start of the judge model's name."""
_FIXED = 4 + 11 + 15 + 8 + 7 + 8 + 6 + 5 + _JUDGE_WIDTH + 7 + 8 + 14 * 2
"""Cells the columns after `name` need on an 80-column screen, with cell padding."""


class RunsScreen(LiveScreen):
    """A table of runs; Enter opens one. New runs appear by themselves; running ones tick."""

    BINDINGS = [
        Binding("enter", "open_run", "Open run", id="runs.open"),
        Binding("r", "reload", "Reload", id="runs.reload"),
        Binding("c", "compare", "Compare", id="runs.compare",
                tooltip="Mark this run as A; on another run, compare A with it by question"),
        Binding("e", "launch", "Launch eval", id="runs.launch",
                tooltip="Start an evaluation into this database, in a process of its own"),
        Binding("x", "cancel_run", "Cancel", id="runs.cancel",
                tooltip="Stop the highlighted run if it was launched here (finished trajectories are kept)"),
        Binding("R", "resume_run", "Resume", id="runs.resume",
                tooltip="Finish the highlighted cancelled or interrupted eval run, in a process of its own"),
        Binding("o", "show_log", "Launch log", id="runs.log", show=False,
                tooltip="The log of the last evaluation launched here"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunRow] = []
        self.loaded = False
        """True once the first read came back (tests wait on it)."""
        self._filled_width = 0
        """The name column's width the table on screen was filled at (see _name_width)."""
        self.compare_from: int | None = None
        """The run marked as A by `c`, waiting for its B."""
        self._ticking = False
        self.pace = PaceTracker()
        self._shown_cells: list[tuple[int, tuple[Text, ...]]] = []
        """(run id, its cells) of each row on screen, in order, as last filled or updated."""
        self.paces: dict[int, Pace] = {}
        """Each listed run's pace at the last read (tok/s, ETA), by run id."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Line("", id="runs-status", classes="status-line")
        yield Table(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        table.focus()
        self.reload_data()

    def reload_data(self) -> None:
        self.loaded_version = self.app.data_version
        self._load()

    def action_reload(self) -> None:
        self.reload_data()

    def database_changed(self, changed: bool) -> None:
        if changed or any(r.status == "running" for r in self.rows):
            self.reload_data()  # a running run's duration and status move with the clock

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _load(self) -> None:
        try:
            store = self.app.store  # None while the file does not exist yet (RLInspectApp.missing_status)
            rows = [] if store is None else read(self.app, run_rows, store)
        except sqlite3.DatabaseError as exc:
            self.app.call_from_thread(self._show_error, exc)
            return
        self.app.call_from_thread(self._show, rows)

    def _show_error(self, exc: Exception) -> None:
        self.query_one("#runs-status", Static).update(
            Text(f"cannot read the runs: {fmt.one_line(str(exc))}", style="bold red"))

    def _show(self, rows: list[RunRow]) -> None:
        table = self.query_one(DataTable)
        selected = table.cursor_row
        selected_key = self._key_at(selected)
        self.rows = rows
        now = time.time()  # the clock RunRow.duration is measured with
        self.paces = {r.id: self.pace.observe(r.id, status=r.status, n_done=r.n_done, n_planned=r.n_planned,
                                              generated_tokens=r.generated_tokens, duration=r.duration, now=now)
                      for r in rows}
        self.pace.forget_missing(set(self.paces))
        self.loaded = True
        if not self._update_in_place(table):
            self._fill(table)
        if rows:
            keys = [str(r.id) for r in rows]
            row = keys.index(selected_key) if selected_key in keys else min(selected, len(rows) - 1)
            table.move_cursor(row=row)
        self._update_status()

    def _update_status(self) -> None:
        rows = self.rows
        running = [r for r in rows if r.status == "running"]
        status = f"{len(rows)} runs"
        if running:
            status += f" · {len(running)} running: " + "; ".join(
                progress_line(r, self.paces.get(r.id)) for r in running[:2])
            if len(running) > 2:
                status += f"; {len(running) - 2} more"
        if not rows:
            status = f"No runs yet. Start one from a terminal: rl-inspect eval --db {self.app.db_name}"
            if self.app.store is None:
                status = self.app.missing_status()
        if self.compare_from is not None:
            status += f" · run {self.compare_from} marked as A: c on another run compares them (c again unmarks)"
        launched = self.app.launched_evals
        if launched:
            last = launched[-1]
            state = "running" if last.running() else f"ended (exit {last.process.returncode})"
            status += f" · launched eval pid {last.pid} {state}: o shows its log"
        self.query_one("#runs-status", Static).update(Text(status))

    def _highlighted(self) -> RunRow | None:
        key = self._key_at(self.query_one(DataTable).cursor_row)
        return next((r for r in self.rows if str(r.id) == key), None)

    def action_launch(self) -> None:
        from inspector.tui.screens.launch import LaunchScreen

        def start(args: list[str] | None) -> None:
            if args is not None:
                self._start(args, None)

        self.app.push_screen(LaunchScreen(), start)

    def _start(self, args: list[str], resume: int | None) -> None:
        from inspector.launch import launch

        try:
            launched = launch(self.app.db_path, args, resume=resume)
        except OSError as exc:
            self.notify(f"cannot start the evaluation: {exc}", severity="error", markup=False)
            return
        self.app.launched_evals.append(launched)
        what = f"resuming run {resume}" if resume is not None else "evaluation started"
        self.notify(f"{what} (pid {launched.pid}); its log: {launched.log}", markup=False)
        self._update_status()
        if not self._ticking:  # the launched process's state, once a second
            self._ticking = True
            self.set_interval(1.0, self._update_status)

    def action_cancel_run(self) -> None:
        run = self._highlighted()
        if run is None:
            return
        mine = next((p for p in self.app.launched_evals if p.running() and p.pid == run.pid), None)
        if run.status != "running":
            self.notify(f"run {run.id} is {run.status}, not running", markup=False)
        elif mine is None:
            self.notify(f"run {run.id} was not launched here (pid {run.pid}): stop it where it runs "
                        "(Ctrl-C, or kill -TERM its pid)", markup=False)
        else:
            mine.cancel()
            self.notify(f"cancelling run {run.id}: trajectories in flight finish first; R resumes it", markup=False)

    def action_resume_run(self) -> None:
        run = self._highlighted()
        if run is None:
            return
        if run.kind != "eval" or run.status not in ("cancelled", "interrupted", "failed"):
            self.notify(f"run {run.id} ({run.kind}, {run.status}): only a cancelled, interrupted or failed eval "
                        "run resumes here", markup=False)
            return
        self._start([], run.id)

    def action_show_log(self) -> None:
        from inspector.tui.screens.launch import LogScreen

        launched = self.app.launched_evals
        if not launched:
            self.notify("no evaluation was launched from here", markup=False)
            return
        last = launched[-1]
        self.app.push_screen(LogScreen(f"{' '.join(last.argv[2:])}  ·  {last.log}", last.log_tail(60)))

    def action_compare(self) -> None:
        key = self._key_at(self.query_one(DataTable).cursor_row)
        if key is None:
            return
        run_id = int(key)
        if self.compare_from is None or self.compare_from == run_id:
            self.compare_from = None if self.compare_from == run_id else run_id
            self._update_status()
            return
        from inspector.tui.screens.compare import CompareScreen

        run_a, self.compare_from = self.compare_from, None
        self._update_status()
        self.app.push_screen(CompareScreen(run_a, run_id))

    def _name_width(self) -> int:
        # The terminal's width, known from the start (the screen's own size is 0 until its
        # first layout, which would clip the names once and redraw them a frame later).
        return max(12, min(48, self.app.size.width - _FIXED))

    def _update_in_place(self, table: DataTable) -> bool:
        """Change only the cells that differ from the table on screen, when it lists the same
        runs in the same order at the same widths; False when a refill is needed.

        A running run's row changes every second (duration, done, tok/s, ETA): clearing and
        refilling the table re-measures and re-renders every cell, which kept keys waiting
        (benchmarks/tui_live.py); updating a few cells does not re-measure the columns."""
        name_width = self._name_width()
        if (not self._shown_cells or self._filled_width != name_width
                or [r.id for r in self.rows] != [rid for rid, _ in self._shown_cells]):
            return False
        shown = []
        for (run_id, before), run in zip(self._shown_cells, self.rows):
            cells = _cells(run, name_width, self.paces.get(run.id))
            for column, old, new in zip(COLUMNS, before, cells):
                if old != new:
                    table.update_cell(str(run_id), column, new, update_width=new.cell_len > old.cell_len)
            shown.append((run_id, cells))
        self._shown_cells = shown
        return True

    def _fill(self, table: DataTable) -> None:
        table.clear()
        name_width = self._name_width()
        self._filled_width = name_width
        self._shown_cells = []
        for run in self.rows:
            cells = _cells(run, name_width, self.paces.get(run.id))
            table.add_row(*cells, key=str(run.id))
            self._shown_cells.append((run.id, cells))

    def _key_at(self, row: int) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count or row >= table.row_count:
            return None
        return table.coordinate_to_cell_key((row, 0)).row_key.value

    def on_resize(self, event: events.Resize) -> None:
        if self.rows and self._name_width() != self._filled_width:
            table = self.query_one(DataTable)
            row = table.cursor_row
            self._fill(table)
            table.move_cursor(row=min(row, len(self.rows) - 1))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def action_open_run(self) -> None:
        key = self._key_at(self.query_one(DataTable).cursor_row)
        if key is not None:
            self._open(int(key))

    def _open(self, run_id: int) -> None:
        kind = next((r.kind for r in self.rows if r.id == run_id), None)
        self.app.push_screen(run_screen(run_id, kind))


def run_screen(run_id: int, kind: str | None):
    """The screen a run opens on: a train run's steps, any other run's trajectories."""
    if kind == "train":
        from inspector.tui.screens.steps import StepsScreen

        return StepsScreen(run_id)
    from inspector.tui.screens.trajectories import TrajectoriesScreen

    return TrajectoriesScreen(run_id)


def progress_line(run: RunRow, pace: Pace | None) -> str:
    """'run 7 12/50 · acc 41.7% · 85 tok/s · eta 42.0s' for a running run on the status line."""
    pace = pace or Pace(None, None)
    return (f"run {run.id} {run.n_done:,}/{run.n_planned:,} · acc {fmt.pct(run.accuracy)}"
            f" · {tokens_per_second(pace.tokens_per_second)} tok/s · eta {fmt.duration(pace.eta_seconds)}")


def tokens_per_second(rate: float | None) -> str:
    """'85.3' under 1000, '1.2k' above; – when unknown."""
    if rate is None:
        return fmt.DASH
    return f"{rate:.1f}" if rate < 1000 else f"{rate / 1000:.1f}k"


def _cells(run: RunRow, name_width: int, pace: Pace | None = None) -> tuple[Text, ...]:
    c = fmt.cell
    pace = pace or Pace(None, None)
    return (
        c(run.id, right=True), c(run.name, name_width), c(run.status, style=_STATUS_STYLE.get(run.status, "")),
        _done_cell(run), c(fmt.pct(run.accuracy), right=True),
        c(fmt.num(run.mean_reward), right=True), c(fmt.pct(run.tool_error_rate), right=True), lint_cell(run.lint),
        c(run.judge, _JUDGE_WIDTH),
        c(tokens_per_second(pace.tokens_per_second), right=True), c(fmt.duration(pace.eta_seconds), right=True),
        c(run.kind),
        c(run.model, 24), c(fmt.count(run.generated_tokens), right=True), c(fmt.when(run.created_at)),
        c(fmt.duration(run.duration), right=True),
    )


def _done_cell(run: RunRow) -> Text:
    """'12/50', with ' ✘3' in red when 3 trajectories failed (they are not done, nor missing)."""
    text = fmt.cell(f"{run.n_done:,}/{run.n_planned:,}", right=True)
    if run.n_failed:
        text.append(f" ✘{run.n_failed:,}", style="bold red")
    return text


def lint_cell(lint: dict | None) -> Text:
    """The runs table's lint cell: '✔' clean, 'N✘' error findings, 'N!' warnings only, '–' unknown."""
    if not isinstance(lint, dict):
        return fmt.cell(fmt.DASH, right=True)
    errors, warnings = int(lint.get("errors") or 0), int(lint.get("warnings") or 0)
    if errors:
        return fmt.cell(f"{errors}✘", style="bold red", right=True)
    if warnings:
        return fmt.cell(f"{warnings}!", style="yellow", right=True)
    return fmt.cell("✔", style="green", right=True)


_STATUS_STYLE = {"running": "bold green", "interrupted": "bold yellow", "failed": "bold red", "cancelled": "yellow"}
