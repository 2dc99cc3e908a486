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
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from core.store.schema import FTS_POSITIONS
from core.store.store import Store

CAP = 20_000
"""Fewer matches than this: read the matches and sort them. More: walk the sort order and test."""

SORT_COLUMNS: dict[str, str] = {
    "id": "id",
    "question": "question",
    "final_answer": "final_answer",
    "gold_answer": "gold_answer",
    "correct": "correct",
    "reward": "reward",
    "tool_calls": "tool_calls",
    "tool_errors": "tool_errors",
    "finish_reason": "finish_reason",
    "turns": "turns",
    "tokens": "generated_tokens",
    "step": "step",
    "group_id": "group_id",
    "advantage": "advantage",
}
"""UI column key -> trajectories column. "tokens" is generated_tokens: what the policy produced
(the masked, trained-on tokens), the same measure as the run's token count; completion_tokens
would also count tool results the model only read."""

_INDEX = {
    "id": "trajectories_run", "question": "trajectories_run_question",
    "final_answer": "trajectories_run_final_answer", "gold_answer": "trajectories_run_gold_answer",
    "correct": "trajectories_run_correct", "reward": "trajectories_run_reward",
    "tool_calls": "trajectories_run_tool_calls", "tool_errors": "trajectories_run_tool_errors",
    "finish_reason": "trajectories_run_finish", "turns": "trajectories_run_turns",
    "generated_tokens": "trajectories_run_tokens", "step": "trajectories_run_step",
    "group_id": "trajectories_run_group", "advantage": "trajectories_run_advantage",
    "status": "trajectories_run_status",
}
"""trajectories column -> its (run_id, column, id) index."""


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
    """Full-text search over every message, as one phrase of whole words (punctuation is ignored)."""

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
        if _text(self.question):
            parts.append(f"question '{self.question.strip()}'")
        if _text(self.search):
            parts.append(f"search '{self.search.strip()}'")
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
    """finished_at (or, while running, the last update) minus created_at, in seconds."""
    parent_run_id: int | None
    train_step: int | None


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
            duration=max(0.0, (r["finished_at"] or r["updated_at"]) - r["created_at"]),
            parent_run_id=r["parent_run_id"], train_step=r["train_step"]))
    return out


def finish_reasons(store: Store, run_id: int) -> list[str]:
    """The finish reasons present in a run, for the filter's choices (a skip through the index)."""
    return _distinct(store, run_id, "finish_reason")


def steps(store: Store, run_id: int) -> list[int]:
    """The training steps present in a run (empty for an eval)."""
    return _distinct(store, run_id, "step")


def _distinct(store: Store, run_id: int, column: str) -> list[Any]:
    """Distinct non-NULL values by hopping through the (run_id, column, id) index: one seek per
    value, not one row per trajectory."""
    values, sql = [], (f"SELECT {column} FROM trajectories INDEXED BY {_INDEX[column]}"
                       f" WHERE run_id=? AND {column} > ? ORDER BY {column} LIMIT 1")
    row = store.conn.execute(f"SELECT min({column}) FROM trajectories INDEXED BY {_INDEX[column]}"
                             f" WHERE run_id=? AND {column} IS NOT NULL", (run_id,)).fetchone()
    while row and row[0] is not None:
        values.append(row[0])
        row = store.conn.execute(sql, (run_id, row[0])).fetchone()
    return values


# --------------------------------------------------------------------------- trajectories
def count_trajectories(store: Store, query: TrajectoryQuery, cap: int | None = None) -> int:
    """How many trajectories the query shows. With `cap`, counting stops there: a result equal
    to cap means "cap or more" (a rare question substring otherwise scans the whole run)."""
    plan = _Plan(store, query)
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
    plan = _Plan(store, query)
    if plan.empty or limit == 0:
        return []
    sql, args = plan.select("t.id", ordered=True, ascending=not query.descending)
    ids = [r[0] for r in store.conn.execute(f"{sql} LIMIT ? OFFSET ?", [*args, limit, offset])]
    return _rows(store, ids)


