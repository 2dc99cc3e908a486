"""GPU check: rollout throughput of the engine against raw generation on the same prompts, and
one GRPO step. Run on a machine with a CUDA GPU (not a test: CI has none).

    # here, once: the embedded model's tokenizer files (3.5 MB) into a folder that can travel
    .venv/bin/python benchmarks/gpu_check.py --prepare-tokenizer .gpu/tokenizer
    # there
    PYTHONPATH=. python benchmarks/gpu_check.py --tokenizer .gpu/tokenizer [--backend auto|vllm|hf]

The policy is a Llama of a real architecture built from its configuration with random weights
(`--size 1b`: Llama-3.2-1B's dimensions, the default; `135m`: SmolLM2-135M's) over the real
SmolLM2 tokenizer (49,152 ids): the lent GPU machines reach no hub and take no weights with a
command, and throughput does not depend on the weights' values. A random model never calls the
tool and seldom emits a stop id, so every trajectory is one turn of `--tokens` tokens.

Engine: the project's agent loop over a pool of `--questions` demo questions, `--batch-size` at a
time, through the backend (`vllm` when importable, else `hf`), with everything it does per turn:
chat-template rendering, token and mask bookkeeping, per-token logprobs, drift checks; with
`--engine evaluate` (the default when sqlite-utils and bm25s import) the whole `evaluate()`:
BM25, rewards and SQLite writes too. Every batch the engine sends is recorded and replayed as
raw generation: plain `model.generate` (hf) or `llm.generate` without logprobs (vLLM), same
batches, same limits, greedy on both sides, so both produce the same tokens. Goal: ratio >= 0.9.

GRPO: with TRL importable, one `rl-inspect train` step (the `hf` backend's generation; a small
fp32 model of SmolLM2-135M's shape) stored in a database, its step time printed.

The script needs only torch, transformers, numpy and loguru for the agent engine; it prints what
is missing and which wheels to install (`pip install --no-index --find-links .whl ...`).
Runs in well under 5 minutes on an H200 with the defaults.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AGENT_NEEDS = ("torch", "transformers", "tokenizers", "jinja2", "numpy", "loguru")
"""What the agent engine (core.rollout.*, core.backends.hf) imports."""
EVALUATE_NEEDS = ("sqlite_utils", "bm25s", "psutil")
"""What `evaluate()` adds: the store, BM25, the store's liveness check (psutil)."""
OPTIONAL = ("vllm", "trl", "datasets", "accelerate", "peft")
WHEELS = {"loguru": "loguru", "sqlite_utils": "sqlite-utils", "bm25s": "bm25s", "trl": "trl",
          "datasets": "datasets", "psutil": "psutil"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")

SIZES = {
    # Llama-3.2-1B's dimensions (vocab from the tokenizer).
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64, tie_word_embeddings=True, rope_theta=500000.0),
    # SmolLM2-135M's (the embedded model's config.json).
    # For trying the script on a CPU (--device cpu).
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, tie_word_embeddings=True, rope_theta=10000.0),
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, head_dim=64, tie_word_embeddings=True, rope_theta=100000.0),
}


