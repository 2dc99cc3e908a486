"""Launching evaluations from the TUI (inspector.launch, inspector/tui/screens/launch.py): the
form's values checked before anything starts, the eval run as `rl-inspect eval` in a process of
its own, cancelled with SIGTERM (finished work kept, run marked cancelled) and resumed."""

from __future__ import annotations

import time

import pytest
from textual.widgets import DataTable, Input, Static

from core.store import Store
from inspector.launch import LaunchForm, launch
from inspector.tui.app import create_app
from inspector.tui.screens.launch import LaunchScreen
from tests.tui_fixtures import build, wait_until


@pytest.mark.parametrize("field, value, reason", [
    ("limit", "x1", "limit: not a whole number"),
    ("limit", "0", "--limit must be at least 1"),
    ("temperature", "-1", "--temperature must be >= 0"),
    ("temperature", "hot", "temperature: not a number"),
    ("split", "dev", "invalid choice: 'dev'"),
    ("judge", "vibes", "invalid choice: 'vibes'"),
    ("corpus", "/no/such/corpus.md", "corpus: no such file or folder"),
    ("max_new_tokens", "0", "--max-new-tokens must be at least 1"),
])
def test_the_form_refuses_a_bad_value_naming_it(field, value, reason):
    form = LaunchForm(**{field: value})
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace("-", r"\-")):
        form.argv()


def test_the_form_makes_the_cli_options_empty_fields_left_to_their_defaults(tmp_path):
    corpus = tmp_path / "notes.md"
    corpus.write_text("# Notes\n\nThe observatory is on Qoruna.\n", encoding="utf-8")
    form = LaunchForm(corpus=str(corpus), limit="2", temperature="0.7", name="my run [x]")
    assert form.argv() == ["--model", "embedded:smollm2-135m", "--corpus", str(corpus), "--split", "test",
                           "--limit", "2", "--temperature", "0.7", "--judge", "auto", "--name", "my run [x]"]


class RecordingLaunch:
    """Test double for inspector.launch.launch: records the calls, starts nothing."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, db, args, *, resume=None, python=None):
        self.calls.append((str(db), list(args), resume))
        raise OSError("test double: nothing started")


async def test_e_opens_the_form_a_bad_value_stays_in_it_a_good_one_launches(tmp_path, monkeypatch):
    import inspector.launch

    recorder = RecordingLaunch()
    monkeypatch.setattr(inspector.launch, "launch", recorder)
    db = build(tmp_path / "runs.db")
    app = create_app(db, refresh_seconds=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        runs = app.screen
        await pilot.press("e")
        form = app.screen
        assert isinstance(form, LaunchScreen)
        form.query_one("#launch-limit", Input).value = "two"
        await pilot.press("ctrl+s")
        assert app.screen is form and "limit: not a whole number" in str(form.query_one("#launch-error", Static).render())
        form.query_one("#launch-limit", Input).value = "2"
        form.query_one("#launch-name", Input).value = "[bold]x"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is runs)
        assert recorder.calls == [(str(db), ["--model", "embedded:smollm2-135m", "--split", "test", "--limit", "2",
                                              "--judge", "auto", "--name", "[bold]x"], None)]
        # R on a run that cannot be resumed says why and starts nothing
        runs.query_one(DataTable).move_cursor(row=0)
        await pilot.press("R")
        assert len(recorder.calls) == 1
        await pilot.press("x")  # not running: nothing to cancel
        await pilot.press("escape")


def test_an_eval_launched_runs_on_its_own_is_cancelled_by_sigterm_and_resumes(tmp_path):
    """The real command on the embedded model: cancelled as soon as its run exists (status
    cancelled, exit 130, the log says so), then resumed to the end."""
    db = tmp_path / "runs.db"
    args = LaunchForm(limit="2", max_new_tokens="24", max_generations="1", name="launched").argv()
    first = launch(db, args)
    run = _wait_for_run(db, first)
    first.cancel()
    assert first.process.wait(timeout=120) == 130
    assert "cancelled" in first.log_tail()
    with Store.open_readonly(db) as store:
        assert store.run(run)["status"] == "cancelled"
    second = launch(db, [], resume=run)
    assert second.process.wait(timeout=300) == 0, second.log_tail()
    with Store.open_readonly(db) as store:
        row = store.run(run)
        assert (row["status"], row["n_done"]) == ("done", 2)


def _wait_for_run(db, launched, timeout: float = 240.0) -> int:
    began = time.time()
    while time.time() - began < timeout:
        assert launched.running(), launched.log_tail()
        if db.exists():
            try:
                with Store.open_readonly(db) as store:
                    runs = store.runs()
                if runs and runs[0]["status"] == "running":
                    return runs[0]["id"]
            except Exception:  # noqa: BLE001 - the file is being created
                pass
        time.sleep(0.2)
    raise AssertionError(f"no run appeared: {launched.log_tail()}")
