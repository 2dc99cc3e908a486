"""Two runs side by side, question by question (issue 8: base model against a checkpoint).

Rules, and why:
- A question is matched by its text, never by its row number (`qidx`): two runs made from
  different question files, splits or limits number the same question differently, and the same
  number can name two different questions. The text is compared after collapsing every run of
  whitespace (Python's `str.split()`, Unicode whitespace included) to one space and stripping
  the ends; nothing else (case, punctuation) is folded, so "Paris?" and "paris?" stay apart.
- Only finished trajectories (status 'done') count: running, interrupted and failed ones have
  no verdict yet. A run still running is compared on what it has finished so far.
- A run may hold several samples of one question (a sampled eval, GRPO groups over the steps of
  a train run; all of them are pooled). Per question and run: samples, judged samples (`correct`
  is NULL when the judge gave no verdict), correct samples, the mean reward over samples with a
  reward, and the mean tool calls and tool errors per sample.
- A question is *right* in a run when a strict majority of its judged samples is correct
  (`2 * correct > judged`; a tie is wrong) and *not judged* when no sample was judged. With one
  sample per question this is simply that sample's verdict.
- Over the questions in both runs: right→right (still_right), wrong→right (gained), right→wrong
  (lost), wrong→wrong (still_wrong), and not_judged when either side has no verdict. Means over
  shared questions weigh every question once, however many samples it has; the reward mean
  uses the questions with a reward on both sides, accuracy the questions judged on both sides.

Everything is aggregated in SQL per exact question text (one GROUP BY per run, no trajectory
is loaded into Python), then merged per normalised text here. Never imports Textual.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

from core.scoring.judges import judge_label
from core.store.store import Store, StoreError

RULE = ("questions matched by text (whitespace collapsed, nothing else folded); done trajectories only; "
        "a question is right when a strict majority of its judged samples is correct (a tie is wrong)")
"""The rules above in one line, printed with every comparison."""

CHANGES = ("gained", "lost", "still_right", "still_wrong", "not_judged")
"""What happened to a question in both runs, from run A to run B."""

_EPS = 1e-9


def question_key(text: str) -> str:
    """The text a question is matched by: whitespace runs collapsed to one space, ends stripped."""
    return " ".join(text.split())


@dataclass
class QuestionStats:
    """One question's trajectories in one run (finished ones only)."""

    samples: int = 0
    judged: int = 0
    """Samples with a verdict (`correct` not NULL)."""
    correct: int = 0
    reward_sum: float = 0.0
    rewarded: int = 0
    """Samples with a reward (not NULL)."""
    tool_calls: int = 0
    """Summed over samples; `mean_tool_calls` is per sample."""
    tool_errors: int = 0
    first_id: int | None = None
    first_right_id: int | None = None
    first_wrong_id: int | None = None

    @property
    def verdict(self) -> str | None:
        """'right' (strict majority of judged samples correct), 'wrong', or None (none judged)."""
        if not self.judged:
            return None
        return "right" if 2 * self.correct > self.judged else "wrong"

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.rewarded if self.rewarded else None

    @property
    def mean_tool_calls(self) -> float:
        return self.tool_calls / self.samples if self.samples else 0.0

    @property
    def mean_tool_errors(self) -> float:
        return self.tool_errors / self.samples if self.samples else 0.0

    @property
    def trajectory_id(self) -> int | None:
        """A trajectory to open for this question: the first one agreeing with the verdict
        (the first overall when not judged)."""
        pick = {"right": self.first_right_id, "wrong": self.first_wrong_id}.get(self.verdict or "")
        return pick if pick is not None else self.first_id

    def merge(self, other: "QuestionStats") -> None:
        """Add another group of the same question (text equal after normalising whitespace)."""
        self.samples += other.samples
        self.judged += other.judged
        self.correct += other.correct
        self.reward_sum += other.reward_sum
        self.rewarded += other.rewarded
        self.tool_calls += other.tool_calls
        self.tool_errors += other.tool_errors
        self.first_id = _min(self.first_id, other.first_id)
        self.first_right_id = _min(self.first_right_id, other.first_right_id)
        self.first_wrong_id = _min(self.first_wrong_id, other.first_wrong_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples, "judged": self.judged, "correct": self.correct,
            "correct_fraction": self.correct / self.judged if self.judged else None,
            "verdict": self.verdict, "mean_reward": self.mean_reward, "mean_tool_calls": self.mean_tool_calls,
            "mean_tool_errors": self.mean_tool_errors, "trajectory_id": self.trajectory_id,
            "first_right_id": self.first_right_id, "first_wrong_id": self.first_wrong_id,
        }


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass
class QuestionRow:
    """One question of the comparison: in both runs, or in only one (`a` or `b` is None)."""

    question: str
    """The text as stored (run A's when in both); match on `question_key(question)`."""
    a: QuestionStats | None
    b: QuestionStats | None

    @property
    def where(self) -> str:
        """'both', 'a' (only in run A) or 'b'."""
        return "both" if self.a and self.b else "a" if self.a else "b"

    @property
    def change(self) -> str | None:
        """One of CHANGES for a question in both runs, else None."""
        if self.a is None or self.b is None:
            return None
        va, vb = self.a.verdict, self.b.verdict
        if va is None or vb is None:
            return "not_judged"
        return {("wrong", "right"): "gained", ("right", "wrong"): "lost",
                ("right", "right"): "still_right"}.get((va, vb), "still_wrong")

    @property
    def reward_delta(self) -> float | None:
        if self.a is None or self.b is None or self.a.mean_reward is None or self.b.mean_reward is None:
            return None
        return self.b.mean_reward - self.a.mean_reward

    @property
    def tool_calls_delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b.mean_tool_calls - self.a.mean_tool_calls

    @property
    def tool_errors_delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b.mean_tool_errors - self.a.mean_tool_errors

    @property
    def changed(self) -> bool:
        """In both runs, and its verdict, mean reward, tool calls or tool errors differ (or the
        reward is missing on one side only)."""
        if self.a is None or self.b is None:
            return False
        if self.a.verdict != self.b.verdict or (self.a.mean_reward is None) != (self.b.mean_reward is None):
            return True
        return any(d is not None and abs(d) > _EPS
                   for d in (self.reward_delta, self.tool_calls_delta, self.tool_errors_delta))

    def sort_key(self) -> tuple:
        """Flips first, then other changes, then unchanged shared questions, then questions in one
        run only; within each, the largest reward change, then tool-call change, first."""
        rank = (0 if self.change in ("gained", "lost") else 1 if self.changed else 2 if self.where == "both"
                else 3 if self.where == "a" else 4)
        return (rank, -abs(self.reward_delta or 0.0), -abs(self.tool_calls_delta or 0.0),
                -abs(self.tool_errors_delta or 0.0), question_key(self.question))

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question, "in": self.where, "change": self.change, "changed": self.changed,
            "a": self.a.to_dict() if self.a else None, "b": self.b.to_dict() if self.b else None,
            "reward_delta": self.reward_delta, "tool_calls_delta": self.tool_calls_delta,
            "tool_errors_delta": self.tool_errors_delta,
        }


