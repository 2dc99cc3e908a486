"""Real-model throughput: a whole evaluation's tokens/s against raw batched `generate`.

The evaluation (embedded SmolLM2-135M on the demo corpus, greedy) runs through `evaluate()` with
everything it does: prompts, batched generation with logprobs, tool-call parsing, BM25 search,
token bookkeeping, drift checks, rewards and SQLite writes. Every batch it sends to the model is
recorded, then replayed through plain `model.generate` (same batches, same limits, no logprobs,
nothing else). Greedy decoding makes both produce the same tokens, so the ratio of tokens/s is
the share of model time the engine keeps. The judge is `exact` so no judge generation is mixed
into either side.

    .venv/bin/python benchmarks/model_throughput.py [--questions 16] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from loguru import logger

from core.backends import SamplingConfig, create_backend
from core.backends.hf import left_padded
from core.config import EvalConfig
from core.evaluate import evaluate
from core.models import resolve_model


class Recording:
    """Wraps a backend and keeps every (prompts, limits) it was asked to generate for."""

    def __init__(self, inner):
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.stop_token_ids = inner.stop_token_ids
        self.name = inner.name
        self.calls: list[tuple[list[list[int]], list[int]]] = []

    def generate(self, prompts, max_tokens, sampling):
        self.calls.append(([list(p) for p in prompts], list(max_tokens)))
        return self.inner.generate(prompts, max_tokens, sampling)


@torch.inference_mode()
def replay(backend, calls) -> tuple[int, float]:
    """Plain batched generate on the recorded batches: (tokens kept, seconds)."""
    model, pad, stops = backend.model, backend.tokenizer.pad_token_id, backend.stop_token_ids
    tokens, began = 0, time.perf_counter()
    for prompts, limits in calls:
        ids, mask = left_padded(prompts, pad)
        width = ids.shape[1]
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(limits), do_sample=False,
                             eos_token_id=sorted(stops), pad_token_id=pad)
        for row, limit in enumerate(limits):
            new = out[row, width:].tolist()[:limit]
            end = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
            tokens += end
    return tokens, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens-per-turn", type=int, default=96)
    args = parser.parse_args()
    logger.remove()  # the table is the output
    backend = Recording(create_backend("hf", resolve_model("default"), device="cpu"))
    config = EvalConfig(split="all", limit=args.questions, batch_size=args.batch_size, judge="exact",
                        max_tokens_per_turn=args.max_tokens_per_turn)
    warm = backend.tokenizer("warm up the kernels", add_special_tokens=False)["input_ids"]
    backend.inner.generate([warm] * args.batch_size, [8] * args.batch_size, SamplingConfig())
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        summary = evaluate(config, Path(tmp) / "bench.db", backend=backend)
        eval_seconds = time.perf_counter() - began
    eval_tokens = summary["generated_tokens"]
    raw_tokens, raw_seconds = replay(backend.inner, backend.calls)
    a, b = eval_tokens / eval_seconds, raw_tokens / raw_seconds
    print(f"embedded SmolLM2-135M, CPU, {args.questions} questions, batch {args.batch_size}, "
          f"{len(backend.calls)} generate calls, greedy")
    print(f"{'side':<34} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'ratio':>6}")
    print(f"{'raw model.generate (replayed)':<34} {raw_tokens:>7} {raw_seconds:>8.1f} {b:>7.1f} {1:>5.2f}x")
    print(f"{'rl-inspect evaluate (everything)':<34} {eval_tokens:>7} {eval_seconds:>8.1f} {a:>7.1f} {a / b:>5.2f}x")


if __name__ == "__main__":
    main()
