"""core.scoring.rewards' rewards in TRL's reward-function signature, so training and evaluation
report the same names and values.

TRL 1.16 calls each reward function as `fn(prompts=..., completions=..., completion_ids=...,
**extra)` and wants one float (or None: "not applicable", which TRL turns into NaN and leaves
out of its means) per sample; the function's __name__ names it in TRL's metrics
(`rewards/<name>/mean`). Extra keys from `rollout_func` arrive as keyword arguments with one
value per sample: core.train.rollout passes `trajectory`. The weighted sum TRL forms with
`reward_weights` (GRPOConfig) equals RewardSuite.total.
"""

from __future__ import annotations

from typing import Any, Callable

from core.rollout.agent import Trajectory
from core.evaluate import _answer
from core.data.records import RewardResult
from core.scoring.rewards import RewardInput, RewardSuite


class ScoreCache:
    """Scores each trajectory once with the suite (one judge call for a batch), whatever
    number of reward functions ask for it. Keyed by object identity; `results` is kept until
    `forget` (the trainer's storage reads it after TRL scored the step)."""

    def __init__(self, suite: RewardSuite):
        self.suite = suite
        self.results: dict[int, list[RewardResult]] = {}

    def of(self, batch: list[Trajectory]) -> list[list[RewardResult]]:
        """The suite's results for each trajectory of `batch` (scoring those not yet scored)."""
        missing = [t for t in batch if id(t) not in self.results]
        if missing:
            scored = self.suite.score([RewardInput(t.question, t.messages, _answer(t)) for t in missing])
            for traj, results in zip(missing, scored):
                self.results[id(traj)] = results
        return [self.results[id(t)] for t in batch]

    def forget(self, batch: list[Trajectory]) -> None:
        for t in batch:
            self.results.pop(id(t), None)


def trl_reward_functions(cache: ScoreCache) -> tuple[list[Callable[..., list[float | None]]], list[float]]:
    """One TRL reward function per reward of the suite, and their weights (GRPOConfig.reward_weights).

    Each returns, per sample, the reward's value (core.scoring.rewards), or None where the reward does
    not apply (chunk_hit for a question without a gold chunk). Raises KeyError without the
    `trajectory` extra key (a rollout_func other than core.train.rollout.AgentRollout).
    """
    funcs = []
    for name in cache.suite.names:
        funcs.append(_reward_function(cache, name))
    return funcs, [cache.suite.weight(name) for name in cache.suite.names]


def _reward_function(cache: ScoreCache, name: str) -> Callable[..., list[float | None]]:
    def reward(prompts: Any = None, completions: Any = None, completion_ids: Any = None,
               **kwargs: Any) -> list[float | None]:
        if "trajectory" not in kwargs:
            raise KeyError("TRL passed no 'trajectory': the rewards need core.train.rollout.AgentRollout")
        out: list[float | None] = []
        for results in cache.of(list(kwargs["trajectory"])):
            value = next((r.value for r in results if r.name == name), None)
            out.append(value)
        return out

    reward.__name__ = name
    reward.__qualname__ = name
    return reward