@dataclass
class RunSide:
    """Which run a side of the comparison is, and how much of it was compared."""

    id: int
    name: str
    model: str
    kind: str
    status: str
    trajectories: int
    """Finished trajectories compared."""
    questions: int
    """Distinct questions (by matched text) among them."""
    judge: str | None = None
    """The judge that decided its correctness (core.scoring.judges.judge_label of its
    configuration; None when it names none)."""


@dataclass
class Mean:
    """A mean over shared questions in run A and run B, and B - A (None: no question to average)."""

    a: float | None
    b: float | None
    questions: int
    """How many shared questions the mean is over."""

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "delta": self.delta, "questions": self.questions}


@dataclass
class Comparison:
    """Run A against run B; `rows` holds every question of either run, in `QuestionRow.sort_key` order."""

    run_a: RunSide
    run_b: RunSide
    rows: list[QuestionRow]
    counts: dict[str, int] = field(default_factory=dict)
    """both, only_a, only_b, changed, and each of CHANGES."""
    means: dict[str, Mean] = field(default_factory=dict)
    """accuracy, reward, tool_calls, tool_errors over shared questions."""
    rule: str = RULE

    @property
    def judges_differ(self) -> bool:
        """The two runs' correctness was decided by different judges (or one names none): their
        accuracies and flips do not measure the same thing."""
        return self.run_a.judge != self.run_b.judge

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready object: runs, rule, counts, means, and every question row."""
        return {"run_a": asdict(self.run_a), "run_b": asdict(self.run_b), "judges_differ": self.judges_differ,
                "rule": self.rule,
                "counts": dict(self.counts), "means": {k: m.to_dict() for k, m in self.means.items()},
                "questions": [r.to_dict() for r in self.rows]}


_STATS_SQL = """
SELECT question, COUNT(*), COALESCE(SUM(correct IS NOT NULL), 0), COALESCE(SUM(correct = 1), 0),
       COALESCE(SUM(reward), 0.0), COUNT(reward), COALESCE(SUM(tool_calls), 0), COALESCE(SUM(tool_errors), 0),
       MIN(id), MIN(CASE WHEN correct = 1 THEN id END), MIN(CASE WHEN correct = 0 THEN id END)
