"""Screens as pictures (pytest-textual-snapshot), on a fixed database and a fixed clock.

Update after an intended change with: .venv/bin/python -m pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time

import pytest

from inspector.tui.app import create_app
from tests import tui_fixtures

SIZE = (130, 36)


@pytest.fixture
def app_factory(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))  # no tokenizer: token ids shown
    db = tui_fixtures.build(tmp_path / "runs.db")

    def make(**kw):
        return create_app(db, refresh_seconds=0, **kw)

    yield make
    time.tzset()


_settle = tui_fixtures.settle


def _keys(*keys):
    async def run(pilot):
        await _settle(pilot)
        for key in keys:
            await pilot.press(key)
            await _settle(pilot)
        await pilot.pause(0.1)
        await _settle(pilot)

    return run


def test_runs_screen(snap_compare, app_factory):
    assert snap_compare(app_factory(), terminal_size=SIZE, run_before=_keys())


def test_trajectories_screen_with_filter(snap_compare, app_factory):
    assert snap_compare(app_factory(open_run=1), terminal_size=SIZE, run_before=_keys("c", "c"))


def test_trajectory_transcript(snap_compare, app_factory):
    assert snap_compare(app_factory(open_run=1), terminal_size=SIZE, run_before=_keys("enter"))


def test_trajectory_tool_error(snap_compare, app_factory):
    assert snap_compare(app_factory(open_run=1), terminal_size=SIZE, run_before=_keys("down", "down", "enter"))


def test_token_view(snap_compare, app_factory):
    assert snap_compare(app_factory(open_run=1), terminal_size=SIZE, run_before=_keys("enter", "t"))


def test_group_screen(snap_compare, app_factory):
    assert snap_compare(app_factory(open_run=2), terminal_size=SIZE, run_before=_keys("g"))


def test_help_screen(snap_compare, app_factory):
    assert snap_compare(app_factory(open_run=1), terminal_size=SIZE, run_before=_keys("question_mark"))
