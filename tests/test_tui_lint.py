"""The mask lint in the TUI: the open trajectory's findings in its side panel, and `f` in the
token view moving the cursor to the token a finding names."""

from __future__ import annotations

import pytest

from core.data.records import Message, Question
from core.lint.findings import Finding
from core.rollout.tokens import TokenSequence
from core.store import Store, TrajectoryOutcome
from inspector.tui.app import create_app
from inspector.tui.screens.trajectory import TrajectoryScreen
from inspector.tui.widgets.lint_panel import LintPanel, lint_text
from inspector.tui.widgets.token_view import TokenView
from tests.tui_fixtures import settle


def _db(path):
    """One eval run: trajectory 1 clean, trajectory 2 trains its tool result (tokens 8-11)."""
    with Store.open(path) as store:
        run = store.create_run("eval", "lint-demo", "no-such-model", {}, n_planned=2)
        q = Question("q0", "Where?", "Qoruna")
        store.add_questions(run, [q])
        for bad in (False, True):
            t = TokenSequence()
            t.add_prompt([1, 2, 3, 4])
            t.add_generated([10, 11, 12, 13], [-0.1] * 4)
            if bad:
                t._add([20, 21, 22, 23], 1, [-0.2] * 4)  # a tool result with mask 1: the fault
            else:
                t.add_scaffold([20, 21, 22, 23])
            t.add_generated([30, 31], [-0.3, -0.4])
            tid = store.start_trajectory(run, 0, q)
            store.add_messages(tid, list(enumerate([
                Message("user", "Where?", 0, token_start=0, token_end=4),
                Message("assistant", "call", 1, token_start=4, token_end=8),
                Message("tool", "result", 1, token_start=8, token_end=12),
                Message("assistant", "Qoruna", 2, token_start=12, token_end=14)])))
            store.finish_trajectory(run, tid, TrajectoryOutcome(
                status="done", finish_reason="answered", final_answer="Qoruna", turns=2, tool_calls=1,
                tool_errors=0, tokens=t))
        store.finish_run(run, "done")
    return path


@pytest.fixture
def db(tmp_path):
    return _db(tmp_path / "lint.db")


def test_lint_text_is_literal_and_names_kind_and_tokens():
    f = Finding("trained_outside_assistant", 2, "mask 1 on [bold]tool[/] \x1b[31m", spans=((8, 12),))
    text = lint_text([f]).plain
    assert "trained_outside_assistant  tokens 8–11" in text and "[bold]tool[/] ␛[31m" in text
    assert "no mask faults" in lint_text([]).plain and "checking" in lint_text(None).plain


async def _wait(pilot, done) -> None:
    for _ in range(200):
        await settle(pilot)
        if done():
            return
        await pilot.pause(0.05)
    raise AssertionError("timed out")


async def test_side_panel_shows_findings_and_f_jumps_to_the_flagged_token(db):
    app = create_app(db, refresh_seconds=0, open_run=1)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await _wait(pilot, lambda: isinstance(app.screen, TrajectoryScreen)
                    and app.screen.query_one(LintPanel).findings is not None)
        screen = app.screen
        assert screen.trajectory_id == 1 and screen.query_one(LintPanel).findings == []
        assert "no mask faults" in str(screen.query_one(LintPanel).render())
        await pilot.press("n")
        panel = screen.query_one(LintPanel)
        await _wait(pilot, lambda: screen.trajectory_id == 2 and panel.findings)
        assert "trained_outside_assistant" in {f.kind for f in panel.findings}
        assert "trained_outside_assistant" in str(panel.render())
        await pilot.press("t")
        view = screen.query_one(TokenView)
        await _wait(pilot, lambda: view._data is not None and view.cursor is not None)
        assert view.cursor == 4  # the first trained token
        await pilot.press("f")
        assert view.cursor == 8  # the tool result's first token, trained by mistake


def test_runs_table_lint_cell_reads_the_summary():
    from inspector.tui.screens.runs import lint_cell

    assert lint_cell(None).plain == "–"
    assert lint_cell({"errors": 0, "warnings": 0, "info": 3, "kinds": {}}).plain == "✔"
    assert lint_cell({"errors": 0, "warnings": 2, "info": 0}).plain == "2!"
    cell = lint_cell({"errors": 4, "warnings": 2, "info": 0})
    assert cell.plain == "4✘" and "red" in str(cell.style)


