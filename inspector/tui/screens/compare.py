"""Two runs side by side by question (core.store.compare), and one question's two transcripts.

From the runs screen: `c` on one run marks it as A, `c` on another opens the comparison (A → B).
Rows come in core.store.compare's order (flips first, then other changes, then the rest, then
questions only one run asked); Enter on a question both runs asked opens a sample of each,
side by side.
"""

from __future__ import annotations

import sqlite3

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Static

from core.data.records import Question
from core.store import StoreError
from core.store.compare import Comparison, QuestionRow, QuestionStats, compare_runs
from inspector.literal import one_line
from inspector.tui.widgets.table import Table
from inspector.tui import format as fmt
from inspector.tui.reads import read
from inspector.tui.screens.live import LiveScreen
from inspector.tui.widgets.key_bar import KeyBar
from inspector.tui.widgets.transcript import Transcript

COLUMNS = ("change", "correct", "reward", "Δ", "calls", "errors", "question")
"""Each figure reads A→B: correct (correct/judged samples), mean reward, mean tool calls and tool
errors per sample; Δ is B's mean reward minus A's."""
_CHANGE = {"gained": ("wrong→right", "bold green"), "lost": ("right→wrong", "bold red"),
           "still_right": ("still right", "green"), "still_wrong": ("still wrong", ""),
           "not_judged": ("not judged", "dim")}


def _fraction(s: QuestionStats | None) -> str:
    return "–" if s is None else f"{s.correct}/{s.judged}"


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def change_cell(row: QuestionRow) -> Text:
    """'wrong→right' (green), 'right→wrong' (red), 'still …', 'not judged', or 'only in A/B'."""
    if row.where != "both":
        return Text(f"only in {row.where.upper()}", style="italic")
    label, style = _CHANGE[row.change or "not_judged"]
    return Text(label, style=style)


def row_cells(row: QuestionRow, question_width: int) -> tuple:
    """The table cells of one question; its text is data, shown literally on one line."""
    a, b = row.a, row.b
    delta = row.reward_delta
    delta_text = Text("–" if delta is None else f"{delta:+.2f}",
                      style="" if delta is None or abs(delta) < 1e-9 else "green" if delta > 0 else "red")
    return (change_cell(row), f"{_fraction(a)}→{_fraction(b)}",
            f"{_number(a.mean_reward if a else None)}→{_number(b.mean_reward if b else None)}", delta_text,
            f"{_number(a.mean_tool_calls if a else None, 1)}→{_number(b.mean_tool_calls if b else None, 1)}",
            f"{_number(a.mean_tool_errors if a else None, 1)}→{_number(b.mean_tool_errors if b else None, 1)}",
            Text(one_line(row.question, question_width)))


def summary_text(c: Comparison) -> Text:
    """Two lines: which runs, and the counts and mean changes over the questions both asked."""
    n = c.counts
    text = Text()
    text.append(f"A: run {c.run_a.id} {one_line(c.run_a.name, 24)}", style="bold")
    text.append(f"  →  B: run {c.run_b.id} {one_line(c.run_b.name, 24)}", style="bold")
    text.append(f"  ·  {n.get('both', 0)} questions in both, {n.get('only_a', 0)} only in A, "
                f"{n.get('only_b', 0)} only in B\n")
    if c.judges_differ:
        text.append(f"different judges ({one_line(c.run_a.judge or '–', 20)} vs {one_line(c.run_b.judge or '–', 20)}):"
                    " correctness and flips are not comparable\n", style="bold yellow")
    text.append(f"gained {n.get('gained', 0)}", style="green")
    text.append("  ")
    text.append(f"lost {n.get('lost', 0)}", style="red")
    text.append(f"  still right {n.get('still_right', 0)}  still wrong {n.get('still_wrong', 0)}"
                f"  not judged {n.get('not_judged', 0)}")
    for key, label in (("accuracy", "accuracy"), ("reward", "reward")):
        m = c.means.get(key)
        if m is not None and m.a is not None and m.b is not None:
            shown = (f"{100 * m.a:.1f}%→{100 * m.b:.1f}%" if key == "accuracy" else f"{m.a:.3f}→{m.b:.3f}")
            text.append(f"  ·  {label} {shown}")
    return text


