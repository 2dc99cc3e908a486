"""Store write throughput: trajectories per second with 8 messages and 2k tokens each.

Compares, in one run, the way an eval writes (a transaction per turn for the whole pool and one
for the trajectories that finish: the pattern that lets a viewer follow a run live), the same
with a pool of one (the worst case), and bulk writes (many trajectories per transaction, as an
import would), and reports bytes per trajectory.

    .venv/bin/python benchmarks/store_writes.py [--n 2000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from core.data.records import Message, Question, RewardResult, ToolCall
from core.store import Store, TrajectoryOutcome
from core.rollout.tokens import TokenSequence

N_TOKENS = 2000


def _trajectory(rng: random.Random, i: int):
    q = Question(f"q{i}", f"In which year was the Veltran Observatory number {i} founded?", str(1800 + i % 200))
    words = ["observatory", "island", "founded", "telescope", "Qoruna", "Maribel", "year", "director"]
    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))
    msgs = [Message("system", text(40), 0), Message("user", text(120), 0)]
    for turn in (1, 2, 3):
        call = ToolCall("search_corpus", {"query": text(4)})
        msgs.append(Message("assistant", text(60), turn, tool_call=call))
        msgs.append(Message("tool", text(150), turn))
    msgs = msgs[:7] + [Message("assistant", text(30), 4)]
    tokens = TokenSequence()
    tokens.add_prompt([rng.randrange(49152) for _ in range(400)])
    for _ in range(4):
        gen = [rng.randrange(49152) for _ in range(200)]
        tokens.add_generated(gen, [-rng.random() for _ in gen])
        tokens.add_scaffold([rng.randrange(49152) for _ in range(200)])
    tokens.add_scaffold([rng.randrange(49152) for _ in range(N_TOKENS - len(tokens.ids))])
    rewards = [RewardResult("correctness", 1.0, 1.0, {"judge": "llm", "reply": "Yes"}),
               RewardResult("formatting", 0.7), RewardResult("retry_behavior", 0.5, 1.0, {"tool_calls": 3}),
               RewardResult("chunk_hit", 1.0)]
    return q, msgs, TrajectoryOutcome("done", "answered", "1873", 4, 3, 0, tokens, rewards, 3.2, True)


def _write_like_eval(store: Store, run: int, pool) -> None:
    """What core.evaluate does for a pool: one transaction to start it, one per turn for the
    whole pool's new messages, one for the trajectories that finish."""
    with store.transaction():
        ids = [store.start_trajectory(run, 0, q) for q, _, _ in pool]
    for turn in range(5):
        with store.transaction():
            for tid, (_, msgs, _) in zip(ids, pool):
                store.add_messages(tid, [(p, m) for p, m in enumerate(msgs) if m.turn == turn])
    with store.transaction():
        for tid, (_, _, outcome) in zip(ids, pool):
            store.finish_trajectory(run, tid, outcome)


def _write_bulk(store: Store, run: int, items) -> None:
    with store.transaction():
        for q, msgs, outcome in items:
            tid = store.start_trajectory(run, 0, q)
            store.add_messages(tid, list(enumerate(msgs)))
            store.finish_trajectory(run, tid, outcome)


def measure(n: int, bulk: bool, batch: int) -> tuple[float, float]:
    rng = random.Random(0)
    items = [_trajectory(rng, i) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        with Store.open(db) as store:
            run = store.create_run("eval", "bench", "m", {}, n_planned=n)
            began = time.perf_counter()
            for lo in range(0, n, batch):
                (_write_bulk if bulk else _write_like_eval)(store, run, items[lo: lo + batch])
            seconds = time.perf_counter() - began
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db.stat().st_size
    return n / seconds, size / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    cases = [("eval pattern: pool of 8, txn per turn", False, 8),
             ("eval pattern: pool of 1, txn per turn", False, 1),
             ("bulk: 100 trajectories per txn", True, 100)]
    rows = [(label, *measure(args.n, bulk, batch)) for label, bulk, batch in cases]
    base = rows[0][1]
    print(f"store writes, {args.n} trajectories of 8 messages and {N_TOKENS} tokens each")
    print(f"{'case':<42} {'traj/s':>10} {'ratio':>7} {'bytes/traj':>11}")
    for label, rate, size in rows:
        print(f"{label:<42} {rate:>10.0f} {rate / base:>6.2f}x {size:>11.0f}")


if __name__ == "__main__":
    main()
