"""`rl-inspect FOLDER` follows the folder while the TUI is open: step files a training run writes
meanwhile are imported in a worker (core.importers.cache.FolderFollower) and appear by themselves."""

from __future__ import annotations

import json

from textual.widgets._header import HeaderTitle

from core.importers.cache import cached_import
from inspector.tui.app import create_app
from inspector.tui.screens.trajectories import TrajectoriesScreen
from inspector.tui.widgets.paged_table import PagedTable
from tests.test_import_follow import _verl_step
from tests.tui_fixtures import wait_until


async def test_a_step_file_written_while_the_tui_is_open_appears_in_the_table(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "rollouts"
    _verl_step(folder, 1)
    db, _ = cached_import(folder)
    app = create_app(db, refresh_seconds=0.05, title="rollouts (imported)", follow=folder, follow_seconds=0.05)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.push_screen(TrajectoriesScreen(1))
        await wait_until(pilot, lambda: app.screen.query(PagedTable) and app.screen.query_one(PagedTable).row_count == 2)
        assert app.sub_title == "rollouts (imported) · following"
        _verl_step(folder, 2, n=3)  # the training run writes its next step
        await wait_until(pilot, lambda: app.screen.query_one(PagedTable).row_count == 5)
        await wait_until(pilot, lambda: "+3 trajectories (step 2)" in app.sub_title)

        # A malformed step file: its error is shown as text (never markup) and following goes on.
        bad = folder / "[bold]x.jsonl"
        bad.write_text(json.dumps({"input": "p", "score": 1.0, "step": 3}) + "\n", encoding="utf-8")
        await wait_until(pilot, lambda: "[bold]x.jsonl" in app.sub_title)
        assert "field 'output'" in app.sub_title
        await pilot.pause()
        assert "[bold]x.jsonl" in app.screen.query_one(HeaderTitle).render().plain
        assert any("[bold]x.jsonl" in n.message for n in app._notifications)
        bad.unlink()
        _verl_step(folder, 3, n=1)
        await wait_until(pilot, lambda: app.screen.query_one(PagedTable).row_count == 6)
        await wait_until(pilot, lambda: "+1 trajectory (step 3)" in app.sub_title)
        assert "x.jsonl" not in app.sub_title
    assert app.return_code in (None, 0)


async def test_without_follow_nothing_is_imported(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "rollouts"
    _verl_step(folder, 1)
    db, _ = cached_import(folder)
    app = create_app(db, refresh_seconds=0, title="rollouts (imported)")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert app.follower is None and app.sub_title == "rollouts (imported)"


def test_a_followed_folder_names_the_header_and_a_file_is_refused(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "rollouts"
    step = _verl_step(folder, 1)
    db, _ = cached_import(folder)
    app = create_app(db, refresh_seconds=0, follow=folder, follow_seconds=0)
    try:
        assert app.sub_title == "rollouts (imported)" and app.follower.db == db  # not the cache file's name
    finally:
        app.store.close()
    with pytest.raises(ValueError, match="not a folder"):
        create_app(db, refresh_seconds=0, follow=step)
