"""`rl-inspect eval --shard I/N` and merging the shards' databases into one run (issue 10)."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from core.config import EvalConfig
from core.evaluate import evaluate, job_id, resume, run_summary
from core.store import Store
from core.store.merge import merge_databases
from inspector.cli import main
from tests.test_evaluate import _answering_backend, _config


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))


N_QUESTIONS = 12


def _shards(tmp_path, count=3, job=None, name="sharded"):
    """Each shard of one evaluation in its own database, as N processes would write them."""
    paths = []
    for index in range(count):
        db = tmp_path / f"shard{index}.db"
        evaluate(_config(limit=N_QUESTIONS, name=name, shard=[index, count], job=job), db,
                 backend=_answering_backend())
        paths.append(db)
    return paths


def _content(db, run_id) -> dict:
    """What a run's trajectories hold, keyed by question index, row ids left out."""
    out = {}
    with Store.open_readonly(db) as store:
        for row in store.trajectory_rows(run_id, limit=10_000):
            tokens = store.tokens(row["id"])
            out[row["qidx"]] = (row["final_answer"], row["correct"], row["reward"], row["turns"], row["status"],
                                [(m.role, m.content) for m in store.messages(row["id"])],
                                tokens.ids if tokens else None,
                                sorted((r.name, r.value) for r in store.rewards(row["id"])))
    return out


def _runs(db) -> list[dict]:
    with Store.open_readonly(db) as store:
        return [store.run(r["id"]) for r in store.runs()]


def test_a_shard_evaluates_every_nth_question_and_stores_them_all(tmp_path):
    db = tmp_path / "s1.db"
    summary = evaluate(_config(limit=N_QUESTIONS, shard=[1, 3]), db, backend=_answering_backend())
    assert summary["planned"] == summary["trajectories"] == 4
    with Store.open_readonly(db) as store:
        run = store.run(summary["run_id"])
        assert run["name"].endswith("-shard1of3")
        assert run["config"]["shard"] == [1, 3] and run["config"]["job"] == job_id(EvalConfig.from_dict(run["config"]))
        assert len(store.questions(run["id"])) == N_QUESTIONS
        assert sorted(r["qidx"] for r in store.trajectory_rows(run["id"])) == [1, 4, 7, 10]


def test_the_shards_of_one_command_share_a_job_and_other_options_do_not(tmp_path):
    assert job_id(_config(limit=5, shard=[0, 2])) == job_id(_config(limit=5, shard=[1, 2]))
    assert job_id(_config(limit=5, shard=[0, 2])) != job_id(_config(limit=6, shard=[0, 2]))


def test_merged_shards_are_one_run_equal_to_the_unsharded_evaluation(tmp_path):
    whole = evaluate(_config(limit=N_QUESTIONS, name="whole"), tmp_path / "whole.db", backend=_answering_backend())
    out = tmp_path / "out.db"
    report = merge_databases(out, _shards(tmp_path), summarise=run_summary)
    assert sorted(index for *_, index, _ in report.parts) == [0, 1, 2] and report.trajectories == N_QUESTIONS
    [run] = _runs(out)
    assert run["name"] == "sharded" and run["status"] == "done" and run["error"] is None
    assert run["config"]["shards"] == 3 and "shard" not in run["config"]
    assert (run["n_planned"], run["n_done"]) == (N_QUESTIONS, N_QUESTIONS)
    assert _content(out, run["id"]) == _content(tmp_path / "whole.db", whole["run_id"])
    with Store.open_readonly(out) as store:
        assert len(store.questions(run["id"])) == N_QUESTIONS
        merged = store.run(run["id"])["summary"]
    for key in ("accuracy", "judged", "mean_reward", "reward_means", "finish_reasons", "tool_error_rate"):
        assert merged[key] == pytest.approx(whole[key]), key


def test_merging_again_or_in_another_order_changes_nothing(tmp_path):
    shards = _shards(tmp_path)
    out, other = tmp_path / "out.db", tmp_path / "other.db"
    merge_databases(out, shards)
    again = merge_databases(out, shards)
    assert again.copied == [] and again.trajectories == 0 and len(again.unchanged) == 3
    merge_databases(other, list(reversed(shards)))
    [a], [b] = _runs(out), _runs(other)
    assert _content(out, a["id"]) == _content(other, b["id"])
    assert (a["n_done"], a["n_correct"], a["reward_sum"]) == (b["n_done"], b["n_correct"], pytest.approx(b["reward_sum"]))


def test_shards_merged_one_at_a_time_say_what_is_missing_until_all_are_in(tmp_path):
    s0, s1, s2 = _shards(tmp_path)
    out = tmp_path / "out.db"
    merge_databases(out, [s0])
    [run] = _runs(out)
    assert run["status"] == "interrupted" and (run["n_planned"], run["n_done"]) == (N_QUESTIONS, 4)
    assert "shards not merged yet: 1, 2 of 3" in run["error"]
    merge_databases(out, [s2])
    merge_databases(out, [s1])
    [run] = _runs(out)
    assert run["status"] == "done" and run["n_done"] == N_QUESTIONS and run["error"] is None


def _interrupted_copy(src, dst, drop: int):
    """`src` as it stood before its last `drop` trajectories finished: an interrupted shard."""
    shutil.copy(src, dst)
    con = sqlite3.connect(dst)
    ids = [r[0] for r in con.execute("SELECT id FROM trajectories ORDER BY id DESC LIMIT ?", (drop,))]
    marks = ",".join("?" * len(ids))
    for table in ("rewards", "tokens", "messages"):
        con.execute(f"DELETE FROM {table} WHERE trajectory_id IN ({marks})", ids)
    con.execute(f"DELETE FROM trajectories WHERE id IN ({marks})", ids)
    con.execute("UPDATE runs SET status='interrupted', n_done=n_done-?, updated_at=updated_at-100", (drop,))
    con.commit()
    con.close()
    return dst


