"""Combine databases written by several processes into one (`rl-inspect merge OUT IN...`).

Each writer process of a multi-GPU or multi-node job writes its own database (SQLite has one
writer at a time, and a file shared over a network file system is not safe to write from two
hosts). `merge_databases` copies their runs into one file:

- **Identity.** A run is the same run in two files when its kind, name, model, configuration,
  created_at (seconds, microsecond resolution), host and pid are equal: the writer that created
  it stored them once and every copy keeps them. Row ids differ between files and are renumbered.
- **Idempotent.** A run already in OUT is copied again only when the incoming copy is further
  along (more trajectories finished, or the same number and a later update): the old copy is
  replaced whole, never mixed with the new one. Merging the same files twice changes nothing.
  Of two inputs holding the same run, the one further along wins.
- **Nothing lost.** Every trajectory with its messages, tokens (ids, mask, logprobs, trainer
  logprobs), rewards, the run's questions and training steps are copied by SQL inside one
  transaction per run (ATTACH + INSERT ... SELECT), so a killed merge leaves OUT as it was before
  that run. A run's trajectory ids keep their order.
- **Running runs.** A run whose writer is still alive (core.store.liveness) is skipped and named:
  it is merged by a later merge, once it ends. A run whose writer died is copied as interrupted.
- **Versions.** Inputs of any readable schema version (core.store.schema.MIN_READABLE_VERSION up
  to this program's) are read; columns an older file lacks are left NULL. A newer file, a file
  that is not an rl-inspect database, OUT among the inputs, or a missing input raises StoreError
  before anything is written.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from core.store.liveness import effective_status
from core.store.schema import FTS_POSITIONS
from core.store.store import Store, StoreError

_IDENTITY = ("kind", "name", "model", "config", "created_at", "host", "pid")


@dataclass
class MergeReport:
    """What one merge did, per input file."""

    copied: list[tuple[str, int, int]] = field(default_factory=list)
    """(input file, its run id, the run's id in OUT) for each run copied or replaced."""
    replaced: int = 0
    """Of the copied runs, how many replaced an older copy already in OUT."""
    unchanged: list[tuple[str, int]] = field(default_factory=list)
    """(input file, run id) of runs OUT already held as far along."""
    skipped_running: list[tuple[str, int, str]] = field(default_factory=list)
    """(input file, run id, 'pid P on HOST') of runs still being written."""
    trajectories: int = 0
    """Trajectories copied in all."""


def merge_databases(out: str | Path, inputs: Sequence[str | Path]) -> MergeReport:
    """Copy every run of `inputs` into database `out` (created when missing), as the module
    docstring says. Returns a MergeReport. Raises StoreError naming the file when an input is
    missing, unreadable, of a newer schema, or the same file as `out`."""
    out = Path(out)
    paths = [Path(p) for p in inputs]
    for path in paths:
        if out.exists() and path.exists() and path.resolve() == out.resolve():
            raise StoreError(f"{path}: is the output database; name it only as OUT")
        Store.open_readonly(path).close()  # missing, not a database, or too new: refused up front
    report = MergeReport()
    with Store.open(out) as dest:
        dest.heartbeat = None  # merging claims no run
        for path in paths:
            _merge_one(dest, path, report)
    return report


def _merge_one(dest: Store, path: Path, report: MergeReport) -> None:
    conn = dest.conn
    # A plain path: the store's connection is not opened with URI filenames enabled, so a
    # "file:...?mode=ro" here would name a new file. The input is only read (SELECT).
    conn.execute("ATTACH DATABASE ? AS src", (str(path.resolve()),))
    try:
        src_runs = [dict(zip([c[0] for c in cur.description], row)) for cur in [conn.execute(
            "SELECT * FROM src.runs ORDER BY id")] for row in cur.fetchall()]
        id_map: dict[int, int] = {}
        for run in src_runs:
            status = effective_status(run)
            if status == "running":
                report.skipped_running.append((str(path), run["id"], f"pid {run.get('pid')} on {run.get('host')}"))
                continue
            existing = _find(conn, run)
            if existing is not None and not _further_along(run, existing):
                report.unchanged.append((str(path), run["id"]))
                id_map[run["id"]] = existing["id"]
                continue
            with dest.transaction():
                new_id = _copy_run(conn, run, status, id_map)
                report.trajectories += _copy_children(conn, run["id"], new_id)
                if existing is not None:  # the new copy is whole: the old one goes, its links move
                    conn.execute("UPDATE main.runs SET parent_run_id=? WHERE parent_run_id=?", (new_id, existing["id"]))
                    _delete_run(conn, existing["id"])
                    report.replaced += 1
            id_map[run["id"]] = new_id
            report.copied.append((str(path), run["id"], new_id))
    finally:
        conn.execute("DETACH DATABASE src")


def _find(conn: sqlite3.Connection, run: dict) -> dict | None:
    where = " AND ".join(f"{c} IS ?" for c in _IDENTITY)
    cur = conn.execute(f"SELECT id, n_done, updated_at FROM main.runs WHERE {where}",
                       [run.get(c) for c in _IDENTITY])
    row = cur.fetchone()
    return None if row is None else {"id": row[0], "n_done": row[1], "updated_at": row[2]}


def _further_along(run: dict, existing: dict) -> bool:
    return (run["n_done"], run["updated_at"] or 0) > (existing["n_done"], existing["updated_at"] or 0)


def _columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """Columns of `table` in OUT, and the expressions that read them from src (NULL where the
    input's older schema lacks a column)."""
    dest_cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
    src_cols = {r[1] for r in conn.execute(f"PRAGMA src.table_info({table})")}
    return dest_cols, [c if c in src_cols else "NULL" for c in dest_cols]


def _copy_run(conn: sqlite3.Connection, run: dict, status: str, id_map: dict[int, int]) -> int:
    cols, exprs = _columns(conn, "runs")
    keep = [(c, e) for c, e in zip(cols, exprs) if c != "id"]
    values = []
    for c, e in keep:
        if c == "status":
            values.append(status)
        elif c == "parent_run_id":
            parent = run.get("parent_run_id")
            values.append(id_map.get(parent) if parent is not None else None)
        else:
            values.append(run.get(c) if e != "NULL" else None)
    cur = conn.execute(f"INSERT INTO main.runs ({', '.join(c for c, _ in keep)}) "
                       f"VALUES ({', '.join('?' for _ in keep)})", values)
    return int(cur.lastrowid)


def _copy_children(conn: sqlite3.Connection, src_run: int, new_run: int) -> int:
    """Copy the run's questions, train steps, trajectories and what hangs off them; returns
    the number of trajectories copied."""
    for table in ("questions", "train_steps"):
        cols, exprs = _columns(conn, table)
        sel = ", ".join("?" if c == "run_id" else e for c, e in zip(cols, exprs))
        conn.execute(f"INSERT INTO main.{table} ({', '.join(cols)}) SELECT {sel} FROM src.{table} WHERE run_id=?",
                     (new_run, src_run))
    low, high, n = conn.execute("SELECT min(id), max(id), count(*) FROM src.trajectories WHERE run_id=?",
                                (src_run,)).fetchone()
    if not n:
        return 0
    top = conn.execute("SELECT coalesce(max(id), 0) FROM main.trajectories").fetchone()[0]
    offset = top + 1 - low  # new id = old id + offset: order kept, no collision
    cols, exprs = _columns(conn, "trajectories")
    sel = ", ".join("id + :off" if c == "id" else (":run" if c == "run_id" else e) for c, e in zip(cols, exprs))
    conn.execute(f"INSERT INTO main.trajectories ({', '.join(cols)}) SELECT {sel} FROM src.trajectories "
                 "WHERE run_id=:src", {"off": offset, "run": new_run, "src": src_run})
    in_run = "trajectory_id IN (SELECT id FROM src.trajectories WHERE run_id=:src)"
    for table in ("messages", "tokens", "rewards"):
        cols, exprs = _columns(conn, table)
        pairs = [(c, e) for c, e in zip(cols, exprs) if not (table == "messages" and c == "id")]
        sel = ", ".join("trajectory_id + :off" if c == "trajectory_id" else e for c, e in pairs)
        conn.execute(f"INSERT INTO main.{table} ({', '.join(c for c, _ in pairs)}) SELECT {sel} FROM src.{table} "
                     f"WHERE {in_run}", {"off": offset, "src": src_run})
    conn.execute(f"INSERT INTO main.messages_fts(rowid, content) SELECT (trajectory_id + :off) * {FTS_POSITIONS}"
                 f" + position, content FROM src.messages WHERE {in_run}", {"off": offset, "src": src_run})
    return int(n)


def _delete_run(conn: sqlite3.Connection, run_id: int) -> None:
    """Remove a run and everything of it from OUT (its messages' full-text entries go by the
    schema's delete trigger)."""
    in_run = "trajectory_id IN (SELECT id FROM main.trajectories WHERE run_id=?)"
    for table in ("rewards", "tokens", "messages"):
        conn.execute(f"DELETE FROM main.{table} WHERE {in_run}", (run_id,))
    for table in ("trajectories", "questions", "train_steps"):
        conn.execute(f"DELETE FROM main.{table} WHERE run_id=?", (run_id,))
    conn.execute("DELETE FROM main.runs WHERE id=?", (run_id,))
