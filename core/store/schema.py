"""The database schema, its version, and the migrations between versions.

The database is the contract between the engine, the viewer and other processes, so every
change to it is a numbered migration, and a program refuses a database newer than itself.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 5

MIN_READABLE_VERSION = 1
"""The oldest version a reader opens without migrating: every change since then added nullable
columns, which Store's row readers fill with None on older files, or a table only merge reads
(run_parts, version 5)."""

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                 -- eval | train
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,               -- running | done | failed | cancelled | interrupted
    config TEXT NOT NULL,               -- the full configuration, JSON
    parent_run_id INTEGER REFERENCES runs(id),   -- eval runs made during training
    train_step INTEGER,
    n_planned INTEGER NOT NULL DEFAULT 0,
    n_done INTEGER NOT NULL DEFAULT 0,
    n_correct INTEGER NOT NULL DEFAULT 0,
    n_judged INTEGER NOT NULL DEFAULT 0,
    n_with_tool_error INTEGER NOT NULL DEFAULT 0,
    reward_sum REAL NOT NULL DEFAULT 0,
    generated_tokens INTEGER NOT NULL DEFAULT 0,
    generation_seconds REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    pid INTEGER,
    host TEXT,
    error TEXT,
    summary TEXT                        -- JSON, written when the run ends
);

CREATE TABLE questions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    qidx INTEGER NOT NULL,
    qid TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    chunk_content TEXT,
    supporting TEXT,                    -- JSON list
    PRIMARY KEY (run_id, qidx)
) WITHOUT ROWID;

CREATE TABLE trajectories (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    qidx INTEGER NOT NULL,
    sample INTEGER NOT NULL DEFAULT 0,  -- index within its GRPO group
    step INTEGER,                       -- training step (NULL for evals)
    group_id INTEGER,                   -- GRPO group: the samples of one question in one step
    question TEXT NOT NULL,
    gold_answer TEXT NOT NULL,
    final_answer TEXT,
    status TEXT NOT NULL,               -- running | done | interrupted | failed
    finish_reason TEXT,                 -- answered | max_turns | max_tokens | tool_error
    correct INTEGER,
    reward REAL,
    advantage REAL,
    turns INTEGER NOT NULL DEFAULT 0,
    tool_calls INTEGER NOT NULL DEFAULT 0,
    tool_errors INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    generated_tokens INTEGER,
    drift_at INTEGER,                   -- first token where re-rendering the chat differs (NULL: none)
    started_at REAL NOT NULL,
    finished_at REAL
);
-- The viewer pages a run sorted by any of its columns: one (run_id, column, id) index per column
-- makes the first page of any sort an index range read, and id breaks ties so pages are stable.
-- Each also carries the filter columns (correct, tool_errors, finish_reason, status, step), so a
-- filter is tested on the index entry while a sort order is walked, without reading table rows
-- (~20 bytes an entry). The same indexes find the rows of a filter and of a GRPO group.
CREATE INDEX trajectories_run ON trajectories(run_id, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_status ON trajectories(run_id, status, id, correct, tool_errors, finish_reason, step);
CREATE INDEX trajectories_run_correct ON trajectories(run_id, correct, id, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_finish ON trajectories(run_id, finish_reason, id, correct, tool_errors, status, step);
CREATE INDEX trajectories_run_reward ON trajectories(run_id, reward, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_step ON trajectories(run_id, step, id, correct, tool_errors, finish_reason, status);
CREATE INDEX trajectories_run_group ON trajectories(run_id, group_id, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_question ON trajectories(run_id, question, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_final_answer ON trajectories(run_id, final_answer, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_gold_answer ON trajectories(run_id, gold_answer, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_tool_calls ON trajectories(run_id, tool_calls, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_tool_errors ON trajectories(run_id, tool_errors, id, correct, finish_reason, status, step);
CREATE INDEX trajectories_run_turns ON trajectories(run_id, turns, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_tokens ON trajectories(run_id, generated_tokens, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_advantage ON trajectories(run_id, advantage, id, correct, tool_errors, finish_reason, status, step);
CREATE INDEX trajectories_run_qidx ON trajectories(run_id, qidx, id);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    trajectory_id INTEGER NOT NULL REFERENCES trajectories(id),
    position INTEGER NOT NULL,          -- order within the chat
    turn INTEGER NOT NULL,              -- 0: opening prompt; k: k-th generation and its tool result
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    tool_call TEXT,                     -- JSON {name, arguments, raw}
    error_kind TEXT,
    error_message TEXT,
    token_start INTEGER,
    token_end INTEGER
);
CREATE UNIQUE INDEX messages_trajectory ON messages(trajectory_id, position);

CREATE TABLE tokens (
    trajectory_id INTEGER PRIMARY KEY REFERENCES trajectories(id),
    prompt_len INTEGER NOT NULL,
    ids BLOB NOT NULL,                  -- int32 little-endian
    mask BLOB NOT NULL,                 -- uint8, 1 on tokens the model generated
    logprobs BLOB NOT NULL              -- float32 little-endian, NaN where not generated
);

CREATE TABLE rewards (
    trajectory_id INTEGER NOT NULL REFERENCES trajectories(id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    weight REAL NOT NULL,
    detail TEXT,                        -- JSON
    PRIMARY KEY (trajectory_id, name)
) WITHOUT ROWID;

CREATE TABLE train_steps (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    metrics TEXT NOT NULL,              -- JSON: loss, kl, reward mean/std, grad norm, lr, ...
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

-- Full-text index of message contents. Its rowid is trajectory_id * 2^20 + position (see
-- FTS_POSITIONS), not the message id: a match then names its trajectory without a join through
-- `messages`, matches come out in trajectory order, and a run's id range is a rowid range. It is
-- contentless (the text lives in `messages`), so only MATCH and rowid can be read from it.
-- The store inserts into it next to each message insert, in the same transaction, rather than
-- by trigger: an INSERT that fires a trigger into FTS5 opens a statement savepoint, FTS5 flushes
-- its pending terms to a new segment at every savepoint, and one segment per message made every
-- message write about 4x dearer (measured: eval writes 15% faster without the trigger).
CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='');
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content)
        VALUES ('delete', old.trajectory_id * 1048576 + old.position, old.content);
END;
"""

