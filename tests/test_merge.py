"""`rl-inspect merge OUT IN...`: runs of several writers' databases in one file, idempotently."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from core.data.records import Question
from core.store import Store, StoreError
from core.store.merge import merge_databases
from tests import tui_fixtures
from tests.test_store_migration import _v1_database


def _db(path, created_at: float):
    """The TUI fixture's database (an eval run of 30, a train run of 8 with steps), its runs
    made distinct from another copy's by their creation time."""
    tui_fixtures.build(path)
    con = sqlite3.connect(path)
    con.execute("UPDATE runs SET created_at = created_at + ?", (created_at,))
    con.commit()
    con.close()
    return path


def _everything(path) -> dict:
    """Every run's content, keyed by identity, independent of row ids: what must survive."""
    out = {}
    with Store.open_readonly(path) as store:
        for run in store.runs():
            trajectories = []
            for row in store.trajectory_rows(run["id"], limit=10_000):
                tid = row["id"]
                tokens = store.tokens(tid)
                trajectories.append((
                    {k: v for k, v in row.items() if k not in ("id", "run_id")},
                    [(m.role, m.content, m.turn, m.token_start, m.token_end,
                      m.tool_call and m.tool_call.name, m.tool_error and m.tool_error.kind)
                     for m in store.messages(tid)],
                    None if tokens is None else (tokens.ids, tokens.mask, [None if x != x else round(x, 6) for x in tokens.logprobs]),
                    sorted((r.name, r.value, r.weight) for r in store.rewards(tid))))
            parent = run["parent_run_id"]
            key = (run["kind"], run["name"], run["created_at"])
            out[key] = {
                "status": run["status"], "n_done": run["n_done"], "reward_sum": run["reward_sum"],
                "parent": None if parent is None else store.run(parent)["name"],
                "questions": [q.question for q in store.questions(run["id"])],
                "steps": [s["step"] for s in store.train_steps(run["id"])],
                "trajectories": trajectories,
            }
    return out


def test_two_databases_merge_without_loss_and_a_second_merge_changes_nothing(tmp_path):
    a, b = _db(tmp_path / "a.db", 0), _db(tmp_path / "b.db", 1000)
    out = tmp_path / "out.db"
    report = merge_databases(out, [a, b])
    assert len(report.copied) == 4 and report.trajectories == 2 * (30 + 8)
    merged = _everything(out)
    assert merged == {**_everything(a), **_everything(b)}
    with Store.open_readonly(out) as store:  # the full-text index was filled for the copies
        run = next(r["id"] for r in store.runs() if r["name"] == "demo-eval")
        assert store.search_messages(run, "Qoruna")
    again = merge_databases(out, [a, b, a])
    assert not again.copied and len(again.unchanged) == 6
    assert _everything(out) == merged


def test_a_copy_further_along_replaces_the_older_one_whole(tmp_path):
    early = tmp_path / "early.db"
    with Store.open(early) as store:
        run = store.create_run("eval", "growing", "m", {}, n_planned=5)
        q = Question("q0", "Where?", "Qoruna")
        store.add_questions(run, [q])
        store.start_trajectory(run, 0, q)
        store.finish_run(run, "cancelled")
    late = tmp_path / "late.db"
    shutil.copy(early, late)
    with Store.open(late) as store:  # the same run, resumed and finished elsewhere
        tui_fixtures._write(store, run, 0, q, "answered")
        tui_fixtures._write(store, run, 0, q, "wrong")
        store.conn.execute("UPDATE runs SET updated_at = updated_at + 10, status='done' WHERE id=?", (run,))
    out = tmp_path / "out.db"
    merge_databases(out, [early])
    report = merge_databases(out, [late, early])  # the later copy wins whatever the order
    assert report.replaced == 1 and len(report.unchanged) == 1
    merged = _everything(out)
    assert merged == _everything(late)
    with Store.open_readonly(out) as store:
        assert len(store.runs()) == 1
        assert store.conn.execute("SELECT count(*) FROM trajectories").fetchone()[0] == 3
        assert store.conn.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'Qoruna'").fetchone()[0] \
            == store.conn.execute("SELECT count(*) FROM messages WHERE content LIKE '%Qoruna%'").fetchone()[0]