async def test_runs_screen_shows_each_runs_lint_count(tmp_path, monkeypatch):
    from textual.widgets import DataTable

    from tests.tui_fixtures import build

    # The fixture's token ids are made up, so no real tokenizer decodes them to its texts: linted
    # without one (text_mismatch skipped), as the snapshots are.
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))

    app = create_app(build(tmp_path / "f.db"), refresh_seconds=0)
    async with app.run_test(size=(160, 30)) as pilot:
        await _wait(pilot, lambda: getattr(app.screen, "loaded", False))
        table = app.screen.query_one("#runs-table", DataTable)
        cells = {str(table.get_row_at(i)[1]).strip(): str(table.get_row_at(i)[7]).strip() for i in range(2)}
        assert cells == {"grpo-demo": "1✘", "demo-eval": "✔"}


def test_eval_summary_carries_the_lint_counts(db, capsys):
    from core.evaluate import run_summary
    from inspector.cli import _print_summary

    with Store.open(db) as store:
        summary = run_summary(store, 1)
    assert summary["lint"]["errors"] >= 1 and summary["lint"]["kinds"]["trained_outside_assistant"] == 1
    import sys

    _print_summary(summary, sys.stderr, "lint.db")
    err = capsys.readouterr().err
    assert "mask lint: " in err and "trained_outside_assistant 1" in err and "rl-inspect lint lint.db --run 1" in err


async def test_l_filters_the_trajectories_by_lint_findings_kind_by_kind(db):
    from inspector.tui.screens.trajectories import TrajectoriesScreen

    app = create_app(db, refresh_seconds=0, open_run=1)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrajectoriesScreen) and [r.id for r in screen.rows] == [1, 2]
        seen = []
        for _ in range(6):
            await pilot.press("l")
            await _wait(pilot, lambda: screen.shown is not None and screen.shown[0] == screen.query_state
                        and screen._lint is not None)
            f = screen.query_state.filter
            seen.append((f.ids_label, [r.id for r in screen.rows]))
            if f.ids_label is None:
                break
        assert seen[0] == ("lint any", [2])
        assert ("lint trained_outside_assistant", [2]) in seen
        assert seen[-1] == (None, [1, 2])  # around again: every trajectory
        line = str(screen.query_one("#filter-line").render())
        assert "lint" not in line


async def test_id_cells_carry_the_worst_finding_of_their_trajectory(db):
    from inspector.tui.screens.trajectories import TrajectoriesScreen
    from inspector.tui.widgets.paged_table import PagedTable

    app = create_app(db, refresh_seconds=0, open_run=1)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        assert isinstance(screen, TrajectoriesScreen)
        await _wait(pilot, lambda: screen._lint is not None)
        table = screen.query_one(PagedTable)
        ids = [str(table.get_row_at(i)[0]).strip() for i in range(table.row_count)]
        assert ids == ["1", "✘ 2"]


async def test_the_auto_lint_starts_after_the_first_page_is_shown(db, monkeypatch):
    """Its first use imports transformers for the run's tokenizer (seconds of a busy interpreter):
    started before the page was filled, it held the first page back."""
    from inspector.tui.screens.trajectories import TrajectoriesScreen
    from inspector.tui.widgets.paged_table import PagedTable

    rows_at_start = []
    run_lint = TrajectoriesScreen._run_lint

    def recording(self, version, apply):
        rows_at_start.append(self.query_one(PagedTable).row_count)
        return run_lint(self, version, apply)

    monkeypatch.setattr(TrajectoriesScreen, "_run_lint", recording)
    app = create_app(db, refresh_seconds=0, open_run=1)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        await _wait(pilot, lambda: screen._lint is not None)
    assert rows_at_start == [2]


async def test_cycling_the_colour_modes_says_which_are_missing_and_why(db):
    """An eval trajectory has no advantage and no trainer logprobs: `l` goes mask -> logprob ->
    mask, and says once, on wrapping, that advantage and gap have no data here and why."""
    app = create_app(db, refresh_seconds=0, open_run=1)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await _wait(pilot, lambda: isinstance(app.screen, TrajectoryScreen))
        await pilot.press("t")
        view = app.screen.query_one(TokenView)
        await _wait(pilot, lambda: view._data is not None)
        assert view.modes() == ("mask", "logprob")
        await pilot.press("l")
        assert view.mode == "logprob" and not app._notifications
        await pilot.press("l")
        await settle(pilot)
        assert view.mode == "mask"
        said = " ".join(str(n.message) for n in app._notifications)
        assert "advantage" in said and "gap" in said and "trainer logprobs" in said