FROM trajectories WHERE run_id = ? AND status = 'done' GROUP BY question
"""


def question_stats(store: Store, run_id: int) -> dict[str, tuple[str, QuestionStats]]:
    """Per matched question text (`question_key`) of run `run_id`: (a stored text, its stats).

    Reads one GROUP BY row per distinct stored text. Raises StoreError for a database that
    cannot be read."""
    out: dict[str, tuple[str, QuestionStats]] = {}
    try:
        rows = store.conn.execute(_STATS_SQL, (run_id,)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{store.path}: the database cannot be read ({exc})") from None
    for text, n, judged, correct, reward_sum, rewarded, calls, errors, first, first_right, first_wrong in rows:
        stats = QuestionStats(int(n), int(judged), int(correct), float(reward_sum), int(rewarded), int(calls),
                              int(errors), first, first_right, first_wrong)
        key = question_key(text)
        if key in out:
            out[key][1].merge(stats)
        else:
            out[key] = (text, stats)
    return out


def _side(run: dict[str, Any], run_id: int, stats: dict[str, tuple[str, QuestionStats]]) -> RunSide:
    return RunSide(id=run_id, name=run["name"], model=run["model"], kind=run["kind"], status=run["status"],
                   trajectories=sum(s.samples for _, s in stats.values()), questions=len(stats),
                   judge=judge_label(run.get("config")))



def _mean(pairs: list[tuple[float, float]]) -> Mean:
    if not pairs:
        return Mean(None, None, 0)
    return Mean(sum(a for a, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs), len(pairs))


def compare_runs(store: Store, run_a: int, run_b: int) -> Comparison:
    """Compare run `run_a` (A, e.g. the base model) with run `run_b` (B, e.g. a checkpoint) of
    `store`, question by question, by the rules in this module's docstring.

    Raises StoreError when either run does not exist or the database cannot be read. A run
    compared with itself gives no changes."""
    try:
        run_rows = store.run(run_a), store.run(run_b)  # StoreError "no run N" for an unknown id
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{store.path}: the database cannot be read ({exc})") from None
    stats_a, stats_b = question_stats(store, run_a), question_stats(store, run_b)
    rows = [QuestionRow(text, sa, stats_b[key][1] if key in stats_b else None) for key, (text, sa) in stats_a.items()]
    rows += [QuestionRow(text, None, sb) for key, (text, sb) in stats_b.items() if key not in stats_a]
    rows.sort(key=QuestionRow.sort_key)
    shared = [r for r in rows if r.where == "both"]
    counts = {"both": len(shared), "only_a": sum(r.where == "a" for r in rows),
              "only_b": sum(r.where == "b" for r in rows), "changed": sum(r.changed for r in shared)}
    counts.update({c: sum(r.change == c for r in shared) for c in CHANGES})
    judged = [r for r in shared if r.change != "not_judged"]
    means = {
        "accuracy": _mean([(float(r.a.verdict == "right"), float(r.b.verdict == "right")) for r in judged]),
        "reward": _mean([(r.a.mean_reward, r.b.mean_reward) for r in shared if r.reward_delta is not None]),
        "tool_calls": _mean([(r.a.mean_tool_calls, r.b.mean_tool_calls) for r in shared]),
        "tool_errors": _mean([(r.a.mean_tool_errors, r.b.mean_tool_errors) for r in shared]),
    }
    return Comparison(_side(run_rows[0], run_a, stats_a), _side(run_rows[1], run_b, stats_b), rows, counts, means)
