"""The viewer's read API: filters, sorts, paging, neighbours, groups, run figures and search.

Small databases are written through the store API; every answer is checked against the same
rows filtered and sorted in Python. Both ways of reading a query (read the few matches and sort
them; walk the sort order and test rows) run by setting CAP to a large and a tiny value.
"""

from __future__ import annotations

import random

import pytest

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.store import FinishedTrajectory, Store, TrajectoryOutcome
from core.store import query_plan
from core.store.queries import (
    SORT_COLUMNS, TrajectoryFilter, TrajectoryQuery, count_trajectories, finish_reasons, group_rows,
    matching_positions, neighbour, page_trajectories, run_rows, steps,
)
from core.rollout.tokens import TokenSequence

REASONS = ("answered", "max_turns", "max_tokens", "tool_error")
NAMES = ("Qoruna", "Veltran", "Maribel", "Tyrel")


def _tokens(n: int) -> TokenSequence:
    t = TokenSequence()
    t.add_prompt([1, 2, 3])
    t.add_generated(list(range(n)), [-0.5] * n)
    return t


def _item(rng: random.Random, qidx: int, **over) -> FinishedTrajectory:
    """A finished trajectory with attributes drawn from few values, so sorts have many ties."""
    name = NAMES[qidx % len(NAMES)]
    q = Question(f"q{qidx}", f"Where is the {name} Observatory number {qidx % 5}?", f"Isle {qidx % 3}")
    errors = rng.choice((0, 0, 1, 2))
    correct = rng.choice((True, False, None))
    messages = [Message("system", "You search a corpus.", 0), Message("user", q.question, 0),
                Message("assistant", '{"name": "search_corpus"}', 1,
                        tool_call=ToolCall("search_corpus", {"query": name}),
                        tool_error=ToolError("invalid_json", "bad") if errors else None),
                Message("tool", f"Result 1:\nThe {name} Observatory stands on Isle {qidx % 3}.", 1),
                Message("assistant", f"It is on Isle {rng.randrange(3)}.", 2)]
    outcome = TrajectoryOutcome(
        status="done", finish_reason=rng.choice(REASONS), final_answer=rng.choice(("Isle 0", "Isle 1", "", "isle 2")),
        turns=rng.randrange(1, 4), tool_calls=rng.randrange(0, 4), tool_errors=errors,
        tokens=_tokens(rng.choice((2, 5, 9))), rewards=[RewardResult("correctness", float(bool(correct)))],
        reward=rng.choice((None, 0.0, 0.7, 1.7)), correct=correct, advantage=rng.choice((None, -1.0, 0.0, 0.5)))
    fields = dict(qidx=qidx, question=q, messages=messages, outcome=outcome)
    fields.update(over)
    return FinishedTrajectory(**fields)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Run 1: an eval of 40 (two samples of some questions), 2 interrupted trajectories and,
    after run 2's, one running; run 2: a training run of 3 steps x 2 groups x 4 samples; run 3: empty."""
    path = tmp_path_factory.mktemp("q") / "runs.db"
    rng = random.Random(7)
    with Store.open(path) as store:
        ev = store.create_run("eval", "base", "m1", {}, n_planned=42)
        store.bulk_write(ev, [_item(rng, i % 30) for i in range(40)])
        q = Question("q99", "Which comet, Qoruna's or not?", "none")
        cut = store.start_trajectory(ev, 99, q)
        store.add_messages(cut, [(0, Message("user", 'What about "Qoruna", really?', 0))])
        store.start_trajectory(ev, 98, q)
        store.finish_run(ev, "done")  # both unfinished trajectories read 'interrupted' now
        tr = store.create_run("train", "grpo", "m2", {}, n_planned=24)
        store.bulk_write(tr, [_item(rng, g, step=g // 2, group_id=g % 2, sample=k)
                              for g in range(6) for k in range(4)])
        store.create_run("eval", "empty", "m1", {})
        late = store.start_trajectory(ev, 97, q)  # run 1's ids are no longer one range
        store.add_messages(late, [(0, Message("user", "Qoruna again: running", 0))])
    with Store.open_readonly(path) as store:
        yield store


@pytest.fixture(params=[(20_000, 150.0, 16), (1, 150.0, 16), (1, 1e-9, 0)],
                ids=["read-matches", "walk-sort-order", "walk-and-probe-phrases"])
def cap(request, monkeypatch):
    """Each way of reading a query: CAP 1 treats every criterion as common, and free probes
    make a common phrase under another sort be tested row by row (falling back to the set of
    its trajectories when a window of rows does not settle it)."""
    monkeypatch.setattr(query_plan, "CAP", request.param[0])
    monkeypatch.setattr(query_plan, "PROBE_US", request.param[1])
    monkeypatch.setattr(query_plan, "PROBE_SLACK", request.param[2])
    return request.param


def _all(store: Store, run_id: int) -> list[dict]:
    return store._query("SELECT * FROM trajectories WHERE run_id=?", (run_id,))


def _expected(store: Store, query: TrajectoryQuery) -> list[int]:
    """The query answered in Python over every row of the run."""
    f = query.filter
    rows = []
    for r in _all(store, query.run_id):
        if f.correct is not None and r["correct"] != int(f.correct):
            continue
        if f.has_tool_error is not None and (r["tool_errors"] > 0) != f.has_tool_error:
            continue
        if f.finish_reason and r["finish_reason"] != f.finish_reason:
            continue
        if f.status and r["status"] != f.status:
            continue
        if f.step is not None and r["step"] != f.step:
            continue
        if f.question and f.question.strip() and f.question.strip().lower() not in r["question"].lower():
            continue
        if f.search and f.search.strip() and not _contains_words(store, r["id"], f.search):
            continue
        if f.ids is not None and r["id"] not in f.ids:
            continue
        rows.append(r)
    col = SORT_COLUMNS[query.sort]
    rows.sort(key=lambda r: (r[col] is not None, r[col] if r[col] is not None else 0, r["id"]),
              reverse=query.descending)
    return [r["id"] for r in rows]


def _contains_words(store: Store, tid: int, text: str) -> bool:
    words = "".join(ch.lower() if ch.isalnum() else " " for ch in text).split()
    if not words:  # a phrase of no words matches nothing
        return False
    for m in store.messages(tid):
        have = "".join(ch.lower() if ch.isalnum() else " " for ch in m.content).split()
        if any(have[i: i + len(words)] == words for i in range(len(have))):
            return True
    return False


FILTERS = [
    TrajectoryFilter(),
    TrajectoryFilter(correct=True),
    TrajectoryFilter(correct=False),
    TrajectoryFilter(has_tool_error=True),
    TrajectoryFilter(has_tool_error=False),
    TrajectoryFilter(finish_reason="max_turns"),
    TrajectoryFilter(status="interrupted"),
    TrajectoryFilter(status="running", search="qoruna"),
    TrajectoryFilter(question="qoruna OBSERVATORY"),
    TrajectoryFilter(question="number 1?"),
    TrajectoryFilter(search="Veltran"),
    TrajectoryFilter(search="Isle 2."),
    TrajectoryFilter(correct=False, has_tool_error=True, finish_reason="answered"),
    TrajectoryFilter(question="observatory", search="Isle 1", correct=True),
    # An id set (the mask lint's findings), alone and with the criteria above; ids of another
    # run and ids that do not exist are simply not there.
    TrajectoryFilter(ids=tuple(range(1, 200, 3)) + (10**9,), ids_label="lint any"),
    TrajectoryFilter(ids=tuple(range(2, 200, 5)), correct=False, search="Veltran"),
    TrajectoryFilter(ids=tuple(range(1, 200, 2)), question="observatory", has_tool_error=False),
    TrajectoryFilter(ids=(), ids_label="lint none"),
]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: f.describe() or "none")
def test_every_filter_and_sort_matches_python(db, cap, f):
    for sort in SORT_COLUMNS:
        for descending in (False, True):
            query = TrajectoryQuery(1, f, sort, descending)
            want = _expected(db, query)
            got = [r.id for r in page_trajectories(db, query, 0, 1000)]
            assert got == want, (sort, descending)
            assert count_trajectories(db, query) == len(want)