FTS_POSITIONS = 1 << 20
"""messages_fts rowid = trajectory_id * FTS_POSITIONS + position (the delete trigger spells it 1048576):
a trajectory may hold up to a million messages, and ids up to 2^43 fit a 64-bit rowid."""

FTS_INSERT_SQL = "INSERT INTO messages_fts(rowid, content) VALUES (?, ?)"
"""How every writer of `messages` indexes a message: (trajectory_id * FTS_POSITIONS + position, content)."""

_V2 = """
-- Drift explained (issue 12): what the difference at drift_at is, one of core.rollout.chat.DRIFT_KINDS:
-- template_rewrite | retokenization | stop_token (NULL: no drift, or not checked).
ALTER TABLE trajectories ADD COLUMN drift_kind TEXT;
-- One line on why a trajectory ended, for finish reasons that need one (template_mismatch, context_length).
ALTER TABLE trajectories ADD COLUMN finish_detail TEXT;
"""

_V3 = """
-- The trainer's own logprob of each token (issue 7): what TRL's loss computed for the completion
-- tokens under the weights that sampled them, float32 little-endian, one per token like
-- `logprobs`, NaN on the prompt. Its difference from `logprobs` (the rollout's) is the
-- train-inference mismatch. NULL: not a training trajectory, or the trainer never scored it.
ALTER TABLE tokens ADD COLUMN trainer_logprobs BLOB;
"""

_V4 = """
-- Token truth of a trajectory's ids (issue 10): 1 when every generated id is one the model emitted
-- (the hf and vllm backends; a server that returns its ids), 0 when some reply came back as text
-- only and its ids are the local tokenizer's reading of it (core.backends.openai_server): the mask
-- and logprobs of such a trajectory are not the model's. NULL: written before version 4 (the only
-- backend then was hf, token-exact).
ALTER TABLE trajectories ADD COLUMN token_exact INTEGER;
"""

_V5 = """
-- Shards merged into one run (issue 10). Processes of `rl-inspect eval --shard I/N` (or the ranks of a
-- multi-process `rl-inspect train`) each write a run of their own; `rl-inspect merge` combines the shard runs of one job (config.job) into one run of
-- OUT and keeps here what each part was when copied, so merging again replaces a part only when
-- the incoming copy is further along. A part's trajectories are the merged run's ids first_id..last_id
-- (one part is copied in one piece after every id then in OUT, so no other run's ids fall between;
-- NULL: it had none).
CREATE TABLE run_parts (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    part INTEGER NOT NULL,              -- the shard index I
    parts INTEGER NOT NULL,             -- the shard count N
    created_at REAL NOT NULL,           -- the part's own run: created_at, host and pid identify it
    host TEXT,
    pid INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    n_planned INTEGER NOT NULL,
    n_done INTEGER NOT NULL,
    generation_seconds REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    first_id INTEGER,
    last_id INTEGER,
    PRIMARY KEY (run_id, part)
) WITHOUT ROWID;
"""

ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"trajectories": ("drift_kind", "finish_detail", "token_exact"),
                                             "tokens": ("trainer_logprobs",)}
"""Columns added after version 1; rows read from an older file get them as None."""

MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5}
"""Version N's entry turns a version N-1 database (0: empty) into version N."""


def read_version(conn: sqlite3.Connection) -> int | None:
    """The schema version, 0 for an empty database, None when it is not an rl-inspect one."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return 0
    if "meta" not in tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else None


def migrate(conn: sqlite3.Connection, current: int) -> None:
    """Apply every migration after `current`, each in its own transaction.

    The connection is in autocommit mode (isolation_level=None), so BEGIN here really makes
    the DDL and the version bump one atomic step: a killed migration leaves the old version.
    """
    for version in range(current + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(version),),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """Split a script into statements; sqlite3 itself says when one is complete (triggers
    hold ';' inside BEGIN ... END), so the migration runs inside one transaction."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [s for s in out if s]
