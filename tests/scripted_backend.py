"""ScriptedBackend: a test double for a generation backend.

It "generates" replies a test scripts per question and turn, encoded with a real tokenizer and
ended with the template's stop token, so the agent loop, masks and store can be tested exactly
and instantly. It lives in tests only; it never stands in for a model in the product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from core.backends import Generation, SamplingConfig
from core.rollout.chat import stop_token_ids

Script = Callable[[str, int], str]
"""(prompt text, turn number starting at 1) -> the reply text."""


@dataclass
class ScriptedBackend:
    tokenizer: object
    script: Script
    name: str = "scripted"
    logprob: float = -0.25
    calls: list[int] = field(default_factory=list)
    """Batch size of every generate call, for assertions on batching."""
    prompts: list[list[int]] = field(default_factory=list)
    """Every prompt it was handed, in order."""
    generated: list[list[int]] = field(default_factory=list)
    """The ids it returned for each prompt, in the same order."""
    stop_id: int | None = None
    """The stop token it ends replies with (default: the tokenizer's eos)."""
    stop_for: Callable[[str], int] | None = None
    """Picks the stop token per reply text (a model ending a call on another token than an answer)."""

    def __post_init__(self) -> None:
        self._stop = self.stop_id if self.stop_id is not None else self.tokenizer.eos_token_id
        self.stop_token_ids = frozenset(stop_token_ids(self.tokenizer)) | {self._stop}

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int],
                 sampling: SamplingConfig) -> list[Generation]:
        self.calls.append(len(prompts))
        out = []
        for prompt, limit in zip(prompts, max_tokens):
            text = self.tokenizer.decode(list(prompt))
            # The turn is one more than the earlier prompts this one extends: any template works.
            turn = 1 + sum(1 for p in self.prompts if len(p) < len(prompt) and list(prompt[: len(p)]) == p)
            self.prompts.append(list(prompt))
            reply = self.script(text, turn)
            stop = self.stop_for(reply) if self.stop_for is not None else self._stop
            ids = list(self.tokenizer(reply, add_special_tokens=False)["input_ids"]) + [stop]
            finish = "stop"
            if len(ids) > limit:
                ids, finish = ids[:limit], "length"
            body = ids[:-1] if finish == "stop" else ids
            self.generated.append(list(ids))
            out.append(Generation(ids, [self.logprob] * len(ids), self.tokenizer.decode(body), finish))
        return out


@dataclass
class FirstCallScripted:
    """A test double around a real backend: the first turn of every chat is a scripted reply (a
    tool call), later turns are the real model's. For end-to-end checks that need a tool result in
    front of a small model that would not call the tool on its own."""

    inner: object
    first_reply: str
    name: str = "first-call-scripted"
    _first_prompts: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokenizer = self.inner.tokenizer
        self.stop_token_ids = self.inner.stop_token_ids
        self.model = getattr(self.inner, "model", None)

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int],
                 sampling: SamplingConfig) -> list[Generation]:
        out: list[Generation | None] = [None] * len(prompts)
        later = [i for i, p in enumerate(prompts)
                 if any(len(f) < len(p) and list(p[: len(f)]) == f for f in self._first_prompts)]
        for i, prompt in enumerate(prompts):
            if i not in later:
                self._first_prompts.append(list(prompt))
                ids = list(self.tokenizer(self.first_reply, add_special_tokens=False)["input_ids"])
                ids.append(self.tokenizer.eos_token_id)
                out[i] = Generation(ids, [0.0] * len(ids), self.first_reply, "stop")
        if later:
            real = self.inner.generate([prompts[i] for i in later], [max_tokens[i] for i in later], sampling)
            for i, gen in zip(later, real):
                out[i] = gen
        return out
