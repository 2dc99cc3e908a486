"""A train run's steps: its curves over steps, and the step table; a step opens its groups."""

from __future__ import annotations

import math
import sqlite3

from rich.cells import cell_len
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import DataTable, Header, Sparkline, Static

from core.store.queries import StepRow, train_step_rows
from inspector.tui.widgets.table import Table
from inspector.tui.widgets.line import Line
from inspector.tui import format as fmt
from inspector.tui.reads import read
from inspector.tui.screens.live import LiveScreen
from inspector.tui.widgets.key_bar import KeyBar

CURVES: tuple[tuple[str, str], ...] = (
    ("reward", "reward"),
    ("eval_accuracy", "eval accuracy"),
    ("eval_reward", "eval reward"),
    ("loss", "loss"),
    ("kl", "KL"),
    ("mismatch_kl", "mismatch KL"),
    ("entropy", "entropy"),
    ("grad_norm", "grad norm"),
    ("frac_reward_zero_std", "zero-spread groups"),
    ("completions/mean_length", "completion tokens"),
)
"""Metric key -> label of each curve, in order; the per-reward means come after "reward"."""

COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("step", "step", "d"),
    ("reward", "reward", ".3f"),
    ("reward_std", "std", ".3f"),
    ("frac_reward_zero_std", "zero σ", ".2f"),
    ("eval_accuracy", "eval acc", "%"),
    ("eval_reward", "eval r", ".3f"),
    ("loss", "loss", ".4f"),
    ("kl", "KL", ".4f"),
    ("entropy", "entropy", ".2f"),
    ("grad_norm", "grad", ".3f"),
    ("learning_rate", "lr", ".1e"),
    ("completions/mean_length", "tokens", ".1f"),
    ("step_seconds", "step s", ".1f"),
    ("ours", "ours %", ".1f"),
)
"""(key, title, format) of the step table. "ours" is the share of the step's wall time this
project adds (StepRow.ours_seconds)."""
EVAL_COLUMNS = ("eval_accuracy", "eval_reward")
"""Columns shown only when some step has a linked eval with that figure (an imported eval judges
no correctness; a run without --eval-every has neither)."""


def columns(rows: list[StepRow]) -> list[tuple[str, str, str]]:
    """The COLUMNS these steps show: all but the EVAL_COLUMNS no step has a value for."""
    return [c for c in COLUMNS if c[0] not in EVAL_COLUMNS or any(row.get(c[0]) is not None for row in rows)]


CURVE_LABEL_WIDTH = 34


def metric(row: StepRow, key: str) -> float | None:
    """A step's value for a curve or column key (see COLUMNS), None when it was not logged."""
    if key == "step":
        return float(row.step)
    if key == "ours":
        ours, total = row.ours_seconds, row.metrics.get("step_seconds")
        return 100.0 * ours / total if ours is not None and total else None
    value = row.get(key)
    return value if value is not None and math.isfinite(value) else None


def curve_keys(rows: list[StepRow]) -> list[tuple[str, str]]:
    """The curves these steps have data for: CURVES, with each reward's mean after "reward"."""
    present = ({k for r in rows for k in r.metrics}
               | {k for k in ("eval_accuracy", "eval_reward") if any(r.get(k) is not None for r in rows)})
    rewards = sorted(k for k in present if k.startswith("rewards/") and k.endswith("/mean"))
    out: list[tuple[str, str]] = []
    for key, label in CURVES:
        if key in present:
            out.append((key, label))
        if key == "reward":
            out += [(k, "  " + k[len("rewards/"):-len("/mean")]) for k in rewards]
    return out


def curve_label(label: str, values: list[float | None]) -> Text:
    """'reward             0.31 → 0.902': the label in 18 cells, literal, then the first and last
    logged value ('–' when none was)."""
    known = [v for v in values if v is not None]
    text = Text(no_wrap=True, overflow="ellipsis")
    name = fmt.clip(label, 18)
    text.append(name + " " * (18 - cell_len(name)), style="bold")
    if not known:
        return text.append("–", style="dim")
    text.append(f" {_short(known[0])} → {_short(known[-1])}")
    return text


