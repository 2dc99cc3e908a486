"""transformers backend: batched `generate` on CPU or CUDA, with per-token logprobs.

Logprobs are gathered step by step by a logits processor that keeps only the previous step's
log-softmax (batch x vocab), instead of `output_logits=True`, which would hold every step's
logits (256 steps x 8 rows x 49k vocab x 4 bytes = 400 MB for the embedded model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from loguru import logger
from transformers import LogitsProcessor, LogitsProcessorList

from core.backends.base import Generation, SamplingConfig
from core.rollout.chat import stop_token_ids
from core.models import ModelRef, load_causal_lm, load_tokenizer


class _ChosenLogprobs(LogitsProcessor):
    """Records log p(chosen token) at every step without keeping whole distributions.

    A processor sees the scores of step t but not the token drawn from them; at step t+1 that
    token is the last column of input_ids. So it remembers step t's log-softmax for one step.
    Custom processors run before transformers' temperature/top-p warpers, so `scores` here are
    the model's logits and dividing by the temperature gives the sampling distribution.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature if temperature > 0 else 1.0
        self.previous: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def collect(self, sequences: torch.Tensor) -> torch.Tensor:
        """(batch, new_tokens) logprobs, once generation is over."""
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, sequences[:, -1:]).squeeze(1))
        if not self.steps:
            return torch.empty((sequences.shape[0], 0))
        return torch.stack(self.steps, dim=1).cpu()


@dataclass
class HFBackend:
    """Batched generation with a transformers causal LM."""

    model: Any
    tokenizer: Any
    device: str
    name: str = "hf"
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def load(cls, ref: ModelRef, device: str = "auto", dtype: str = "auto", tokenizer: Any = None) -> "HFBackend":
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(ref)
        model = load_causal_lm(ref, device=device, dtype=dtype)
        stops = stop_token_ids(tokenizer, model.generation_config)
        logger.info("loaded {} on {} (stop ids {})", ref.name, device, sorted(stops))
        return cls(model=model, tokenizer=tokenizer, device=device, stop_token_ids=frozenset(stops))

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[Generation]:
        if not prompts:
            return []
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every prompt ends at the same column
            ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
            attention[row, width - len(prompt):] = 1
        recorder = _ChosenLogprobs(sampling.temperature)
        sample = sampling.temperature > 0
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=attention.to(self.device),
            max_new_tokens=max(max_tokens),
            do_sample=sample,
            temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None,
            top_k=0 if sample else None,  # the full distribution, whatever the model's config says
            eos_token_id=sorted(self.stop_token_ids),
            pad_token_id=pad,
            logits_processor=LogitsProcessorList([recorder]),
            return_dict_in_generate=True,
        )
        new_tokens = out.sequences[:, width:].cpu()
        logprobs = recorder.collect(out.sequences)
        return [
            self._one(new_tokens[row].tolist(), logprobs[row].tolist(), max_tokens[row])
            for row in range(len(prompts))
        ]

    def _one(self, tokens: list[int], logprobs: list[float], limit: int) -> Generation:
        """Cut one row at its first stop token or its own limit (rows share one batch limit)."""
        end = None
        for i, tok in enumerate(tokens[:limit]):
            if tok in self.stop_token_ids:
                end = i + 1
                break
        if end is None:
            kept = tokens[:limit]
            return Generation(kept, logprobs[: len(kept)], self.tokenizer.decode(kept), "length")
        kept = tokens[:end]
        return Generation(kept, logprobs[:end], self.tokenizer.decode(kept[:-1]), "stop")
