"""Writing many finished trajectories at once, for importers, merges and benchmarks.

An eval writes a trajectory in steps (start, messages per turn, finish) so that a viewer can
watch it grow; an import already holds finished trajectories, and one statement per row would
spend most of its time in Python and SQLite call overhead. `write_finished` writes a batch in one
transaction with one executemany per table, and adds to the run's counters exactly what
`Store.finish_trajectory` would have added for the same trajectories.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from core.data.records import Message, Question
from core.store.schema import FTS_INSERT_SQL, FTS_POSITIONS

if TYPE_CHECKING:
    from core.store.store import Store, TrajectoryOutcome


@dataclass
class FinishedTrajectory:
    """One trajectory with everything it ended with, ready to be written in bulk."""

    qidx: int
    question: Question
    messages: Sequence[Message]
    """The whole chat in order; a message's position is its index here."""
    outcome: TrajectoryOutcome
    sample: int = 0
    step: int | None = None
    group_id: int | None = None
    started_at: float | None = None
    """When it started; None: the time of writing (as is finished_at)."""
    finished_at: float | None = None


_TRAJECTORY_SQL = (
    "INSERT INTO trajectories(id, run_id, qidx, sample, step, group_id, question, gold_answer, final_answer,"
    " status, finish_reason, correct, reward, advantage, turns, tool_calls, tool_errors, prompt_tokens,"
    " completion_tokens, generated_tokens, drift_at, drift_kind, finish_detail, started_at, finished_at)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_MESSAGE_SQL = (
    "INSERT INTO messages(trajectory_id, position, turn, role, content, tool_call, error_kind, error_message,"
    " token_start, token_end) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_TOKENS_SQL = "INSERT INTO tokens(trajectory_id, prompt_len, ids, mask, logprobs) VALUES (?,?,?,?,?)"
_REWARD_SQL = "INSERT INTO rewards(trajectory_id, name, value, weight, detail) VALUES (?,?,?,?,?)"
_COUNTERS_SQL = (
    "UPDATE runs SET n_done=n_done+?, n_correct=n_correct+?, n_judged=n_judged+?,"
    " n_with_tool_error=n_with_tool_error+?, reward_sum=reward_sum+?, generated_tokens=generated_tokens+?,"
    " generation_seconds=generation_seconds+?, updated_at=? WHERE id=?"
)


def write_finished(store: Store, run_id: int, items: Iterable[FinishedTrajectory]) -> list[int]:
    """Write finished trajectories with their messages, tokens and rewards in one transaction.

    Returns the new trajectory ids in the order of `items`. Ids are handed out from the
    table's largest id while the write lock is held (BEGIN IMMEDIATE), so concurrent writers
    cannot take the same ones; an error rolls the whole batch back.
    """
    now = time.time()
    trajectories, messages, tokens, rewards = [], [], [], []
    done = correct = judged = with_error = generated = 0
    reward_sum = seconds = 0.0
    with store.transaction():
        next_id = store.conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM trajectories").fetchone()[0]
        for tid, item in enumerate(items, start=next_id):
            out, seq = item.outcome, item.outcome.tokens
            generated_here = seq.generated_count if seq is not None else None
            trajectories.append((
                tid, run_id, item.qidx, item.sample, item.step, item.group_id, item.question.question,
                item.question.answer, out.final_answer, out.status, out.finish_reason,
                None if out.correct is None else int(out.correct), out.reward, out.advantage, out.turns,
                out.tool_calls, out.tool_errors, seq.prompt_len if seq else None,
                seq.completion_len if seq else None, generated_here, out.drift_at, out.drift_kind, out.finish_detail,
                item.started_at if item.started_at is not None else now,
                item.finished_at if item.finished_at is not None else now,
            ))
            messages.extend(_message_row(tid, pos, m) for pos, m in enumerate(item.messages))
            if seq is not None:
                tokens.append((tid, seq.prompt_len, *seq.to_blobs()))
            rewards.extend((tid, r.name, float(r.value), float(r.weight), json.dumps(r.detail, default=str))
                           for r in out.rewards)
            if out.status == "done":
                done += 1
                correct += int(bool(out.correct))
                judged += int(out.correct is not None)
                with_error += int(out.tool_errors > 0)
                reward_sum += out.reward or 0.0
                generated += generated_here or 0
                seconds += out.generation_seconds
        store.conn.executemany(_TRAJECTORY_SQL, trajectories)
        store.conn.executemany(_MESSAGE_SQL, messages)
        store.conn.executemany(FTS_INSERT_SQL, ((row[0] * FTS_POSITIONS + row[1], row[4]) for row in messages))
        store.conn.executemany(_TOKENS_SQL, tokens)
        store.conn.executemany(_REWARD_SQL, rewards)
        if trajectories:
            store.conn.execute(_COUNTERS_SQL, (done, correct, judged, with_error, reward_sum, generated,
                                               seconds, now, run_id))
    return [row[0] for row in trajectories]


def _message_row(tid: int, pos: int, m: Message) -> tuple:
    return (tid, pos, m.turn, m.role, m.content, json.dumps(m.tool_call.to_dict()) if m.tool_call else None,
            m.tool_error.kind if m.tool_error else None, m.tool_error.message if m.tool_error else None,
            m.token_start, m.token_end)