def _short(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


class StepsScreen(LiveScreen):
    """The steps of one train run: curves (Textual Sparklines, one value per step) and a table.

    Enter opens the selected step's trajectories (sorted by group, `g` there opens a group);
    `a` opens every trajectory of the run.
    """

    BINDINGS = [
        Binding("enter", "open_step", "Open step", id="steps.open"),
        Binding("a", "all_trajectories", "All trajectories", id="steps.all"),
        Binding("r", "reload", "Reload", id="steps.reload"),
        Binding("escape", "back", "Back", id="steps.back"),
    ]

    DEFAULT_CSS = """
    StepsScreen #curves { height: auto; max-height: 45%; }
    StepsScreen .curve { height: 1; }
    StepsScreen .curve-label { width: 34; }
    StepsScreen Sparkline { width: 1fr; height: 1; }
    StepsScreen #steps-table { height: 1fr; }
    """

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.rows: list[StepRow] = []
        self.run_info: dict | None = None
        self.loaded = False
        """True once the first read came back (tests wait on it)."""
        self._curves: list[tuple[str, str]] = []
        self._columns: list[tuple[str, str, str]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Line("", id="run-line", classes="status-line")
        yield VerticalScroll(id="curves")
        yield Table(id="steps-table", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self._set_columns(columns([]))
        table.focus()
        self.reload_data()

    def reload_data(self) -> None:
        self.loaded_version = self.app.data_version
        self._load()

    def action_reload(self) -> None:
        self.reload_data()

    @work(thread=True, exclusive=True, group="steps", exit_on_error=False)
    def _load(self) -> None:
        store = self.app.store
        try:
            run = read(self.app, store.run, self.run_id)
            rows = read(self.app, train_step_rows, store, self.run_id)
        except sqlite3.DatabaseError as exc:
            self.app.call_from_thread(self._show_error, exc)
            return
        self.app.call_from_thread(self._show, run, rows)

    def _show_error(self, exc: Exception) -> None:
        self.query_one("#run-line", Static).update(
            Text(f"cannot read the steps: {fmt.one_line(str(exc))}", style="bold red"))

    def _show(self, run: dict, rows: list[StepRow]) -> None:
        self.run_info, self.rows, self.loaded = run, rows, True
        done = f"{len(rows)} steps" + (f" of {run['config'].get('steps')}" if run["config"].get("steps") else "")
        self.query_one("#run-line", Static).update(fmt.line(
            f"run {run['id']}", run["name"], run["model"], (run["status"], "bold"), done,
            f"{run['n_done']:,} trajectories"))
        self._show_curves(rows)
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        shown = columns(rows)
        if shown != self._columns:
            self._set_columns(shown)
        for row in rows:
            table.add_row(*(_cell(metric(row, key), spec) for key, _, spec in shown), key=str(row.step))
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        else:
            self.query_one("#run-line", Static).update(
                fmt.line(f"run {run['id']}", run["name"], (run["status"], "bold"), "no step stored yet"))

    def _set_columns(self, shown: list[tuple[str, str, str]]) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for key, title, _ in shown:
            table.add_column(title, key=key)
        self._columns = shown

    def _show_curves(self, rows: list[StepRow]) -> None:
        box = self.query_one("#curves", VerticalScroll)
        curves = curve_keys(rows)
        if curves != self._curves:
            self._curves = curves
            box.remove_children()
            box.mount_all(Horizontal(Static("", classes="curve-label", id=f"label-{i}"),
                                     Sparkline([], id=f"curve-{i}"), classes="curve")
                          for i in range(len(curves)))
            self.call_after_refresh(self._fill_curves)
        else:
            self._fill_curves()

    def _fill_curves(self) -> None:
        for i, (key, label) in enumerate(self._curves):
            values = [metric(r, key) for r in self.rows]
            try:
                self.query_one(f"#label-{i}", Static).update(curve_label(label, values))
                # A step without the value (an eval not run at that step) draws as the lowest bar.
                known = [v for v in values if v is not None]
                self.query_one(f"#curve-{i}", Sparkline).data = [v if v is not None else min(known)
                                                                 for v in values] if known else []
            except NoMatches:  # a curve row replaced by a newer read; the next fill draws it
                continue

    # ------------------------------------------------------------------ actions
    def _selected_step(self) -> int | None:
        table = self.query_one(DataTable)
        if not self.rows or not table.row_count:
            return None
        return self.rows[min(table.cursor_row, len(self.rows) - 1)].step

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def action_open_step(self) -> None:
        step = self._selected_step()
        if step is not None:
            self._open(step)

    def _open(self, step: int | None) -> None:
        from inspector.tui.screens.trajectories import TrajectoriesScreen

        self.app.push_screen(TrajectoriesScreen(self.run_id, step=step))

    def action_all_trajectories(self) -> None:
        self._open(None)

    def action_back(self) -> None:
        self.app.pop_screen()


def _cell(value: float | None, spec: str) -> Text:
    if value is None:
        return fmt.cell(fmt.DASH, right=True)
    if spec == "%":
        return fmt.cell(fmt.pct(value), right=True)
    return fmt.cell(format(int(value) if spec == "d" else value, spec), right=True)
