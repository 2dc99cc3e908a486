"""KV-cache reuse for the `hf` backend: a prompt that extends ids the model has already seen
computes only its new tokens.

The backend keeps "token ids in" (as vLLM's automatic prefix caching does, so the coming vLLM and
OpenAI-server backends need no session handle): after every call it keeps each row's keys and
values (prompt plus generated ids, but the last generated id, whose KV was never computed) in a
`PrefixKVStore`. At the next call each prompt takes the stored row with which it shares the longest
common token prefix (its own previous turn, or any row's system and user prompt), and only the rest
of the prompt is prefilled. Rows of one call that share a prefix longer than anything stored (the
system and user prompt at the first turn; the N samples of one GRPO question) have it computed once.

Layout of one call (`BatchLayout`), row b having c_b cached and s_b new prompt tokens::

    cache part (width C = max c)         new part (width S = max s)      generated ...
    [ pad x (C - c_b) | cached c_b ]     [ pad x (S - s_b) | new s_b ]   [ t0 t1 ... ]

The attention mask is 0 on both pads. transformers' `generate` derives position ids from the mask
(`attention_mask.cumsum(-1) - 1`, GenerationMixin._prepare_position_ids_for_generation) and the
causal mask from cache columns (masking_utils), so every real token keeps the position it had when
its KV was computed: the gap in the middle of a row is invisible to it. Keys are stored after the
rotary embedding, so they are valid only at their original positions, which is what they keep.

What the installed transformers (5.24) offers, and why this is built on the cache API instead:
- `generate_batch` (continuous batching, paged attention) runs on CPU, returns per-token logprobs
  (`ContinuousBatchingConfig(return_logprobs=True)`) and shares prefix blocks, but at page
  granularity (256 tokens by default: the tail of a turn is recomputed), through a manager thread;
  on a tiny Llama on CPU one call of 3 prompts x 8 tokens took 26 s of start-up. Not for 2 cores.
- `DynamicCache` can be built from tensors (`ddp_cache_data`), cropped and batch-selected, and
  `generate(input_ids=full, attention_mask=full, cache=pre-filled)` prefills only the columns
  past the cache. That is what is used here.
- Models whose cache is not all full-attention `DynamicLayer`s (sliding windows, linear attention,
  hybrid) are not handled: `supports_kv_reuse` says no and the backend generates as before.

Exactness: the reused keys and values were computed in another forward pass (another batch shape,
padding, or one token at a time while decoding), so they can differ from a fresh prefill in the last
bits of float arithmetic (as a fresh prefill differs between batch sizes); greedy tokens then agree
except at near-ties of the top two logits. tests/test_kv_reuse.py and benchmarks/kv_reuse.py
measure it; `HFBackend(kv_reuse=False)` turns reuse off.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch


def supports_kv_reuse(model: Any) -> bool:
    """True when `model` is a decoder whose DynamicCache holds only full-attention `DynamicLayer`s:
    the only kind whose keys and values can be spliced per row (see the module docstring)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    try:
        cache = DynamicCache(config=config)
    except Exception:  # a config transformers cannot map onto cache layers: no reuse, not a crash
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


def cache_kwarg(model: Any) -> str:
    """The name `generate` and `forward` take a cache under: "cache" since transformers 5.x
    renamed it, "past_key_values" before (still accepted, deprecated, until 6.0)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@dataclass
class _Entry:
    ids: np.ndarray
    """The token ids whose keys and values `kv` holds, in order."""
    kv: torch.Tensor
    """(layers, 2, kv_heads, len(ids), head_dim): keys [:, 0] and values [:, 1], on the model's device."""
    last_used: int


