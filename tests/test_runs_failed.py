"""A run's failed trajectories are counted where its progress is shown: done 4/6 of an ended run
said neither whether 2 were missing or failed (a fresh user's report on an Inspect log with 2
errored samples)."""

from __future__ import annotations

from core.data.records import Question
from core.store import Store, TrajectoryOutcome
from core.store.queries import run_rows
from inspector.tui.screens.runs import _cells


def _outcome(status: str) -> TrajectoryOutcome:
    return TrajectoryOutcome(status=status, finish_reason=None, final_answer="", turns=0, tool_calls=0,
                             tool_errors=0, tokens=None, rewards=[], reward=None, correct=None,
                             finish_detail="model error" if status == "failed" else None)


def test_failed_trajectories_are_counted_and_shown(tmp_path):
    with Store.open(tmp_path / "f.db") as store:
        run = store.create_run("eval", "e", "m", {}, n_planned=4)
        other = store.create_run("eval", "clean", "m", {}, n_planned=1)
        q = Question("q0", "q", "a")
        store.add_questions(run, [q])
        for status in ("done", "failed", "done", "failed"):
            store.finish_trajectory(run, store.start_trajectory(run, 0, q), _outcome(status))
        store.finish_trajectory(other, store.start_trajectory(other, 0, q), _outcome("done"))
        store.finish_run(run, "done")
        rows = {r.id: r for r in run_rows(store)}
    assert (rows[run].n_done, rows[run].n_failed, rows[other].n_failed) == (2, 2, 0)
    done_cell = _cells(rows[run], 20)[3]
    assert done_cell.plain.strip() == "2/4 ✘2"
    assert _cells(rows[other], 20)[3].plain.strip() == "1/1"


def test_the_runs_command_shows_them_in_their_own_column(tmp_path, capsys, monkeypatch):
    from inspector.cli import RUNS_HEADER, main

    monkeypatch.setenv("COLUMNS", "200")
    db = tmp_path / "r.db"
    with Store.open(db) as store:
        run = store.create_run("eval", "e", "m", {}, n_planned=3)
        q = Question("q0", "q", "a")
        store.add_questions(run, [q])
        for status in ("done", "failed", "failed"):
            store.finish_trajectory(run, store.start_trajectory(run, 0, q), _outcome(status))
        store.finish_run(run, "done")
    assert main(["runs", str(db)]) == 0
    header, row = capsys.readouterr().out.rstrip("\n").splitlines()
    assert header == RUNS_HEADER
    at = header.index("failed")
    assert row[at:at + len("failed")].strip() == "2"
