"""Import throughput and peak memory of `rl-inspect import`, per format, at two sizes.

    .venv/bin/python benchmarks/import_speed.py [--sizes 10000 100000] [--formats jsonl verl inspect]

For each format and size it writes a source file (outside the timing) and imports it in a fresh
process of its own into a fresh database, reporting trajectories per second and that process's
peak resident memory (ru_maxrss). Streaming means the peak stays about flat as the source grows
tenfold; the table prints the ratio of the two peaks next to the ratio of the two sizes.

Sources, each a 4-message search-agent chat (system, user, assistant with a tool call, tool
result of ~120 words) per trajectory:
  jsonl    the documented JSONL with tokens (ids, mask, logprobs of ~300 tokens), rewards,
           step and group: what `rl-inspect export --format jsonl` writes.
  verl     one folder of {step}.jsonl files in verl's `_dump_generations` layout, 1,000
           records per step (text only).
  inspect  one `.eval` log written by inspect_ai's own `write_eval_log` (needs the `inspect`
           extra; samples with messages, a tool call, a score).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_WORDS = ("observatory founded island coast archive record survey telescope harbour council "
          "mountain river treaty charter museum station").split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def write_jsonl(path: Path, n: int) -> None:
    rng = random.Random(1)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            ids = [rng.randrange(50_000) for _ in range(300)]
            mask = [0] * 200 + [1] * 40 + [0] * 40 + [1] * 20
            logprobs = [None if m == 0 else round(-rng.random(), 4) for m in mask]
            rec = {"messages": [{"role": "system", "content": "You are a search agent."},
                                {"role": "user", "content": f"Question {i}: where was it founded?"},
                                {"role": "assistant", "content": '{"name": "search_corpus"}',
                                 "tool_call": {"name": "search_corpus", "arguments": {"query": f"q{i}"}}},
                                {"role": "tool", "content": _text(rng, 120)},
                                {"role": "assistant", "content": "On the island."}],
                   "tokens": {"ids": ids, "mask": mask, "logprobs": logprobs},
                   "reward": 1.0, "rewards": {"correct": 1.0}, "step": i // 1000, "group_id": (i // 8) % 125,
                   "advantage": 0.5, "question": f"Question {i}", "answer": "the island"}
            f.write(json.dumps(rec) + "\n")


def write_verl(folder: Path, n: int) -> None:
    rng = random.Random(2)
    folder.mkdir()
    per_step = 1000
    for step in range(1, (n + per_step - 1) // per_step + 1):
        with (folder / f"{step}.jsonl").open("w", encoding="utf-8") as f:
            for i in range(min(per_step, n - (step - 1) * per_step)):
                f.write(json.dumps({"input": f"user\nQuestion {i // 8}: where?\nassistant\n",
                                    "output": _text(rng, 120), "gts": "the island", "score": rng.random(),
                                    "step": step}) + "\n")


def write_inspect(path: Path, n: int) -> None:
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalSample, EvalSpec, write_eval_log
    from inspect_ai.model import (ChatMessageAssistant, ChatMessageSystem, ChatMessageTool, ChatMessageUser,
                                  ModelOutput)
    from inspect_ai.scorer import Score
    from inspect_ai.tool import ToolCall

    rng = random.Random(3)

    def samples():
        for i in range(n):
            call = ToolCall(id=f"c{i}", function="search_corpus", arguments={"query": f"q{i}"})
            yield EvalSample(
                id=i, epoch=1, input=f"Question {i}: where was it founded?", target="the island",
                messages=[ChatMessageSystem(content="You are a search agent."),
                          ChatMessageUser(content=f"Question {i}: where was it founded?"),
                          ChatMessageAssistant(content="", tool_calls=[call]),
                          ChatMessageTool(content=_text(rng, 120), tool_call_id=f"c{i}", function="search_corpus"),
                          ChatMessageAssistant(content="On the island.")],
                output=ModelOutput.from_content("mockllm/model", "On the island."),
                scores={"match": Score(value="C", answer="On the island.")})

    log = EvalLog(status="success",
                  eval=EvalSpec(created="2026-11-30T00:00:00+00:00", task="bench",
                                dataset=EvalDataset(samples=n, sample_ids=list(range(n))),  # as `inspect eval` writes
                                model="mockllm/model", config=EvalConfig()),
                  samples=list(samples()))
    write_eval_log(log, str(path))


WRITERS = {"jsonl": ("run.jsonl", write_jsonl), "verl": ("rollouts", write_verl),
           "inspect": ("run.eval", write_inspect)}


def _child(source: str, db: str) -> None:
    import resource

    sys.path.insert(0, str(ROOT))
    from core.importers import import_paths

    began = time.perf_counter()
    results = import_paths(db, [source])
    seconds = time.perf_counter() - began
    n = sum(count for r in results for _, _, count in r.runs)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"trajectories": n, "seconds": seconds, "peak_mib": peak_kib / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--formats", nargs="+", default=list(WRITERS), choices=list(WRITERS))
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"{'format':>8} {'trajectories':>13} {'source MiB':>11} {'write s':>8} {'import s':>9} "
          f"{'traj/s':>8} {'peak MiB':>9}")
    for fmt in args.formats:
        peaks = []
        for n in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                name, writer = WRITERS[fmt]
                source = Path(tmp) / name
                began = time.perf_counter()
                writer(source, n)
                wrote = time.perf_counter() - began
                size = (sum(p.stat().st_size for p in source.iterdir()) if source.is_dir()
                        else source.stat().st_size) / 2**20
                out = subprocess.run([sys.executable, __file__, "--child", str(source), str(Path(tmp) / "i.db")],
                                     capture_output=True, text=True, check=True, cwd=ROOT)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                peaks.append(r["peak_mib"])
                print(f"{fmt:>8} {r['trajectories']:>13,} {size:>11.1f} {wrote:>8.1f} {r['seconds']:>9.1f} "
                      f"{r['trajectories'] / r['seconds']:>8,.0f} {r['peak_mib']:>9.0f}", flush=True)
        if len(peaks) > 1:
            print(f"{'':>8} peak memory x{peaks[-1] / peaks[0]:.2f} for x{args.sizes[-1] / args.sizes[0]:.0f} "
                  f"trajectories")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