def test_train_run_filters_by_step(db, cap):
    assert steps(db, 2) == [0, 1, 2]
    for sort in ("step", "group_id", "advantage", "reward"):
        query = TrajectoryQuery(2, TrajectoryFilter(step=1), sort, descending=True)
        got = [r.id for r in page_trajectories(db, query, 0, 100)]
        assert got == _expected(db, query) and len(got) == 8


def test_pages_are_slices_of_one_order(db, cap):
    query = TrajectoryQuery(1, TrajectoryFilter(correct=False), "reward")
    full = _expected(db, query)
    pages = [r.id for off in range(0, len(full) + 7, 7) for r in page_trajectories(db, query, off, 7)]
    assert pages == full
    assert page_trajectories(db, query, len(full), 7) == []
    assert page_trajectories(db, query, len(full) - 1, 7)[0].id == full[-1]
    assert page_trajectories(db, query, 0, 0) == []
    with pytest.raises(ValueError):
        page_trajectories(db, query, -1, 5)


@pytest.mark.parametrize("sort", ["reward", "id", "question"])
def test_pages_of_a_common_search(db, cap, sort):
    for descending in (False, True):
        query = TrajectoryQuery(1, TrajectoryFilter(search="Isle", has_tool_error=False), sort, descending)
        full = _expected(db, query)
        assert [r.id for off in range(0, len(full), 3) for r in page_trajectories(db, query, off, 3)] == full


