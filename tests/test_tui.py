"""The TUI driven with keys (Pilot): runs → trajectories → trajectory → tokens, filters, safety."""

from __future__ import annotations

import pytest

from inspector.tui.app import create_app
from inspector.tui.screens.group import GroupScreen
from inspector.tui.screens.help import HelpScreen
from inspector.tui.screens.runs import RunsScreen
from inspector.tui.screens.trajectories import TrajectoriesScreen
from inspector.tui.screens.trajectory import TrajectoryScreen
from inspector.tui.widgets.paged_table import PagedTable
from tests import tui_fixtures

SIZE = (140, 40)


@pytest.fixture
def db(tmp_path):
    return tui_fixtures.build(tmp_path / "runs.db")


def _app(db, **kw):
    return create_app(db, refresh_seconds=0, **kw)


_settle = tui_fixtures.settle


def cells(table, row: int) -> dict[str, str]:
    """One row of a table as {column key: the text shown}."""
    return {str(col.key.value): str(value) for col, value in zip(table.ordered_columns, table.get_row_at(row))}


async def test_runs_screen_lists_both_runs(db):
    app = _app(db)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        table = app.screen.query_one("#runs-table")
        assert table.row_count == 2
        names = {cells(table, i)["name"] for i in range(2)}
        assert names == {"demo-eval", "grpo-demo"}


async def test_open_run_filter_and_clear(db):
    app = _app(db)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("down", "enter")  # the eval run is the older one, second row
        await _settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrajectoriesScreen) and screen.run_info["name"] == "demo-eval"
        table = screen.query_one(PagedTable)
        assert table.row_count == 30
        await pilot.press("e")  # tool errors only
        await _settle(pilot)
        assert table.row_count == 6
        assert "tool error" in str(screen.query_one("#filter-line").render())
        await pilot.press("x")
        await _settle(pilot)
        assert table.row_count == 30
        await pilot.press("c", "c")  # correct: any → yes → no
        await _settle(pilot)
        assert all(cells(table, i)["correct"] == "✘" for i in range(table.row_count))


async def test_search_messages_and_question_filter(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        screen = app.screen
        await pilot.press("slash")
        await pilot.press(*"web_search", "enter")
        await _settle(pilot)
        table = screen.query_one(PagedTable)
        assert table.row_count == 6
        await pilot.press("slash")
        screen.query_one("#search").value = "q:observatory 7?"
        await pilot.press("enter")
        await _settle(pilot)
        assert table.row_count == 1


async def test_sort_by_reward_descending(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        screen = app.screen
        screen.action_sort("reward")
        await _settle(pilot)
        table = screen.query_one(PagedTable)
        rewards = [float(cells(table, i)["reward"]) for i in range(table.row_count)]
        assert rewards == sorted(rewards, reverse=True)


async def test_trajectory_screen_tokens_toggle_and_next(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("enter")
        await _settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrajectoryScreen)
        first = screen.trajectory_id
        await pilot.press("t")
        await _settle(pilot)
        assert screen.query_one("#views").current == "tokens"
        await pilot.press("t")
        assert screen.query_one("#views").current == "transcript"
        await pilot.press("n")
        await _settle(pilot)
        assert screen.trajectory_id != first
        await pilot.press("p")
        await _settle(pilot)
        assert screen.trajectory_id == first
        await pilot.press("escape")
        assert isinstance(app.screen, TrajectoriesScreen)


async def test_next_follows_the_filtered_list(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("e")
        await _settle(pilot)
        await pilot.press("enter")
        await _settle(pilot)
        screen = app.screen
        seen = [screen.trajectory_id]
        for _ in range(5):
            await pilot.press("n")
            seen.append(screen.trajectory_id)
        assert all(app.store.trajectory(t)["tool_errors"] == 1 for t in seen)
        assert len(set(seen)) == 6


async def test_hostile_model_text_is_shown_literally(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        screen = app.screen
        table = screen.query_one(PagedTable)
        await pilot.press(*["down"] * 3, "enter")  # the fourth trajectory is the hostile one
        await _settle(pilot)
        traj = app.screen
        assert traj.row["final_answer"].startswith("[bold red]")
        shown = " ".join(str(w.render()) for w in traj.query("Static"))
        assert "[bold red]not bold[/]" in shown and "[link=http://evil.example]" in shown
        assert "\x1b" not in shown
        assert table is not None


async def test_group_view_shows_the_samples_of_one_question(db):
    app = _app(db, open_run=2)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("a")  # from the steps screen, every trajectory
        await _settle(pilot)
        await pilot.press("g")
        await _settle(pilot)
        assert isinstance(app.screen, GroupScreen)
        table = app.screen.query_one("#group-table")
        assert table.row_count == 4
        advantages = sorted(str(table.get_row_at(i)[4]) for i in range(4))
        assert advantages == ["-1.000", "-1.000", "1.000", "1.000"]


async def test_help_and_palette_offer_the_screen_actions(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Search" in titles and "Clear filters" in titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, TrajectoriesScreen)


async def test_viewer_never_writes(db):
    before = db.read_bytes()
    app = _app(db, open_run=1)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("enter")
        await _settle(pilot)
        await pilot.press("t", "n", "y")
        await _settle(pilot)
    assert db.read_bytes() == before


async def test_a_running_run_is_followed_as_it_is_written(tmp_path):
    from core.data.records import Question
    from core.store import Store

    db = tmp_path / "live.db"
    writer = Store.open(db)  # this process is the writer, so the run reads as running
    run = writer.create_run("eval", "live", "m", {}, n_planned=3)
    q = Question("q0", "Where?", "Qoruna")
    writer.add_questions(run, [q])
    writer.start_trajectory(run, 0, q)
    app = create_app(db, refresh_seconds=0.1, open_run=run)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        table = app.screen.query_one(PagedTable)
        assert table.row_count == 1
        writer.start_trajectory(run, 0, q)
        writer.start_trajectory(run, 0, q)
        await pilot.pause(0.4)
        await _settle(pilot)
        assert table.row_count == 3
    writer.close()


async def test_a_trajectory_opens_straight_away_by_its_id(db):
    from core.store import Store, StoreError

    with Store.open_readonly(db) as store:
        train = next(r["id"] for r in store.runs() if r["kind"] == "train")
        tid = store.trajectory_rows(train, limit=100)[5]["id"]
    app = _app(db, open_trajectory=tid)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.pause(0.2)
        await _settle(pilot)
        assert isinstance(app.screen, TrajectoryScreen) and app.screen.trajectory_id == tid
        await pilot.press("escape")
        await _settle(pilot)
        assert isinstance(app.screen, TrajectoriesScreen) and app.screen.run_id == train
        assert app.screen._current_id() == tid
    with pytest.raises(StoreError, match="no trajectory 99999"):
        _app(db, open_trajectory=99999)
    with pytest.raises(StoreError, match=f"trajectory {tid} is of run {train}"):
        _app(db, open_trajectory=tid, open_run=train + 100)


def test_view_refuses_an_unknown_trajectory_in_one_line(db, capsys):
    from inspector.cli import main

    assert main([str(db), "--trajectory", "99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no trajectory 99999" in err[0]
