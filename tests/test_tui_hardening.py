"""The inspector's keys, layout, search, live following and database faults, driven with Pilot.

Each test stands for one defect a user met in a real terminal: it fails on the code before the fix.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from core.data.records import Message, Question
from core.store import Store
from inspector.tui.app import create_app
from inspector.tui.keys import screen_keys
from inspector.tui.screens.runs import RunsScreen
from inspector.tui.screens.trajectories import TrajectoriesScreen, parse_search
from inspector.tui.screens.trajectory import SidePanel, TrajectoryScreen
from inspector.tui.widgets.paged_table import PagedTable
from inspector.tui.widgets.transcript import Transcript
from tests import tui_fixtures
from tests.tui_fixtures import settle

SMALL = (80, 24)


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    return tui_fixtures.build(tmp_path / "runs.db")


def _app(db, **kw):
    return create_app(db, refresh_seconds=0, **kw)


def _column_keys(table) -> list[str]:
    return [str(c.key.value) for c in table.ordered_columns]


# ---------------------------------------------------------------------------- keys and layout
async def test_s_sorts_by_the_column_under_the_column_cursor(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(PagedTable)
        keys = _column_keys(table)
        await pilot.press("right", "right", "s")  # id → correct → reward
        await settle(pilot)
        assert screen.query_state.sort == keys[2] == "reward" and screen.query_state.descending
        assert "↓" in str(table.columns[table.ordered_columns[2].key].label)
        await pilot.press("s")
        await settle(pilot)
        assert not screen.query_state.descending
        await pilot.press("left", "s")
        await settle(pilot)
        assert screen.query_state.sort == "correct"


async def test_verdict_columns_stay_on_screen_at_80_columns(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PagedTable)
        keys = _column_keys(table)
        for key in ("correct", "reward", "tool_errors"):
            region = table._get_column_region(keys.index(key))
            assert region.right <= SMALL[0], (key, region)


async def test_side_panel_scrolls_to_the_rewards_at_80x24(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "down", "enter")  # a long answer: the panel overflows
        await settle(pilot)
        side = app.screen.query_one(SidePanel)
        assert side.can_focus
        side.focus()
        await pilot.press("end")
        await settle(pilot)
        rewards = app.screen.query_one("#rewards")
        assert side.max_scroll_y > 0  # it did not fit, and scrolling reaches it
        assert rewards.region.y + rewards.region.height <= side.region.y + side.region.height + 1


async def test_help_and_palette_list_widget_keys(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        described = {(k.binding.key, k.binding.description) for k in screen_keys(app.screen)}
        for key in ("l", "r", "s", "t", "e", "d", "m", "question_mark", "q"):
            assert any(k == key for k, _ in described), key
        palette = [c.title for c in app.get_system_commands(app.screen)]
        assert "Fold reasoning" in palette and "Transcript/tokens" in palette
        await pilot.press("question_mark")
        await settle(pilot)
        listed = {(heading, description) for heading, _key, description in app.screen.rows}
        assert ("Transcript", "Fold reasoning") in listed and ("Token view", "Colour: mask/logprob/advantage/gap") in listed


async def test_help_and_quit_keys_are_visible_at_80_columns(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        hint = app.screen.query_one("#key-hint")
        assert "? " in str(hint.render()) and "quit" in str(hint.render())
        assert hint.region.right <= SMALL[0] and hint.region.width > 0


# ---------------------------------------------------------------------------- search
def test_search_box_terms_combine():
    assert parse_search("step:3 Qoruna") == parse_search("Qoruna step:3")
    terms = parse_search("step:3 Qoruna")
    assert (terms.step, terms.search, terms.question) == (3, "Qoruna", None)
    assert parse_search("q:observatory 7 step:2").question == "observatory 7"
    assert parse_search("Qor", typing=True).search == "Qor*"
    assert parse_search("Qor*", typing=True).search == "Qor*"


async def test_prefix_search_finds_words_by_their_start(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(PagedTable)
        await pilot.press("slash", *"Veltra", "enter")
        await settle(pilot)
        assert table.row_count == 0  # a whole word only
        await pilot.press("slash")
        screen.query_one("#search").value = "Veltra*"
        await pilot.press("enter")
        await settle(pilot)
        assert table.row_count == 24  # every trajectory whose search found the gold chunk


async def test_search_applies_as_you_type(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("slash", *"web_se")
        await pilot.pause(0.6)
        await settle(pilot)
        assert screen.query_state.filter.search == "web_se*"
        assert screen.query_one(PagedTable).row_count == 6


async def test_step_filter_combines_with_a_text_search(db):
    app = _app(db, open_run=2)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("a")  # a train run opens on its steps: `a` lists every trajectory
        await settle(pilot)
        screen = app.screen
        await pilot.press("c")  # correct only: the filters the keys set stay
        await pilot.press("slash")
        screen.query_one("#search").value = "step:1 Qoruna"
        await pilot.press("enter")
        await settle(pilot)
        f = screen.query_state.filter
        assert (f.step, f.search, f.correct) == (1, "Qoruna", True)
        assert screen.query_one(PagedTable).row_count == 4


async def test_opened_search_hit_is_marked_and_scrolled_to(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"Other text", "enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, TrajectoryScreen) and screen.hits == [3]
        transcript = screen.query_one(Transcript)
        marked = [b for b in transcript.query(".search-hit")]
        assert [b.message_index for b in marked] == [3]
        block = marked[0].virtual_region
        assert transcript.scroll_y == min(block.y, transcript.max_scroll_y) > 0  # scrolled to it
        spans = [s for w in marked[0].query("Static") for s in getattr(w.content, "spans", [])]
        assert any("yellow" in str(s.style) for s in spans)


# ---------------------------------------------------------------------------- trajectory keys
async def test_e_jumps_to_the_tool_error_and_d_to_drift(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "enter")  # the tool-error trajectory
        await settle(pilot)
        screen = app.screen
        assert screen.row["tool_errors"] == 1
        transcript = screen.query_one(Transcript)
        assert transcript.next_tool_error() == 2


async def test_y_saves_the_json_and_says_where(db, tmp_path):
    app = _app(db, open_run=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        saved = list((tmp_path / "cache" / "exports").glob("*.json"))
        assert len(saved) == 1
        assert json.loads(saved[0].read_text())["id"] == app.screen.trajectory_id
        notes = [n.message for n in app._notifications]
        assert any(str(saved[0]) in n for n in notes)


async def test_escape_puts_the_cursor_on_the_trajectory_last_shown(db):
    app = _app(db, open_run=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        for _ in range(4):
            await pilot.press("n")
            await settle(pilot)
        last = app.screen.trajectory_id
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TrajectoriesScreen)
        assert app.screen._current_id() == last


async def test_escape_finds_the_trajectory_on_another_page(tmp_path):
    db = tmp_path / "big.db"
    with Store.open(db) as store:
        run = store.create_run("eval", "big", "m", {}, n_planned=150)
        q = Question("q", "Where?", "Qoruna")
        store.add_questions(run, [q])
        for _ in range(150):
            store.start_trajectory(run, 0, q)
        store.finish_run(run, "done")
    app = _app(db, open_run=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(PagedTable)
        table.move_cursor(row=99)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("n", "n")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert screen.page_offset == 100 and screen._current_id() == 102


# ---------------------------------------------------------------------------- live following
async def test_a_run_started_after_the_viewer_opened_appears_by_itself(tmp_path):
    db = tmp_path / "live.db"
    writer = Store.open(db)
    app = create_app(db, refresh_seconds=0.1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs-table")
        assert table.row_count == 0
        run = writer.create_run("eval", "late", "m", {}, n_planned=3)
        await pilot.pause(0.5)
        await settle(pilot)
        assert table.row_count == 1
        assert isinstance(app.screen, RunsScreen)
        row = app.screen.rows[0]
        assert row.id == run and row.status == "running"
        writer.conn.execute("UPDATE runs SET created_at=? WHERE id=?", (time.time() - 42, run))
        await pilot.pause(0.5)
        await settle(pilot)
        assert app.screen.rows[0].duration >= 41  # a running run's duration counts up, not 0.0 s
    writer.close()


async def test_an_open_running_trajectory_grows_as_it_is_written(tmp_path):
    db = tmp_path / "live.db"
    writer = Store.open(db)
    run = writer.create_run("eval", "live", "m", {}, n_planned=1)
    q = Question("q0", "Where?", "Qoruna")
    writer.add_questions(run, [q])
    tid = writer.start_trajectory(run, 0, q)
    writer.add_messages(tid, [(0, Message("system", "sys", 0)), (1, Message("user", "Where?", 0))])
    app = create_app(db, refresh_seconds=0.1, open_run=run)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert len(screen.messages) == 2
        writer.add_messages(tid, [(2, Message("assistant", "LIVE-REPLY", 1))])
        await pilot.pause(0.5)
        await settle(pilot)
        assert len(screen.messages) == 3
        shown = "".join(str(w.render()) for w in screen.query_one(Transcript).query("Static"))
        assert "LIVE-REPLY" in shown
        # No tokens yet: the lint panel says it has not checked, not that the mask is clean.
        lint = str(screen.query_one("#lint").render())
        assert "not checked yet" in lint and "no mask faults" not in lint, lint
    writer.close()


# ---------------------------------------------------------------------------- database faults
async def test_a_locked_database_is_retried_with_a_notice(db):
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")  # WAL readers are never blocked; rollback-journal ones are
    app = _app(db)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        await pilot.press("enter")
        await pilot.pause(1.0)
        notes = [n.message for n in app._notifications]
        assert any("locked" in n for n in notes), notes
        assert time.monotonic() - started < 5  # the keyboard stayed live
        locker.execute("ROLLBACK")
        locker.close()
        await pilot.pause(1.0)
        await settle(pilot)
        from inspector.tui.screens.steps import StepsScreen

        # The newest run is the train run: it opens on its steps.
        assert app.return_code is None and isinstance(app.screen, StepsScreen)
        assert app.screen.query_one("#steps-table").row_count == 2


async def test_a_damaged_trajectory_shows_an_error_and_the_app_goes_on(db, monkeypatch):
    app = _app(db, open_run=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)

        def broken(*args, **kwargs):
            raise sqlite3.DatabaseError("database disk image is malformed")

        monkeypatch.setattr(app.store, "messages", broken)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrajectoryScreen) and app.return_code is None
        assert "cannot be read" in str(screen.query_one("#trajectory-line").render())
        monkeypatch.undo()
        await pilot.press("n")
        await settle(pilot)
        assert screen.row is not None and len(screen.messages) > 0


async def test_trajectory_line_names_the_drift_kind_and_the_finish_detail(tmp_path):
    from core.store import TrajectoryOutcome

    db = tmp_path / "drift.db"
    with Store.open(db) as store:
        run = store.create_run("eval", "drift", "m", {}, n_planned=1)
        q = Question("q", "Where?", "Qoruna")
        store.add_questions(run, [q])
        tid = store.start_trajectory(run, 0, q)
        store.finish_trajectory(run, tid, TrajectoryOutcome(
            status="done", finish_reason="template_mismatch", final_answer="", turns=1, tool_calls=1,
            tool_errors=0, tokens=None, drift_at=12, drift_kind="template_rewrite",
            finish_detail="the template rewrote turn 1's closing"))
        store.finish_run(run, "done")
    app = _app(db, open_run=1)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        line = str(app.screen.query_one("#trajectory-line").render())
        assert "drift at token 12 (template_rewrite)" in line and "rewrote turn 1's closing" in line


def test_connection_guard_closes_only_after_the_last_read():
    """Closing the app's connection while a worker reads from it crashed the interpreter (a
    segfault when a test app exited during a poll): the guard defers the close."""
    from inspector.tui.reads import ConnectionClosed, ConnectionGuard

    closed = []
    guard = ConnectionGuard(lambda: closed.append(True))
    with guard.in_use():
        with guard.in_use():
            guard.close()
            assert not closed
        assert not closed
    assert closed == [True]
    with pytest.raises(ConnectionClosed):
        with guard.in_use():
            pass
    fresh = ConnectionGuard(lambda: closed.append("now"))
    fresh.close()
    assert closed[-1] == "now"
