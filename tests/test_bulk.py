"""Bulk writes: the same database state as the step-by-step writes an eval makes."""

from __future__ import annotations

import pytest

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.store import FinishedTrajectory, Store, TrajectoryOutcome
from core.rollout.tokens import TokenSequence


def _finished(i: int) -> FinishedTrajectory:
    q = Question(f"q{i}", f"Where is the Veltran Observatory number {i}?", "Qoruna")
    tokens = TokenSequence()
    tokens.add_prompt([1, 2, 3])
    tokens.add_generated([10 + i, 11], [-0.5, -0.25])
    tokens.add_scaffold([4, 5])
    err = ToolError("invalid_json", "bad") if i % 3 == 0 else None
    messages = [Message("system", "sys", 0), Message("user", q.question, 0),
                Message("assistant", '{"name": "search_corpus"}', 1, tool_error=err,
                        tool_call=None if err else ToolCall("search_corpus", {"query": "Veltran"}, "{}"),
                        token_start=3, token_end=5),
                Message("tool", f"Result 1:\nQoruna, island {i}", 1, tool_error=err, token_start=5, token_end=7)]
    outcome = TrajectoryOutcome(
        status="done" if i != 4 else "interrupted", finish_reason="tool_error" if err else "answered",
        final_answer="Qoruna" if i % 2 else "Maribel", turns=1, tool_calls=1, tool_errors=int(err is not None),
        tokens=tokens, rewards=[RewardResult("correctness", float(i % 2), 1.0, {"judge": "exact"}),
                                RewardResult("formatting", 0.0 if err else 0.7)],
        reward=float(i % 2) + (0.0 if err else 0.7), correct=bool(i % 2), advantage=0.1 * i,
        generation_seconds=0.5)
    return FinishedTrajectory(i, q, messages, outcome, sample=i % 2, step=i // 4, group_id=i // 2)


def _write_stepwise(store: Store, run: int, item: FinishedTrajectory) -> int:
    tid = store.start_trajectory(run, item.qidx, item.question, sample=item.sample, step=item.step,
                                 group_id=item.group_id)
    store.add_messages(tid, list(enumerate(item.messages)))
    store.finish_trajectory(run, tid, item.outcome)
    return tid


COMPARED = ("qidx", "sample", "step", "group_id", "question", "gold_answer", "final_answer", "status",
            "finish_reason", "correct", "reward", "advantage", "turns", "tool_calls", "tool_errors",
            "prompt_tokens", "completion_tokens", "generated_tokens")
COUNTERS = ("n_done", "n_correct", "n_judged", "n_with_tool_error", "reward_sum", "generated_tokens",
            "generation_seconds")


def test_bulk_write_matches_stepwise_writes(tmp_path):
    items = [_finished(i) for i in range(8)]
    with Store.open(tmp_path / "bulk.db") as bulk, Store.open(tmp_path / "steps.db") as steps:
        a, b = bulk.create_run("eval", "r", "m", {}, 8), steps.create_run("eval", "r", "m", {}, 8)
        ids = bulk.bulk_write(a, items[:5]) + bulk.bulk_write(a, items[5:])
        step_ids = [_write_stepwise(steps, b, item) for item in items]
        assert ids == step_ids == list(range(1, 9))
        for x, y in zip(ids, step_ids):
            tx, ty = bulk.trajectory(x), steps.trajectory(y)
            assert {k: tx[k] for k in COMPARED} == {k: ty[k] for k in COMPARED}
            assert bulk.messages(x) == steps.messages(y)
            assert bulk.tokens(x).to_blobs() == steps.tokens(y).to_blobs()  # NaN != NaN: compare bytes
            assert [r.to_dict() for r in bulk.rewards(x)] == [r.to_dict() for r in steps.rewards(y)]
        assert {k: bulk.run(a)[k] for k in COUNTERS} == pytest.approx({k: steps.run(b)[k] for k in COUNTERS})
        assert bulk.search_messages(a, "island 6") == steps.search_messages(b, "island 6") == [7]
        assert bulk.search_messages(a, "Qoruna") == ids


def test_bulk_write_is_all_or_nothing(tmp_path):
    with Store.open(tmp_path / "bulk.db") as store:
        run = store.create_run("eval", "r", "m", {})
        bad = _finished(1)
        bad.messages = [*bad.messages, bad.messages[0]]
        bad.messages[-1] = "not a message"  # fails while rows are built, inside the transaction
        with pytest.raises(AttributeError):
            store.bulk_write(run, [_finished(0), bad])
        assert store.trajectory_rows(run) == [] and store.run(run)["n_done"] == 0
        assert store.bulk_write(run, []) == []
