"""Checkpoints and `train --resume` through TRL's own checkpointing, on a tiny random Llama saved
here (no download), so a whole train run takes seconds."""

from __future__ import annotations

import json
import shutil

import pytest

from core.store import Store
from inspector.cli import EXIT_BAD_INPUT, main


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    from tests.tiny_models import save_tiny_llama

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    return save_tiny_llama(tmp_path / "tiny-llama")


ARGS = ["--steps", "2", "--questions-per-step", "2", "--num-generations", "2", "--max-new-tokens", "12",
        "--max-tokens-per-turn", "6", "--demo-chunks", "20", "--device", "cpu"]


def test_save_every_then_resume_continues_the_same_run(tiny_model, tmp_path, capsys):
    db = tmp_path / "runs.db"
    assert main(["train", "--model", tiny_model, "--db", str(db), "--save-every", "1", "--json", *ARGS]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    folder = tmp_path / f"runs-train-{run_id}"
    assert (folder / "checkpoint-1").is_dir() and (folder / "checkpoint-2").is_dir()
    # As if killed after step 2 was stored but before its checkpoint was written.
    shutil.rmtree(folder / "checkpoint-2")
    with Store.open(db) as store:
        store.finish_run(run_id, "cancelled")
        before = store.conn.execute("SELECT id FROM trajectories WHERE run_id=? AND step=1 ORDER BY id",
                                    (run_id,)).fetchall()
    assert main(["train", "--db", str(db), "--resume", str(run_id), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["run_id"] == run_id
    assert "step 2/2" in captured.err and "step 1/2" not in captured.err
    with Store.open_readonly(db) as store:
        run = store.run(run_id)
        assert run["status"] == "done" and run["n_done"] == 8
        rows = store.conn.execute("SELECT id, step, group_id FROM trajectories WHERE run_id=? ORDER BY id",
                                  (run_id,)).fetchall()
        assert [r[1] for r in rows] == [1] * 4 + [2] * 4
        assert [(r[0],) for r in rows[:4]] == before  # step 1 kept as it was
        assert sorted({r[2] for r in rows}) == [0, 1, 2, 3]
        assert [s["step"] for s in store.train_steps(run_id)] == [1, 2]
        assert len(store.runs()) == 1


def test_resume_is_refused_without_a_checkpoint_or_for_an_eval_run(tiny_model, tmp_path, capsys):
    db = tmp_path / "runs.db"
    assert main(["train", "--model", tiny_model, "--db", str(db), "--json", "--steps", "1", *ARGS[2:]]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["train", "--db", str(db), "--resume", str(run_id)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]
    with Store.open(db) as store:
        eval_id = store.create_run("eval", "e", "m", {})
        store.finish_run(eval_id, "done")
    assert main(["train", "--db", str(db), "--resume", str(eval_id)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval run" in err[0]


def test_a_smaller_batch_accumulates_gradients_with_one_rollout_per_step(tiny_model, tmp_path, capsys):
    db = tmp_path / "runs.db"
    assert main(["train", "--model", tiny_model, "--db", str(db), "--batch-size", "2", "--json", *ARGS]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    with Store.open_readonly(db) as store:
        steps = [r[0] for r in store.conn.execute("SELECT step FROM trajectories WHERE run_id=? ORDER BY id",
                                                  (run_id,))]
        assert steps == [1] * 4 + [2] * 4
        assert [s["step"] for s in store.train_steps(run_id)] == [1, 2]
        assert_trainer_logprobs_match_the_rollout(store, run_id)


def assert_trainer_logprobs_match_the_rollout(store, run_id: int, tolerance: float = 1e-3) -> None:
    """Every trajectory has the trainer's logprobs: NaN on the prompt, a finite value on every
    completion token, and on generated tokens the rollout's value up to float32 noise (the same
    fp32 weights on the CPU sampled and scored them). A row mapped to the wrong sample (TRL
    shuffles and splits the batch) would differ by whole nats."""
    import math

    tids = [r[0] for r in store.conn.execute("SELECT id FROM trajectories WHERE run_id=?", (run_id,))]
    assert tids
    for tid in tids:
        t = store.tokens(tid)
        assert t.trainer_logprobs is not None and len(t.trainer_logprobs) == len(t.ids)
        assert all(math.isnan(x) for x in t.trainer_logprobs[: t.prompt_len])
        assert all(math.isfinite(x) for x in t.trainer_logprobs[t.prompt_len:])
        gaps = [abs(a - b) for a, b, m in zip(t.logprobs, t.trainer_logprobs, t.mask) if m]
        assert gaps and max(gaps) < tolerance, (tid, max(gaps))


def test_eval_every_stores_held_out_evals_linked_to_the_run_and_step(tiny_model, tmp_path, capsys):
    db = tmp_path / "runs.db"
    assert main(["train", "--model", tiny_model, "--db", str(db), "--eval-every", "1", "--eval-questions", "2",
                 "--json", *ARGS]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    with Store.open_readonly(db) as store:
        evals = store.conn.execute("SELECT id, kind, status, parent_run_id, train_step, n_done, config FROM runs"
                                   " WHERE kind='eval' ORDER BY id").fetchall()
        assert [(e[1], e[2], e[3], e[4], e[5]) for e in evals] == [("eval", "done", run_id, 1, 2),
                                                                    ("eval", "done", run_id, 2, 2)]
        assert json.loads(evals[0][6])["split"] == "test"
        train_questions = {q.question for q in store.questions(run_id)}
        assert not train_questions & {q.question for q in store.questions(evals[0][0])}  # held out
        assert all("eval_seconds" in s for s in store.train_steps(run_id))


def test_a_killed_train_keeps_its_finished_steps_and_resumes(tiny_model, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "runs.db"
    steps = 40
    cmd = [sys.executable, "-m", "inspector.cli", "train", "--model", tiny_model, "--db", str(db),
           "--save-every", "1", *ARGS]
    cmd[cmd.index("--steps") + 1] = str(steps)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"RL_INSPECT_CACHE": os.environ["RL_INSPECT_CACHE"]})
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if db.exists():
            try:
                with Store.open_readonly(db) as store:
                    done = len(store.train_steps(1))
            except Exception:
                continue
            if done >= 2:
                break
    assert proc.poll() is None and done >= 2, "the run ended or stalled before it could be killed"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "cancelled; finished steps are kept" in err
    with Store.open_readonly(db) as store:
        run = store.run(1)
        kept = len(store.train_steps(1))
        assert run["status"] == "cancelled" and kept >= 2
        assert run["n_done"] == 4 * kept or run["n_done"] == 4 * (kept + 1)  # a step's rollout may be stored
    assert main(["train", "--db", str(db), "--resume", "1"]) == 0
    with Store.open_readonly(db) as store:
        run = store.run(1)
        assert run["status"] == "done" and run["n_done"] == 4 * steps
        assert [s["step"] for s in store.train_steps(1)] == list(range(1, steps + 1))
        per_step = store.conn.execute("SELECT step, COUNT(*) FROM trajectories WHERE run_id=1 GROUP BY step"
                                      ).fetchall()
        assert per_step == [(s, 4) for s in range(1, steps + 1)]


def test_a_checkpoint_a_kill_interrupted_is_not_resumed_from(tmp_path):
    from core.train.trainer import last_checkpoint

    for step, complete in ((1, True), (2, True), (3, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_checkpoint(str(tmp_path)).name == "checkpoint-2"
    with pytest.raises(ValueError, match="no checkpoint"):
        last_checkpoint(str(tmp_path / "nothing"))


def longer_is_better(messages, question):
    """A user reward for the test below: the first reply's length in characters, capped at 1."""
    first = next((m["content"] for m in messages if m["role"] == "assistant"), "") or ""
    return min(1.0, len(first) / 100), {"chars": len(first)}


def test_user_reward_functions_train_and_are_stored_by_name(tiny_model, tmp_path, capsys):
    db = tmp_path / "runs.db"
    argv = ["train", "--model", tiny_model, "--db", str(db), "--json", *ARGS,
            "--reward", "tests.test_train_resume:longer_is_better", "--reward-weights", "longer_is_better=2,correctness=0"]
    assert main(argv) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    with Store.open_readonly(db) as store:
        tid = store.conn.execute("SELECT id FROM trajectories WHERE run_id=? LIMIT 1", (run_id,)).fetchone()[0]
        extra = next(r for r in store.rewards(tid) if r.name == "longer_is_better")
        assert extra.weight == 2.0 and "chars" in extra.detail
        assert "rewards/longer_is_better/mean" in store.train_steps(run_id)[0]
    assert main([*argv[:-2], "--reward-weights", "shorter=1"]) == 2
    assert "unknown reward 'shorter'" in capsys.readouterr().err
