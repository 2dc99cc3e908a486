"""The viewer's queries on a million trajectories: each one timed against its goal.

Goals (from the TUI issue): opening the database shows the runs screen, and opening a run of
1M trajectories shows its first page, each within 1 s; sort, filter and search answer within
300 ms; the process stays under 500 MB. The database comes from build_big_db.py and is opened
read-only, as the viewer opens it.

    .venv/bin/python benchmarks/build_big_db.py          # once, ~5 min
    .venv/bin/python benchmarks/queries.py [PATH] [--repeat 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path
from typing import Callable

from core.store import Store
from core.store.queries import (
    SORT_COLUMNS, TrajectoryFilter, TrajectoryQuery, count_trajectories, finish_reasons, group_rows, neighbour,
    page_trajectories, run_rows, steps,
)

DEFAULT_PATH = Path("/tmp/rl-inspect-big.db")
PAGE = 100


def _timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median milliseconds over `repeat` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), out


def _cases(path: Path, store: Store) -> list[tuple[str, float, Callable[[], object]]]:
    runs = {r.name: r.id for r in run_rows(store)}
    ev, tr = runs["big-eval"], runs["big-train"]
    middle = store.conn.execute("SELECT id FROM trajectories WHERE run_id=? ORDER BY id LIMIT 1 OFFSET 500000",
                                (ev,)).fetchone()[0]
    rare_name = "".join(ch for ch in store.trajectory(middle)["question"].split(" the ")[-1].split()[0] if ch.isalpha())
    train_one = store.conn.execute("SELECT id FROM trajectories WHERE run_id=? LIMIT 1 OFFSET 900", (tr,)).fetchone()[0]

    def q(sort: str = "id", descending: bool = False, **f) -> TrajectoryQuery:
        return TrajectoryQuery(ev, TrajectoryFilter(**f), sort, descending)

    def page(query: TrajectoryQuery, offset: int = 0) -> Callable[[], object]:
        return lambda: page_trajectories(store, query, offset, PAGE)

    def open_db() -> object:
        with Store.open_readonly(path) as s:
            return run_rows(s)

    def open_run() -> object:
        query = q()
        return (page_trajectories(store, query, 0, PAGE), count_trajectories(store, query),
                finish_reasons(store, ev), steps(store, ev))

    cases: list[tuple[str, float, Callable[[], object]]] = [
        ("open database + runs screen", 1000, open_db),
        ("open run: first page, count, filter choices", 1000, open_run),
    ]
    for sort in SORT_COLUMNS:
        for desc in (False, True):
            cases.append((f"sort {sort} {'desc' if desc else 'asc'}", 300, page(q(sort, desc))))
    filters = {
        "correct=yes": dict(correct=True), "correct=no": dict(correct=False),
        "tool error": dict(has_tool_error=True), "no tool error": dict(has_tool_error=False),
        **{f"finish={r}": dict(finish_reason=r) for r in ("answered", "max_turns", "max_tokens", "tool_error")},
        "status=interrupted": dict(status="interrupted"),
        f"question '{rare_name}' (rare)": dict(question=rare_name),
        "question 'observatory' (1/8)": dict(question="observatory"),
        "question 'zzz' (none)": dict(question="zzz"),
        f"search '{rare_name}' (rare)": dict(search=rare_name),
        "search 'Ysselmouth' (a place, ~1%)": dict(search="Ysselmouth"),
        "search 'invalid_json' (10%)": dict(search="invalid_json"),
        "search 'observatory' (1/8)": dict(search="observatory"),
        "search 'search_corpus' (all)": dict(search="search_corpus"),
        "search 'the' (every message)": dict(search="the"),
    }
    for label, f in filters.items():
        cases.append((f"filter {label}", 300, page(q(**f))))
    combos = [
        ("correct=yes, sort reward asc", q("reward", correct=True)),
        ("tool error, sort tool_errors asc", q("tool_errors", has_tool_error=True)),
        ("finish=max_turns, sort question desc", q("question", True, finish_reason="max_turns")),
        ("search 'observatory', sort reward desc", q("reward", True, search="observatory")),
        ("search 'invalid_json', sort tool_errors asc", q("tool_errors", search="invalid_json")),
        ("question 'observatory', sort tokens desc", q("tokens", True, question="observatory")),
        ("search 'the', sort turns desc", q("turns", True, search="the")),
    ]
    for label, query in combos:
        cases.append((f"filter+sort {label}", 300, page(query)))
    cases += [
        ("page at offset 500,000, sort question", 300, page(q("question"), 500_000)),
        ("last page, sort reward", 300, page(q("reward"), 1_000_000 - PAGE)),
        ("search 'search_corpus', offset 500,000", 300, page(q(search="search_corpus"), 500_000)),
        ("search 'observatory', offset 100,000, sort reward", 300, page(q("reward", search="observatory"), 100_000)),
    ]
    for label, f in [("no filter", {}), ("correct=no", dict(correct=False)), ("tool error", dict(has_tool_error=True)),
                     ("question 'observatory'", dict(question="observatory")),
                     (f"question '{rare_name}'", dict(question=rare_name)),
                     ("search 'observatory'", dict(search="observatory")),
                     ("search 'search_corpus'", dict(search="search_corpus"))]:
        cases.append((f"count {label}", 300, lambda f=f: count_trajectories(store, q(**f))))
        cases.append((f"count {label}, cap 10,000", 300, lambda f=f: count_trajectories(store, q(**f), cap=10_000)))
    cases += [
        ("neighbour +1, sort id", 300, lambda: neighbour(store, q(), middle, +1)),
        ("neighbour -1, sort reward desc", 300, lambda: neighbour(store, q("reward", True), middle, -1)),
        ("neighbour +1, correct=yes, sort reward", 300, lambda: neighbour(store, q("reward", correct=True), middle, +1)),
        ("neighbour +1, search 'search_corpus', sort reward", 300,
         lambda: neighbour(store, q("reward", search="search_corpus"), middle, +1)),
        ("neighbour -1, search 'invalid_json', sort tool_errors desc", 300,
         lambda: neighbour(store, q("tool_errors", True, search="invalid_json"), middle, -1)),
        ("neighbour +1, question 'observatory', sort tool_calls", 300,
         lambda: neighbour(store, q("tool_calls", question="observatory"), middle, +1)),
        ("neighbour +1 at the end, sort tokens", 300,
         lambda: neighbour(store, q("tokens"), page_trajectories(store, q("tokens", True), 0, 1)[0].id, +1)),
        ("group rows, eval question", 300, lambda: group_rows(store, middle)),
        ("group rows, train group", 300, lambda: group_rows(store, train_one)),
    ]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with Store.open_readonly(args.path) as store:
        n = store.conn.execute("SELECT count(*) FROM trajectories").fetchone()[0]
        print(f"{args.path}: {n:,} trajectories, {args.path.stat().st_size / 2**30:.2f} GiB; median of {args.repeat}")
        print(f"{'case':<58} {'ms':>8} {'goal':>6} {'ratio':>6}  result")
        worst = 0.0
        for label, goal, fn in _cases(args.path, store):
            ms, out = _timed(fn, args.repeat)
            worst = max(worst, ms / goal)
            shown = len(out) if isinstance(out, list) else out if isinstance(out, int) else "-"
            print(f"{label:<58} {ms:>8.1f} {goal:>6} {ms / goal:>6.2f}  {shown}", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB (goal 500 MB); worst ratio to goal {worst:.2f}")


if __name__ == "__main__":
    main()
