"""Import throughput and peak memory of `rl-inspect import`, per format, at two sizes.

    .venv/bin/python benchmarks/import_speed.py [--sizes 10000 100000]
        [--formats jsonl verl inspect verifiers prime-rl] [--sources DIR [--write-only]] [--open]

For each format and size it writes a source file (outside the timing) and imports it in a fresh
process of its own into a fresh database, reporting trajectories per second and that process's
peak resident memory (ru_maxrss). Streaming means the peak stays about flat as the source grows
tenfold; the table prints the ratio of the two peaks next to the ratio of the two sizes.

--sources DIR writes each source to DIR/<format>-<n>/ and reuses it when a later run finds it
there complete (the write column then says "reused"), so a slow writer (inspect_ai's takes ~100 s
per 10,000 samples) runs once, in advance (with --write-only: write, import nothing), and the
timing runs later on a quiet machine.

--open also times the TUI on the imported database, headless (Textual's Pilot) as
benchmarks/tui_startup.py drives it: create_app → runs screen drawn, and opening the imported run
→ its first trajectories page (a train run, prime-rl's, opens on its steps screen: that, then `a`
→ all its trajectories' first page), each in a fresh process, next to the same times on a native
database of as many trajectories written by rl-inspect itself (benchmarks/build_big_db.py: an eval
run, or a train run of 1,000 trajectories a step; kept as DIR/native-<kind>-<n>.db with
--sources). Each time is the median of --repeat runs after one untimed warm-up of each database.

Sources, each a 4-message search-agent chat (system, user, assistant with a tool call, tool
result of ~120 words) per trajectory:
  jsonl    the documented JSONL with tokens (ids, mask, logprobs of ~300 tokens), rewards,
           step and group: what `rl-inspect export --format jsonl` writes.
  verl     one folder of {step}.jsonl files in verl's `_dump_generations` layout, 1,000
           records per step (text only).
  inspect  one `.eval` log written by inspect_ai's own `write_eval_log` (needs the `inspect`
           extra; samples with messages, a tool call, a score).
  verifiers  a vf-eval (verifiers 0.3) results folder: results.jsonl, one RolloutOutput per
           rollout, 8 rollouts per example, each a copy of the first record of
           tests/fixtures/verifiers/results/results.jsonl (written by verifiers' own code) with
           its example_id, texts, tool call and reward changed; metadata.json the fixture's with
           env_id, counts and averages changed (text only).
  prime-rl a prime-rl output folder: rollouts/step_N/train/effective/traces.jsonl, 1,000 v1
           episodes per step, groups of 8, each a copy of the first episode of the fixture
           tests/fixtures/verifiers_v1/prime_rl/rollouts/step_1/train/effective/traces.jsonl
           (verifiers 0.4's own objects) with its ids, texts, reward and tokens changed: ~300
           token ids over its 5 message nodes, with mask, logprobs and the GRPO advantage on the
           ~55 sampled ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
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

    spec = EvalSpec(created="2026-11-30T00:00:00+00:00", task="bench",
                    dataset=EvalDataset(samples=n, sample_ids=list(range(n))),  # as `inspect eval` writes
                    model="mockllm/model", config=EvalConfig())
    if n <= 10_000:  # inspect_ai's write_eval_log: the whole log built in memory, then written
        write_eval_log(EvalLog(status="success", eval=spec, samples=list(samples())), str(path))
        return
    # Larger: write_eval_log did not finish 100,000 samples in 33 minutes here (superlinear), so the
    # samples go one at a time through inspect_ai's own EvalRecorder, the writer `inspect eval`
    # uses while a task runs (log_init, log_start, log_sample..., log_finish): the same .eval layout.
    import asyncio

    from inspect_ai.log import EvalPlan, EvalStats
    from inspect_ai.log._recorders.eval import EvalRecorder

    async def record() -> None:
        recorder = EvalRecorder(str(path.parent))
        await recorder.log_init(spec, str(path), clean=True)
        await recorder.log_start(spec, EvalPlan())
        for i, sample in enumerate(samples(), 1):
            await recorder.log_sample(spec, sample)
            if i % 1000 == 0:
                await recorder.flush(spec)
        await recorder.log_finish(spec, "success", EvalStats(), None, None)

    asyncio.run(record())


VERIFIERS_FIXTURE = ROOT / "tests/fixtures/verifiers/results"
PRIME_RL_FIXTURE = ROOT / "tests/fixtures/verifiers_v1/prime_rl/rollouts/step_1/train/effective/traces.jsonl"
GROUP = 8
"""Rollouts per example (verifiers) and per GRPO group (prime-rl)."""


def write_verifiers(folder: Path, n: int) -> None:
    rng = random.Random(4)
    folder.mkdir()
    template = (VERIFIERS_FIXTURE / "results.jsonl").read_text(encoding="utf-8").splitlines()[0]
    total = 0.0
    with (folder / "results.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n):
            e = i // GROUP
            rec = json.loads(template)  # a fresh copy of the fixture's record, in verifiers' shape
            system, user = rec["prompt"]
            call_msg, tool_msg, final = rec["completion"]
            system["content"] = "You are a search agent."
            user["content"] = f"Question {e}: where was it founded?"
            call = json.loads(call_msg["tool_calls"][0])  # verifiers saves each call as JSON text
            call.update(id=f"call_{i}", name="search_corpus", arguments=json.dumps({"query": f"q{e}"}))
            call_msg["content"] = "Let me search the corpus."
            call_msg["tool_calls"] = [json.dumps(call)]
            tool_msg["tool_call_id"] = call["id"]
            tool_msg["content"] = _text(rng, 120)
            right = rng.random() < 0.5
            final["content"] = "On the island." if right else "By the river."
            reward = 1.0 if right else 0.0
            total += reward
            rec["example_id"], rec["answer"], rec["reward"] = e, "On the island.", reward
            rec["metrics"]["correct"] = rec["correct"] = reward
            rec["metrics"]["add_calls"] = rec["add_calls"] = 0.0
            f.write(json.dumps(rec) + "\n")
    meta = json.loads((VERIFIERS_FIXTURE / "metadata.json").read_text(encoding="utf-8"))
    meta.update(env_id="bench-search", num_examples=(n + GROUP - 1) // GROUP, rollouts_per_example=GROUP,
                avg_reward=total / n)
    meta["avg_metrics"]["correct"] = total / n
    (folder / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")


def _node_tokens(rng: random.Random, node: dict, n_ids: int, sampled: int, advantage: float) -> None:
    """Give a fixture node n_ids random token ids, the last `sampled` of them model-sampled (an
    assistant node's first ids are the template's generation prompt, not sampled, as in the fixture),
    with a logprob and the advantage on each sampled one."""
    node["token_ids"] = [rng.randrange(50_000) for _ in range(n_ids)]
    node["mask"] = [False] * (n_ids - sampled) + [True] * sampled
    node["logprobs"] = [round(-rng.random(), 4) for _ in range(sampled)]
    if sampled:
        node["advantages"] = [advantage] * sampled


def write_prime_rl(folder: Path, n: int) -> None:
    rng = random.Random(5)
    per_step = 1000
    template = PRIME_RL_FIXTURE.read_text(encoding="utf-8").splitlines()[0]
    for step in range(1, (n + per_step - 1) // per_step + 1):
        out = folder / "rollouts" / f"step_{step}" / "train" / "effective"
        out.mkdir(parents=True)
        lo, hi = (step - 1) * per_step, min(n, step * per_step)
        with (out / "traces.jsonl").open("w", encoding="utf-8") as f:
            for g0 in range(lo, hi, GROUP):
                size = min(GROUP, hi - g0)
                rewards = [float(rng.random() < 0.5) for _ in range(size)]
                mean = sum(rewards) / size
                q = g0 // GROUP
                for k, reward in enumerate(rewards):
                    ep = json.loads(template)  # a fresh copy of the fixture's episode, in prime-rl's shape
                    ep["id"] = f"episode-s{step}-{q}-{k}"
                    ep["group"]["id"] = f"group-s{step}-{q}"
                    ep["run"].update(id="bench-run", name="bench-grpo")
                    ep["run"]["work"]["step"] = step
                    trace = ep["traces"][0]
                    trace["id"] = f"trace-s{step}-{q}-{k}"
                    for task in (ep["task"], trace["task"]):
                        task["data"].update(idx=q, prompt=f"Question {q}: where was it founded?",
                                            system_prompt="You are a search agent.", answer="On the island.")
                        task.update(key=f"search-{q}", hash=f"hash-{q}")
                    system, user, call_node, tool_node, final = trace["nodes"]
                    call = call_node["message"]["tool_calls"][0]
                    call.update(id=f"call_{q}_{k}", name="search_corpus", arguments=json.dumps({"query": f"q{q}"}))
                    call_node["message"]["content"] = "Let me search the corpus."
                    system["message"]["content"] = "You are a search agent."
                    user["message"]["content"] = f"Question {q}: where was it founded?"
                    tool_node["message"].update(tool_call_id=call["id"], name="search_corpus",
                                                content=_text(rng, 120))
                    final["message"]["content"] = "On the island." if reward else "By the river."
                    advantage = reward - mean
                    for node, n_ids, sampled in ((system, 25, 0), (user, 30, 0), (call_node, 40, 29),
                                                 (tool_node, 170, 0), (final, 35, 24)):
                        _node_tokens(rng, node, n_ids, sampled, advantage)
                    trace["rewards"]["correct"]["score"] = reward
                    trace["metrics"]["exact"] = reward
                    f.write(json.dumps(ep, separators=(",", ":")) + "\n")  # orjson's compact form


WRITERS = {"jsonl": ("run.jsonl", write_jsonl), "verl": ("rollouts", write_verl),
           "inspect": ("run.eval", write_inspect), "verifiers": ("results", write_verifiers),
           "prime-rl": ("prime-rl", write_prime_rl)}
DONE = ".complete"
"""Written into DIR/<format>-<n>/ once its source is whole: a source without it is written again."""


def _source(fmt: str, n: int, sources: Path | None, tmp: str) -> tuple[Path, float | None]:
    """The source of `fmt` with n trajectories and its write time, None when reused from `sources`."""
    name, writer = WRITERS[fmt]
    folder = Path(tmp) if sources is None else sources / f"{fmt}-{n}"
    source = folder / name
    if sources is not None:
        if (folder / DONE).is_file() and source.exists():
            return source, None
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    began = time.perf_counter()
    writer(source, n)
    wrote = time.perf_counter() - began
    if sources is not None:
        (folder / DONE).write_text(f"{n} trajectories, written in {wrote:.1f} s\n", encoding="utf-8")
    return source, wrote


def _size_mib(source: Path) -> float:
    files = source.rglob("*") if source.is_dir() else [source]
    return sum(p.stat().st_size for p in files if p.is_file()) / 2**20


TRAIN = {"prime-rl"}
"""Formats imported as a train run (opened on its steps screen); the others are eval runs."""


def _native_db(n: int, kind: str, sources: Path | None, tmp: str) -> tuple[Path, str]:
    """(a database rl-inspect itself wrote holding a run of `kind` with n trajectories, that run's
    name), by build_big_db: an eval run alone, or a train run of 1,000 trajectories a step as the
    prime-rl source has (beside an eval run of n/8, build_big_db's questions for its groups)."""
    path = (sources if sources is not None else Path(tmp)) / f"native-{kind}-{n}.db"
    size = ["--n", str(n), "--train", "0"] if kind == "eval" else \
        ["--n", str(max(1, n // GROUP)), "--train", str(n), "--group", str(GROUP), "--groups-per-step", str(1000 // GROUP)]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/build_big_db.py"), str(path), *size],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"build_big_db failed:\n{out.stderr[-4000:]}")
    return path, "big-eval" if kind == "eval" else "big-train"


def _tui_child(db: str, run_id: int) -> None:
    import asyncio
    import resource

    sys.path.insert(0, str(ROOT))
    from inspector.tui.app import create_app
    from inspector.tui.screens.steps import StepsScreen
    from inspector.tui.screens.trajectories import TrajectoriesScreen
    from inspector.tui.widgets.paged_table import PagedTable
    from tui_startup import _ready

    async def measure() -> dict:
        began = time.perf_counter()
        app = create_app(db, refresh_seconds=0)
        async with app.run_test(size=(140, 40)) as pilot:
            await _ready(pilot)
            start = time.perf_counter() - began
            table = app.screen.query_one("#runs-table")
            table.move_cursor(row=table.get_row_index(str(run_id)))
            t = time.perf_counter()
            await pilot.press("enter")
            while not isinstance(app.screen, (TrajectoriesScreen, StepsScreen)):
                await asyncio.sleep(0.005)
            await _ready(pilot)
            r = {"start": start, "open": time.perf_counter() - t}
            if isinstance(app.screen, StepsScreen):  # a train run opens on its steps; `a`: all its trajectories
                r["steps"] = r.pop("open")
                t = time.perf_counter()
                await pilot.press("a")
                await _ready(pilot, TrajectoriesScreen)
                r["all"] = time.perf_counter() - t
            r["rows"] = app.screen.query_one(PagedTable).row_count
            return r

    r = asyncio.run(measure())
    r["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(r))


def _json_child(*args: str, timeout: float | None = None) -> dict:
    """Run this script with `args` in a fresh process; its last stdout line as JSON (its stderr
    shown when it fails)."""
    try:
        out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT,
                             stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        sys.exit(f"{' '.join(args)}: no answer in {timeout} s:\n{(exc.stderr or b'')[-4000:]!r}")
    if out.returncode:
        sys.exit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


STEPS = {"start": "start → runs screen drawn", "open": "open run → first page",
         "steps": "open run → steps screen", "all": "`a` → all: first page"}


def _tui(db: Path, run_id: int, repeat: int) -> dict:
    """Median start and open times of `repeat` fresh processes, after one untimed warm-up."""
    runs = []
    for _ in range(repeat + 1):
        runs.append(_json_child("--tui-child", str(db), str(run_id), timeout=600))
    runs = runs[1:]
    out = {k: statistics.median(r[k] for r in runs) for k in STEPS if k in runs[0]}
    return {**out, "rows": runs[0]["rows"], "peak_mib": max(r["peak_mib"] for r in runs)}


def _run_id(db: Path, name: str) -> int:
    sys.path.insert(0, str(ROOT))
    from core.store import Store

    with Store.open_readonly(db) as store:
        return store.conn.execute("SELECT id FROM runs WHERE name=?", (name,)).fetchone()[0]


def _child(source: str, db: str) -> None:
    import resource

    sys.path.insert(0, str(ROOT))
    from core.importers import import_paths

    began = time.perf_counter()
    results = import_paths(db, [source])
    seconds = time.perf_counter() - began
    n = sum(count for r in results for _, _, count in r.runs)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"trajectories": n, "seconds": seconds, "peak_mib": peak_kib / 1024,
                      "runs": [[run_id, count] for r in results for run_id, _, count in r.runs]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--formats", nargs="+", default=list(WRITERS), choices=list(WRITERS))
    parser.add_argument("--sources", type=Path, metavar="DIR",
                        help="write each source to DIR/<format>-<n>/ and reuse it when already there")
    parser.add_argument("--write-only", action="store_true", help="write (or find) the sources, import nothing")
    parser.add_argument("--open", action="store_true",
                        help="also time the TUI on each imported database and on a native one of the same size")
    parser.add_argument("--repeat", type=int, default=3, help="TUI runs per database with --open (median)")
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--tui-child", nargs=2, metavar=("DB", "RUN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.tui_child:
        _tui_child(args.tui_child[0], int(args.tui_child[1]))
        return
    if args.write_only and args.sources is None:
        parser.error("--write-only needs --sources DIR")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"{'format':>9} {'trajectories':>13} {'source MiB':>11} {'write s':>8} {'import s':>9} "
          f"{'traj/s':>8} {'peak MiB':>9}")
    opened: list[tuple[str, int, dict, dict]] = []
    natives: dict[tuple[int, str], tuple[Path, int]] = {}
    with tempfile.TemporaryDirectory() as keep:  # native databases, for every format of a size
        for fmt in args.formats:
            peaks = []
            for n in args.sizes:
                with tempfile.TemporaryDirectory() as tmp:
                    source, wrote = _source(fmt, n, args.sources, tmp)
                    wrote_s = "reused" if wrote is None else f"{wrote:.1f}"
                    size = _size_mib(source)
                    if args.write_only:
                        print(f"{fmt:>9} {n:>13,} {size:>11.1f} {wrote_s:>8}   {source}", flush=True)
                        continue
                    db = Path(tmp) / "i.db"
                    r = _json_child("--child", str(source), str(db))
                    peaks.append(r["peak_mib"])
                    print(f"{fmt:>9} {r['trajectories']:>13,} {size:>11.1f} {wrote_s:>8} {r['seconds']:>9.1f} "
                          f"{r['trajectories'] / r['seconds']:>8,.0f} {r['peak_mib']:>9.0f}", flush=True)
                    if r["trajectories"] != n:
                        print(f"{'':>9} !! {r['trajectories']:,} trajectories imported, {n:,} written", flush=True)
                    if args.open:
                        kind = "train" if fmt in TRAIN else "eval"
                        if (n, kind) not in natives:
                            native, name = _native_db(n, kind, args.sources, keep)
                            natives[n, kind] = (native, _run_id(native, name))
                        imported = _tui(db, r["runs"][0][0], args.repeat)
                        opened.append((fmt, n, imported, _tui(*natives[n, kind], args.repeat)))
            if len(peaks) > 1:
                print(f"{'':>9} peak memory x{peaks[-1] / peaks[0]:.2f} for x{args.sizes[-1] / args.sizes[0]:.0f} "
                      f"trajectories")
        if opened:
            print(f"\nTUI (headless, Pilot) on the imported database vs a native one of as many trajectories "
                  f"(build_big_db), median of {args.repeat}, ms")
            print(f"{'format':>9} {'trajectories':>13}  {'step':<27} {'imported':>9} {'native':>8} {'ratio':>7}")
            for fmt, n, imp, nat in opened:
                for key, label in STEPS.items():
                    if key not in imp or key not in nat:
                        continue
                    print(f"{fmt:>9} {n:>13,}  {label:<27} {imp[key] * 1e3:>9.0f} {nat[key] * 1e3:>8.0f} "
                          f"{imp[key] / nat[key]:>6.2f}x")
                print(f"{'':>9} {'':>13}  {'peak MiB (first page rows)':<27} {imp['peak_mib']:>9.0f} "
                      f"{nat['peak_mib']:>8.0f}   ({imp['rows']}, {nat['rows']} rows)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
