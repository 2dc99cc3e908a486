"""common.StepStats: an imported train run's step metrics, computed from its trajectories the way
TRL 1.16's GRPOTrainer logs them (so the steps screen reads an imported step as a trained one)."""

from __future__ import annotations

import math

import pytest

from core.data.records import Question
from core.importers.common import StepStats
from core.rollout.tokens import TokenSequence
from core.store.bulk import FinishedTrajectory
from core.store.store import TrajectoryOutcome


def _item(step, group, reward, trained=None):
    tokens = None
    if trained is not None:
        tokens = TokenSequence(ids=list(range(3 + trained)), mask=[0, 0, 0] + [1] * trained,
                               logprobs=[math.nan] * 3 + [-0.1] * trained, prompt_len=3)
    outcome = TrajectoryOutcome(status="done", finish_reason=None, final_answer="", turns=1, tool_calls=0,
                                tool_errors=0, tokens=tokens, rewards=[], reward=reward, correct=None)
    return FinishedTrajectory(qidx=0, question=Question("q0", "q", "a"), messages=[], outcome=outcome,
                              step=step, group_id=group)


def test_step_metrics_are_trls():
    """reward_std is TRL's nanstd (Bessel-corrected) over the step's rewards and frac_reward_zero_std
    its share of groups whose std is 0, a group of one never counted (its nanstd is NaN)."""
    import torch
    from trl.trainer.utils import nanstd

    stats = StepStats("verl")
    rows = [(1, 0, 1.0, 4), (1, 0, 0.0, 6), (1, 1, 0.5, 2), (1, 1, 0.5, 2), (1, 2, 1.0, 5),
            (2, 3, 0.0, None), (2, 3, None, 1)]
    for step, group, reward, trained in rows:
        stats.add(_item(step, group, reward, trained))
    stats.add(_item(None, 9, 1.0))  # no step: not counted
    m = stats.metrics()
    assert set(m) == {1, 2}
    step1 = torch.tensor([1.0, 0.0, 0.5, 0.5, 1.0])
    assert m[1]["reward"] == pytest.approx(step1.mean().item())
    assert m[1]["reward_std"] == pytest.approx(nanstd(step1).item())
    assert m[1]["frac_reward_zero_std"] == pytest.approx(1 / 3)  # group 1 of groups 0, 1, 2
    assert m[1]["completions/mean_length"] == pytest.approx((4 + 6 + 2 + 2 + 5) / 5)
    assert m[1]["imported_from"] == "verl"
    # step 2: one reward (no std), a trajectory without tokens (no mean length)
    assert m[2]["reward"] == 0.0 and "reward_std" not in m[2] and m[2]["frac_reward_zero_std"] == 0.0
    assert "completions/mean_length" not in m[2]


def test_an_imported_runs_times_are_its_sources(tmp_path):
    """An imported run's start and end are its trajectories' (the source's timing), so its duration
    and tokens per second describe the source, not how fast the import ran; a source without times
    has no duration (tok/s shows as unknown)."""
    from core.importers import import_paths
    from core.store import Store
    from core.store.pace import PaceTracker
    from core.store.queries import run_rows
    from tests.test_import_verifiers_traces import PRIME
    from tests.test_import_verl import _step

    db = tmp_path / "t.db"
    (prime,) = import_paths(db, [PRIME])
    folder = tmp_path / "verl"
    folder.mkdir()
    _step(folder, 1)
    (verl,) = import_paths(db, [folder])
    with Store.open_readonly(db) as store:
        rows = {r.id: r for r in run_rows(store)}
        train = rows[prime.runs[0][0]]
        first, last = store.conn.execute("SELECT MIN(started_at), MAX(finished_at) FROM trajectories WHERE run_id=?",
                                          (train.id,)).fetchone()
        assert first is not None and train.created_at == first and train.duration == pytest.approx(last - first)
        assert train.created_at < 1_750_000_000  # the traces' 2023 times, not the import's
        untimed = rows[verl.runs[0][0]]
        assert untimed.duration == 0.0
    pace = PaceTracker().observe(untimed.id, status="done", n_done=4, n_planned=4, generated_tokens=100,
                                 duration=untimed.duration, now=0.0)
    assert pace.tokens_per_second is None