@pytest.mark.parametrize("f", [TrajectoryFilter(), TrajectoryFilter(correct=False),
                               TrajectoryFilter(search="Qoruna"), TrajectoryFilter(question="number 2")],
                         ids=lambda f: f.describe() or "none")
@pytest.mark.parametrize("sort", ["id", "reward", "advantage", "final_answer", "correct"])
def test_neighbour_walks_the_order_both_ways(db, cap, f, sort):
    for descending in (False, True):
        query = TrajectoryQuery(1, f, sort, descending)
        order = _expected(db, query)
        assert order, "the fixture should match something"
        walked = [order[0]]
        while (nxt := neighbour(db, query, walked[-1], +1)) is not None:
            walked.append(nxt)
        assert walked == order
        back = [order[-1]]
        while (prev := neighbour(db, query, back[-1], -1)) is not None:
            back.append(prev)
        assert back == order[::-1]


def test_neighbour_from_a_row_outside_the_filter(db):
    every = TrajectoryQuery(1, sort="reward")
    wrong = TrajectoryQuery(1, TrajectoryFilter(correct=False), "reward")
    order_all, order_wrong = _expected(db, every), _expected(db, wrong)
    outsider = next(i for i in order_all if i not in order_wrong and 0 < order_all.index(i) < len(order_all) - 1)
    after = [i for i in order_all[order_all.index(outsider) + 1:] if i in order_wrong]
    assert neighbour(db, wrong, outsider, +1) == (after[0] if after else None)
    assert neighbour(db, wrong, 10_000, +1) is None  # no such trajectory
    assert neighbour(db, TrajectoryQuery(2), order_all[0], +1) is None  # not in that run
    with pytest.raises(ValueError):
        neighbour(db, wrong, outsider, 2)


def test_group_rows_of_a_training_group_and_of_an_eval_question(db):
    train = _all(db, 2)
    one = next(r for r in train if r["step"] == 1 and r["group_id"] == 1)
    group = group_rows(db, one["id"])
    assert [(r.step, r.group_id, r.sample) for r in group] == [(1, 1, k) for k in range(4)]
    twice = next(r for r in _all(db, 1) if r["qidx"] == 3)
    same_question = group_rows(db, twice["id"])
    assert [r.qidx for r in same_question] == [3, 3] and twice["id"] in [r.id for r in same_question]
    assert group_rows(db, 10_000) == []


def test_run_rows_come_from_the_counters(db):
    rows = {r.name: r for r in run_rows(db)}
    assert [r.name for r in run_rows(db)] == ["empty", "grpo", "base"]
    base, all_base = rows["base"], [r for r in _all(db, 1) if r["status"] == "done"]
    assert (base.kind, base.model, base.status, base.n_done, base.n_planned) == ("eval", "m1", "done", 40, 42)
    judged = [r for r in all_base if r["correct"] is not None]
    assert base.accuracy == pytest.approx(sum(r["correct"] for r in judged) / len(judged))
    assert base.mean_reward == pytest.approx(sum(r["reward"] or 0 for r in all_base) / 40)
    assert base.tool_error_rate == pytest.approx(sum(r["tool_errors"] > 0 for r in all_base) / 40)
    assert base.generated_tokens == sum(r["generated_tokens"] for r in all_base)
    assert base.duration >= 0
    empty = rows["empty"]
    assert (empty.accuracy, empty.mean_reward, empty.tool_error_rate, empty.n_done) == (None, None, None, 0)


def test_finish_reasons_are_the_ones_present(db):
    present = sorted({r["finish_reason"] for r in _all(db, 1) if r["finish_reason"]})
    assert finish_reasons(db, 1) == present
    assert finish_reasons(db, 3) == [] and steps(db, 1) == []


@pytest.mark.parametrize("text", ['Qoruna,', 'odd "quote', "?!", "Qoruna's", "AND OR NOT", "*", "  "])
def test_search_takes_any_text(db, text):
    query = TrajectoryQuery(1, TrajectoryFilter(search=text))
    assert [r.id for r in page_trajectories(db, query)] == _expected(db, query)


def test_search_finds_running_trajectories_and_message_positions(db):
    query = TrajectoryQuery(1, TrajectoryFilter(search='"Qoruna"', status="interrupted"))
    (row,) = page_trajectories(db, query)
    assert row.qidx == 99 and matching_positions(db, row.id, "qoruna") == [0]
    some = _expected(db, TrajectoryQuery(1, TrajectoryFilter(search="Veltran")))[0]
    assert matching_positions(db, some, "Veltran Observatory") == [1, 3]


def test_capped_count(db):
    query = TrajectoryQuery(1)
    assert count_trajectories(db, query) == 43
    assert count_trajectories(db, query, cap=10) == 10
    assert count_trajectories(db, TrajectoryQuery(3, TrajectoryFilter(search="x"))) == 0


