"""Schema versions 2 (drift_kind, finish_detail) and 3 (tokens.trainer_logprobs): old databases
migrate, and stay readable read-only."""

from __future__ import annotations

import math
import sqlite3
import time

import pytest

from core.data.records import Question
from core.store import SCHEMA_VERSION, Store, TrajectoryOutcome
from core.store.schema import MIGRATIONS, _statements
from core.rollout.tokens import TokenSequence


def _v1_database(path):
    con = sqlite3.connect(path)
    for statement in _statements(MIGRATIONS[1]):
        con.execute(statement)
    con.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    now = time.time()
    con.execute("INSERT INTO runs(id, kind, name, model, status, config, created_at, updated_at)"
                " VALUES (1, 'eval', 'old', 'm', 'done', '{}', ?, ?)", (now, now))
    con.execute("INSERT INTO trajectories(id, run_id, qidx, question, gold_answer, status, finish_reason, drift_at,"
                " started_at) VALUES (1, 1, 0, 'q?', 'a', 'done', 'answered', 7, ?)", (now,))
    con.commit()
    con.close()


def test_version_one_database_is_readable_read_only_without_being_changed(tmp_path):
    db = tmp_path / "old.db"
    _v1_database(db)
    before = db.read_bytes()
    with Store.open_readonly(db) as store:
        assert store.version == 1
        row = store.trajectory(1)
        assert row["drift_at"] == 7 and row["drift_kind"] is None and row["finish_detail"] is None
        assert store.trajectory_rows(1)[0]["drift_kind"] is None
    assert db.read_bytes() == before


def test_writer_migrates_version_one_and_keeps_its_rows(tmp_path):
    db = tmp_path / "old.db"
    _v1_database(db)
    assert SCHEMA_VERSION == 5
    with Store.open(db) as store:
        assert store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "5"
        assert store.conn.execute("SELECT COUNT(*) FROM run_parts").fetchone()[0] == 0
        old = store.trajectory(1)
        assert (old["drift_at"], old["drift_kind"], old["token_exact"]) == (7, None, None)
        tid = store.start_trajectory(1, 1, Question("q2", "q2?", "b"))
        store.finish_trajectory(1, tid, TrajectoryOutcome(
            status="done", finish_reason="template_mismatch", final_answer="", turns=1, tool_calls=1,
            tool_errors=0, tokens=None, drift_at=3, drift_kind="stop_token",
            finish_detail="the template renders the earlier chat differently at character 9"))
    with Store.open_readonly(db) as store:
        row = store.trajectory(tid)
        assert (row["drift_kind"], row["finish_reason"]) == ("stop_token", "template_mismatch")
        assert row["finish_detail"].startswith("the template renders")
        assert row["token_exact"] == 1  # written by this version: token-exact unless a backend said otherwise


def _v2_database_with_tokens(path) -> int:
    """A version 2 file (migrations 1 and 2 only) holding one trajectory with tokens."""
    con = sqlite3.connect(path)
    for version in (1, 2):
        for statement in _statements(MIGRATIONS[version]):
            con.execute(statement)
    con.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '2')")
    con.commit()
    con.close()
    con = sqlite3.connect(path)
    now = time.time()
    con.execute("INSERT INTO runs(id, kind, name, model, status, config, created_at, updated_at)"
                     " VALUES (1, 'train', 'old', 'm', 'done', '{}', ?, ?)", (now, now))
    con.execute("INSERT INTO trajectories(id, run_id, qidx, question, gold_answer, status, started_at)"
                     " VALUES (1, 1, 0, 'q?', 'a', 'done', ?)", (now,))
    t = TokenSequence()
    t.add_prompt([1, 2])
    t.add_generated([3, 4], [-0.5, -1.0])
    con.execute("INSERT INTO tokens(trajectory_id, prompt_len, ids, mask, logprobs) VALUES (1, 2, ?, ?, ?)",
                     t.to_blobs())
    con.commit()
    con.close()
    return 1


def test_version_two_tokens_read_without_trainer_logprobs_and_migrate_to_three(tmp_path):
    db = tmp_path / "v2.db"
    tid = _v2_database_with_tokens(db)
    before = db.read_bytes()
    with Store.open_readonly(db) as store:
        assert store.version == 2
        tokens = store.tokens(tid)
        assert tokens.ids == [1, 2, 3, 4] and tokens.trainer_logprobs is None
    assert db.read_bytes() == before
    with Store.open(db) as store:
        assert store.version == SCHEMA_VERSION == 5
        store.set_trainer_logprobs(tid, [math.nan, math.nan, -0.25, -1.5])
        with pytest.raises(ValueError, match="4 tokens, got 3"):
            store.set_trainer_logprobs(tid, [0.0, 0.0, 0.0])
    with Store.open_readonly(db) as store:
        got = store.tokens(tid).trainer_logprobs
        assert math.isnan(got[0]) and math.isnan(got[1]) and got[2:] == [-0.25, -1.5]