def neighbour(store: Store, query: TrajectoryQuery, trajectory_id: int, direction: int) -> int | None:
    """The trajectory after (+1) or before (-1) `trajectory_id` in the query's order, None at
    an end. The trajectory itself need not pass the filter: its (sort value, id) is the place
    to step from, so n/p keep working after the filter changed."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    plan = _Plan(store, query)
    column = SORT_COLUMNS[query.sort]
    row = store.conn.execute(f"SELECT {column} FROM trajectories WHERE id=? AND run_id=?",
                             (trajectory_id, query.run_id)).fetchone()
    if plan.empty or row is None:
        return None
    ascending = (direction == 1) != query.descending
    for place in _after(column, row[0], trajectory_id, ascending):
        sql, args = plan.select("t.id", [place], ordered=True, ascending=ascending)
        found = store.conn.execute(f"{sql} LIMIT 1", args).fetchone()
        if found:
            return found[0]
    return None


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
    if not _text(text):
        return []
    lo = trajectory_id * FTS_POSITIONS
    return [r[0] - lo for r in store.conn.execute(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ? ORDER BY rowid",
        (_phrase(text), lo, lo + FTS_POSITIONS - 1))]


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class _Term:
    """One criterion as SQL over `trajectories t`."""

    sql: str
    """With {p} before the column: "" lets an index serve it, "+" keeps it a plain test."""
    args: tuple
    column: str | None = None
    """The indexed column it constrains, if any."""
    equality: bool = False
    """Its index lists the matches in id order (an equality, not a range)."""


@dataclass(frozen=True)
class _Place:
    """Rows after (or before) a place in the order, for a keyset step: SQL plus, when the sort
    is by id, the id range it means, so the full-text index can start there."""

    sql: str
    args: tuple
    first_id: int | None = None
    last_id: int | None = None


class _Plan:
    """How to read a query: which index finds the rows and which criteria are tested on them.

    - A search or question criterion with few matches: read their ids up front (at most CAP),
      look the rows up and sort them.
    - An indexed criterion with few matches (capped count under CAP): read its index, sort.
    - Otherwise walk the sort index in order and test every criterion on the entries; each
      criterion holds for many rows, so a page fills soon, and the filter columns ride in the
      sort indexes, so the tests read no table rows. A common search phrase is tested against
      its set of trajectories (built once per statement), or, sorted by id, read in the
      full-text index's own order, which is trajectory order.
    """

    def __init__(self, store: Store, query: TrajectoryQuery):
        self.store, self.query = store, query
        self.column = SORT_COLUMNS[query.sort]
        self.terms = _terms(query.filter)
        self.empty = False
        self.ids: list[int] | None = None
        """Every matching id of a selective search or question criterion, read up front."""
        self.fts: tuple[str, int, int] | None = None
        """A common search phrase and the rowid range of the run in messages_fts."""
        self.driver: _Term | None = None
        self.run_span: tuple[int, int] | None = None
        f = query.filter
        if _text(f.search):
            self._search(f.search)
        if _text(f.question) and not self.empty:
            self._question(f.question)
        if self.ids is None and not self.empty:
            self._choose_index()

    def _search(self, text: str) -> None:
        ends = [self.store.conn.execute(
            f"SELECT id FROM trajectories INDEXED BY trajectories_run WHERE run_id=? ORDER BY id {d} LIMIT 1",
            (self.query.run_id,)).fetchone() for d in ("ASC", "DESC")]
        if ends[0] is None:
            self.empty = True
            return
        self.run_span = (ends[0][0], ends[1][0])
        phrase, lo, hi = _phrase(text), ends[0][0] * FTS_POSITIONS, (ends[1][0] + 1) * FTS_POSITIONS - 1
        ids = [r[0] for r in self.store.conn.execute(
            "SELECT DISTINCT rowid / ? FROM messages_fts WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ?"
            " LIMIT ?", (FTS_POSITIONS, phrase, lo, hi, CAP))]
        if len(ids) < CAP:
            self.ids = ids
        else:
            self.fts = (phrase, lo, hi)

    def _question(self, text: str) -> None:
        term = _Term("t.question LIKE ? ESCAPE '\\'", (_like(text),))
        if self.ids is None:  # the question index holds the text: a scan without table reads
            ids = [r[0] for r in self.store.conn.execute(
                "SELECT id FROM trajectories t INDEXED BY trajectories_run_question WHERE run_id=? AND"
                f" {term.sql} LIMIT ?", (self.query.run_id, *term.args, CAP))]
            if len(ids) < CAP:
                self.ids = ids
                return
        self.terms.append(term)

    def _choose_index(self) -> None:
        least = CAP
        for term in self.terms:
            if term.column is None:
                continue
            n = self.store.conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM trajectories t INDEXED BY {_INDEX[term.column]}"
                f" WHERE t.run_id=? AND {term.sql.format(p='')} LIMIT ?)", (self.query.run_id, *term.args, CAP)
            ).fetchone()[0]
            if n < least:
                self.driver, least = term, n

    def _index(self, ordered: bool) -> str:
        """The column whose index the rows are read from."""
        if self.driver is not None:
            return self.driver.column
        if ordered and self.column == "id":  # an equality's index is in id order too, and narrower
            return next((t.column for t in self.terms if t.equality), "id")
        if ordered:
            return self.column
        return next((t.column for t in self.terms if t.column), "id")  # a count: any index that serves

    def select(self, what: str, places: Sequence[_Place] = (), *, ordered: bool,
               ascending: bool = True) -> tuple[str, list]:
        """SQL (without LIMIT) selecting `what` from the query's rows, in order when `ordered`."""
        direction = "" if ascending else " DESC"
        if self.fts is not None and ordered and self.column == "id":
            return self._fts_ordered(what, places, direction)
        where, args = ["t.run_id=?"], [self.query.run_id]
        if self.ids is not None:
            by, source = None, "trajectories t NOT INDEXED"  # rowid lookups of the ids read up front
            where.append("t.id IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(self.ids))
        else:
            by = self._index(ordered)
            source = f"trajectories t INDEXED BY {_INDEX[by]}"
        for term in self.terms:
            where.append(term.sql.format(p="" if term.column is not None and term.column == by else "+"))
            args.extend(term.args)
        if self.fts is not None:
            where.append("t.id IN (SELECT rowid / ? FROM messages_fts WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ?)")
            args.extend((FTS_POSITIONS, *self.fts))
        for place in places:
            where.append(place.sql)
            args.extend(place.args)
        sql = f"SELECT {what} FROM {source} WHERE {' AND '.join(where)}"
        if ordered:
            col = self.column
            sql += f" ORDER BY t.{col}{direction}, t.id{direction}" if col != "id" else f" ORDER BY t.id{direction}"
        return sql, args

    def _fts_ordered(self, what: str, places: Sequence[_Place], direction: str) -> tuple[str, list]:
        """Matches read in rowid order, which is trajectory order: a page costs a page, however
        common the phrase (a trajectory's matching messages are adjacent, DISTINCT folds them)."""
        phrase, lo, hi = self.fts
        for place in places:
            if place.first_id is not None:
                lo = max(lo, place.first_id * FTS_POSITIONS)
            if place.last_id is not None:
                hi = min(hi, (place.last_id + 1) * FTS_POSITIONS - 1)
        where = ["messages_fts MATCH ?", "f.rowid BETWEEN ? AND ?", "t.run_id=?"]
        args: list = [phrase, lo, hi, self.query.run_id]
        for term in self.terms:
            where.append(term.sql.format(p="+"))
            args.extend(term.args)
        return (f"SELECT DISTINCT {what} FROM messages_fts f JOIN trajectories t ON t.id = f.rowid / {FTS_POSITIONS}"
                f" WHERE {' AND '.join(where)} ORDER BY f.rowid{direction}", args)

    def count_sql(self) -> tuple[str, list]:
        """SQL whose rows are the matches, for counting: a common phrase alone in a run that
        holds a contiguous id range is counted in the full-text index alone."""
        if self.fts is not None and not self.terms and self._run_is_contiguous():
            phrase, lo, hi = self.fts
            return ("SELECT DISTINCT rowid / ? FROM messages_fts WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ?",
                    [FTS_POSITIONS, phrase, lo, hi])
        return self.select("1", ordered=False)

    def _run_is_contiguous(self) -> bool:
        """No other run has a trajectory inside this run's id range (one index seek per run)."""
        first, last = self.run_span
        return self.store.conn.execute(
            "SELECT 1 FROM runs r WHERE r.id != ? AND EXISTS (SELECT 1 FROM trajectories t INDEXED BY"
            " trajectories_run WHERE t.run_id = r.id AND t.id BETWEEN ? AND ?) LIMIT 1",
            (self.query.run_id, first, last)).fetchone() is None


def _terms(f: TrajectoryFilter) -> list[_Term]:
    terms = []
    if f.correct is not None:
        terms.append(_Term("{p}t.correct = ?", (int(f.correct),), "correct", True))
    if f.has_tool_error is not None:
        terms.append(_Term("{p}t.tool_errors " + ("> 0" if f.has_tool_error else "= 0"), (), "tool_errors",
                           not f.has_tool_error))
    if f.finish_reason:
        terms.append(_Term("{p}t.finish_reason = ?", (f.finish_reason,), "finish_reason", True))
    if f.status:
        terms.append(_Term("{p}t.status = ?", (f.status,), "status", True))
    if f.step is not None:
        terms.append(_Term("{p}t.step = ?", (f.step,), "step", True))
    return terms


def _after(column: str, value: Any, tid: int, ascending: bool) -> list[_Place]:
    """The rows after (value, tid) in ascending (column, id) order, or before it when not
    ascending, as places tried in turn. SQLite sorts NULL first and a comparison with NULL is
    never true, so NULL keys get their own steps."""
    if column == "id":
        return [_Place("t.id > ?", (tid,), first_id=tid + 1) if ascending else _Place("t.id < ?", (tid,), last_id=tid - 1)]
    c = f"t.{column}"
    if value is None:
        nulls = _Place(f"{c} IS NULL AND t.id {'>' if ascending else '<'} ?", (tid,))
        return [nulls, _Place(f"{c} IS NOT NULL", ())] if ascending else [nulls]
    keyset = _Place(f"({c}, t.id) {'>' if ascending else '<'} (?, ?)", (value, tid))
    return [keyset] if ascending else [keyset, _Place(f"{c} IS NULL", ())]


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


def _text(value: str | None) -> bool:
    return bool(value and value.strip())


def _phrase(text: str) -> str:
    """The text as one FTS5 phrase: quotes doubled, so no user text is query syntax."""
    return '"' + text.strip().replace('"', '""') + '"'


def _like(text: str) -> str:
    r"""A LIKE pattern for the substring, with % _ and \ taken literally."""
    escaped = text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