def test_rows_hold_the_table_columns_only(db):
    row = page_trajectories(db, TrajectoryQuery(1, TrajectoryFilter(correct=True)), 0, 1)[0]
    assert row.correct is True and isinstance(row.tokens, int) and row.run_id == 1
    assert not hasattr(row, "messages")


def test_bad_sort_column_and_filter_text():
    with pytest.raises(ValueError, match="unknown sort column 'colour'"):
        TrajectoryQuery(1, sort="colour")
    f = TrajectoryFilter(correct=False, has_tool_error=True, finish_reason="max_turns", search=" Qoruna ")
    assert f.describe() == "correct=no · tool error · finish=max_turns · search 'Qoruna'"
    assert TrajectoryFilter().is_empty and TrajectoryFilter(question=" ").is_empty
    assert not TrajectoryFilter(step=0).is_empty and TrajectoryFilter(step=0).describe() == "step=0"


@pytest.mark.parametrize("sort", list(SORT_COLUMNS))
def test_every_sort_reads_an_index_in_order(db, sort):
    """The first page of any sort is an index range read: no sort of the whole run."""
    for descending in (False, True):
        plan = query_plan.Plan(db, TrajectoryQuery(1, sort=sort, descending=descending))
        sql, args = plan.select("t.id", ordered=True, ascending=not descending)
        steps_ = " / ".join(r[3] for r in db.conn.execute(f"EXPLAIN QUERY PLAN {sql} LIMIT 100", args))
        assert "TEMP B-TREE" not in steps_ and "USING COVERING INDEX" in steps_, steps_


@pytest.mark.parametrize("f", [TrajectoryFilter(correct=True), TrajectoryFilter(has_tool_error=True),
                               TrajectoryFilter(finish_reason="answered", correct=False)],
                         ids=lambda f: f.describe())
def test_walking_a_sort_order_tests_filters_on_the_index(db, f, monkeypatch):
    """With many matches, filters are tested on the sort index's entries: no table reads."""
    monkeypatch.setattr(query_plan, "CAP", 1)
    plan = query_plan.Plan(db, TrajectoryQuery(1, f, "reward"))
    sql, args = plan.select("t.id", ordered=True)
    steps_ = " / ".join(r[3] for r in db.conn.execute(f"EXPLAIN QUERY PLAN {sql} LIMIT 100", args))
    assert steps_.startswith("SEARCH t USING COVERING INDEX trajectories_run_reward"), steps_


def test_common_search_with_a_rare_question(db, monkeypatch):
    """The few rows of a question substring, tested against a phrase too common to read up front."""
    monkeypatch.setattr(query_plan, "CAP", 5)
    f = TrajectoryFilter(search="Isle", question="Veltran Observatory number 1")
    for sort in ("id", "reward"):
        for descending in (False, True):
            query = TrajectoryQuery(1, f, sort, descending)
            want = _expected(db, query)
            assert 0 < len(want) < 5
            assert [r.id for r in page_trajectories(db, query, 0, 100)] == want
            assert count_trajectories(db, query) == len(want)
            assert neighbour(db, query, want[0], +1) == (want[1] if len(want) > 1 else None)


@pytest.mark.parametrize("seed", range(6))
def test_random_combinations_match_python(db, monkeypatch, seed):
    """Random filters, sorts and thresholds (so each criterion is sometimes rare, sometimes common)."""
    rng = random.Random(seed)
    choices = dict(correct=(None, True, False), has_tool_error=(None, True, False),
                   finish_reason=(None, *REASONS), status=(None, "done", "interrupted"),
                   step=(None, None, 0, 2), question=(None, "veltran", "number 3", "observatory"),
                   search=(None, "Isle", "Qoruna", "Isle 0"))
    for _ in range(12):
        monkeypatch.setattr(query_plan, "CAP", rng.choice((1, 3, 8, 20_000)))
        monkeypatch.setattr(query_plan, "PROBE_US", rng.choice((150.0, 1e-9)))
        monkeypatch.setattr(query_plan, "PROBE_SLACK", rng.choice((0, 16)))
        f = TrajectoryFilter(**{k: rng.choice(v) for k, v in choices.items()})
        query = TrajectoryQuery(rng.choice((1, 2)), f, rng.choice(list(SORT_COLUMNS)), rng.random() < 0.5)
        want = _expected(db, query)
        assert [r.id for r in page_trajectories(db, query, 0, 100)] == want, query
        assert count_trajectories(db, query) == len(want), query
        for i, tid in enumerate(want):
            assert neighbour(db, query, tid, +1) == (want[i + 1] if i + 1 < len(want) else None), query
            assert neighbour(db, query, tid, -1) == (want[i - 1] if i else None), query
