"""A run's pace (tokens/s, ETA) from successive reads of its counters, and where the runs screen shows it."""

from __future__ import annotations

import pytest

from core.store.pace import PaceTracker


def _observe(tracker, now, done, tokens, *, status="running", planned=10, duration=None, run=1):
    return tracker.observe(run, status=status, n_done=done, n_planned=planned, generated_tokens=tokens,
                           duration=now if duration is None else duration, now=now)


def test_a_finished_run_gets_its_average_and_no_eta():
    pace = _observe(PaceTracker(), 100.0, 10, 5000, status="done", duration=50.0)
    assert pace.tokens_per_second == pytest.approx(100.0)
    assert pace.eta_seconds is None


def test_before_anything_finishes_under_watch_the_run_average_stands_in():
    pace = _observe(PaceTracker(), 20.0, 2, 400)  # 2 of 10 done in 20 s
    assert pace.tokens_per_second == pytest.approx(20.0)
    assert pace.eta_seconds == pytest.approx(80.0)  # 8 left at 10 s each
    assert not pace.watched


def test_the_watched_pace_replaces_the_history_of_a_resumed_run():
    tracker = PaceTracker()
    # Resumed after a long pause: 5 done over 1000 s of age, but now one trajectory every 2 s.
    _observe(tracker, 1000.0, 5, 1000, duration=1000.0)
    pace = _observe(tracker, 1004.0, 7, 1400, duration=1004.0)
    assert pace.watched
    assert pace.tokens_per_second == pytest.approx(100.0)  # 400 tokens in 4 s
    assert pace.eta_seconds == pytest.approx(6.0)  # 3 left at 2 s each


def test_a_stalled_run_slows_its_rate_and_lengthens_its_eta():
    tracker = PaceTracker()
    _observe(tracker, 0.0, 0, 0, duration=1.0)
    first = _observe(tracker, 10.0, 5, 500, duration=11.0)
    later = _observe(tracker, 40.0, 5, 500, duration=41.0)
    assert later.tokens_per_second < first.tokens_per_second
    assert later.eta_seconds > first.eta_seconds


def test_old_samples_leave_the_window():
    tracker = PaceTracker(window=10.0)
    _observe(tracker, 0.0, 0, 0)
    for t in range(1, 31):
        pace = _observe(tracker, float(t), t // 2, 100 * (t // 2))  # a trajectory every 2 s
    assert pace.tokens_per_second == pytest.approx(50.0, rel=0.15)
    assert len(tracker._samples[1]) <= 13


def test_counters_that_go_back_start_over_and_a_run_that_ends_is_forgotten():
    tracker = PaceTracker()
    _observe(tracker, 0.0, 5, 500)
    pace = _observe(tracker, 2.0, 1, 100, duration=2.0)  # a new run under the same id
    assert pace.eta_seconds == pytest.approx(18.0)  # the run's own average: 9 left at 2 s each
    _observe(tracker, 3.0, 10, 1000, status="done", duration=3.0)
    assert 1 not in tracker._samples
    _observe(tracker, 4.0, 1, 10, run=2)
    tracker.forget_missing({1})
    assert 2 not in tracker._samples


def test_nothing_left_means_no_time_left():
    pace = _observe(PaceTracker(), 5.0, 10, 0)
    assert pace.eta_seconds == 0.0
    assert pace.tokens_per_second is None  # nothing generated: no rate to show


async def test_the_runs_screen_shows_a_running_runs_tok_s_and_eta(tmp_path):
    from core.data.records import Question
    from core.rollout.tokens import TokenSequence
    from core.store import Store, TrajectoryOutcome
    from inspector.tui.app import create_app
    from tests import tui_fixtures

    db = tmp_path / "live.db"
    writer = Store.open(db)  # this process writes, so the run reads as running
    run = writer.create_run("eval", "live", "m", {}, n_planned=4)
    q = Question("q0", "Where?", "Qoruna")
    writer.add_questions(run, [q])

    def finish_one() -> None:
        t = TokenSequence()
        t.add_prompt([1, 2, 3])
        t.add_generated([4] * 50, [-0.1] * 50)
        traj = writer.start_trajectory(run, 0, q)
        writer.finish_trajectory(run, traj, TrajectoryOutcome("done", "answer", "Qoruna", 1, 0, 0, t, correct=True))

    finish_one()
    app = create_app(db, refresh_seconds=0.1)
    async with app.run_test(size=(200, 30)) as pilot:
        await tui_fixtures.settle(pilot)
        await pilot.pause(0.3)
        finish_one()
        await pilot.pause(0.5)
        await tui_fixtures.settle(pilot)
        screen = app.screen
        status = str(screen.query_one("#runs-status").render())
        assert f"run {run} 2/4 · acc 100.0% · " in status, status
        assert "tok/s · eta " in status and "eta –" not in status, status
        pace = screen.paces[run]
        assert pace.watched and pace.tokens_per_second > 0 and pace.eta_seconds > 0
        cells = {str(c.key.value): str(v) for c, v in zip(screen.query_one("DataTable").ordered_columns,
                                                          screen.query_one("DataTable").get_row_at(0))}
        assert cells["eta"] != "–" and cells["tok/s"] != "–", cells
    writer.close()
