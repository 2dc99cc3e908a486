"""Train the embedded default with `rl-inspect train` on the CPU and print its learning curve.

    python benchmarks/learning_curve.py [--steps 16] [--db /tmp/curve.db] [train options...]

Not a test. The reward is benchmarks/rewards.py's `tool_call_format` alone (a user reward
function through `--reward`: how exactly the first message is a search call, 0 to 1), the reward
a 135M model can move (notes/trl-grpo-on-this-machine.md). The seed's own `formatting` reward
(0.7 when no tool call failed) starts at its ceiling here: a first try gave 0.61-0.70 on every
one of 7 steps. The prompt carries one worked tool call (benchmarks/prompts/worked_example.json),
without which nearly every group has zero reward spread and GRPO gets no signal. The reward
grades the first message only, so one generation turn of up to 64 tokens; everything else is
the command's defaults (2 questions x 4 generations, lr 1e-5, max grad norm 0.1, beta 0). Prints one row per step from what the run stored: reward mean and std, the share of
groups with zero spread (no signal), tool errors per trajectory, completion length, entropy,
loss, grad norm, and step time with the share spent in this project's code
(core.store.queries.StepRow.ours_seconds: rollout minus generate, plus storage).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--db", default="/tmp/rl-inspect-curve.db")
    args, extra = parser.parse_known_args()
    from core.store import Store
    from core.store.queries import train_step_rows
    from inspector.cli import main as cli

    argv = ["train", "--db", args.db, "--steps", str(args.steps), "--name", f"curve-{time.strftime('%H%M%S')}",
            "--reward", "benchmarks.rewards:tool_call_format",
            "--reward-weights", "tool_call_format=1,formatting=0,correctness=0,retry_behavior=0,chunk_hit=0",
            "--prompt-template", str(ROOT / "benchmarks/prompts/worked_example.json"),
            "--max-generations", "1", "--max-new-tokens", "64", "--max-tokens-per-turn", "64", "--json", *extra]
    print("rl-inspect " + " ".join(argv), flush=True)
    began = time.perf_counter()
    code = cli(argv)
    wall = time.perf_counter() - began
    with Store.open_readonly(args.db) as store:
        run = max(store.runs(), key=lambda r: r["id"])
        steps = store.train_steps(run["id"])
        ours = {r.step: r.ours_seconds for r in train_step_rows(store, run["id"])}
        errors = dict(store.conn.execute(
            "SELECT step, AVG(tool_errors) FROM trajectories WHERE run_id=? GROUP BY step", (run["id"],)).fetchall())
    print(f"\nrun {run['id']} ({run['name']}): exit {code}, {len(steps)} steps in {wall:.0f} s wall")
    print("| step | reward | std | zero-spread groups | tool errors / traj | completion tokens | entropy | loss "
          "| grad norm | step s | ours % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        share = ours[s["step"]] / s["step_seconds"] * 100 if s.get("step_seconds") and ours[s["step"]] else float("nan")
        print(f"| {s['step']} | {s.get('reward', float('nan')):.3f} | {s.get('reward_std', float('nan')):.3f} "
              f"| {s.get('frac_reward_zero_std', float('nan')):.2f} | {errors.get(s['step'], float('nan')):.2f} "
              f"| {s.get('completions/mean_length', float('nan')):.1f} | {s.get('entropy', float('nan')):.2f} "
              f"| {s.get('loss', float('nan')):.4f} | {s.get('grad_norm', float('nan')):.3f} "
              f"| {s.get('step_seconds', float('nan')):.1f} | {share:.2f} |")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
