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
- **Shards.** The runs of `rl-inspect eval --shard I/N` (configuration `shard: [I, N]` and `job`)
  are not copied apart: the N shard runs of one job become one run of OUT (configuration without
  `shard`, with `shards: N`; name without the "-shardIofN" ending), whose trajectories are every
  shard's. The ranks of a multi-process `rl-inspect train` (`shard: [rank, world size]`) are
  joined the same way into one train run. What each part was when copied, and the ids its
  trajectories got, are kept in `run_parts`; a part is replaced (its trajectories deleted and
  copied again) only when the incoming copy is further along, by the rule above. The merged run's counters are recounted from its
  trajectories; it is 'done' when all N parts are merged and done, 'failed' or 'cancelled' when a
  part is, else 'interrupted' with an error naming the missing parts.
- **Versions.** Inputs of any readable schema version (core.store.schema.MIN_READABLE_VERSION up
  to this program's) are read; columns an older file lacks are left NULL. A newer file, a file
  that is not an rl-inspect database, OUT among the inputs, or a missing input raises StoreError
  before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

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
    parts: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(input file, its run id, shard index, the merged run's id in OUT) of each shard run copied
    into a merged run (also listed in `copied`)."""


_SHARD_SUFFIX = re.compile(r"-shard(\d+)of(\d+)\Z")


def shard_name(name: str, index: int, count: int) -> str:
    """The run name of shard `index` of `count`: "NAME-shard{index}of{count}"; merge takes the
    ending off again for the merged run."""
    return f"{name}-shard{index}of{count}"


def job_digest(config: dict[str, Any]) -> str:
    """The default job id of a configuration's shards or ranks: 12 hex digits of the SHA-256 of its
    JSON (sorted keys) without `shard` and `job`, the same in every process of one command."""
    data = {k: v for k, v in config.items() if k not in ("shard", "job")}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def merged_run(store: Store, kind: str, job: str) -> int | None:
    """The id of the run that merged the parts of `job` in `store` (None before any was merged)."""
    row = store.conn.execute("SELECT id FROM runs WHERE kind=? AND json_extract(config, '$.job')=?"
                             " AND json_extract(config, '$.shard') IS NULL ORDER BY id LIMIT 1", (kind, job)).fetchone()
    return None if row is None else int(row[0])


def _merged_name(name: str, index: int, count: int) -> str:
    match = _SHARD_SUFFIX.search(name)
    if match and (int(match.group(1)), int(match.group(2))) == (index, count):
        return name[:match.start()]
    return name


Summarise = Callable[[Store, int], dict[str, Any]]


def merge_databases(out: str | Path, inputs: Sequence[str | Path], summarise: Summarise | None = None
                    ) -> MergeReport:
    """Copy every run of `inputs` into database `out` (created when missing), as the module
    docstring says. `summarise(store, run_id)` (core.evaluate.run_summary at the CLI) rewrites the
    summary of each merged shard run; None leaves it empty. Returns a MergeReport. Raises
    StoreError naming the file when an input is missing, unreadable, of a newer schema, or the same
    file as `out`."""
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
            _merge_one(dest, path, report, summarise)
    return report


def _merge_one(dest: Store, path: Path, report: MergeReport, summarise: Summarise | None) -> None:
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
            shard = _shard_of(run)
            if shard is not None:
                _merge_part(dest, path, run, status, shard, report, summarise, id_map)
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
                    dest.delete_run(existing["id"])
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


def _copy_children(conn: sqlite3.Connection, src_run: int, new_run: int, *, into_merged: bool = False) -> int:
    """Copy the run's questions, train steps, merged parts, trajectories and what hangs off them;
    returns the number of trajectories copied. into_merged: the run joins a merged run that may
    hold its questions already (every shard stores them all): those are kept, not doubled."""
    tables = ("questions", "train_steps") if into_merged else ("questions", "train_steps", "run_parts")
    for table in tables:
        if not _has_table(conn, "src", table):
            continue  # run_parts: an input older than version 5
        cols, exprs = _columns(conn, table)
        sel = ", ".join("?" if c == "run_id" else e for c, e in zip(cols, exprs))
        conn.execute(f"INSERT {'OR IGNORE ' if into_merged else ''}INTO main.{table} ({', '.join(cols)}) "
                     f"SELECT {sel} FROM src.{table} WHERE run_id=?", (new_run, src_run))
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




def _has_table(conn: sqlite3.Connection, schema: str, table: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type='table' AND name=?",
                        (table,)).fetchone() is not None


# -- shards -------------------------------------------------------------------------------------

def _shard_of(run: dict) -> tuple[int, int, str] | None:
    """(index, count, job) of a shard run; None for any other run (or a configuration that is
    not readable JSON: such a run is copied as it is)."""
    try:
        config = json.loads(run.get("config") or "{}")
    except ValueError:
        return None
    shard, job = (config.get("shard"), config.get("job")) if isinstance(config, dict) else (None, None)
    if (isinstance(shard, list) and len(shard) == 2 and all(type(x) is int for x in shard)
            and 0 <= shard[0] < shard[1] and isinstance(job, str) and job):
        return shard[0], shard[1], job
    return None


_PART_COLUMNS = ("created_at", "host", "pid", "status", "error", "n_planned", "n_done", "generation_seconds",
                 "updated_at", "finished_at")


def _merge_part(dest: Store, path: Path, run: dict, status: str, shard: tuple[int, int, str],
                report: MergeReport, summarise: Summarise | None, id_map: dict[int, int]) -> None:
    """Copy shard run `run` of input `path` into its job's merged run of OUT (made on first need)."""
    conn = dest.conn
    index, count, job = shard
    merged = _find_merged(conn, run["kind"], job, count)
    if merged is not None:
        part = conn.execute("SELECT n_done, updated_at FROM main.run_parts WHERE run_id=? AND part=?",
                            (merged, index)).fetchone()
        if part is not None and not _further_along(run, {"n_done": part[0], "updated_at": part[1]}):
            report.unchanged.append((str(path), run["id"]))
            id_map[run["id"]] = merged
            return
    with dest.transaction():
        if merged is None:
            merged = _new_merged_run(conn, run, index, count)
        else:
            _delete_part(conn, merged, index)
        top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM main.trajectories").fetchone()[0]
        copied = _copy_children(conn, run["id"], merged, into_merged=True)
        report.trajectories += copied
        # The part's ids keep their source's gaps (another run's trajectories may sit between them).
        first, last = conn.execute("SELECT MIN(id), MAX(id) FROM main.trajectories WHERE run_id=? AND id>?",
                                   (merged, top)).fetchone()
        conn.execute(f"INSERT INTO main.run_parts (run_id, part, parts, {', '.join(_PART_COLUMNS)}, first_id, last_id)"
                     f" VALUES (?, ?, ?, {', '.join('?' for _ in _PART_COLUMNS)}, ?, ?)",
                     (merged, index, count, *[status if c == "status" else run.get(c) for c in _PART_COLUMNS],
                      first, last))
        _recount(conn, merged, run["kind"], count)
        if summarise is not None:
            conn.execute("UPDATE main.runs SET summary=? WHERE id=?", (json.dumps(summarise(dest, merged)), merged))
    id_map[run["id"]] = merged  # a train rank's held-out eval runs keep their parent
    report.copied.append((str(path), run["id"], merged))
    report.parts.append((str(path), run["id"], index, merged))


def _find_merged(conn: sqlite3.Connection, kind: str, job: str, count: int) -> int | None:
    row = conn.execute("SELECT id FROM main.runs WHERE kind=? AND json_extract(config, '$.job')=?"
                       " AND json_extract(config, '$.shard') IS NULL AND json_extract(config, '$.shards')=?"
                       " ORDER BY id LIMIT 1", (kind, job, count)).fetchone()
    return None if row is None else int(row[0])


def _new_merged_run(conn: sqlite3.Connection, run: dict, index: int, count: int) -> int:
    """The merged run's row, from the first part merged: its configuration without `shard`, with
    `shards`; no writer (pid and host NULL: no process holds it); counters set by _recount."""
    config = json.loads(run["config"])
    config.pop("shard", None)
    config["shards"] = count
    cur = conn.execute(
        "INSERT INTO main.runs (kind, name, model, status, config, n_planned, created_at, updated_at)"
        " VALUES (?, ?, ?, 'interrupted', ?, 0, ?, ?)",
        (run["kind"], _merged_name(run["name"], index, count), run["model"], json.dumps(config, sort_keys=True),
         run["created_at"], run["updated_at"] or run["created_at"]))
    return int(cur.lastrowid)


def _delete_part(conn: sqlite3.Connection, merged: int, index: int) -> None:
    """Remove part `index`'s trajectories (its run_parts id range) and what hangs off them, and its
    run_parts row, from merged run `merged`."""
    row = conn.execute("SELECT first_id, last_id FROM main.run_parts WHERE run_id=? AND part=?",
                       (merged, index)).fetchone()
    if row is not None and row[0] is not None:
        doomed = "SELECT id FROM main.trajectories WHERE run_id=? AND id BETWEEN ? AND ?"
        args = (merged, row[0], row[1])
        for table in ("rewards", "tokens", "messages"):
            conn.execute(f"DELETE FROM main.{table} WHERE trajectory_id IN ({doomed})", args)
        conn.execute("DELETE FROM main.trajectories WHERE run_id=? AND id BETWEEN ? AND ?", args)
    conn.execute("DELETE FROM main.run_parts WHERE run_id=? AND part=?", (merged, index))


def _recount(conn: sqlite3.Connection, merged: int, kind: str, count: int) -> None:
    """Set the merged run's counters from its trajectories (as Store.finish_trajectory counts them:
    finished trajectories only) and its status, times and error from its parts. Planned: an eval's
    questions (every shard stores them all); a train run's ranks each plan the same share."""
    parts = [dict(zip(("part", "status", "error", "generation_seconds", "updated_at", "finished_at"), row))
             for row in conn.execute("SELECT part, status, error, generation_seconds, updated_at, finished_at"
                                     " FROM main.run_parts WHERE run_id=? ORDER BY part", (merged,))]
    statuses = {p["status"] for p in parts}
    missing = sorted(set(range(count)) - {p["part"] for p in parts})
    if not missing and statuses == {"done"}:
        status, error = "done", None
    else:
        status = next((s for s in ("failed", "cancelled") if s in statuses), "interrupted")
        said = [f"shard {p['part']}/{count} {p['status']}" + (f": {p['error']}" if p["error"] else "")
                for p in parts if p["status"] != "done"]
        if missing:
            said.append(f"shards not merged yet: {', '.join(str(m) for m in missing)} of {count}")
        error = "; ".join(said)
    finished = max((p["finished_at"] or 0 for p in parts), default=0) if status == "done" else None
    conn.execute(
        "UPDATE main.runs SET status=:status, error=:error, finished_at=:finished,"
        " updated_at=(SELECT MAX(updated_at) FROM main.run_parts WHERE run_id=:r),"
        " generation_seconds=(SELECT COALESCE(SUM(generation_seconds), 0) FROM main.run_parts WHERE run_id=:r),"
        " n_planned=(CASE WHEN :kind='eval' THEN (SELECT COUNT(*) FROM main.questions WHERE run_id=:r)"
        "   ELSE (SELECT MAX(n_planned) FROM main.run_parts WHERE run_id=:r) * :count END),"
        " (n_done, n_correct, n_judged, n_with_tool_error, reward_sum, generated_tokens)=("
        "   SELECT COUNT(*), COALESCE(SUM(correct=1), 0), COALESCE(SUM(correct IS NOT NULL), 0),"
        "   COALESCE(SUM(tool_errors>0), 0), COALESCE(SUM(reward), 0), COALESCE(SUM(generated_tokens), 0)"
        "   FROM main.trajectories WHERE run_id=:r AND status='done')"
        " WHERE id=:r",
        {"status": status, "error": error, "finished": finished or None, "r": merged, "kind": kind,
         "count": count})
