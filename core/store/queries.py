"""The read API the viewer pages through: runs with their figures, a run's trajectories
filtered, sorted and searched one page at a time, the next or previous one, and GRPO groups.

Why it looks like this:
- Nothing loads a run into Python. Every call answers one page, one count, one id or one group
  from SQL, so a run of a million trajectories costs what a page costs.
- Every sort column has an index (run_id, column, id) and id breaks ties, so each page is a
  slice of one total order, "descending" is exactly that order reversed, and the next or
  previous trajectory is a keyset step from (column, id), not a scan from the top.
- A filter is either cheap to find (few rows: read them from the filter's index or the
  full-text index and sort them) or cheap to meet (many rows: walk the sort index and test rows
  as they come; the sort indexes carry the filter columns, so testing needs no table read).
  A count capped at CAP tells the two apart at the cost of at most CAP index entries.
- Full-text search reads `messages_fts`, whose rowid names the trajectory (see schema.py), so
  a match costs no join.

All functions take a `Store`; they only read, so a read-only store works.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from core.scoring.judges import judge_label
from core.store.query_plan import CAP, INDEX_OF, SORT_COLUMNS, Plan, fts_phrase, has_text, keyset_steps
from core.store.schema import FTS_POSITIONS
from core.store.store import Store

__all__ = ["CAP", "SORT_COLUMNS", "RunRow", "TrajectoryFilter", "TrajectoryQuery", "TrajectoryRow", "count_trajectories",
           "finish_reasons", "group_rows", "matching_positions", "neighbour", "position", "page_trajectories", "run_rows", "steps",
           "StepRow", "train_step_rows"]


@dataclass(frozen=True)
class TrajectoryFilter:
    """What the trajectory table shows; None (or blank text) leaves a criterion out."""

    correct: bool | None = None
    has_tool_error: bool | None = None
    finish_reason: str | None = None
    status: str | None = None
    step: int | None = None
    question: str | None = None
    """Case-insensitive substring of the question (ASCII letters fold, as SQL LIKE does)."""
    search: str | None = None
    """Full-text search over every message, as one phrase of whole words (punctuation is ignored);
    a trailing `*` makes its last word a prefix (`Claess*`)."""
    ids: tuple[int, ...] | None = None
    """Only these trajectories (a set computed elsewhere, e.g. the mask lint's findings)."""
    ids_label: str | None = None
    """What `ids` are, for describe() ("lint any", "lint prompt_trained")."""

    @property
    def is_empty(self) -> bool:
        return not self.describe()

    def describe(self) -> str:
        """The active criteria in a few words, "" when there are none."""
        parts = []
        if self.correct is not None:
            parts.append(f"correct={'yes' if self.correct else 'no'}")
        if self.has_tool_error is not None:
            parts.append("tool error" if self.has_tool_error else "no tool error")
        if self.finish_reason:
            parts.append(f"finish={self.finish_reason}")
        if self.status:
            parts.append(f"status={self.status}")
        if self.step is not None:
            parts.append(f"step={self.step}")
        if has_text(self.question):
            parts.append(f"question '{self.question.strip()}'")
        if has_text(self.search):
            parts.append(f"search '{self.search.strip()}'")
        if self.ids is not None:
            parts.append(f"{self.ids_label or 'ids'} ({len(self.ids):,})")
        return " · ".join(parts)


@dataclass(frozen=True)
class TrajectoryQuery:
    """One run's trajectories under a filter, in one order."""

    run_id: int
    filter: TrajectoryFilter = field(default_factory=TrajectoryFilter)
    sort: str = "id"
    """A key of SORT_COLUMNS; ties are broken by id (in the same direction)."""
    descending: bool = False

    def __post_init__(self) -> None:
        if self.sort not in SORT_COLUMNS:
            raise ValueError(f"unknown sort column {self.sort!r} (known: {', '.join(SORT_COLUMNS)})")


@dataclass(frozen=True)
class TrajectoryRow:
    """One line of the trajectory table: its columns only, never messages or tokens."""

    id: int
    run_id: int
    qidx: int
    sample: int
    step: int | None
    group_id: int | None
    status: str
    question: str
    gold_answer: str
    final_answer: str | None
    correct: bool | None
    reward: float | None
    advantage: float | None
    turns: int
    tool_calls: int
    tool_errors: int
    finish_reason: str | None
    tokens: int | None
    """Generated tokens (see SORT_COLUMNS)."""
    started_at: float
    finished_at: float | None


@dataclass(frozen=True)
class RunRow:
    """One line of the runs screen, from the run's counters (no scan of its trajectories)."""

    id: int
    kind: str
    name: str
    model: str
    status: str
    """As effective_status says: a run whose writer died reads 'interrupted'."""
    n_done: int
    n_planned: int
    accuracy: float | None
    """Correct / judged; None before anything was judged."""
    mean_reward: float | None
    tool_error_rate: float | None
    """Finished trajectories with at least one tool error / finished trajectories."""
    generated_tokens: int
    created_at: float
    duration: float
    """Seconds from created_at to finished_at; while running, to now; once interrupted (its
    writer died), to the last update."""
    parent_run_id: int | None
    train_step: int | None
    lint: dict[str, Any] | None = None
    """The mask lint's counts stored with the run's summary when it ended (core.lint.lint_totals:
    errors, warnings, info, kinds); None for a run still going, or one from before the lint."""
    judge: str | None = None
    """The judge that decided correctness, from the run's configuration (core.scoring.judges.judge_label:
    "f1", "llm:<model>", ...); None when the configuration names none."""
    n_judged: int | None = None
    """Finished trajectories the judge gave a verdict on; the rest (n_done - n_judged) have none
    (for runs of this project: an LLM judge reply with no yes or no) and are left out of accuracy."""
    pid: int | None = None
    """The process id of the run's (last) writer, on its host: the TUI cancels runs it launched by it."""
    n_failed: int = 0
    """Trajectories that ended failed (a model or tool crash, an errored sample of an imported log):
    not in n_done, so an ended run's n_done < n_planned says missing only when this is 0."""


_ROW_COLUMNS = ("id, run_id, qidx, sample, step, group_id, status, question, gold_answer, final_answer, correct,"
                " reward, advantage, turns, tool_calls, tool_errors, finish_reason, generated_tokens, started_at,"
                " finished_at")


# --------------------------------------------------------------------------- runs
def run_rows(store: Store) -> list[RunRow]:
    """Every run, newest first, with accuracy, mean reward and tool-error rate from its counters."""
    out = []
    for r in store.runs():  # newest first, status already as effective_status says
        done, judged = r["n_done"], r["n_judged"]
        out.append(RunRow(
            id=r["id"], kind=r["kind"], name=r["name"], model=r["model"], status=r["status"],
            n_done=done, n_planned=r["n_planned"],
            accuracy=r["n_correct"] / judged if judged else None,
            mean_reward=r["reward_sum"] / done if done else None,
            tool_error_rate=r["n_with_tool_error"] / done if done else None,
            generated_tokens=r["generated_tokens"], created_at=r["created_at"],
            duration=max(0.0, _end_time(r) - r["created_at"]),
            parent_run_id=r["parent_run_id"], train_step=r["train_step"],
            lint=_summary_lint(r.get("summary")), judge=judge_label(r.get("config")), n_judged=judged,
            pid=r.get("pid"), n_failed=_failed(store, r["id"])))
    return out


def _failed(store: Store, run_id: int) -> int:
    """A run's failed trajectories, counted through the (run_id, status, ...) index: as many steps
    as there are failures, not a scan of the run."""
    return store.conn.execute("SELECT COUNT(*) FROM trajectories INDEXED BY trajectories_run_status"
                              " WHERE run_id = ? AND status = 'failed'", (run_id,)).fetchone()[0]


def _summary_lint(summary: str | None) -> dict[str, Any] | None:
    """The "lint" entry of a run's stored summary (JSON text); None when absent or unreadable."""
    try:
        lint = json.loads(summary).get("lint") if summary else None
    except (ValueError, AttributeError):
        return None
    return lint if isinstance(lint, dict) else None


def _end_time(run: dict[str, Any]) -> float:
    if run["finished_at"]:
        return run["finished_at"]
    return time.time() if run["status"] == "running" else run["updated_at"]


def finish_reasons(store: Store, run_id: int) -> list[str]:
    """The finish reasons present in a run, for the filter's choices (a skip through the index)."""
    return _distinct(store, run_id, "finish_reason")


@dataclass(frozen=True)
class StepRow:
    """One optimizer step of a train run: TRL's logged metrics as stored (core.train.store), and
    the held-out evaluation linked to the step, if --eval-every ran one."""

    step: int
    metrics: dict[str, float]
    """loss, reward, reward_std, rewards/<name>/mean, kl, entropy, grad_norm, learning_rate,
    completions/mean_length, frac_reward_zero_std, step_seconds, rollout_seconds, store_seconds, ..."""
    eval_run_id: int | None = None
    eval_accuracy: float | None = None
    """n_correct / n_judged of the linked eval run (None: none, or nothing judged yet)."""
    eval_reward: float | None = None
    """The linked eval run's mean trajectory reward, reward_sum / n_done (None: none, or nothing
    done yet). The held-out figure of an imported eval that judges no correctness (prime-rl)."""

    @property
    def ours_seconds(self) -> float | None:
        """Seconds of the step spent in this project's code: the rollout minus the model's
        generate (agent loop, tokenising, retrieval, scoring) plus storage; storage alone for
        steps stored before generate_seconds was recorded. None without store_seconds."""
        m = self.metrics
        store, rollout, generate = m.get("store_seconds"), m.get("rollout_seconds"), m.get("generate_seconds")
        if store is None:
            return None
        return store + (rollout - generate if rollout is not None and generate is not None else 0.0)

    def get(self, key: str) -> float | None:
        """A metric, or the linked eval's accuracy for "eval_accuracy" and mean reward for
        "eval_reward"; None when absent."""
        if key == "eval_accuracy":
            return self.eval_accuracy
        if key == "eval_reward":
            return self.eval_reward
        return self.metrics.get(key)


def train_step_rows(store: Store, run_id: int) -> list[StepRow]:
    """Every stored step of train run `run_id` in order, each with its linked eval run
    (runs.parent_run_id = run_id, runs.train_step = the step; the newest if several)."""
    evals: dict[int, tuple[int | None, float | None, float | None]] = {}
    for rid, step, correct, judged, reward_sum, done in store.conn.execute(
            "SELECT id, train_step, n_correct, n_judged, reward_sum, n_done FROM runs"
            " WHERE parent_run_id=? AND train_step IS NOT NULL ORDER BY id", (run_id,)):
        evals[step] = (rid, correct / judged if judged else None, reward_sum / done if done else None)
    out = []
    for s in store.train_steps(run_id):
        step = s.pop("step")
        rid, acc, reward = evals.get(step, (None, None, None))
        out.append(StepRow(step, {k: float(v) for k, v in s.items() if isinstance(v, (int, float))}, rid, acc,
                           reward))
    return out


def steps(store: Store, run_id: int) -> list[int]:
    """The training steps present in a run (empty for an eval)."""
    return _distinct(store, run_id, "step")


def _distinct(store: Store, run_id: int, column: str) -> list[Any]:
    """Distinct non-NULL values by hopping through the (run_id, column, id) index: one seek per
    value, not one row per trajectory."""
    values, sql = [], (f"SELECT {column} FROM trajectories INDEXED BY {INDEX_OF[column]}"
                       f" WHERE run_id=? AND {column} > ? ORDER BY {column} LIMIT 1")
    row = store.conn.execute(f"SELECT min({column}) FROM trajectories INDEXED BY {INDEX_OF[column]}"
                             f" WHERE run_id=? AND {column} IS NOT NULL", (run_id,)).fetchone()
    while row and row[0] is not None:
        values.append(row[0])
        row = store.conn.execute(sql, (run_id, row[0])).fetchone()
    return values


# --------------------------------------------------------------------------- trajectories
def count_trajectories(store: Store, query: TrajectoryQuery, cap: int | None = None) -> int:
    """How many trajectories the query shows. With `cap`, counting stops there: a result equal
    to cap means "cap or more" (a rare question substring otherwise scans the whole run)."""
    plan = Plan(store, query, counting=True)
    if plan.empty:
        return 0
    sql, args = plan.count_sql()
    if cap is not None:
        sql, args = f"{sql} LIMIT ?", [*args, cap]
    return store.conn.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0]