@dataclass
class PrefixKVStore:
    """Keys and values of token-id sequences the model has computed, found by longest common prefix.

    Bounded two ways: at most `max_bytes` of keys and values held in all (least recently used
    entries go first), and an entry not used by `max_idle_calls` consecutive calls is freed (a
    finished trajectory's row; an LLM judge's call between two turns does not free the turns'
    rows). Memory per token: layers x 2 x kv_heads x head_dim x bytes per value (46 KB for
    SmolLM2-135M in float32: 1 GiB holds 23k tokens).
    """

    max_bytes: int = 1 << 30
    max_idle_calls: int = 2
    entries: list[_Entry] = field(default_factory=list)
    calls: int = 0

    @property
    def tokens(self) -> int:
        """Tokens held in all entries."""
        return sum(len(e.ids) for e in self.entries)

    @property
    def bytes(self) -> int:
        """Bytes of keys and values held in all entries."""
        return sum(e.kv.numel() * e.kv.element_size() for e in self.entries)

    def clear(self) -> None:
        """Forget every entry (the model's weights changed)."""
        self.entries.clear()

    def match(self, prompt: np.ndarray, limit: int) -> tuple[_Entry | None, int]:
        """The entry sharing the longest common prefix with `prompt`, and that length (at most
        `limit`, at least 0; (None, 0) when nothing is shared)."""
        best, best_len = None, 0
        for entry in self.entries:
            n = min(len(entry.ids), len(prompt), limit)
            if n <= best_len:
                continue
            differ = np.flatnonzero(entry.ids[:n] != prompt[:n])
            shared = int(differ[0]) if differ.size else n
            if shared > best_len:
                best, best_len = entry, shared
        return best, best_len

    def touch(self, entry: _Entry) -> None:
        """Mark `entry` used by the current call (it is not idle)."""
        entry.last_used = self.calls

    def add(self, ids: np.ndarray, kv: torch.Tensor) -> None:
        """Keep `kv` for `ids`; entries that `ids` extends are dropped (the new one covers them)."""
        kept = []
        for e in self.entries:
            if len(e.ids) <= len(ids) and np.array_equal(e.ids, ids[: len(e.ids)]):
                continue
            kept.append(e)
        kept.append(_Entry(ids, kv, self.calls))
        self.entries = kept

    def end_call(self) -> None:
        """Free idle entries and trim to `max_bytes`, oldest use first; count one call."""
        self.entries = [e for e in self.entries if self.calls - e.last_used < self.max_idle_calls]
        self.entries.sort(key=lambda e: e.last_used)
        total = self.bytes
        while self.entries and total > self.max_bytes:
            gone = self.entries.pop(0)
            total -= gone.kv.numel() * gone.kv.element_size()
        self.calls += 1


@dataclass
class BatchLayout:
    """Where each row's tokens sit in one call's columns (see the module docstring)."""

    cached: list[int]
    """c_b: tokens of row b whose KV comes from the store."""
    new: list[int]
    """s_b: prompt tokens of row b computed in this call."""

    @property
    def cache_width(self) -> int:
        return max(self.cached)

    @property
    def new_width(self) -> int:
        return max(self.new)

    @property
    def width(self) -> int:
        return self.cache_width + self.new_width

    def inputs(self, prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), both (rows, width) long tensors on the CPU."""
        c_w, n_w = self.cache_width, self.new_width
        ids = torch.full((len(prompts), c_w + n_w), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, prompt in enumerate(prompts):
            c, s = self.cached[b], self.new[b]
            row = torch.as_tensor(list(prompt), dtype=torch.long)
            ids[b, c_w - c: c_w] = row[:c]
            mask[b, c_w - c: c_w] = 1
            ids[b, c_w + n_w - s:] = row[c:]
            mask[b, c_w + n_w - s:] = 1
        return ids, mask

    def columns(self, b: int, generated: int) -> torch.Tensor:
        """Column indices of row b's real tokens in a cache that went on `generated` columns past
        the prompt part: its cached, new and first `generated` generated tokens, in order."""
        c_w, n_w = self.cache_width, self.new_width
        return torch.cat([
            torch.arange(c_w - self.cached[b], c_w),
            torch.arange(c_w + n_w - self.new[b], c_w + n_w + generated),
        ])


def stack_rows(kv_rows: Sequence[torch.Tensor | None], cached: Sequence[int], width: int,
               like: torch.Tensor) -> torch.Tensor:
    """(layers, 2, rows, kv_heads, width, head_dim): row b's first cached[b] stored tokens
    right-aligned, zeros on the left (masked). `like` gives layers, heads, head_dim, dtype, device."""
    layers, two, heads, _, dim = like.shape
    out = torch.zeros((layers, two, len(kv_rows), heads, width, dim), dtype=like.dtype, device=like.device)
    for b, (kv, c) in enumerate(zip(kv_rows, cached)):
        if c:
            out[:, :, b, :, width - c:] = kv[:, :, :, :c]
    return out


def build_cache(stacked: torch.Tensor, config: Any):
    """A DynamicCache holding `stacked` (layers, 2, rows, kv_heads, width, head_dim)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(stacked[i, 0], stacked[i, 1]) for i in range(stacked.shape[0])],
                        config=config)


def cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(keys, values)] per layer, each (rows, kv_heads, columns, head_dim)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def extract_row(layers: list[tuple[torch.Tensor, torch.Tensor]], b: int, columns: torch.Tensor) -> torch.Tensor:
    """Row b's keys and values at `columns`: (layers, 2, kv_heads, len(columns), head_dim), a copy."""
    columns = columns.to(layers[0][0].device)
    return torch.stack([torch.stack([k[b].index_select(1, columns), v[b].index_select(1, columns)])
                        for k, v in layers])
