"""The TUI's comparison: `c` marks run A on the runs screen, `c` on another run compares them by
question (inspector/tui/screens/compare.py); Enter sets one question's two transcripts side by side."""

from __future__ import annotations

import asyncio

from textual.widgets import DataTable, Static

from core.data.records import Message, Question
from core.store import Store, TrajectoryOutcome
from inspector.tui.app import create_app
from inspector.tui.screens.compare import CompareScreen, PairScreen
from inspector.tui.widgets.transcript import Transcript
from tests.tui_fixtures import wait_until

HOSTILE = "[bold red]not bold[/] \x1b[31mred?\x1b[0m where?"


def _traj(store: Store, run: int, text: str, correct: bool, answer: str) -> int:
    tid = store.start_trajectory(run, 0, Question("q", text, "Qoruna"))
    store.add_messages(tid, [(0, Message("user", text, 0)), (1, Message("assistant", answer, 1))])
    store.finish_trajectory(run, tid, TrajectoryOutcome(
        status="done", finish_reason="answered", final_answer=answer, turns=1, tool_calls=0, tool_errors=0,
        tokens=None, reward=float(correct), correct=correct))
    return tid


def _db(tmp_path):
    path = tmp_path / "runs.db"
    with Store.open(path) as store:
        a = store.create_run("eval", "base", "m", {})
        b = store.create_run("eval", "ckpt", "m", {})
        ids = {"gain_a": _traj(store, a, "Where is the observatory?", False, "Istel"),
               "same_a": _traj(store, a, HOSTILE, True, "Qoruna [link=x]")}
        ids["same_b"] = _traj(store, b, HOSTILE, True, "Qoruna")
        ids["gain_b"] = _traj(store, b, "Where is  the observatory?", True, "Qoruna")  # spacing differs
        store.finish_run(a, "done")
        store.finish_run(b, "done")
    return path, ids


async def test_c_marks_a_run_then_compares_it_with_another_and_enter_opens_both(tmp_path):
    path, ids = _db(tmp_path)
    app = create_app(path, refresh_seconds=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        runs = app.screen
        table = runs.query_one(DataTable)
        table.move_cursor(row=1)  # newest first: run 1 ("base") is the second row
        await pilot.press("c")
        assert runs.compare_from == 1
        assert "run 1 marked as A" in str(runs.query_one("#runs-status", Static).render())
        await pilot.press("c")  # again on the same run: unmarked
        assert runs.compare_from is None
        await pilot.press("c")
        table.move_cursor(row=0)
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CompareScreen) and (screen.run_a, screen.run_b) == (1, 2)
        await wait_until(pilot, lambda: screen.loaded)
        rows = screen.query_one(DataTable)
        first = [str(c) for c in rows.get_row_at(0)]
        assert first[0] == "wrong→right" and first[1] == "0/1→1/1"  # matched by text, spacing aside
        shown = "\n".join(str(c) for i in range(rows.row_count) for c in rows.get_row_at(i))
        assert "[bold red]not b" in shown and "\x1b" not in shown  # data, never markup (clipped at 80 columns)
        summary = str(screen.query_one("#compare-summary", Static).render())
        assert "gained 1" in summary and "2 questions in both" in summary
        await pilot.press("enter")
        pair = app.screen
        assert isinstance(pair, PairScreen) and pair.ids == (ids["gain_a"], ids["gain_b"])
        await wait_until(pilot, lambda: pair.loaded)
        await pilot.pause(0.2)
        left, right = pair.query_one("#pair-a", Transcript), pair.query_one("#pair-b", Transcript)
        assert "Istel" in _text(left) and "Qoruna" in _text(right)
        await pilot.press("escape")
        assert app.screen is screen


async def test_a_question_only_one_run_asked_opens_nothing(tmp_path):
    path, _ = _db(tmp_path)
    with Store.open(path) as store:
        _traj(store, 2, "Only B asked this?", False, "no")
    app = create_app(path, refresh_seconds=0)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = CompareScreen(1, 2)
        await app.push_screen(screen)
        await wait_until(pilot, lambda: screen.loaded)
        rows = screen.query_one(DataTable)
        last = rows.row_count - 1
        assert str(rows.get_row_at(last)[0]) == "only in B"
        rows.move_cursor(row=last)
        await pilot.press("enter")
        await asyncio.sleep(0.1)
        assert app.screen is screen


async def test_an_unknown_run_is_said_on_the_screen(tmp_path):
    path, _ = _db(tmp_path)
    app = create_app(path, refresh_seconds=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = CompareScreen(1, 99)
        await app.push_screen(screen)
        await wait_until(pilot, lambda: screen.loaded)
        assert "cannot compare runs 1 and 99" in str(screen.query_one("#compare-summary", Static).render())


def _text(transcript: Transcript) -> str:
    return "\n".join(str(w.render()) for w in transcript.query(Static))
