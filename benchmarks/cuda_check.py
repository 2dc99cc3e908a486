"""`rl-inspect train` and `eval` on CUDA, end to end, through the project's own CLI: the `hf`
backend on a GPU, full fine-tuning and LoRA, and what the store holds afterwards.

Run on a machine with a GPU (not a test: CI has none):

    python benchmarks/cuda_check.py [--out DIR]

The policy is a small random Llama built here with a ChatML tokenizer (tests.local_tokenizers):
the embedded default (a 94 MB package) cannot travel to the lent GPU machines, and nothing
there can be downloaded. A random model does not learn anything useful; this checks that every
CUDA path runs and stores what the CPU path stores (steps, advantages, trainer logprobs), and
prints a table: run, seconds, mean step seconds, trajectories, and the largest
|trainer - rollout| logprob gap on trained tokens (the train-inference mismatch on this GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiny_model(folder: Path) -> str:
    from tests.tiny_models import save_tiny_llama

    return save_tiny_llama(folder, hidden_size=256, layers=4, heads=4, max_positions=4096)


def gaps(db: Path, run_id: int) -> tuple[int, float]:
    """(trajectories with trainer logprobs, largest |trainer - rollout| on trained tokens, nats)."""
    from core.store import Store

    n, worst = 0, 0.0
    with Store.open_readonly(db) as store:
        for (tid,) in store.conn.execute("SELECT id FROM trajectories WHERE run_id=?", (run_id,)).fetchall():
            t = store.tokens(tid)
            if t is None or t.trainer_logprobs is None:
                continue
            n += 1
            for a, b, m in zip(t.logprobs, t.trainer_logprobs, t.mask):
                if m and math.isfinite(a) and math.isfinite(b):
                    worst = max(worst, abs(a - b))
    return n, worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/rl-inspect-cuda-check")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu to try the script itself")
    args = parser.parse_args()
    import torch

    from inspector.cli import main as cli

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
          f"device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'}", flush=True)
    model = tiny_model(out / "tiny-llama")
    db = out / "cuda.db"
    common = ["--model", model, "--db", str(db), "--device", args.device, "--demo-chunks", "40", "--json"]
    train = ["train", *common, "--steps", str(args.steps), "--questions-per-step", "4", "--num-generations", "4",
             "--max-new-tokens", "48", "--max-tokens-per-turn", "24", "--max-generations", "2"]
    runs = [("train full", train + ["--name", "cuda-full"]),
            ("train lora r=8", train + ["--name", "cuda-lora", "--lora-r", "8"]),
            ("eval", ["eval", *common, "--limit", "16", "--name", "cuda-eval", "--max-new-tokens", "48"])]
    rows = []
    for label, argv in runs:
        began = time.perf_counter()
        code = cli(argv)
        seconds = time.perf_counter() - began
        rows.append((label, code, seconds))
        print(f"{label}: exit {code} in {seconds:.1f} s", flush=True)
    from core.store import Store

    print("\n| run | exit | seconds | mean step s | trajectories | with trainer logprobs | max gap (nats) |")
    print("|---|---|---|---|---|---|---|")
    with Store.open_readonly(db) as store:
        stored = {r["name"]: r for r in store.runs()}
        for (label, code, seconds), name in zip(rows, ("cuda-full", "cuda-lora", "cuda-eval")):
            run = stored.get(name)
            if run is None:
                print(f"| {label} | {code} | {seconds:.1f} | – | – | – | – |")
                continue
            steps = store.train_steps(run["id"])
            times = [s["step_seconds"] for s in steps if "step_seconds" in s]
            n, worst = gaps(db, run["id"])
            mean = f"{sum(times) / len(times):.2f}" if times else "–"
            print(f"| {label} | {code} | {seconds:.1f} | {mean} | {run['n_done']} | {n} | {worst:.2e} |")
            if steps:
                print(json.dumps({k: round(v, 4) for k, v in steps[-1].items() if isinstance(v, float)}))
    return 0 if all(code == 0 for _, code, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