def test_a_shard_further_along_replaces_its_part_without_doubling_rows(tmp_path):
    s0, s1, s2 = _shards(tmp_path)
    partial = _interrupted_copy(s1, tmp_path / "s1-partial.db", drop=2)
    out = tmp_path / "out.db"
    merge_databases(out, [s0, partial, s2])
    [run] = _runs(out)
    assert run["status"] == "interrupted" and run["n_done"] == N_QUESTIONS - 2
    assert "shard 1/3 interrupted" in run["error"]
    report = merge_databases(out, [s1, partial])  # the full copy wins; the older one is then unchanged
    assert [p[2] for p in report.parts] == [1] and len(report.unchanged) == 1
    [run] = _runs(out)
    assert run["status"] == "done" and run["n_done"] == N_QUESTIONS
    with Store.open_readonly(out) as store:
        qidx = sorted(r["qidx"] for r in store.trajectory_rows(run["id"], limit=100))
        assert qidx == list(range(N_QUESTIONS))
        assert store.conn.execute("SELECT COUNT(*) FROM messages m JOIN trajectories t ON t.id=m.trajectory_id"
                                  " WHERE t.run_id=?", (run["id"],)).fetchone()[0] == sum(
            len(c[5]) for c in _content(out, run["id"]).values())


def test_two_jobs_stay_apart_and_a_merged_file_merges_on_without_doubling(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _shards(tmp_path / "a", count=2, job="first")
    b = _shards(tmp_path / "b", count=2, job="second")
    out = tmp_path / "out.db"
    merge_databases(out, a + b)
    runs = _runs(out)
    assert sorted(r["config"]["job"] for r in runs) == ["first", "second"]
    assert all(r["status"] == "done" and r["n_done"] == N_QUESTIONS for r in runs)
    # OUT merged into yet another file carries its parts along: shards merged there later are known.
    final = tmp_path / "final.db"
    merge_databases(final, [out])
    report = merge_databases(final, a)
    assert report.copied == [] and report.trajectories == 0
    assert sorted(r["n_done"] for r in _runs(final)) == [N_QUESTIONS, N_QUESTIONS]


def test_resuming_a_shard_finishes_only_its_own_questions(tmp_path):
    s1 = _shards(tmp_path, count=3)[1]
    partial = _interrupted_copy(s1, tmp_path / "partial.db", drop=2)
    [run] = _runs(partial)
    summary = resume(partial, run["id"], backend=_answering_backend())
    assert summary["trajectories"] == summary["planned"] == 4
    with Store.open_readonly(partial) as store:
        assert sorted(r["qidx"] for r in store.trajectory_rows(run["id"])) == [1, 4, 7, 10]


@pytest.mark.parametrize("args, message", [
    (["--shard", "3/3"], "0 <= I < N"),
    (["--shard", "one/2"], "expected I/N"),
    (["--job", "x"], "--job names the evaluation that --shard splits"),
])
def test_bad_shard_options_are_refused_in_one_line(tmp_path, capsys, args, message):
    try:
        code = main(["eval", "--db", str(tmp_path / "runs.db"), "--no-open", *args])
    except SystemExit as exc:  # argparse refuses a malformed option value itself
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "runs.db").exists()


def test_the_merge_command_names_the_shards_it_joined(tmp_path, capsys):
    shards = _shards(tmp_path, count=2)
    assert main(["merge", str(tmp_path / "out.db"), *map(str, shards)]) == 0
    err = capsys.readouterr().err
    assert "→1 as shard 0" in err and "→1 as shard 1" in err


def test_a_parts_id_range_covers_its_trajectories_when_another_runs_sit_between_them(tmp_path):
    # A train rank's database holds its held-out eval runs too, their trajectories written between
    # the rank's own: the part's ids in OUT are then not consecutive, and its range must still hold them.
    from core.data.records import Question
    from core.store import TrajectoryOutcome

    src = tmp_path / "rank0.db"
    done = TrajectoryOutcome(status="done", finish_reason="answered", final_answer="a", turns=1, tool_calls=0,
                             tool_errors=0, tokens=None, reward=1.0)
    with Store.open(src) as store:
        part = store.create_run("train", "t-shard0of1", "m", {"shard": [0, 1], "job": "j"})
        other = store.create_run("eval", "held-out", "m", {}, parent_run_id=part)
        questions = [Question(f"q{i}", f"question {i}?", "a") for i in range(2)]
        store.add_questions(part, questions)
        store.add_questions(other, questions)
        for run in (part, other, part):
            store.finish_trajectory(run, store.start_trajectory(run, 0, questions[0]), done)
        store.finish_run(other, "done")
        store.finish_run(part, "done")
    out = tmp_path / "out.db"
    merge_databases(out, [src])
    with Store.open_readonly(out) as store:
        merged = next(r["id"] for r in store.runs() if r["kind"] == "train")
        first, last = store.conn.execute("SELECT first_id, last_id FROM run_parts WHERE run_id=?",
                                         (merged,)).fetchone()
        held = store.conn.execute("SELECT COUNT(*) FROM trajectories WHERE run_id=? AND id BETWEEN ? AND ?",
                                  (merged, first, last)).fetchone()[0]
        assert held == 2
        assert next(r for r in store.runs() if r["kind"] == "eval")["parent_run_id"] == merged
