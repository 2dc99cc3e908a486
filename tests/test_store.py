"""The store: round trips, chat state at every turn, counters, read-only opening and bad files."""

from __future__ import annotations

import math
import sqlite3

import pytest

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.store import SCHEMA_VERSION, Store, StoreError, TrajectoryOutcome
from core.rollout.tokens import TokenSequence

Q = Question("q1", "Where is the Veltran Observatory?", "Qoruna", chunk_content="The Veltran Observatory ...")


def _tokens() -> TokenSequence:
    t = TokenSequence()
    t.add_prompt([1, 2, 3])
    t.add_generated([10, 11], [-0.5, -1.25])
    t.add_scaffold([4, 5, 6])
    t.add_generated([12], [-0.125])
    return t


def _write_one(store: Store) -> tuple[int, int]:
    run = store.create_run("eval", "r", "m", {"model": "m", "top_k": 2}, n_planned=1)
    store.add_questions(run, [Q])
    tid = store.start_trajectory(run, 0, Q)
    store.add_messages(tid, [(0, Message("system", "sys", 0, token_start=0, token_end=3)),
                             (1, Message("user", "where?", 0, token_start=0, token_end=3))])
    call = ToolCall("search_corpus", {"query": "Veltran"}, raw='{"name": ...}')
    store.add_messages(tid, [(2, Message("assistant", '{"name": ...}', 1, tool_call=call, token_start=3, token_end=5)),
                             (3, Message("tool", "Result 1:\n...", 1, token_start=5, token_end=8))])
    store.add_messages(tid, [(4, Message("assistant", "Qoruna", 2, token_start=8, token_end=9))])
    rewards = [RewardResult("correctness", 1.0, 1.0, {"judge": "exact"}), RewardResult("formatting", 0.7, 0.5)]
    store.finish_trajectory(run, tid, TrajectoryOutcome(
        status="done", finish_reason="answered", final_answer="Qoruna", turns=2, tool_calls=1, tool_errors=0,
        tokens=_tokens(), rewards=rewards, reward=1.35, correct=True, generation_seconds=0.5))
    return run, tid


def test_round_trip_keeps_every_field(tmp_path):
    with Store.open(tmp_path / "runs.db") as store:
        run, tid = _write_one(store)
    with Store.open_readonly(tmp_path / "runs.db") as store:
        r = store.run(run)
        assert r["config"] == {"model": "m", "top_k": 2}
        assert (r["n_done"], r["n_correct"], r["generated_tokens"]) == (1, 1, 3)
        t = store.trajectory(tid)
        assert (t["finish_reason"], t["turns"], t["prompt_tokens"], t["completion_tokens"]) == ("answered", 2, 3, 6)
        msgs = store.messages(tid)
        assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
        assert msgs[2].tool_call == ToolCall("search_corpus", {"query": "Veltran"}, raw='{"name": ...}')
        assert (msgs[3].token_start, msgs[3].token_end) == (5, 8)
        tokens = store.tokens(tid)
        assert tokens.ids == [1, 2, 3, 10, 11, 4, 5, 6, 12]
        assert tokens.mask == [0, 0, 0, 1, 1, 0, 0, 0, 1]
        assert tokens.logprobs[3:5] == [-0.5, -1.25] and math.isnan(tokens.logprobs[0])
        assert {x.name: (x.value, x.weight) for x in store.rewards(tid)} == {
            "correctness": (1.0, 1.0), "formatting": (0.7, 0.5)}
        assert store.questions(run) == [Q]


def test_chat_state_at_each_turn(tmp_path):
    with Store.open(tmp_path / "runs.db") as store:
        _, tid = _write_one(store)
        assert [m["role"] for m in store.chat_state(tid, 0)] == ["system", "user"]
        assert [m["role"] for m in store.chat_state(tid, 1)] == ["system", "user", "assistant", "tool"]
        assert store.chat_state(tid)[-1] == {"role": "assistant", "content": "Qoruna"}


def test_tool_error_is_stored_with_kind_and_message(tmp_path):
    with Store.open(tmp_path / "runs.db") as store:
        run = store.create_run("eval", "r", "m", {})
        tid = store.start_trajectory(run, 0, Q)
        err = ToolError("unknown_tool", "unknown tool 'web' (known: search_corpus)")
        store.add_messages(tid, [(2, Message("assistant", "{}", 1, tool_error=err))])
        assert store.messages(tid)[0].tool_error == err


def test_killed_writer_keeps_finished_and_marks_running_interrupted(tmp_path):
    db = tmp_path / "runs.db"
    store = Store.open(db)
    run, done_id = _write_one(store)
    running = store.start_trajectory(run, 0, Q)
    store.conn.execute("UPDATE runs SET pid=999999999 WHERE id=?", (run,))  # a writer that is gone
    store.close()
    with Store.open_readonly(db) as reader:
        assert reader.run(run)["status"] == "interrupted"
        assert reader.trajectory(done_id)["status"] == "done"
    with Store.open(db) as writer:
        writer.finish_run(run, "interrupted")
        assert writer.trajectory(running)["status"] == "interrupted"
        assert writer.done_question_indices(run) == {0}


def test_full_text_search_finds_messages(tmp_path):
    with Store.open(tmp_path / "runs.db") as store:
        run, tid = _write_one(store)
        assert store.search_messages(run, "Qoruna") == [tid]
        assert store.search_messages(run, 'odd "quote') == []


def test_readonly_never_writes(tmp_path):
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        _write_one(store)
    before = db.read_bytes()
    with Store.open_readonly(db) as store:
        store.runs()
        with pytest.raises(sqlite3.OperationalError):
            store.conn.execute("DELETE FROM runs")
    assert db.read_bytes() == before


@pytest.mark.parametrize("content, message", [
    (b"hello, not a database" * 100, "cannot"),
    (b"", "empty SQLite file"),
])
def test_bad_files_get_one_line_errors(tmp_path, content, message):
    bad = tmp_path / "bad.db"
    bad.write_bytes(content)
    with pytest.raises(StoreError, match=message) as err:
        Store.open_readonly(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert bad.read_bytes() == content


def test_missing_foreign_and_newer_databases(tmp_path):
    with pytest.raises(StoreError, match="no such database"):
        Store.open_readonly(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(StoreError, match="not an rl-inspect one"):
        Store.open_readonly(foreign)
    with pytest.raises(StoreError, match="not an rl-inspect one"):
        Store.open(foreign)
    newer = tmp_path / "newer.db"
    Store.open(newer).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this program"):
        Store.open(newer)
