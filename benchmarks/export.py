"""Export throughput and peak memory (`rl-inspect export`, core.store.export) on the big database.

    .venv/bin/python benchmarks/build_big_db.py             # once: /tmp/rl-inspect-big.db, 1M trajectories
    .venv/bin/python benchmarks/export.py [PATH] [--run 1] [--limit N] [--formats jsonl,parquet]

Each format is exported in its own child process (so each peak RSS is its own, from
getrusage(RUSAGE_SELF) in the child) to a file in --out-dir, which is removed afterwards. Every
child also exports the first tenth of the same trajectories first, in a separate measurement of a
fresh process, so the table shows whether peak memory grows with the number exported (it should
not: the export streams chunks). "RSS at start" is the child's resident memory after its imports,
before reading anything. MB/s is output bytes per second.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PATH = Path("/tmp/rl-inspect-big.db")


def _rss_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e6


def child(db: str, run: int, fmt: str, out: str, limit: int | None) -> None:
    """Export once and print a JSON line of measurements (runs in the child process)."""
    from core.store import Store
    from core.store.export import export_run

    if fmt == "parquet":
        import pyarrow.parquet  # noqa: F401  (imported before the start figure, as the export would)
    start_rss = _rss_mb()
    started = time.perf_counter()
    with Store.open_readonly(db) as store:
        stats = export_run(store, run, fmt, out, force=True, limit=limit)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux
    print(json.dumps({"format": fmt, "n": stats.trajectories, "seconds": seconds, "bytes": stats.bytes,
                      "start_rss_mb": start_rss, "peak_rss_mb": peak}))


def _measure(db: Path, run: int, fmt: str, out: Path, limit: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(db), "--run", str(run), "--formats", fmt, "--out-dir", str(out)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("db", nargs="?", default=str(DEFAULT_PATH))
    p.add_argument("--run", type=int, default=1, help="run to export (default: 1, the big eval run)")
    p.add_argument("--limit", type=int, help="export at most this many trajectories (default: the whole run)")
    p.add_argument("--formats", default="jsonl,parquet")
    p.add_argument("--out-dir", help="folder for the output files (default: a temporary folder in /tmp)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        fmt = args.formats
        child(args.db, args.run, fmt, str(Path(args.out_dir) / f"export.{fmt}"), args.limit)
        return
    db = Path(args.db)
    if not db.exists():
        sys.exit(f"{db}: no such database (build it with benchmarks/build_big_db.py)")
    from core.store import Store

    with Store.open_readonly(db) as store:
        total = store.conn.execute("SELECT COUNT(*) FROM trajectories WHERE run_id=?", (args.run,)).fetchone()[0]
    n = total if args.limit is None else min(total, args.limit)
    print(f"export of run {args.run} of {db} ({total:,} trajectories), {n:,} exported; "
          f"a tenth ({n // 10:,}) first for comparison; each case in a fresh process")
    print(f"{'format':<8} {'trajectories':>12} {'seconds':>8} {'traj/s':>8} {'MB out':>8} {'MB/s':>6} "
          f"{'RSS at start MB':>15} {'peak RSS MB':>11}")
    with tempfile.TemporaryDirectory(dir=args.out_dir) as out:
        for fmt in args.formats.split(","):
            for limit in (max(1, n // 10), n):
                m = _measure(db, args.run, fmt, Path(out), limit)
                mb = m["bytes"] / 1e6
                print(f"{fmt:<8} {m['n']:>12,} {m['seconds']:>8.1f} {m['n'] / m['seconds']:>8,.0f} {mb:>8,.0f} "
                      f"{mb / m['seconds']:>6.1f} {m['start_rss_mb']:>15.0f} {m['peak_rss_mb']:>11.0f}", flush=True)
                (Path(out) / f"export.{fmt}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
