"""How a trajectory query is read: which index finds its rows and which criteria are tested.

The public API is core.store.queries; this module holds its planner, so that the cost model (and
its measured constants) sits in one place. See Plan for the strategies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from core.store.schema import FTS_POSITIONS
from core.store.store import Store

if TYPE_CHECKING:
    from core.store.queries import TrajectoryFilter, TrajectoryQuery

CAP = 20_000
"""Fewer matches than this: read the matches and sort them. More: walk the sort order and test."""
PROBE_WINDOW = 2_000
"""At most this many rows of a sort order are tested one by one against a common phrase."""
PROBE_SLACK = 16
"""Rows added to a probe window: twice the expected number, plus this, before giving up on it."""
PROBE_US, MATCH_US = 150.0, 0.4
"""Measured on 1M trajectories: testing one trajectory against the full-text index costs about
150 us however common the phrase; building and using the set of a phrase's trajectories about
0.3-0.5 us per trajectory it matches."""

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

INDEX_OF = {
    "id": "trajectories_run", "question": "trajectories_run_question",
    "final_answer": "trajectories_run_final_answer", "gold_answer": "trajectories_run_gold_answer",
    "correct": "trajectories_run_correct", "reward": "trajectories_run_reward",
    "tool_calls": "trajectories_run_tool_calls", "tool_errors": "trajectories_run_tool_errors",
    "finish_reason": "trajectories_run_finish", "turns": "trajectories_run_turns",
    "generated_tokens": "trajectories_run_tokens", "step": "trajectories_run_step",
    "group_id": "trajectories_run_group", "advantage": "trajectories_run_advantage",
    "status": "trajectories_run_status",
}
"""trajectories column -> its (run_id, column, id, filter columns...) index (schema.py)."""



@dataclass(frozen=True)
class _Term:
    """One criterion as SQL over `trajectories t`."""

    sql: str
    """With {p} before the column: "" lets an index serve it, "+" keeps it a plain test."""
    args: tuple
    column: str | None = None
    """The column whose index holds what it tests, if any: read from that index, the test
    needs no table row."""
    findable: bool = True
    """The index finds its matches (an equality or a range), so a capped count of them is cheap."""
    equality: bool = False
    """Its index lists the matches in id order (an equality, not a range)."""


@dataclass(frozen=True)
class Place:
    """Rows after (or before) a place in the order, for a keyset step: SQL plus, when the sort
    is by id, the id range it means, so the full-text index can start there."""

    sql: str
    args: tuple
    first_id: int | None = None
    last_id: int | None = None


class Plan:
    """How to read a query: which index finds the rows and which criteria are tested on them.

    - A search or question criterion with few matches: read their ids up front (at most CAP),
      look the rows up and sort them.
    - An indexed criterion with few matches (capped count under CAP): read its index, sort.
    - Otherwise walk the sort index in order and test every criterion on the entries; each
      criterion holds for many rows, so a page fills soon, and the filter columns ride in the
      sort indexes, so the tests read no table rows. A common search phrase is tested against
      its set of trajectories (built once per statement), or row by row when it matches nearly
      everything, or, sorted by id, read in the full-text index's own order (trajectory order).
    """

    def __init__(self, store: Store, query: TrajectoryQuery, counting: bool = False):
        self.store, self.query, self.counting = store, query, counting
        self.column = SORT_COLUMNS[query.sort]
        self.terms = _terms(query.filter)
        self.empty = False
        self.ids: list[int] | None = None
        """Every matching id of a selective search or question criterion, read up front."""
        self.fts: tuple[str, int, int] | None = None
        """A common search phrase and the rowid range of the run in messages_fts."""
        self.fts_density: tuple[float, int] = (0.0, 0)
        """The share of the run's id range that the phrase matches (from where its first CAP
        matches ended) and the size of that range."""
        self.driver: _Term | None = None
        self.run_span: tuple[int, int] | None = None
        f = query.filter
        if has_text(f.search):
            self._search(f.search)
        if has_text(f.question) and not self.empty:
            self._question(f.question)
        if f.ids is not None and not self.empty:
            # A given id set: rowid lookups of those ids, intersected with a search's or a
            # question's ids already read (a question left as a term still filters in SQL).
            given = sorted(set(f.ids))
            self.ids = given if self.ids is None else sorted(set(self.ids) & set(given))
            self.empty = not self.ids
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
        phrase, lo, hi = fts_phrase(text), ends[0][0] * FTS_POSITIONS, (ends[1][0] + 1) * FTS_POSITIONS - 1
        ids = [r[0] for r in self.store.conn.execute(
            "SELECT DISTINCT rowid / ? FROM messages_fts WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ?"
            " ORDER BY rowid LIMIT ?", (FTS_POSITIONS, phrase, lo, hi, CAP))]
        if len(ids) < CAP:
            self.ids = ids
        else:
            first, last = self.run_span
            self.fts = (phrase, lo, hi)
            self.fts_density = (len(ids) / (ids[-1] - first + 1), last - first + 1)

    def _question(self, text: str) -> None:
        term = _Term("t.question LIKE ? ESCAPE '\\'", (_like(text),), "question", findable=False)
        if self.ids is None and not self.counting:  # a count scans the question index once anyway
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
            if not term.findable:
                continue
            n = self.store.conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM trajectories t INDEXED BY {INDEX_OF[term.column]}"
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
        # A count: the question index when a substring is tested (it holds every filter column
        # and the question: no table reads), else the index that finds a criterion's rows.
        return next((t.column for t in self.terms if not t.findable and t.column),
                    next((t.column for t in self.terms if t.findable), "id"))

    def ids_in_order(self, places: Sequence[Place], ascending: bool, offset: int, limit: int) -> list[int]:
        """Ids offset .. offset+limit-1 of the order (ascending or not), after `places`."""
        wanted = offset + limit
        if self.fts is not None and self.column != "id":
            # Expected rows to test: wanted / density. Worth it when that costs less than the set.
            density, span = self.fts_density
            window = int(2 * wanted / density) + PROBE_SLACK
            if window <= PROBE_WINDOW and window * PROBE_US < density * span * MATCH_US:
                found = self._probe_window(places, ascending, offset, limit, window)
                if found is not None:
                    return found
        sql, args = self.select("t.id", places, ordered=True, ascending=ascending)
        return [r[0] for r in self.store.conn.execute(f"{sql} LIMIT ? OFFSET ?", [*args, limit, offset])]

    def _probe_window(self, places: Sequence[Place], ascending: bool, offset: int, limit: int,
                      window: int) -> list[int] | None:
        """A very common phrase under another sort: test the next `window` rows of the sort
        order one by one in the full-text index instead of first building the set of all its
        trajectories (half a second for a word in every message of a million trajectories).
        None when the window did not settle the answer."""
        inner, args = self.select(f"t.id AS id, t.{self.column} AS k", places, ordered=True, ascending=ascending,
                                  with_fts=False)
        d = "" if ascending else " DESC"
        ids = [r[0] for r in self.store.conn.execute(
            f"SELECT w.id FROM ({inner} LIMIT ?) w WHERE EXISTS (SELECT 1 FROM messages_fts WHERE messages_fts MATCH ?"
            f" AND rowid BETWEEN w.id * {FTS_POSITIONS} AND w.id * {FTS_POSITIONS} + {FTS_POSITIONS - 1})"
            f" ORDER BY w.k{d}, w.id{d} LIMIT ? OFFSET ?", [*args, window, self.fts[0], limit, offset])]
        if len(ids) == limit:
            return ids
        seen = self.store.conn.execute(f"SELECT count(*) FROM ({inner} LIMIT ?)", [*args, window]).fetchone()[0]
        return ids if seen < window else None  # the window held every remaining row: settled

    def select(self, what: str, places: Sequence[Place] = (), *, ordered: bool,
               ascending: bool = True, with_fts: bool = True) -> tuple[str, list]:
        """SQL (without LIMIT) selecting `what` from the query's rows, in order when `ordered`;
        without the common phrase's test when not `with_fts`."""
        direction = "" if ascending else " DESC"
        if self.fts is not None and self.ids is None and ordered and self.column == "id":
            return self._fts_ordered(what, places, direction)
        where, args = ["t.run_id=?"], [self.query.run_id]
        if self.ids is not None:
            by, source = None, "trajectories t NOT INDEXED"  # rowid lookups of the ids read up front
            where.append("t.id IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(self.ids))
        else:
            by = self._index(ordered)
            source = f"trajectories t INDEXED BY {INDEX_OF[by]}"
        for term in self.terms:
            where.append(term.sql.format(p="" if term.column is not None and term.column == by else "+"))
            args.extend(term.args)
        if self.fts is not None and with_fts:
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

    def _fts_ordered(self, what: str, places: Sequence[Place], direction: str) -> tuple[str, list]:
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
        terms.append(_Term("{p}t.correct = ?", (int(f.correct),), "correct", equality=True))
    if f.has_tool_error is not None:
        terms.append(_Term("{p}t.tool_errors " + ("> 0" if f.has_tool_error else "= 0"), (), "tool_errors",
                           equality=not f.has_tool_error))
    if f.finish_reason:
        terms.append(_Term("{p}t.finish_reason = ?", (f.finish_reason,), "finish_reason", equality=True))
    if f.status:
        terms.append(_Term("{p}t.status = ?", (f.status,), "status", equality=True))
    if f.step is not None:
        terms.append(_Term("{p}t.step = ?", (f.step,), "step", equality=True))
    return terms


_NOT_NULL = frozenset({"question", "gold_answer", "turns", "tool_calls", "tool_errors"})
"""Sort columns the schema declares NOT NULL: a keyset step needs no NULL part."""


def keyset_steps(column: str, value: Any, tid: int, ascending: bool) -> list[Place]:
    """The rows after (value, tid) in ascending (column, id) order, or before it when not
    ascending, as places tried in turn. Why not one row-value test (column, id) > (?, ?):
    SQLite 3.40 seeks only on its first column, so a step inside a block of equal values (half
    a run with correct=1) walked the block; "same value, later id" then "later value" are two
    exact seeks. SQLite sorts NULL first and a comparison with NULL is never true, so NULL keys
    get their own steps."""
    more = ">" if ascending else "<"
    if column == "id":
        return [Place(f"t.id {more} ?", (tid,), first_id=tid + 1) if ascending
                else Place(f"t.id {more} ?", (tid,), last_id=tid - 1)]
    c = f"t.{column}"
    if value is None:
        nulls = Place(f"{c} IS NULL AND t.id {more} ?", (tid,))
        return [nulls, Place(f"{c} IS NOT NULL", ())] if ascending else [nulls]
    steps = [Place(f"{c} = ? AND t.id {more} ?", (value, tid)), Place(f"{c} {more} ?", (value,))]
    if not ascending and column not in _NOT_NULL:
        steps.append(Place(f"{c} IS NULL", ()))
    return steps


def has_text(value: str | None) -> bool:
    return bool(value and value.strip())


def fts_phrase(text: str) -> str:
    """The text as one FTS5 phrase: quotes doubled, so no user text is query syntax. A trailing
    `*` (`Claess*`) makes the phrase's last word a prefix, as FTS5's `"..."*` does."""
    text = text.strip()
    star = text.endswith("*")
    body = text.rstrip("*").strip()
    return '"' + body.replace('"', '""') + '"' + ("*" if star and body else "")  # "*" alone: no word, no match


def _like(text: str) -> str:
    r"""A LIKE pattern for the substring, with % _ and \ taken literally."""
    escaped = text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
