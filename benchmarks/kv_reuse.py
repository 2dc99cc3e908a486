"""KV-cache reuse in the `hf` backend: the README's main eval with reuse off and on, side by side.

The same evaluation (embedded SmolLM2-135M on the demo corpus, greedy, the main job's settings
unless told otherwise) runs twice in one process over one loaded model: once with
`HFBackend(kv_reuse=False)` (every turn prefills its whole chat, as before) and once with reuse
(only ids no earlier call computed are prefilled; see core/backends/kv_reuse.py). Every
generation of both runs is recorded: "identical" says whether both runs asked the same prompts and
got the same token ids, call by call; when not, the first call and row that differ are printed
with the top-two logit gap there (a near-tie is float rounding, not a bug).

prefill tok/s counts prompt tokens (reused or not) per second of prefill; "computed" counts only
the tokens actually run through the model. decode tok/s is kept generated tokens per second of
decoding. Wall is the whole evaluate() (retrieval, rewards and SQLite included).

    .venv/bin/python benchmarks/kv_reuse.py [--questions 20] [--batch-size 8] [--max-tokens-per-turn 256]

`--synthetic` runs a fixed multi-turn workload instead, on a randomly initialised model of the
embedded model's shape (SmolLM2-135M: 30 layers, width 576; `--tiny` for a 2-layer one) on any
device (`--device cuda`), with no model file and no corpus: rows share a system prompt, each turn
generates `--gen` ids (no stop) and appends `--tool` ids of "tool result". Both sides get the
same prompts every turn (built from the side without reuse), so every row of every turn is
compared; the logit gap is printed for the rows that differ.

    .venv/bin/python benchmarks/kv_reuse.py --synthetic [--device cuda] [--dtype bfloat16] [--turns 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from loguru import logger

from core.backends import SamplingConfig
from core.backends.hf import GenerationStats, HFBackend


class Recording:
    """Wraps a backend and keeps every call's prompts and generated ids."""

    def __init__(self, inner: HFBackend):
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.stop_token_ids = inner.stop_token_ids
        self.name = inner.name
        self.model = inner.model
        self.calls: list[tuple[list[list[int]], list[list[int]]]] = []

    def generate(self, prompts, max_tokens, sampling):
        outs = self.inner.generate(prompts, max_tokens, sampling)
        self.calls.append(([list(p) for p in prompts], [list(o.token_ids) for o in outs]))
        return outs


def first_difference(a, b) -> tuple[int, int] | None:
    """(call, row) of the first prompt or generation that differs between two recordings."""
    for i, ((pa, ga), (pb, gb)) in enumerate(zip(a, b)):
        for row in range(max(len(pa), len(pb))):
            if row >= len(pa) or row >= len(pb) or pa[row] != pb[row] or ga[row] != gb[row]:
                return i, row
    return None if len(a) == len(b) else (min(len(a), len(b)), 0)


@torch.inference_mode()
def top_two_gap(model, prompt: list[int], generated: list[int], other: list[int]) -> str:
    """Logit gap between the two runs' tokens where their generations part (fresh full prefill)."""
    k = next((i for i, (x, y) in enumerate(zip(generated, other)) if x != y), None)
    if k is None:
        return "prompts differ (an earlier divergence)"
    ids = torch.tensor([prompt + generated[:k]], device=model.device)
    logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
    return f"token {k}: logits {logits[generated[k]].item():.6f} vs {logits[other[k]].item():.6f}"


def run(backend: HFBackend, config) -> tuple[Recording, float, dict]:
    from core.evaluate import evaluate

    rec = Recording(backend)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        summary = evaluate(config, Path(tmp) / "bench.db", backend=rec)
        seconds = time.perf_counter() - began
    return rec, seconds, summary


def row(label: str, seconds: float, st: GenerationStats) -> str:
    prefill = st.prompt_tokens / st.prefill_seconds if st.prefill_seconds else 0.0
    computed = st.prefilled_tokens / st.prefill_seconds if st.prefill_seconds else 0.0
    decode = st.generated_tokens / st.decode_seconds if st.decode_seconds else 0.0
    return (f"{label:<10} {seconds:>7.1f} {st.calls:>5} {st.prompt_tokens:>8} {st.prefilled_tokens:>8} "
            f"{st.prefill_seconds:>8.1f} {prefill:>8.0f} {computed:>8.0f} {st.generated_tokens:>6} "
            f"{st.decode_seconds:>7.1f} {decode:>7.1f}")


BY_ROW = {"yes": True, "no": False}

HEADER = (f"{'kv reuse':<10} {'wall s':>7} {'calls':>5} {'prompt':>8} {'computed':>8} {'prefill':>8} "
          f"{'pf tok/s':>8} {'cmp t/s':>8} {'gen':>6} {'decode':>7} {'dec t/s':>7}")


def warm_up(backends: list[HFBackend], batch: int, length: int) -> None:
    """One realistic-size call per side, so neither pays the kernels' first-use cost; then the
    stats and kept keys are reset."""
    prompt = [(7 * i) % 1000 + 10 for i in range(length)]
    for b in backends:
        b.generate([prompt] * batch, [4] * batch, SamplingConfig())
        b.clear_kv_cache()
        b.stats = GenerationStats()


class _StubTokenizer:
    pad_token_id = 0

    def decode(self, ids) -> str:
        return ""


