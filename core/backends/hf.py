"""transformers backend: batched `generate` on CPU or CUDA, with per-token logprobs.

Logprobs are gathered step by step by a logits processor that keeps only the previous step's
log-softmax (batch x vocab), instead of `output_logits=True`, which would hold every step's
logits (256 steps x 8 rows x 49k vocab x 4 bytes = 400 MB for the embedded model).

KV reuse (on by default, `kv_reuse=False` turns it off): a prompt that extends ids an earlier call
computed (a trajectory's next turn) or that shares a prefix with them or with other rows of its
call (the system and user prompt) prefills only its new tokens; see core.backends.kv_reuse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from loguru import logger
from transformers import LogitsProcessor, LogitsProcessorList

from core.backends.base import Generation, SamplingConfig
from core.backends.kv_reuse import (BatchLayout, PrefixKVStore, build_cache, cache_kwarg, cache_layers, extract_row,
                                    stack_rows, supports_kv_reuse)
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
        self.first_scores_at: float | None = None
        """perf_counter() when the prefill's logits arrived: prefill and decode time apart."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.first_scores_at is None:
            self.first_scores_at = time.perf_counter()
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


def left_padded(prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (rows, longest prompt) long tensors: each prompt ends at the
    last column (left padding with `pad`, mask 0 there), as batched `generate` wants."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        attention[row, width - len(prompt):] = 1
    return ids, attention


@dataclass
class GenerationStats:
    """Running totals of one backend's calls, for benchmarks and logs.

    Prompt tokens run through the model are prefilled (each row's new part; a prefix shared by
    rows of a call counts once); the rest of the prompt tokens are cached (keys and values reused
    from an earlier call or from another row); pads are not counted. prefill_seconds runs from the call's start to the first logits (shared-prefix
    passes included), decode_seconds from there to the end of `generate`.
    """

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0


@dataclass
class HFBackend:
    """Batched generation with a transformers causal LM."""

    model: Any
    tokenizer: Any
    device: str
    name: str = "hf"
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)
    kv_reuse: bool = True
    """Reuse keys and values of ids earlier calls computed (core.backends.kv_reuse); models whose
    cache cannot be spliced per row (sliding-window, hybrid) generate without, whatever this says."""
    kv_cache_mb: float = 1024.0
    """Memory the kept keys and values may take (on the model's device), in MiB."""
    prefill_by_row: bool = False
    """With reuse, prefill each row's new ids in a pass of its own (no padding computed), then
    decode all rows in one batch; False: one padded batched prefill. Batched measured faster on
    16 CPU cores (1.56x against 1.25x over no reuse) and on CUDA (1.10x against 0.64x) with rows of
    equal new lengths (benchmarks/kv_reuse.py --synthetic); by row may win where new lengths
    differ much and cores are few."""
    decode_wave: int | None = 32
    """With reuse, generate at most this many tokens per `model.generate` call and go on with
    the rows that have not stopped, from their kept keys and values: transformers' generate keeps
    decoding a finished row (as padding) until every row of the batch has finished, so one long
    row made the others cost up to max_tokens each (552 tokens kept of 2,048 computed in the
    README's eval, benchmarks/kv_reuse.py). A wave costs one prefilled id per row. None: one call
    for the whole budget."""
    stats: GenerationStats = field(default_factory=GenerationStats)
    _store: PrefixKVStore | None = field(default=None, repr=False)
    _reuse_ok: bool | None = field(default=None, repr=False)
    _weights_seen: tuple | None = field(default=None, repr=False)

    @classmethod
    def load(cls, ref: ModelRef, device: str = "auto", dtype: str = "auto", tokenizer: Any = None,
             kv_reuse: bool = True, kv_cache_mb: float = 1024.0) -> "HFBackend":
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(ref)
        model = load_causal_lm(ref, device=device, dtype=dtype)
        stops = stop_token_ids(tokenizer, model.generation_config)
        logger.info("loaded {} on {} (stop ids {})", ref.name, device, sorted(stops))
        return cls(model=model, tokenizer=tokenizer, device=device, stop_token_ids=frozenset(stops),
                   kv_reuse=kv_reuse, kv_cache_mb=kv_cache_mb)

    def reusing(self) -> bool:
        """Whether calls reuse keys and values: `kv_reuse` and a model that allows it."""
        if not self.kv_reuse:
            return False
        if self._reuse_ok is None:
            self._reuse_ok = supports_kv_reuse(self.model)
            if not self._reuse_ok:
                logger.info("KV reuse off: the model's cache is not all full-attention layers")
        return self._reuse_ok

    def clear_kv_cache(self) -> None:
        """Forget every kept key and value (after the model's weights change, as in training:
        kept keys would belong to the old weights)."""
        if self._store is not None:
            self._store.clear()

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[Generation]:
        """Generate for every prompt at once (core.backends.base.Backend.generate).

        Every prompt needs at least one id; max_tokens[i] >= 1 bounds prompt i's new tokens.
        With `kv_reuse` (and a model that allows it) only ids no earlier call computed are
        prefilled; the generated ids agree with a fresh prefill's up to float rounding (see
        core.backends.kv_reuse).
        """
        if not prompts:
            return []
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token id")
        # A model in training mode (dropout) computes nothing worth keeping.
        if self.reusing() and not self.model.training:
            if self.decode_wave and max(max_tokens) > self.decode_wave:
                return self._generate_in_waves(prompts, max_tokens, sampling)
            return self._generate_reusing(prompts, max_tokens, sampling)
        return self._generate_fresh(prompts, max_tokens, sampling)

    def _generate_in_waves(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[Generation]:
        """`_generate_reusing` in waves of `decode_wave` tokens: after each wave the rows that
        stopped (or spent their budget) leave the batch, and the others go on from their kept
        keys and values (the store holds each row's prompt and all it generated but its last id).

        Greedy ids are those of one call up to float rounding, as with any reuse. Sampling: the
        seed is set once, for the first wave; later waves draw on from the generator's state (a
        reseed per wave would repeat the same random numbers)."""
        n = len(prompts)
        ids: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[float]] = [[] for _ in range(n)]
        stopped = [False] * n
        active = list(range(n))
        wave_sampling = sampling
        while active:
            limits = [min(self.decode_wave, max_tokens[i] - len(ids[i])) for i in active]
            outs = self._generate_reusing([list(prompts[i]) + ids[i] for i in active], limits, wave_sampling)
            wave_sampling = SamplingConfig(sampling.temperature, sampling.top_p, None)
            for i, out in zip(active, outs):
                ids[i] += out.token_ids
                lps[i] += out.logprobs
                stopped[i] = out.finish_reason == "stop"
            active = [i for i in active if not stopped[i] and len(ids[i]) < max_tokens[i]]
        return [Generation(ids[i], lps[i], self.tokenizer.decode(ids[i][:-1] if stopped[i] else ids[i]),
                           "stop" if stopped[i] else "length") for i in range(n)]

    def _weights_version(self) -> tuple:
        """Changes when any parameter is replaced or modified in place (an optimizer step, a
        LoRA merge, load_state_dict): torch bumps a tensor's version counter on every in-place
        op. Writes through `param.data` escape it, so trainers should also call clear_kv_cache."""
        return tuple((p.data_ptr(), p._version) for p in self.model.parameters())

    def _generate_fresh(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[Generation]:
        began = time.perf_counter()
        ids, attention = left_padded(prompts, self.tokenizer.pad_token_id)
        width = ids.shape[1]
        out, recorder = self._run_generate(ids, attention, max_tokens, sampling)
        new_tokens = out.sequences[:, width:].cpu()
        logprobs = recorder.collect(out.sequences)
        generations = [
            self._one(new_tokens[row].tolist(), logprobs[row].tolist(), max_tokens[row])
            for row in range(len(prompts))
        ]
        prompt_tokens = sum(len(p) for p in prompts)
        self._count(began, recorder, generations, prompt_tokens, cached=0, prefilled=prompt_tokens)
        return generations

    def _count(self, began: float, recorder: _ChosenLogprobs, generations: list[Generation], prompt_tokens: int,
               cached: int, prefilled: int) -> None:
        ended = time.perf_counter()
        first = recorder.first_scores_at or ended
        st = self.stats
        st.calls += 1
        st.prompt_tokens += prompt_tokens
        st.cached_tokens += cached
        st.prefilled_tokens += prefilled
        st.generated_tokens += sum(len(g.token_ids) for g in generations)
        st.prefill_seconds += first - began
        st.decode_seconds += ended - first

    def _generate_reusing(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[Generation]:
        began = time.perf_counter()
        if self._store is None:
            self._store = PrefixKVStore(max_bytes=int(self.kv_cache_mb * 2**20))
        store = self._store
        weights = self._weights_version()
        if weights != self._weights_seen:  # keys and values of other weights are worthless
            store.clear()
            self._weights_seen = weights
        arrays = [np.asarray(p, dtype=np.int64) for p in prompts]
        # Each row starts from the stored sequence it shares most with; at least its last id is
        # computed here, for its logits.
        plan = [store.match(a, len(a) - 1) for a in arrays]
        prefilled = self._share_prefixes(arrays, plan)
        if self.prefill_by_row:
            # All but each row's last id; generate then prefills one id a row, with no padding.
            for b, a in enumerate(arrays):
                if len(a) - plan[b][1] > 1:
                    entry, done = self._prefill_prefix(a[:-1])
                    plan[b] = (entry, len(a) - 1)
                    prefilled += done
        for entry, _ in plan:
            if entry is not None:
                store.touch(entry)
        layout = BatchLayout([c for _, c in plan], [len(a) - c for a, (_, c) in zip(arrays, plan)])
        pad = self.tokenizer.pad_token_id
        ids, attention = layout.inputs(prompts, pad)
        kwargs: dict[str, Any] = {}
        if layout.cache_width:
            like = next(e.kv for e, c in plan if e is not None and c)
            stacked = stack_rows([e.kv if e is not None else None for e, _ in plan], layout.cached,
                                 layout.cache_width, like)
            kwargs[cache_kwarg(self.model)] = build_cache(stacked, self.model.config)
            del stacked
        out, recorder = self._run_generate(ids, attention, max_tokens, sampling, **kwargs)
        kwargs.clear()
        width = layout.width
        new_tokens = out.sequences[:, width:].cpu()
        logprobs = recorder.collect(out.sequences)
        generations = [
            self._one(new_tokens[row].tolist(), logprobs[row].tolist(), max_tokens[row])
            for row in range(len(prompts))
        ]
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        del out
        if cache is not None:
            layers = cache_layers(cache)
            for b, gen in enumerate(generations):
                # The last generated id was never fed back, so it has no keys and values.
                kept = len(gen.token_ids) - 1
                kv = extract_row(layers, b, layout.columns(b, kept))
                store.add(np.concatenate([arrays[b], np.asarray(gen.token_ids[:kept], dtype=np.int64)]), kv)
            del layers, cache
        store.end_call()
        prompt_tokens = sum(len(a) for a in arrays)
        prefilled += sum(layout.new)
        self._count(began, recorder, generations, prompt_tokens, cached=max(0, prompt_tokens - prefilled),
                    prefilled=prefilled)
        return generations

    def _share_prefixes(self, arrays: list[np.ndarray], plan: list) -> int:
        """Compute once the prefixes that rows of this call share beyond what the store holds
        (the system and user prompt at the first turn; a GRPO group's question), and point those
        rows' plans at them. Returns the tokens computed."""
        computed = 0
        pending = list(range(len(arrays)))
        while len(pending) > 1:
            b, others = pending[0], pending[1:]
            shared = {o: _common_prefix(arrays[b], arrays[o]) for o in others}
            best = min(max(shared.values()), len(arrays[b]) - 1)
            if best <= plan[b][1]:
                pending.pop(0)
                continue
            group = [b] + [o for o in others if shared[o] >= best and plan[o][1] < best and len(arrays[o]) > best]
            if len(group) < 2:
                pending.pop(0)
                continue
            entry, done = self._prefill_prefix(arrays[b][:best])
            computed += done
            for g in group:
                plan[g] = (entry, best)
            pending = [p for p in pending if p not in group]
        if computed:  # a prefix computed for one group may serve rows outside it (the system prompt)
            for b, a in enumerate(arrays):
                entry, cached = self._store.match(a, len(a) - 1)
                if cached > plan[b][1]:
                    plan[b] = (entry, cached)
        return computed

    def _prefill_prefix(self, ids: np.ndarray):
        """Keys and values of `ids` (one sequence) in the store, computing only what no stored
        sequence shares with it. Returns (its entry, tokens computed)."""
        store = self._store
        entry, cached = store.match(ids, len(ids))
        if entry is not None and cached == len(ids):  # rows take only its first len(ids) tokens
            return entry, 0
        kwargs: dict[str, Any] = {}
        if cached:
            kwargs[cache_kwarg(self.model)] = build_cache(
                stack_rows([entry.kv], [cached], cached, entry.kv), self.model.config)
        new = torch.as_tensor(ids[cached:], dtype=torch.long, device=self.device).unsqueeze(0)
        positions = torch.arange(cached, len(ids), device=self.device).unsqueeze(0)
        out = self.model(input_ids=new, position_ids=positions,
                         attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=self.device),
                         use_cache=True, logits_to_keep=1, **kwargs)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        kv = extract_row(cache_layers(cache), 0, torch.arange(len(ids)))
        store.add(ids.copy(), kv)
        return store.entries[-1], len(ids) - cached

    def _run_generate(self, ids: torch.Tensor, attention: torch.Tensor, max_tokens: Sequence[int],
                      sampling: SamplingConfig, **kwargs):
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
            pad_token_id=self.tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([recorder]),
            return_dict_in_generate=True,
            use_cache=True,
            **kwargs,
        )
        return out, recorder

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


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two id arrays."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n