class CompareScreen(LiveScreen):
    """Runs A and B by question; Enter opens a question's two transcripts."""

    DEFAULT_CSS = "#compare-summary { height: auto; padding: 0 1; }"

    BINDINGS = [
        Binding("enter", "open_pair", "Open both", id="compare.open"),
        Binding("escape", "app.pop_screen", "Back", id="compare.back"),
    ]

    def __init__(self, run_a: int, run_b: int) -> None:
        super().__init__()
        self.run_a, self.run_b = run_a, run_b
        self.comparison: Comparison | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("comparing…", id="compare-summary")
        yield Table(id="compare-table", cursor_type="row", zebra_stripes=True)
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

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _load(self) -> None:
        try:
            comparison = read(self.app, compare_runs, self.app.store, self.run_a, self.run_b)
        except (sqlite3.DatabaseError, StoreError) as exc:
            self.app.call_from_thread(self._show_error, exc)
            return
        self.app.call_from_thread(self._show, comparison)

    def _show_error(self, exc: Exception) -> None:
        self.loaded = True
        self.query_one("#compare-summary", Static).update(
            Text(f"cannot compare runs {self.run_a} and {self.run_b}: {fmt.one_line(str(exc))}", style="bold red"))

    def _show(self, comparison: Comparison) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        self.comparison = comparison
        self.loaded = True
        self.query_one("#compare-summary", Static).update(summary_text(comparison))
        table.clear()
        width = max(12, self.app.size.width - 64)
        for i, q in enumerate(comparison.rows):
            table.add_row(*row_cells(q, width), key=str(i))
        if comparison.rows:
            table.move_cursor(row=min(row, len(comparison.rows) - 1))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def action_open_pair(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self._open(table.cursor_row)

    def _open(self, index: int) -> None:
        if self.comparison is None or index >= len(self.comparison.rows):
            return
        row = self.comparison.rows[index]
        ids = (row.a.trajectory_id if row.a else None, row.b.trajectory_id if row.b else None)
        if None in ids:
            self.notify(f"only run {row.where.upper()} asked this question: nothing to set beside it",
                        markup=False)
            return
        self.app.push_screen(PairScreen(*ids))


class PairScreen(LiveScreen):
    """Two trajectories' transcripts side by side (A left, B right); Tab moves between them."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="pair.back")]

    def __init__(self, trajectory_a: int, trajectory_b: int) -> None:
        super().__init__()
        self.ids = (trajectory_a, trajectory_b)
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="pair"):
            for side in ("a", "b"):
                with Vertical(classes="pair-side"):
                    yield Static("", id=f"pair-line-{side}", classes="status-line")
                    yield Transcript(id=f"pair-{side}")
        yield KeyBar()

    DEFAULT_CSS = """
    #pair { height: 1fr; }
    .pair-side { width: 1fr; border-right: vkey $primary-darken-2; }
    .pair-side Transcript { height: 1fr; }
    """

    def on_mount(self) -> None:
        self.reload_data()
        self.query_one("#pair-a", Transcript).focus()

    def reload_data(self) -> None:
        self.loaded_version = self.app.data_version
        self._load()

    @work(thread=True, exclusive=True, group="pair", exit_on_error=False)
    def _load(self) -> None:
        try:
            loaded = [read(self.app, _read_one, self.app.store, tid) for tid in self.ids]
        except (sqlite3.DatabaseError, StoreError) as exc:
            self.app.call_from_thread(self._show_error, exc)
            return
        self.app.call_from_thread(self._show, loaded)

    def _show_error(self, exc: Exception) -> None:
        self.loaded = True
        self.query_one("#pair-line-a", Static).update(Text(f"cannot read: {fmt.one_line(str(exc))}", style="bold red"))

    def _show(self, loaded: list[tuple]) -> None:
        self.loaded = True
        for side, (row, messages, question) in zip(("a", "b"), loaded):
            verdict = {1: "✔ right", 0: "✘ wrong"}.get(row["correct"], "not judged")
            reward = "–" if row["reward"] is None else f"{row['reward']:.3f}"
            self.query_one(f"#pair-line-{side}", Static).update(Text(
                f"{side.upper()}: run {row['run_id']} · trajectory {row['id']} · {verdict} · reward {reward} · "
                f"{fmt.one_line(row['finish_reason'] or row['status'])}"))
            self.query_one(f"#pair-{side}", Transcript).show(
                messages, question, row["final_answer"], row["gold_answer"],
                None if row["correct"] is None else bool(row["correct"]), finish_reason=row["finish_reason"])


def _read_one(store, trajectory_id: int) -> tuple:
    row = store.trajectory(trajectory_id)
    question = store.question(row["run_id"], row["qidx"]) or Question(
        str(row["qidx"]), row["question"], row["gold_answer"])
    return row, store.messages(trajectory_id), question