def versions(names) -> dict[str, str | None]:
    """{module: its version, or None when it does not import}."""
    out = {}
    for name in names:
        try:
            mod = importlib.import_module(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except Exception:  # ImportError, or a broken install raising anything at import
            out[name] = None
    return out


def prepare_tokenizer(folder: Path) -> int:
    """Copy the embedded model's tokenizer files into `folder`; prints their size. Run here."""
    from core.models import embedded_model_dir

    source = embedded_model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
            total += (folder / name).stat().st_size
    print(f"copied the tokenizer of {source} to {folder}: {total / 2**20:.1f} MiB")
    return 0


def load_tokenizer(folder: str | None):
    """The tokenizer of --tokenizer (left padding, a pad token), else the ChatML toy tokenizer of
    tests.local_tokenizers (600 ids: an lm_head far smaller than a real model's)."""
    if folder:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
        if tok.chat_template is None:
            raise SystemExit(f"{folder}: the tokenizer has no chat template")
    else:
        from tests.local_tokenizers import chatml_tokenizer

        print("warning: no --tokenizer; using a 600-id toy tokenizer (the lm_head is unrealistically small)")
        tok = chatml_tokenizer()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def build_model(size: str, tok, folder: Path, dtype, device: str):
    """A random LlamaForCausalLM of `size` on `device` in `dtype`, saved with the tokenizer and a
    generation config to `folder` (vLLM and `rl-inspect train` load from a folder)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=8192, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, **SIZES[size])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    model = model.to(dtype).eval()
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model


class Recording:
    """Wraps a backend and keeps every (prompts, limits) it was asked to generate for."""

    def __init__(self, inner):
        self.inner = inner
        self.tokenizer, self.stop_token_ids, self.name = inner.tokenizer, inner.stop_token_ids, inner.name
        self.model = getattr(inner, "model", None)
        self.calls: list[tuple[list[list[int]], list[int]]] = []

    def generate(self, prompts, max_tokens, sampling):
        self.calls.append(([list(p) for p in prompts], list(max_tokens)))
        return self.inner.generate(prompts, max_tokens, sampling)


def engine_agent(backend, questions, batch_size: int, tokens: int) -> tuple[int, float]:
    """The agent loop over a pool, as core.evaluate runs it, without store or rewards:
    (generated tokens, seconds)."""
    from core.backends import SamplingConfig
    from core.rollout.agent import Agent, AgentConfig
    from core.rollout.templates import check_template

    began = time.perf_counter()
    fmt = check_template(backend.tokenizer, "gpu-check", "auto")
    config = AgentConfig(max_generations=2, max_new_tokens=tokens, max_tokens_per_turn=tokens,
                         sampling=SamplingConfig(temperature=0.0))
    agent = Agent(backend, lambda query, k: "Result 1: nothing found.", config, None, fmt)
    queue, pool, generated = list(enumerate(questions)), [], 0
    while queue or pool:
        while queue and len(pool) < batch_size:
            i, q = queue.pop(0)
            pool.append(agent.start(q, i))
        agent.step(pool)
        generated += sum(t.tokens.completion_len for t in pool if t.finished)
        pool = [t for t in pool if not t.finished]
    return generated, time.perf_counter() - began


def engine_evaluate(backend, n: int, batch_size: int, tokens: int, folder: Path) -> tuple[int, float]:
    """The whole `evaluate()` (store, BM25, rewards, drift checks): (generated tokens, seconds)."""
    from core.config import EvalConfig
    from core.evaluate import evaluate

    config = EvalConfig(model="gpu-check-random", demo_chunks=n, split="all", limit=n, batch_size=batch_size,
                        judge="exact", max_generations=2, max_new_tokens=tokens, max_tokens_per_turn=tokens)
    began = time.perf_counter()
    summary = evaluate(config, folder / "gpu-check.db", backend=backend)
    return summary["generated_tokens"], time.perf_counter() - began


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def replay_hf(model, tok, stops, calls) -> tuple[int, float]:
    """Plain batched `model.generate` (greedy, no logprobs) on the recorded batches: (tokens, seconds)."""
    import torch

    from core.backends.hf import left_padded

    pad, stops, device = tok.pad_token_id, set(stops), model.device
    generated = 0
    _sync(device)
    began = time.perf_counter()
    with torch.inference_mode():
        for prompts, limits in calls:
            ids, mask = left_padded(prompts, pad)
            width = ids.shape[1]
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max(limits),
                                 do_sample=False, eos_token_id=sorted(stops), pad_token_id=pad)
            for row, limit in enumerate(limits):
                new = out[row, width:].tolist()[:limit]
                generated += next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
    _sync(device)
    return generated, time.perf_counter() - began


def replay_vllm(llm, stops, calls) -> tuple[int, float]:
    """Plain `llm.generate` (greedy, no logprobs, vLLM's own text) on the recorded batches."""
    import vllm

    generated = 0
    began = time.perf_counter()
    for prompts, limits in calls:
        params = [vllm.SamplingParams(max_tokens=limit, temperature=0.0, stop_token_ids=sorted(stops))
                  for limit in limits]
        outs = llm.generate([vllm.TokensPrompt(prompt_token_ids=p) for p in prompts], sampling_params=params,
                            use_tqdm=False)
        generated += sum(len(o.outputs[0].token_ids) for o in outs)
    return generated, time.perf_counter() - began


def grpo_step(tok, folder: Path, steps: int, device: str = "cuda", size: str = "135m") -> dict:
    """`steps` GRPO steps of `rl-inspect train` on a fp32 random model of `size` (SmolLM2-135M's shape):
    {exit, seconds, mean step seconds, stored trajectories}."""
    import torch

    from inspector.cli import main as cli

    model_dir = folder / f"grpo-{size}"
    model = build_model(size, tok, model_dir, torch.float32, "cpu")
    del model
    db = folder / "grpo.db"
    argv = ["train", "--model", str(model_dir), "--db", str(db), "--device", device, "--demo-chunks", "40",
            "--steps", str(steps), "--questions-per-step", "4", "--num-generations", "4", "--max-new-tokens", "64",
            "--max-tokens-per-turn", "32", "--max-generations", "2", "--name", "gpu-check-grpo"]
    began = time.perf_counter()
    code = cli(argv)
    seconds = time.perf_counter() - began
    result = {"exit": code, "seconds": seconds}
    if code == 0:
        from core.store import Store

        with Store.open_readonly(db) as store:
            run = next(r for r in store.runs() if r["name"] == "gpu-check-grpo")
            times = [s["step_seconds"] for s in store.train_steps(run["id"]) if s.get("step_seconds")]
            result |= {"mean_step_seconds": sum(times) / len(times) if times else None,
                       "trajectories": run["n_done"]}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare-tokenizer", metavar="DIR", help="copy the embedded tokenizer's files to DIR and stop")
    parser.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder (from --prepare-tokenizer)")
    parser.add_argument("--backend", default="auto", choices=["auto", "vllm", "hf"])
    parser.add_argument("--engine", default="auto", choices=["auto", "agent", "evaluate"])
    parser.add_argument("--size", default="1b", choices=sorted(SIZES))
    parser.add_argument("--questions", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=256, help="tokens per trajectory (one turn)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    parser.add_argument("--grpo-steps", type=int, default=1, help="0: skip the GRPO step")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu to try the script itself "
                        "(with --size tiny --backend hf)")
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = parser.parse_args()
    if args.prepare_tokenizer:
        return prepare_tokenizer(Path(args.prepare_tokenizer))

    found = versions(AGENT_NEEDS + EVALUATE_NEEDS + OPTIONAL)
    print("modules: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in found.items()), flush=True)
    missing = [m for m in AGENT_NEEDS if found[m] is None]
    if missing:
        wheels = " ".join(WHEELS.get(m, m) for m in missing)
        print(f"missing (the agent engine needs them): {' '.join(missing)}; "
              f"install: pip install --no-index --find-links .whl {wheels}")
        return 2
    import torch

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU: this check measures GPU throughput (the CPU figures are model_throughput.py's)")
        return 2
    from loguru import logger

    logger.remove()  # the table is the output
    backend_kind = args.backend if args.backend != "auto" else ("vllm" if found["vllm"] else "hf")
    if backend_kind == "vllm" and not found["vllm"]:
        print("--backend vllm: vllm does not import here")
        return 2
    engine = args.engine
    if engine == "auto":
        engine = "evaluate" if all(found[m] for m in EVALUATE_NEEDS) else "agent"
    elif engine == "evaluate" and not all(found[m] for m in EVALUATE_NEEDS):
        lacking = [m for m in EVALUATE_NEEDS if not found[m]]
        print(f"--engine evaluate needs {' '.join(lacking)}: pip install --no-index --find-links .whl "
              f"{' '.join(WHEELS.get(m, m) for m in lacking)}")
        return 2

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    print(f"torch {torch.__version__}, {gpu}; backend {backend_kind}, engine {engine}, model {args.size} "
          f"(random weights, {str(dtype).replace('torch.', '')})", flush=True)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="rl-inspect-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(args.tokenizer)
    from core.data.demo_data import generate_demo
    from core.rollout.chat import stop_token_ids

    _, questions = generate_demo(args.questions, seed=0)
    model_dir = work / f"random-{args.size}"
    model = build_model(args.size, tok, model_dir, dtype, device)
    stops = frozenset(stop_token_ids(tok, model.generation_config))
    from core.backends import SamplingConfig

    if backend_kind == "vllm":
        del model
        gc.collect()
        torch.cuda.empty_cache()
        from core.backends.vllm_backend import VLLMBackend
        from core.models import ModelRef

        inner = VLLMBackend.load(ModelRef(f"random-{args.size}", str(model_dir)), tokenizer=tok, dtype="bfloat16",
                                 gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=8192)
    else:
        from core.backends.hf import HFBackend

        inner = HFBackend(model=model, tokenizer=tok, device=device, stop_token_ids=stops)
    warm = tok("warm up the kernels", add_special_tokens=False)["input_ids"]
    inner.generate([warm] * args.batch_size, [8] * args.batch_size, SamplingConfig())
    backend = Recording(inner)
    if engine == "evaluate":
        engine_tokens, engine_seconds = engine_evaluate(backend, args.questions, args.batch_size, args.tokens, work)
    else:
        engine_tokens, engine_seconds = engine_agent(backend, questions, args.batch_size, args.tokens)
    if backend_kind == "vllm":
        raw_tokens, raw_seconds = replay_vllm(inner.llm, stops, backend.calls)
    else:
        raw_tokens, raw_seconds = replay_hf(model, tok, stops, backend.calls)
    engine_rate, raw_rate = engine_tokens / engine_seconds, raw_tokens / raw_seconds
    figures = {"gpu": gpu, "backend": backend_kind, "engine": engine, "model": args.size,
               "questions": args.questions, "batch_size": args.batch_size, "tokens": args.tokens,
               "calls": len(backend.calls), "engine_tokens": engine_tokens, "engine_seconds": engine_seconds,
               "raw_tokens": raw_tokens, "raw_seconds": raw_seconds, "engine_tok_s": engine_rate,
               "raw_tok_s": raw_rate, "ratio": engine_rate / raw_rate}
    del backend, inner
    if backend_kind == "hf":
        del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    if args.grpo_steps > 0 and found["trl"] and found["datasets"]:
        figures["grpo"] = grpo_step(tok, work, args.grpo_steps, device,
                                    "135m" if device.startswith("cuda") else "tiny")
    elif args.grpo_steps > 0:
        figures["grpo"] = {"skipped": "trl or datasets does not import: pip install --no-index --find-links .whl "
                                      "trl datasets"}

    print(f"\n{args.questions} questions, pool {args.batch_size}, {args.tokens} tokens a trajectory, greedy, "
          f"{figures['calls']} generate calls")
    print("| GPU | backend | engine | model | engine tok/s | raw tok/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {gpu} | {backend_kind} | {engine} | {args.size} random | {engine_rate:,.0f} | {raw_rate:,.0f} | "
          f"{figures['ratio']:.2f} |")
    print(f"engine {engine_tokens} tokens in {engine_seconds:.2f} s; raw {raw_tokens} tokens in {raw_seconds:.2f} s")
    grpo = figures.get("grpo")
    if grpo is not None:
        print(f"GRPO: {json.dumps(grpo)}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    ok = figures["ratio"] >= 0.9 and (grpo is None or "skipped" in grpo or grpo.get("exit") == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