def synthetic(args) -> None:
    """The fixed multi-turn workload of `--synthetic` (see the module docstring)."""
    import random

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    shape = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2) if args.tiny else
             dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3))  # SmolLM2-135M's config.json
    vocab = 49152
    config = LlamaConfig(vocab_size=vocab, max_position_embeddings=8192, tie_word_embeddings=True, **shape)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    model = LlamaForCausalLM(config).to(device=args.device, dtype=dtype).eval()
    stops = frozenset([vocab - 1])
    off = HFBackend(model=model, tokenizer=_StubTokenizer(), device=args.device, stop_token_ids=stops,
                    kv_reuse=False)
    on = HFBackend(model=model, tokenizer=_StubTokenizer(), device=args.device, stop_token_ids=stops,
                   prefill_by_row=BY_ROW[args.prefill_by_row])
    warm_up([off, on], args.batch_size, args.system)
    rng = random.Random(0)
    system = [rng.randrange(10, vocab - 1) for _ in range(args.system)]
    prompts = [system + [rng.randrange(10, vocab - 1) for _ in range(rng.randrange(20, 60))]
               for _ in range(args.batch_size)]
    seconds = {"off": 0.0, "on": 0.0}
    rows = differ = 0
    max_gap = 0.0
    greedy = SamplingConfig()
    for turn in range(args.turns):
        limits = [args.gen] * len(prompts)
        results = {}
        for label, backend in ((("on", on), ("off", off)) if turn % 2 else (("off", off), ("on", on))):
            began = time.perf_counter()
            results[label] = backend.generate(prompts, limits, greedy)
            if str(args.device).startswith("cuda"):
                torch.cuda.synchronize()
            seconds[label] += time.perf_counter() - began
        for p, a, b in zip(prompts, results["off"], results["on"]):
            rows += 1
            if a.token_ids != b.token_ids:
                differ += 1
                print(f"  turn {turn}: " + top_two_gap(model, list(p), a.token_ids, b.token_ids))
            else:
                max_gap = max([max_gap] + [abs(x - y) for x, y in zip(a.logprobs, b.logprobs)])
        prompts = [p + g.token_ids + [rng.randrange(10, vocab - 1) for _ in range(args.tool)]
                   for p, g in zip(prompts, results["off"])]
    name = "tiny Llama" if args.tiny else "random SmolLM2-135M-shaped Llama"
    print(f"{name}, {args.device}, {args.dtype}, prefill by row {args.prefill_by_row}, batch {args.batch_size}, system {args.system} ids, "
          f"{args.turns} turns of {args.gen} generated + {args.tool} tool ids, greedy")
    print(HEADER)
    print(row("off", seconds["off"], off.stats))
    print(row("on", seconds["on"], on.stats))
    print(f"speed-up (generate time): {seconds['off'] / seconds['on']:.2f}x")
    print(f"rows with identical ids: {rows - differ}/{rows}; max |logprob difference| on those: {max_gap:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=None, help="default: the main job's (all 20 test questions)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens-per-turn", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--synthetic", action="store_true", help="the fixed workload on a random model (see above)")
    parser.add_argument("--tiny", action="store_true", help="with --synthetic: a 2-layer model")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--system", type=int, default=600, help="shared system-prompt ids (--synthetic)")
    parser.add_argument("--gen", type=int, default=48, help="ids generated per row and turn (--synthetic)")
    parser.add_argument("--tool", type=int, default=300, help="tool-result ids per row and turn (--synthetic)")
    parser.add_argument("--prefill-by-row", default="no", choices=sorted(BY_ROW),
                        help="HFBackend.prefill_by_row (default no: one batched prefill)")
    args = parser.parse_args()
    logger.remove()  # the table is the output
    if args.synthetic:
        synthetic(args)
        return
    from core.config import EvalConfig
    from core.models import resolve_model

    config = EvalConfig(limit=args.questions, batch_size=args.batch_size, max_tokens_per_turn=args.max_tokens_per_turn)
    fresh = HFBackend.load(resolve_model("default"), device=args.device, kv_reuse=False)
    reuse = HFBackend(model=fresh.model, tokenizer=fresh.tokenizer, device=fresh.device,
                      stop_token_ids=fresh.stop_token_ids, kv_reuse=True, prefill_by_row=BY_ROW[args.prefill_by_row])
    warm_up([fresh, reuse], args.batch_size, 600)
    off, off_s, off_sum = run(fresh, config)
    print(f"off: {off_s:.1f} s", flush=True)
    on, on_s, on_sum = run(reuse, config)
    diff = first_difference(off.calls, on.calls)
    print(f"embedded SmolLM2-135M, {fresh.device}, {off_sum.get('trajectories', '?')} questions, "
          f"batch {args.batch_size}, {len(off.calls)} / {len(on.calls)} generate calls, greedy")
    print(HEADER)
    print(row("off", off_s, fresh.stats))
    print(row("on", on_s, reuse.stats))
    print(f"speed-up (wall): {off_s / on_s:.2f}x; accuracy off {off_sum.get('accuracy')} on {on_sum.get('accuracy')}")
    if diff is None:
        print("identical prompts and generated token ids: yes")
    else:
        call, r = diff
        print(f"identical prompts and generated token ids: no (first difference: call {call}, row {r})")
        if call < min(len(off.calls), len(on.calls)):
            p_off, g_off = off.calls[call][0][r], off.calls[call][1][r]
            g_on = on.calls[call][1][r]
            print("  " + top_two_gap(fresh.model, p_off, g_off, g_on))


if __name__ == "__main__":
    main()
