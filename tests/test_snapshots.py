"""Screens as pictures (pytest-textual-snapshot), on a fixed database and a fixed clock.

Update after an intended change with: .venv/bin/python -m pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time

import pytest

from inspector.tui.app import create_app
from tests import tui_fixtures

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 45), id="160x45")]
"""The smallest terminal people use, and a wide one."""


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


@pytest.mark.parametrize("size", SIZES)
def test_runs_screen(snap_compare, app_factory, size):
    assert snap_compare(app_factory(), terminal_size=size, run_before=_keys())


@pytest.mark.parametrize("size", SIZES)
def test_trajectories_screen_with_filter(snap_compare, app_factory, size):
    assert snap_compare(app_factory(open_run=1), terminal_size=size, run_before=_keys("c", "c"))


@pytest.mark.parametrize("size", SIZES)
def test_trajectory_transcript(snap_compare, app_factory, size):
    assert snap_compare(app_factory(open_run=1), terminal_size=size, run_before=_keys("enter"))


@pytest.mark.parametrize("size", SIZES)
def test_trajectory_tool_error(snap_compare, app_factory, size):
    assert snap_compare(app_factory(open_run=1), terminal_size=size, run_before=_keys("down", "down", "enter"))


@pytest.mark.parametrize("size", SIZES)
def test_token_view(snap_compare, app_factory, size):
    assert snap_compare(app_factory(open_run=1), terminal_size=size, run_before=_keys("enter", "t"))


@pytest.mark.parametrize("size", SIZES)
def test_group_screen(snap_compare, app_factory, size):
    assert snap_compare(app_factory(open_run=2), terminal_size=size, run_before=_keys("a", "g"))


@pytest.mark.parametrize("size", SIZES)
def test_steps_screen(snap_compare, app_factory, size):
    assert snap_compare(app_factory(open_run=2), terminal_size=size, run_before=_keys())


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, app_factory, size):
    assert snap_compare(app_factory(open_run=1), terminal_size=size, run_before=_keys("question_mark"))
