"""Evaluation end to end with a scripted backend: what is stored, cancel and resume, summaries."""

from __future__ import annotations

import json
import re

import pytest

from core.config import EvalConfig
from core.data.demo_data import generate_demo
from core.evaluate import evaluate, resume
from core.store import Store
from tests.local_tokenizers import chatml_tokenizer
from tests.scripted_backend import ScriptedBackend

CALL = '{"name": "search_corpus", "parameters": {"query": "%s"}}'


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))


def _answering_backend():
    """Searches for the question, then answers with the gold answer for even-numbered chunks;
    odd-numbered ones search twice and then give up, so trajectories finish at different turns."""
    _, questions = generate_demo(40, seed=0)
    gold = {q.question: (i, q.answer) for i, q in enumerate(questions)}

    def script(prompt: str, turn: int) -> str:
        question = re.search(r"Question: (.*)\n", prompt).group(1)
        index, answer = gold[question]
        if turn == 1 or (turn == 2 and index % 2):
            return f"<think>Search first.</think>{CALL % question}"
        return answer if index % 2 == 0 else "I do not know."

    return ScriptedBackend(chatml_tokenizer(), script)


def _config(**kw):
    # The toy tokenizer spends ~1 token per 2 characters: give search results room.
    return EvalConfig(demo_chunks=40, split="all", judge="exact", batch_size=4, max_new_tokens=8192, **kw)


def test_evaluation_stores_every_chat_state(tmp_path):
    db = tmp_path / "runs.db"
    summary = evaluate(_config(limit=10), db, backend=_answering_backend())
    assert summary["trajectories"] == 10 and summary["planned"] == 10
    assert set(summary["reward_means"]) == {"correctness", "formatting", "retry_behavior", "chunk_hit"}
    assert summary["tool_error_rate"] == 0.0 and summary["finish_reasons"] == {"answered": 10}
    with Store.open_readonly(db) as store:
        run = store.run(summary["run_id"])
        assert run["status"] == "done" and run["config"]["judge"] == "exact"
        assert run["config"]["corpus_label"] == "demo:40"
        rows = store.trajectory_rows(run["id"])
        assert len(rows) == 10 and all(r["status"] == "done" for r in rows)
        first = rows[0]
        msgs = store.messages(first["id"])
        assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
        assert msgs[2].tool_call.name == "search_corpus"
        tokens = store.tokens(first["id"])
        assert sum(tokens.mask) == first["generated_tokens"] > 0
        rewards = {r.name: r for r in store.rewards(first["id"])}
        assert rewards["formatting"].value == 0.7
        assert rewards["correctness"].detail["judge"] == "exact"
        # Accuracy is what the script made true: even-numbered demo questions are answered right.
        correct = sum(r["correct"] for r in rows)
        assert summary["accuracy"] == correct / 10


def test_bad_question_file_writes_nothing(tmp_path):
    qs = tmp_path / "qa.csv"
    qs.write_text("question,answer\nwhere?,\n")
    db = tmp_path / "runs.db"
    with pytest.raises(ValueError, match="qa.csv"):
        evaluate(_config(questions=str(qs)), db, backend=_answering_backend())
    assert not db.exists()


def test_cancelled_run_keeps_finished_work_and_resumes_without_redoing_it(tmp_path):
    db = tmp_path / "runs.db"
    seen = []

    def cancel_after_first_finish(progress):
        seen.append(progress.done)
        if progress.done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(_config(limit=12), db, progress=cancel_after_first_finish, backend=_answering_backend())
    with Store.open_readonly(db) as store:
        run = store.runs()[0]
        assert run["status"] == "cancelled"
        done_before = {r["qidx"] for r in store.trajectory_rows(run["id"], status="done")}
        interrupted = store.trajectory_rows(run["id"], status="interrupted")
        assert done_before and interrupted
        run_id = run["id"]

    backend = _answering_backend()
    summary = resume(db, run_id, backend=backend)
    assert summary["trajectories"] == 12
    with Store.open_readonly(db) as store:
        assert store.run(run_id)["status"] == "done"
        done = store.trajectory_rows(run_id, status="done", limit=100)
        assert sorted(r["qidx"] for r in done) == list(range(12))  # each question done exactly once
    # Only the unfinished questions were generated again: even ones take 2 turns, odd ones 3.
    left = set(range(12)) - done_before
    assert sum(backend.calls) == sum(2 if i % 2 == 0 else 3 for i in left)


