"""SQLite storage of runs and every chat state they pass through.

Writers (an eval, a training run) and readers (the TUI, another terminal) are separate
processes; WAL mode lets them work at once and a busy timeout absorbs short locks. Messages are
written as each turn completes, so a running trajectory can be watched; tokens and rewards are
written with the trajectory's final state in one transaction, so a trajectory is either
finished with everything, or still marked running/interrupted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlite_utils
from loguru import logger

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.store.bulk import FinishedTrajectory, write_finished
from core.store.liveness import Heartbeat, RunBusyError, busy_error, effective_status, this_host
from core.store.schema import (ADDED_COLUMNS, FTS_INSERT_SQL, FTS_POSITIONS, MIN_READABLE_VERSION, SCHEMA_VERSION,
                               migrate, read_version)
from core.rollout.tokens import TokenSequence

BUSY_TIMEOUT_MS = 10_000


class StoreError(RuntimeError):
    """A database that cannot be used; the message names the file and what is wrong."""


@dataclass
class TrajectoryOutcome:
    """Everything written when a trajectory finishes."""

    status: str
    finish_reason: str | None
    final_answer: str
    turns: int
    tool_calls: int
    tool_errors: int
    tokens: TokenSequence | None
    rewards: list[RewardResult] = field(default_factory=list)
    reward: float | None = None
    correct: bool | None = None
    advantage: float | None = None
    drift_at: int | None = None
    drift_kind: str | None = None
    """What the drift is (core.rollout.chat.DRIFT_KINDS); None without drift."""
    finish_detail: str | None = None
    """One line on why it ended (template_mismatch, context_length)."""
    generation_seconds: float = 0.0
    token_exact: bool = True
    """False when some generated ids are a re-tokenisation of a server's text (schema version 4)."""


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


