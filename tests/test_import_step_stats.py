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
