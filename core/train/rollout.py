"""The `rollout_func` TRL's GRPOTrainer calls: this project's agent loop over one step's prompts.

TRL 1.16 hands `rollout_func(prompts, trainer)` the step's prompts already repeated
`num_generations` times (measured: /work/shared/notes/trl-grpo-on-this-machine.md; its docstring
says otherwise) and needs exactly one completion per prompt received, in order. For each it
returns (trl/trainer/grpo_trainer.py, `_generate`):

- prompt_ids: the opening prompt's ids (core.rollout.tokens.TokenSequence.prompt_len of them);
- completion_ids: everything after it: generated ids, tool results and template scaffolding;
- env_mask: the assistant mask over completion_ids (1 on generated ids only). TRL uses it as its
  tool mask: the loss, and `completions/mean_length`, count only mask-1 tokens;
- logprobs: the rollout's logprob of each generated id, NaN elsewhere (TRL's own convention for
  tokens the generator did not score: vLLM's None becomes NaN and is neutralised in its
  importance-sampling ratio). Without vLLM, TRL does not use them in the loss;
- trajectory: extra key, one core.rollout.agent.Trajectory per sample; TRL passes extra keys to every
  reward function as keyword arguments (core.train.rewards reads it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from core.rollout.agent import Agent, Trajectory
from core.data.records import Question


@dataclass
class RolloutBatch:
    """The trajectories of one `rollout_func` call, in the order TRL sent the prompts.

    group[i] is the index (0-based, in order of first appearance) of sample i's question within
    the call; sample[i] its index within that group.
    """

    trajectories: list[Trajectory]
    group: list[int]
    sample: list[int]
    seconds: float
    """Wall time of the whole call."""
    generate_seconds: float | None = None
    """Of which in the backend's generate (None: the backend does not count it)."""


@dataclass
class AgentRollout:
    """`rollout_func` for GRPOTrainer: runs `make_agent(trainer)` over the prompts it receives.

    questions: the dataset's questions; a prompt is matched to its question by its text (the
    dataset's "prompt" column is the question text, core.train.trainer.question_dataset).
    make_agent: builds the agent on the trainer's current policy (called every step, so
    rollouts use the weights being trained). batches: every call's RolloutBatch, newest last;
    the trainer's storage pops them.
    """

    questions: Sequence[Question]
    make_agent: Callable[[Any], Agent]
    num_generations: int | None = None
    """TRL's num_generations: its advantages normalise rewards in consecutive blocks of this many
    samples (`rewards.view(-1, num_generations)` in grpo_trainer.py), so a block is a group, and
    every prompt of a block must be the same question. None: group by question text alone."""
    batches: list[RolloutBatch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_text: dict[str, int] = {}
        for i, q in enumerate(self.questions):
            self._by_text.setdefault(q.question, i)

    def __call__(self, prompts: Sequence[Any], trainer: Any = None) -> dict[str, list]:
        """One completion per prompt received, in order; raises KeyError for a prompt that is no
        question of the dataset (TRL sent something this adapter did not put in the dataset)."""
        began = time.perf_counter()
        agent = self.make_agent(trainer)
        qidxs = [self._qidx(p) for p in prompts]
        group, sample = self._groups(prompts, qidxs)
        batch = [agent.start(self.questions[q], q) for q in qidxs]
        while not all(t.finished for t in batch):
            agent.step(batch)
        self.batches.append(RolloutBatch(batch, group, sample, time.perf_counter() - began,
                                         getattr(agent.backend, "seconds", None)))
        return rollout_output(batch, eos_id=_eos_id(agent))

    def _groups(self, prompts: Sequence[Any], qidxs: list[int]) -> tuple[list[int], list[int]]:
        """(group, sample) of each prompt; ValueError when a block of num_generations prompts
        mixes questions (TRL would then normalise rewards across different questions)."""
        G = self.num_generations
        if G is not None:
            if len(prompts) % G:
                raise ValueError(f"rollout_func got {len(prompts)} prompts, not a multiple of num_generations {G}")
            for start in range(0, len(prompts), G):
                if len({_text(p) for p in prompts[start:start + G]}) != 1:
                    raise ValueError(f"prompts {start}..{start + G - 1} are not one question repeated "
                                     f"{G} times, as TRL's advantage groups assume")
            return [i // G for i in range(len(prompts))], [i % G for i in range(len(prompts))]
        groups: dict[int, int] = {}
        group, sample, seen = [], [], {}
        for q in qidxs:
            g = groups.setdefault(q, len(groups))
            group.append(g)
            sample.append(seen.get(g, 0))
            seen[g] = seen.get(g, 0) + 1
        return group, sample

    def _qidx(self, prompt: Any) -> int:
        text = _text(prompt)
        if text not in self._by_text:
            raise KeyError(f"rollout_func got a prompt that is no question of the dataset: {text[:80]!r}")
        return self._by_text[text]


def _text(prompt: Any) -> str:
    """A prompt's question text: the string itself, or a conversational prompt's last message."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def rollout_output(batch: Sequence[Trajectory], eos_id: int) -> dict[str, list]:
    """TRL's rollout dict for finished trajectories (see the module docstring for each key).

    A trajectory with no completion at all (its prompt filled the context) is given one eos id
    with mask 0, because TRL reads `completion_ids[i][-1]`; it trains on nothing.
    """
    out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": [], "env_mask": [],
                            "trajectory": []}
    for traj in batch:
        tokens, p = traj.tokens, traj.tokens.prompt_len
        completion, mask, logprobs = tokens.ids[p:], tokens.mask[p:], tokens.logprobs[p:]
        if not completion:
            completion, mask, logprobs = [eos_id], [0], [math.nan]
        out["prompt_ids"].append(list(tokens.ids[:p]))
        out["completion_ids"].append(list(completion))
        out["env_mask"].append(list(mask))
        out["logprobs"].append([float(x) if m else math.nan for x, m in zip(logprobs, mask)])
        out["trajectory"].append(traj)
    return out


def _eos_id(agent: Agent) -> int:
    tok = agent.backend.tokenizer
    return tok.eos_token_id if tok.eos_token_id is not None else tok.pad_token_id