class Store:
    """One open database. Use `Store.open` (read-write, creates) or `Store.open_readonly`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool, version: int = SCHEMA_VERSION):
        self.path = path
        self.conn = conn
        self.readonly = readonly
        self.version = version
        """The file's schema version: SCHEMA_VERSION, or older for a file opened read-only."""
        self.db = sqlite_utils.Database(conn)
        self._depth = 0
        self.heartbeat = None if readonly else Heartbeat(path)
        """Refreshes runs.updated_at of the runs this store created or claimed (core.store.liveness)."""

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> "Store":
        """Open for writing, creating the file and schema (or migrating an older one)."""
        path = Path(path)
        if not path.exists() and not create:
            raise StoreError(f"{path}: no such database")
        if path.exists() and path.is_dir():
            raise StoreError(f"{path}: is a folder, not a database file")
        try:
            conn = _connect(path, readonly=False)
            version = _checked_version(conn, path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            if version < SCHEMA_VERSION:
                migrate(conn, version)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open as an SQLite database ({exc})") from None
        return cls(path, conn, readonly=False)

    @classmethod
    def open_readonly(cls, path: str | Path) -> "Store":
        """Open without ever writing: the file, its schema and its journal stay as they are."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such database")
        if path.is_dir():
            raise StoreError(f"{path}: is a folder, not a database file")
        try:
            conn = _connect(path, readonly=True)
            version = _checked_version(conn, path)
            if version < MIN_READABLE_VERSION:
                raise StoreError(
                    f"{path}: schema version {version} is older than this program's "
                    f"({SCHEMA_VERSION}); open it once with `rl-inspect eval --resume` or a writer to migrate"
                    if version else f"{path}: an empty SQLite file, not an rl-inspect database"
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot read as an SQLite database ({exc})") from None
        return cls(path, conn, readonly=True, version=version)

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes; nested uses join the outer transaction."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.conn.execute("COMMIT")

    # ----------------------------------------------------------------- writing runs
    def create_run(
        self,
        kind: str,
        name: str,
        model: str,
        config: dict[str, Any],
        n_planned: int = 0,
        *,
        parent_run_id: int | None = None,
        train_step: int | None = None,
    ) -> int:
        """A new run, 'running' in this process (pid and host stored, heartbeat started); its id."""
        now, pid, host = time.time(), os.getpid(), this_host()
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs(kind, name, model, status, config, parent_run_id, train_step, n_planned,"
                " created_at, updated_at, pid, host) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (kind, name, model, "running", json.dumps(config, sort_keys=True), parent_run_id,
                 train_step, n_planned, now, now, pid, host),
            )
        run_id = int(cur.lastrowid)
        self.heartbeat.add(run_id, pid, host)
        return run_id

    def claim_run(self, run_id: int) -> None:
        """Make run `run_id` running in this process again (resume): atomically, so of two
        processes claiming the same run at once exactly one wins.

        Inside one write transaction the row is read, its effective status decided
        (core.store.liveness), and it is rewritten only if it is the row that was read; a run
        whose writer lives raises RunBusyError (a ValueError), as does losing the race. The dead
        writer's unfinished trajectories become 'interrupted' (the resume redoes their questions),
        and this process's heartbeat starts. StoreError when there is no such run."""
        now, pid, host = time.time(), os.getpid(), this_host()
        with self.transaction():
            rows = self._query("SELECT id, status, pid, host, updated_at FROM runs WHERE id=?", (run_id,))
            if not rows:
                raise StoreError(f"{self.path}: no run {run_id}")
            row = rows[0]
            if effective_status(row, now=now, host=host) == "running":
                raise busy_error(run_id, row, now=now)
            cur = self.conn.execute(
                "UPDATE runs SET status='running', pid=?, host=?, updated_at=?, finished_at=NULL, error=NULL"
                " WHERE id=? AND status=? AND pid IS ? AND host IS ? AND updated_at IS ?",
                (pid, host, now, run_id, row["status"], row["pid"], row["host"], row["updated_at"]))
            if cur.rowcount != 1:
                raise RunBusyError(f"run {run_id} was claimed by another process at the same time")
            self.conn.execute(
                "UPDATE trajectories SET status='interrupted' WHERE run_id=? AND status='running'", (run_id,))
        self.heartbeat.add(run_id, pid, host)

    def add_questions(self, run_id: int, questions: Sequence[Question], start: int = 0) -> None:
        rows = [
            (run_id, start + i, q.id, q.question, q.answer, q.chunk_content,
             json.dumps(list(q.supporting)) if q.supporting else None)
            for i, q in enumerate(questions)
        ]
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO questions(run_id, qidx, qid, question, answer, chunk_content, supporting)"
                " VALUES (?,?,?,?,?,?,?)", rows)

    def finish_run(self, run_id: int, status: str, *, summary: dict | None = None, error: str | None = None) -> None:
        """Record how run `run_id` ended (done, failed, cancelled, interrupted) and stop its heartbeat;
        its trajectories still running become 'interrupted'."""
        if self.heartbeat is not None:
            self.heartbeat.remove(run_id)
        now = time.time()
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET status=?, summary=COALESCE(?, summary), error=?, finished_at=?, updated_at=?"
                " WHERE id=?",
                (status, json.dumps(summary) if summary is not None else None, error, now, now, run_id))
            self.conn.execute(
                "UPDATE trajectories SET status='interrupted' WHERE run_id=? AND status='running'", (run_id,))

    def run_to_end(self, run_id: int, body: Callable[[], Any],
                   summarize: Callable[["Store", int], dict]) -> dict:
        """Call `body()` and record how the run ended: 'done' with `summarize(self, run_id)`,
        'cancelled' on Ctrl-C/SIGTERM (KeyboardInterrupt), 'failed' with the error on anything
        else; the exception is re-raised, and finished trajectories and steps are kept either way.
        Returns the summary of a run that ended 'done'."""
        try:
            body()
        except KeyboardInterrupt:
            self.finish_run(run_id, "cancelled", summary=summarize(self, run_id))
            logger.warning("run {} cancelled; finished work is kept", run_id)
            raise
        except BaseException as exc:
            self.finish_run(run_id, "failed", summary=summarize(self, run_id),
                            error=f"{exc.__class__.__name__}: {exc}")
            logger.exception("run {} failed", run_id)
            raise
        summary = summarize(self, run_id)
        self.finish_run(run_id, "done", summary=summary)
        logger.info("run {} done: {}", run_id, summary)
        return summary

    def set_planned(self, run_id: int, n_planned: int) -> None:
        with self.transaction():
            self.conn.execute("UPDATE runs SET n_planned=?, updated_at=? WHERE id=?", (n_planned, time.time(), run_id))

    def add_train_step(self, run_id: int, step: int, metrics: dict[str, Any]) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO train_steps(run_id, step, metrics, created_at) VALUES (?,?,?,?)",
                (run_id, step, json.dumps(metrics), time.time()))

    def set_config(self, run_id: int, config: dict[str, Any]) -> None:
        """Replace a run's stored configuration (a train run records its checkpoint folder once
        it knows its id)."""
        with self.transaction():
            self.conn.execute("UPDATE runs SET config=?, updated_at=? WHERE id=?",
                              (json.dumps(config, sort_keys=True), time.time(), run_id))

    def next_group_id(self, run_id: int) -> int:
        """One more than the largest GRPO group id of a run's trajectories (0 for none)."""
        row = self.conn.execute("SELECT MAX(group_id) FROM trajectories WHERE run_id=?", (run_id,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def delete_run(self, run_id: int) -> None:
        """Remove run `run_id` and everything of it: trajectories with their messages (and their
        search entries, by the schema's delete trigger), tokens and rewards, its questions, train
        steps and merged parts. Runs that name it as parent keep their rows, parent set NULL.
        For an importer replacing what it wrote before (core.importers.common.grown_from) and
        merge replacing an older copy; one transaction (joining the caller's)."""
        in_run = "trajectory_id IN (SELECT id FROM trajectories WHERE run_id=?)"
        with self.transaction():
            for table in ("rewards", "tokens", "messages"):
                self.conn.execute(f"DELETE FROM {table} WHERE {in_run}", (run_id,))
            for table in ("trajectories", "questions", "train_steps", "run_parts"):
                self.conn.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
            self.conn.execute("UPDATE runs SET parent_run_id=NULL WHERE parent_run_id=?", (run_id,))
            self.conn.execute("DELETE FROM runs WHERE id=?", (run_id,))

    def drop_train_steps_after(self, run_id: int, step: int) -> int:
        """Delete a train run's steps after `step` (trajectories with their messages, tokens,
        rewards and search entries, and train_steps rows), as resuming from the checkpoint of
        `step` redoes them; the run's counters lose what was deleted (generation_seconds, which
        no trajectory row records, keeps the time that was spent). Returns the trajectories deleted."""
        doomed = "SELECT id FROM trajectories WHERE run_id=? AND step>?"
        with self.transaction():
            n, correct, judged, errored, reward, tokens = self.conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(correct=1),0), COALESCE(SUM(correct IS NOT NULL),0),"
                " COALESCE(SUM(tool_errors>0),0), COALESCE(SUM(reward),0), COALESCE(SUM(generated_tokens),0)"
                " FROM trajectories WHERE run_id=? AND step>? AND status='done'", (run_id, step)).fetchone()
            deleted = self.conn.execute(f"SELECT COUNT(*) FROM ({doomed})", (run_id, step)).fetchone()[0]
            for table in ("messages", "tokens", "rewards"):
                self.conn.execute(f"DELETE FROM {table} WHERE trajectory_id IN ({doomed})", (run_id, step))
            self.conn.execute("DELETE FROM trajectories WHERE run_id=? AND step>?", (run_id, step))
            self.conn.execute(
                "UPDATE runs SET n_done=n_done-?, n_correct=n_correct-?, n_judged=n_judged-?,"
                " n_with_tool_error=n_with_tool_error-?, reward_sum=reward_sum-?,"
                " generated_tokens=generated_tokens-?, updated_at=? WHERE id=?",
                (n, correct, judged, errored, reward, tokens, time.time(), run_id))
            self.conn.execute("DELETE FROM train_steps WHERE run_id=? AND step>?", (run_id, step))
        return deleted

    # ----------------------------------------------------------------- writing trajectories
    def start_trajectory(
        self,
        run_id: int,
        qidx: int,
        question: Question,
        *,
        sample: int = 0,
        step: int | None = None,
        group_id: int | None = None,
    ) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO trajectories(run_id, qidx, sample, step, group_id, question, gold_answer, status,"
                " started_at) VALUES (?,?,?,?,?,?,?,'running',?)",
                (run_id, qidx, sample, step, group_id, question.question, question.answer, time.time()))
        return int(cur.lastrowid)

    def add_messages(self, trajectory_id: int, messages: Sequence[tuple[int, Message]]) -> None:
        """Write messages (with their position in the chat) as soon as a turn completes."""
        if any(not 0 <= pos < FTS_POSITIONS for pos, _ in messages):
            raise ValueError(f"message positions must be in [0, {FTS_POSITIONS}) (they number the search index)")
        rows = [
            (trajectory_id, pos, m.turn, m.role, m.content,
             json.dumps(m.tool_call.to_dict()) if m.tool_call else None,
             m.tool_error.kind if m.tool_error else None,
             m.tool_error.message if m.tool_error else None,
             m.token_start, m.token_end)
            for pos, m in messages
        ]
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO messages(trajectory_id, position, turn, role, content, tool_call, error_kind,"
                " error_message, token_start, token_end) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            self.conn.executemany(FTS_INSERT_SQL, [(trajectory_id * FTS_POSITIONS + pos, m.content)
                                                   for pos, m in messages])
            self.conn.execute("UPDATE trajectories SET turns=MAX(turns, ?) WHERE id=?",
                              (max((m.turn for _, m in messages), default=0), trajectory_id))

    def finish_trajectory(self, run_id: int, trajectory_id: int, outcome: TrajectoryOutcome) -> None:
        """Write the final state, tokens and rewards at once, and update the run's counters."""
        tokens = outcome.tokens
        done = outcome.status == "done"
        with self.transaction():
            self.conn.execute(
                "UPDATE trajectories SET status=?, finish_reason=?, final_answer=?, correct=?, reward=?,"
                " advantage=?, turns=?, tool_calls=?, tool_errors=?, prompt_tokens=?, completion_tokens=?,"
                " generated_tokens=?, drift_at=?, drift_kind=?, finish_detail=?, token_exact=?, finished_at=?"
                " WHERE id=?",
                (outcome.status, outcome.finish_reason, outcome.final_answer,
                 None if outcome.correct is None else int(outcome.correct), outcome.reward, outcome.advantage,
                 outcome.turns, outcome.tool_calls, outcome.tool_errors,
                 tokens.prompt_len if tokens else None, tokens.completion_len if tokens else None,
                 tokens.generated_count if tokens else None, outcome.drift_at, outcome.drift_kind,
                 outcome.finish_detail, int(outcome.token_exact), time.time(), trajectory_id))
            if tokens is not None:
                ids, mask, logprobs = tokens.to_blobs()
                self.conn.execute(
                    "INSERT OR REPLACE INTO tokens(trajectory_id, prompt_len, ids, mask, logprobs) VALUES (?,?,?,?,?)",
                    (trajectory_id, tokens.prompt_len, ids, mask, logprobs))
            self.conn.executemany(
                "INSERT OR REPLACE INTO rewards(trajectory_id, name, value, weight, detail) VALUES (?,?,?,?,?)",
                [(trajectory_id, r.name, float(r.value), float(r.weight), json.dumps(r.detail, default=str))
                 for r in outcome.rewards])
            if done:
                self.conn.execute(
                    "UPDATE runs SET n_done=n_done+1, n_correct=n_correct+?, n_judged=n_judged+?,"
                    " n_with_tool_error=n_with_tool_error+?, reward_sum=reward_sum+?, generated_tokens=generated_tokens+?,"
                    " generation_seconds=generation_seconds+?, updated_at=? WHERE id=?",
                    (int(bool(outcome.correct)), int(outcome.correct is not None), int(outcome.tool_errors > 0),
                     outcome.reward or 0.0, tokens.generated_count if tokens else 0, outcome.generation_seconds,
                     time.time(), run_id))

    def bulk_write(self, run_id: int, items: Iterable[FinishedTrajectory]) -> list[int]:
        """Write many finished trajectories in one transaction (importers, benchmarks); returns
        their ids. Counters end as if each had gone through `finish_trajectory`."""
        return write_finished(self, run_id, items)

    # ----------------------------------------------------------------- reading
    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first, with a status that says 'interrupted' for dead writers."""
        rows = self._query("SELECT * FROM runs ORDER BY id DESC")
        for row in rows:
            row["status"] = effective_status(row)
        return rows

    def data_version(self) -> int:
        """SQLite's change counter for this connection: it moves whenever another connection
        (another process's writer) commits, so a reader polls it instead of re-reading pages."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def run(self, run_id: int) -> dict[str, Any]:
        rows = self._query("SELECT * FROM runs WHERE id=?", (run_id,))
        if not rows:
            raise StoreError(f"{self.path}: no run {run_id}")
        row = rows[0]
        row["status"] = effective_status(row)
        row["config"] = json.loads(row["config"])
        row["summary"] = json.loads(row["summary"]) if row["summary"] else None
        return row

    def questions(self, run_id: int) -> list[Question]:
        return [_question(r) for r in self._query("SELECT * FROM questions WHERE run_id=? ORDER BY qidx", (run_id,))]

    def question(self, run_id: int, qidx: int) -> Question | None:
        rows = self._query("SELECT * FROM questions WHERE run_id=? AND qidx=?", (run_id, qidx))
        return _question(rows[0]) if rows else None

    def trajectory(self, trajectory_id: int) -> dict[str, Any]:
        rows = self._query("SELECT * FROM trajectories WHERE id=?", (trajectory_id,))
        if not rows:
            raise StoreError(f"{self.path}: no trajectory {trajectory_id}")
        return self._complete(rows)[0]

    def _complete(self, rows: list[dict[str, Any]], table: str = "trajectories") -> list[dict[str, Any]]:
        """Rows of an older file read-only get the columns added since as None."""
        if self.version < SCHEMA_VERSION:
            for row in rows:
                for column in ADDED_COLUMNS.get(table, ()):
                    row.setdefault(column, None)
        return rows

    def trajectory_rows(self, run_id: int, *, status: str | None = None, limit: int = 100,
                        offset: int = 0) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM trajectories WHERE run_id=?", [run_id]
        if status:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY id LIMIT ? OFFSET ?"
        return self._complete(self._query(sql, (*args, limit, offset)))

    def messages(self, trajectory_id: int, *, up_to_turn: int | None = None) -> list[Message]:
        sql, args = "SELECT * FROM messages WHERE trajectory_id=?", [trajectory_id]
        if up_to_turn is not None:
            sql += " AND turn<=?"
            args.append(up_to_turn)
        return [_message(r) for r in self._query(sql + " ORDER BY position", args)]

    def chat_state(self, trajectory_id: int, turn: int | None = None) -> list[dict[str, str]]:
        """The chat as the model saw it after `turn` (None: the final state), as role/content dicts."""
        return [m.chat_dict() for m in self.messages(trajectory_id, up_to_turn=turn)]

    def tokens(self, trajectory_id: int) -> TokenSequence | None:
        rows = self._query("SELECT * FROM tokens WHERE trajectory_id=?", (trajectory_id,))
        if not rows:
            return None
        r = self._complete(rows, "tokens")[0]
        return TokenSequence.from_blobs(r["ids"], r["mask"], r["logprobs"], r["prompt_len"], r["trainer_logprobs"])

    def set_trainer_logprobs(self, trajectory_id: int, values: list[float]) -> None:
        """Store the trainer's logprob of each token of a trajectory (nats; one per token, NaN on
        the prompt and where the trainer scored nothing). ValueError when the length is not the
        stored sequence's; StoreError when the trajectory has no tokens."""
        row = self.conn.execute("SELECT length(mask) FROM tokens WHERE trajectory_id=?", (trajectory_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: trajectory {trajectory_id} has no tokens")
        if row[0] != len(values):
            raise ValueError(f"trajectory {trajectory_id} has {row[0]} tokens, got {len(values)} trainer logprobs")
        with self.transaction():
            self.conn.execute("UPDATE tokens SET trainer_logprobs=? WHERE trajectory_id=?",
                              (TokenSequence.logprob_blob(values), trajectory_id))

    def rewards(self, trajectory_id: int) -> list[RewardResult]:
        return [
            RewardResult(r["name"], r["value"], r["weight"], json.loads(r["detail"]) if r["detail"] else {})
            for r in self._query("SELECT * FROM rewards WHERE trajectory_id=?", (trajectory_id,))
        ]

    def done_question_indices(self, run_id: int) -> set[int]:
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT qidx FROM trajectories WHERE run_id=? AND status='done'", (run_id,))}

    def search_messages(self, run_id: int, text: str, limit: int = 1000) -> list[int]:
        """Trajectory ids of a run whose messages match `text` (FTS5 query syntax; a plain phrase
        is quoted so punctuation in it cannot break the query)."""
        query = '"' + text.replace('"', '""') + '"'
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT f.rowid / ? AS tid FROM messages_fts f JOIN trajectories t ON t.id = tid"
            " WHERE messages_fts MATCH ? AND t.run_id=? ORDER BY f.rowid LIMIT ?",  # rowid order is tid order
            (FTS_POSITIONS, query, run_id, limit))]

    def train_steps(self, run_id: int) -> list[dict[str, Any]]:
        return [{"step": r["step"], **json.loads(r["metrics"])}
                for r in self._query("SELECT * FROM train_steps WHERE run_id=? ORDER BY step", (run_id,))]

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(args))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, values)) for values in cur.fetchall()]


def _question(r: dict) -> Question:
    return Question(id=r["qid"], question=r["question"], answer=r["answer"], chunk_content=r["chunk_content"],
                    supporting=tuple(json.loads(r["supporting"])) if r["supporting"] else ())


def _message(r: dict) -> Message:
    call = json.loads(r["tool_call"]) if r["tool_call"] else None
    return Message(
        role=r["role"], content=r["content"], turn=r["turn"],
        tool_call=ToolCall(call["name"], call["arguments"], call.get("raw", "")) if call else None,
        tool_error=ToolError(r["error_kind"], r["error_message"] or "") if r["error_kind"] else None,
        token_start=r["token_start"], token_end=r["token_end"],
    )


def _checked_version(conn: sqlite3.Connection, path: Path) -> int:
    version = read_version(conn)
    if version is None:
        raise StoreError(f"{path}: an SQLite database, but not an rl-inspect one (no schema version)")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this program's ({SCHEMA_VERSION}); upgrade rl-inspect")
    return version
