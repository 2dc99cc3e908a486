"""Time the mask lint (core.lint) over the big database, beside plain full scans in the same run.

    .venv/bin/python benchmarks/build_big_db.py              # once: /tmp/rl-inspect-big.db, 1M trajectories
    .venv/bin/python benchmarks/lint.py [PATH] [--repeat 3] [--build N]

The machine is shared and noisy, so absolute seconds mean little; each case is timed `--repeat`
times, interleaved with the others, after one warm-up read (warm OS cache), and the table gives
the median and its ratio to the cheapest full scan of the same table:

- baseline `SELECT length(ids), length(mask) FROM tokens`: SQLite walks every token row;
- blob read: the three blobs of every row fetched into Python (the floor of any lint in Python);
- spans read: the assistant messages' token spans, as the lint reads them;
- lint: core.lint.lint_run over the big eval run, without and with special ids (the embedded
  SmolLM2 tokenizer's, the same vocabulary as the big database's model; skipped if absent).
  The big database's ids are random, so special ids land in its turns.
- lint with the tokenizer (special_trained and text_mismatch, which decodes every assistant turn):
  only on a database built with `build_big_db.py --real-ids`, whose model is the embedded SmolLM2
  and whose turns hold their text's real ids.

--build N builds a database of N trajectories at PATH first when PATH does not hold one.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lint import lint_run, local_tokenizer, special_token_ids  # noqa: E402
from core.store import Store  # noqa: E402

DEFAULT_PATH = Path("/tmp/rl-inspect-big.db")


def _scan_lengths(store: Store, run_id: int) -> int:
    n = 0
    for _ in store.conn.execute("SELECT length(ids), length(mask) FROM tokens"):
        n += 1
    return n


def _read_blobs(store: Store, run_id: int) -> int:
    cur = store.conn.execute("SELECT ids, mask, logprobs FROM tokens")
    n = 0
    while rows := cur.fetchmany(2048):
        n += len(rows)
    return n


def _read_spans(store: Store, run_id: int) -> int:
    cur = store.conn.execute(
        "SELECT m.trajectory_id, m.token_start, m.token_end FROM trajectories t JOIN messages m"
        " ON m.trajectory_id = t.id WHERE t.run_id = ? AND m.role = 'assistant' AND m.token_start IS NOT NULL"
        " ORDER BY t.id, m.position", (run_id,))
    n = 0
    while rows := cur.fetchmany(8192):
        n += len(rows)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--build", type=int, metavar="N", help="build N trajectories at PATH if it is missing")
    args = parser.parse_args()
    if not args.path.exists():
        if not args.build:
            sys.exit(f"{args.path}: no such database; build it with benchmarks/build_big_db.py (or pass --build N)")
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "build_big_db.py"), str(args.path),
                        "--n", str(args.build)], check=True)
    store = Store.open_readonly(args.path)
    store.conn.execute("PRAGMA cache_size=-65536")
    run_id, n_traj = store.conn.execute(
        "SELECT r.id, COUNT(t.id) FROM runs r JOIN trajectories t ON t.run_id = r.id WHERE r.kind = 'eval'"
        " GROUP BY r.id ORDER BY COUNT(t.id) DESC LIMIT 1").fetchone()
    n_tokens = store.conn.execute("SELECT COUNT(*), SUM(length(mask)) FROM tokens").fetchone()
    special = special_token_ids("embedded:smollm2-135m")
    reports = {}

    def lint(label, ids, tokenizer=False):
        def run(store, run_id):
            report = lint_run(store, run_id, special_ids=ids, tokenizer=tokenizer)
            reports[label] = report
            return report.checked
        return run

    cases = [("baseline: SELECT length(ids), length(mask) FROM tokens", _scan_lengths),
             ("blob read: SELECT ids, mask, logprobs FROM tokens", _read_blobs),
             ("spans read: assistant token spans of the run", _read_spans),
             ("lint_run (no tokenizer)", lint("no tokenizer", None))]
    if special is not None:
        cases.append((f"lint_run + special_trained ({len(special)} special ids)", lint("special ids", special)))
    model = store.run(run_id)["model"]
    tokenizer = local_tokenizer(model)
    if tokenizer is not None:  # a --real-ids database: its turns decode to their text
        cases.append(("lint_run + tokenizer (special_trained, text_mismatch)", lint("tokenizer", None, tokenizer)))
    _read_blobs(store, run_id)  # warm the OS cache
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    rows: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, fn in cases:
            began = time.perf_counter()
            rows[name] = fn(store, run_id)
            times[name].append(time.perf_counter() - began)
    size = args.path.stat().st_size
    print(f"{args.path}: {n_tokens[0]:,} token rows ({n_tokens[1]:,} tokens), {size / 2**30:.2f} GiB; "
          f"eval run {run_id} of {n_traj:,} trajectories; median of {args.repeat}")
    base = statistics.median(times[cases[0][0]])
    print(f"{'case':<58} {'s':>7} {'rows/s':>10} {'ratio':>6}  {'rows':>9}")
    for name, _ in cases:
        t = statistics.median(times[name])
        print(f"{name:<58} {t:>7.2f} {rows[name] / t:>10,.0f} {t / base:>5.1f}x  {rows[name]:>9,}")
    for label, report in reports.items():
        print(f"findings ({label}): " + (", ".join(f"{k} {v:,}" for k, v in report.counts().items()) or "none")
              + (f"; skipped: {', '.join(report.skipped)}" if report.skipped else ""))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