def test_resume_refuses_a_changed_corpus(tmp_path):
    corpus = tmp_path / "corpus.md"
    corpus.write_text("The Veltran Observatory is on Qoruna.\n\nIt was founded in 1873.\n")
    qs = tmp_path / "qa.jsonl"
    qs.write_text(json.dumps({"question": "Where is the Veltran Observatory?", "answer": "Qoruna"}) + "\n")
    db = tmp_path / "runs.db"
    with pytest.raises(KeyboardInterrupt):
        evaluate(EvalConfig(corpus=str(corpus), questions=str(qs), split="all", judge="exact"), db,
                 progress=lambda p: (_ for _ in ()).throw(KeyboardInterrupt), backend=_script_backend())
    corpus.write_text("Something else entirely.\n")
    with pytest.raises(ValueError, match="corpus changed"):
        resume(db, 1, backend=_script_backend())


def _script_backend():
    return ScriptedBackend(chatml_tokenizer(), lambda prompt, turn: "Qoruna")


def test_store_writes_do_not_hold_up_the_next_turn(tmp_path, monkeypatch):
    """Finished trajectories are written by the writer thread while the next turn generates
    (issue 9): with a write that takes 0.5 s, the next generate starts before it ends; and what
    progress reports done is already stored."""
    import time as _time

    from core.store import store as store_module

    events: list[tuple[str, float]] = []
    slow = store_module.Store.finish_trajectory

    def slow_finish(self, *args, **kw):
        _time.sleep(0.5)
        slow(self, *args, **kw)
        events.append(("stored", _time.perf_counter()))

    monkeypatch.setattr(store_module.Store, "finish_trajectory", slow_finish)
    backend = _answering_backend()
    generate = backend.generate

    def timed_generate(*args, **kw):
        events.append(("generate", _time.perf_counter()))
        return generate(*args, **kw)

    backend.generate = timed_generate
    db = tmp_path / "runs.db"
    reported = []

    def progress(p):
        with Store.open_readonly(db) as reader:
            reported.append((p.done, reader.run(p.run_id)["n_done"]))

    # Even questions finish at turn 2, odd ones at turn 3: a finish write is pending when turn 3 starts.
    evaluate(_config(limit=4), db, backend=backend, progress=progress)
    first_finish_write = next(i for i, (kind, _) in enumerate(events) if kind == "stored")
    assert any(kind == "generate" for kind, _ in events[:first_finish_write][2:]), events
    assert reported and all(done <= stored for done, stored in reported), reported
    assert reported[-1][0] == 4


def test_the_drift_check_runs_in_the_writer_thread_with_its_own_tokenizer(tmp_path, monkeypatch):
    """Issue 9: the turn does not wait for the drift check; it runs beside the store writes, on a
    tokenizer copy (a fast tokenizer is not for two threads at once), and its result is stored."""
    import threading

    from core import evaluate as ev

    threads, tokenizers = [], []
    check = ev._DriftCheck.check

    def spy(self, inputs):
        threads.append(threading.current_thread().name)
        tokenizers.append(self.chat.tokenizer)
        return check(self, inputs)

    monkeypatch.setattr(ev._DriftCheck, "check", spy)
    backend = _answering_backend()
    summary = evaluate(_config(limit=4), tmp_path / "runs.db", backend=backend)
    assert threads and set(threads) == {"rl-inspect-store-writer"}
    assert all(t is not backend.tokenizer for t in tokenizers)
    assert summary["drifted_trajectories"] == 0