def test_a_train_runs_evaluations_keep_their_parent(tmp_path):
    src = tmp_path / "train.db"
    with Store.open(src) as store:
        train = store.create_run("train", "t", "m", {}, n_planned=1)
        child = store.create_run("eval", "t@step1", "m", {}, parent_run_id=train, train_step=1)
        store.finish_run(child, "done")
        store.finish_run(train, "done")
    out = _db(tmp_path / "out.db", 0)  # OUT already holds runs: the ids move
    merge_databases(out, [src])
    with Store.open_readonly(out) as store:
        runs = {r["name"]: r for r in store.runs()}
        assert runs["t@step1"]["parent_run_id"] == runs["t"]["id"] != train


def test_a_running_run_is_skipped_and_an_orphaned_one_copied_as_interrupted(tmp_path):
    src = tmp_path / "live.db"
    writer = Store.open(src)  # this process is alive: its run is running
    live = writer.create_run("eval", "live", "m", {}, n_planned=3)
    dead = writer.create_run("eval", "dead", "m", {}, n_planned=3)
    writer.conn.execute("UPDATE runs SET pid=999999999 WHERE id=?", (dead,))  # no such process
    out = tmp_path / "out.db"
    report = merge_databases(out, [src])
    assert [r[1] for r in report.skipped_running] == [live]
    with Store.open_readonly(out) as store:
        assert [(r["name"], r["status"]) for r in store.runs()] == [("dead", "interrupted")]
    writer.finish_run(live, "done")
    writer.close()
    report = merge_databases(out, [src])
    assert [r[1] for r in report.copied] == [live]


def test_an_older_schema_input_is_read_and_its_missing_columns_left_null(tmp_path):
    old = tmp_path / "old.db"
    _v1_database(old)
    out = tmp_path / "out.db"
    merge_databases(out, [old])
    with Store.open_readonly(out) as store:
        row = store.trajectory_rows(store.runs()[0]["id"])[0]
        assert row["drift_at"] == 7 and row["drift_kind"] is None


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such database"),
    (lambda p: p.write_bytes(b"not a database at all" * 100), "cannot read"),
    (lambda p: _bump_version(_db(p, 0)), "newer"),
])
def test_bad_inputs_are_refused_before_anything_is_written(tmp_path, make, message):
    good = _db(tmp_path / "good.db", 0)
    bad = tmp_path / "bad.db"
    make(bad)
    out = tmp_path / "out.db"
    with pytest.raises(StoreError, match=message) as info:
        merge_databases(out, [good, bad])
    assert "bad.db" in str(info.value)
    assert not out.exists()


def test_out_named_as_an_input_is_refused(tmp_path):
    out = _db(tmp_path / "out.db", 0)
    with pytest.raises(StoreError, match="output database"):
        merge_databases(out, [out])


def _bump_version(path):
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()


def test_the_merge_command_says_what_it_did_and_refuses_bad_input(tmp_path, capsys):
    from inspector.cli import main

    a, b = _db(tmp_path / "a.db", 0), _db(tmp_path / "b.db", 1000)
    out = tmp_path / "out.db"
    assert main(["merge", str(out), str(a), str(b)]) == 0
    err = capsys.readouterr().err
    assert "a.db: 2 runs copied (1→1, 2→2), 0 already in" in err and "76 trajectories copied" in err
    assert main(["merge", str(out), str(a), "--json"]) == 0
    captured = capsys.readouterr()
    import json

    assert json.loads(captured.out)["copied"] == [] and "0 runs copied, 2 already in" in captured.err
    assert main(["merge", str(tmp_path / "new.db"), str(tmp_path / "nope.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.db: no such database" in err[0]
    assert not (tmp_path / "new.db").exists()