def page_trajectories(store: Store, query: TrajectoryQuery, offset: int = 0, limit: int = 100) -> list[TrajectoryRow]:
    """Rows offset .. offset+limit-1 of the query's order."""
    if offset < 0 or limit < 0:
        raise ValueError(f"offset and limit must be >= 0, got {offset} and {limit}")
    plan = Plan(store, query)
    if plan.empty or limit == 0:
        return []
    return _rows(store, plan.ids_in_order((), not query.descending, offset, limit))


def neighbour(store: Store, query: TrajectoryQuery, trajectory_id: int, direction: int) -> int | None:
    """The trajectory after (+1) or before (-1) `trajectory_id` in the query's order, None at
    an end. The trajectory itself need not pass the filter: its (sort value, id) is the place
    to step from, so n/p keep working after the filter changed."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    plan = Plan(store, query)
    column = SORT_COLUMNS[query.sort]
    row = store.conn.execute(f"SELECT {column} FROM trajectories WHERE id=? AND run_id=?",
                             (trajectory_id, query.run_id)).fetchone()
    if plan.empty or row is None:
        return None
    ascending = (direction == 1) != query.descending
    for place in keyset_steps(column, row[0], trajectory_id, ascending):
        found = plan.ids_in_order([place], ascending, 0, 1)
        if found:
            return found[0]
    return None


def position(store: Store, query: TrajectoryQuery, trajectory_id: int) -> int | None:
    """How many of the query's rows come before `trajectory_id` in its order (so the page that
    holds it starts at `position // page * page`); None when it is not a trajectory of the run.
    The trajectory need not pass the filter (as with `neighbour`): then it is the position of
    the first row after it."""
    plan = Plan(store, query, counting=True)
    column = SORT_COLUMNS[query.sort]
    row = store.conn.execute(f"SELECT {column} FROM trajectories WHERE id=? AND run_id=?",
                             (trajectory_id, query.run_id)).fetchone()
    if row is None:
        return None
    if plan.empty:
        return 0
    before = 0
    # The rows before it in the query's order are the rows "after" it walking the other way;
    # keyset_steps gives them as disjoint places.
    for place in keyset_steps(column, row[0], trajectory_id, ascending=query.descending):
        sql, args = plan.select("1", [place], ordered=False)
        before += store.conn.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0]
    return before


def group_rows(store: Store, trajectory_id: int) -> list[TrajectoryRow]:
    """The samples of the trajectory's question side by side: its GRPO group (same run, step
    and group) when it has one, else every trajectory of its run with the same question."""
    row = store.conn.execute("SELECT run_id, step, group_id, qidx FROM trajectories WHERE id=?",
                             (trajectory_id,)).fetchone()
    if row is None:
        return []
    run_id, step, group_id, qidx = row
    if group_id is not None:
        sql = (f"SELECT {_ROW_COLUMNS} FROM trajectories INDEXED BY trajectories_run_group"
               " WHERE run_id=? AND group_id=? AND step IS ? ORDER BY sample, id")
        args: tuple = (run_id, group_id, step)
    else:
        sql = (f"SELECT {_ROW_COLUMNS} FROM trajectories INDEXED BY trajectories_run_qidx"
               " WHERE run_id=? AND qidx=? AND group_id IS NULL ORDER BY sample, id")
        args = (run_id, qidx)
    return [_row(r) for r in store.conn.execute(sql, args)]


def matching_positions(store: Store, trajectory_id: int, text: str) -> list[int]:
    """Positions of the trajectory's messages that contain `text` (the same phrase search as
    the filter), so a transcript can jump to them."""
    if not has_text(text):
        return []
    lo = trajectory_id * FTS_POSITIONS
    return [r[0] - lo for r in store.conn.execute(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ? ORDER BY rowid",
        (fts_phrase(text), lo, lo + FTS_POSITIONS - 1))]


def _rows(store: Store, ids: list[int]) -> list[TrajectoryRow]:
    if not ids:
        return []
    by_id = {r[0]: _row(r) for r in store.conn.execute(
        f"SELECT {_ROW_COLUMNS} FROM trajectories WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))}
    return [by_id[i] for i in ids]


_NAMES = [f.name for f in fields(TrajectoryRow)]


def _row(values: Sequence[Any]) -> TrajectoryRow:
    row = dict(zip(_NAMES, values))
    if row["correct"] is not None:
        row["correct"] = bool(row["correct"])
    return TrajectoryRow(**row)


