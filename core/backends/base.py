"""The backend protocol and the records it exchanges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. temperature 0 means greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class Generation:
    """What a backend produced for one prompt.

    token_ids are exactly the ids the model emitted, the stop token included when it stopped on
    one; logprobs has one entry per id (log-probability under the sampling distribution).
    text is the decoded text without the final stop token.
    """

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    """"stop" when the model emitted a stop token, "length" when it hit its token limit."""
    token_exact: bool = True
    """False when token_ids are not the ids the model emitted but the local tokenizer's reading of
    text a server returned (core.backends.openai_server, a server that gives no ids); logprobs
    are then NaN wherever they could not be matched to those ids."""


class Backend(Protocol):
    """Anything that turns token-id prompts into generations."""

    name: str
    tokenizer: Any
    stop_token_ids: frozenset[int]

    def generate(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[Generation]:
        """Generate for every prompt at once; max_tokens[i] bounds prompt i's new tokens."""
        ...


def chat_complete(backend: Backend, texts: Sequence[str], max_tokens: int = 16) -> list[str]:
    """Greedy replies to single user messages: what an LLM judge needs."""
    return [o.text for o in chat_generate(backend, texts, max_tokens)]


def chat_generate(backend: Backend, texts: Sequence[str], max_tokens: int = 16) -> list[Generation]:
    """chat_complete's generations whole, so a caller sees which replies were cut at `max_tokens`
    (finish_reason "length"): one per text, greedy, each text sent as one user message."""
    if not texts:
        return []
    tok = backend.tokenizer
    prompts = [
        _as_ids(tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True))
        for t in texts
    ]
    return list(backend.generate(prompts, [max_tokens] * len(prompts), SamplingConfig(temperature=0.0)))


def _as_ids(encoded: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True); 4.x a list.
    if hasattr(encoded, "keys") and "input_ids" in encoded:
        encoded = encoded["input_ids"]
    return list(encoded)
