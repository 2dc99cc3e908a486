"""A live refresh of the trajectories screen redraws the table only when its page changed.

benchmarks/tui_live.py found that every refresh refilled the table, and DataTable then renders
every visible cell again: ~200 ms of the event loop per refresh on a slow machine, so keys
pressed during a refresh waited that long while an eval wrote.
"""

from __future__ import annotations

from core.data.records import Question
from core.store import Store
from inspector.tui.app import create_app
from inspector.tui.screens.trajectories import TrajectoriesScreen
from inspector.tui.widgets.paged_table import PagedTable
from tests import tui_fixtures
from tests.tui_fixtures import settle


async def test_a_refresh_refills_the_table_only_when_its_page_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    db = tui_fixtures.build(tmp_path / "runs.db")
    fills: list[int] = []
    fill = TrajectoriesScreen._fill
    monkeypatch.setattr(TrajectoriesScreen, "_fill", lambda self, table: (fills.append(1), fill(self, table))[1])
    app = create_app(db, refresh_seconds=0, open_run=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(PagedTable)
        assert isinstance(screen, TrajectoriesScreen) and table.row_count == 30
        await pilot.press("down", "down")
        filled, version = len(fills), app.data_version

        with Store.open(db) as writer:  # another run changes: run 1's page comes back the same
            writer.set_planned(2, 9)
        await app.poll_database().wait()
        await settle(pilot)
        assert app.data_version != version and screen.loaded_version == app.data_version  # it did re-read
        assert len(fills) == filled and table.row_count == 30 and table.cursor_row == 2

        with Store.open(db) as writer:  # a trajectory of run 1 finishes: its page changes
            tui_fixtures._write(writer, 1, 30, Question("q30", "Where is observatory 30?", "Qoruna"), "answered")
        await app.poll_database().wait()
        await settle(pilot)
        assert len(fills) == filled + 1 and table.row_count == 31 and table.cursor_row == 2
        assert "31/30 done" in str(screen.query_one("#run-line").render())


async def test_the_runs_table_updates_a_running_runs_cells_without_a_refill(tmp_path, monkeypatch):
    """The runs screen re-reads every second while a run is running (its duration, tok/s and ETA
    move): the changed cells are updated in place; a new run still refills the table."""
    from inspector.tui.screens.runs import RunsScreen

    db = tmp_path / "live.db"
    writer = Store.open(db)  # this process writes, so the run reads as running
    run = writer.create_run("eval", "live", "m", {}, n_planned=5)
    q = Question("q0", "Where?", "Qoruna")
    writer.add_questions(run, [q])
    fills: list[int] = []
    fill = RunsScreen._fill
    monkeypatch.setattr(RunsScreen, "_fill", lambda self, table: (fills.append(1), fill(self, table))[1])
    app = create_app(db, refresh_seconds=0)
    async with app.run_test(size=(200, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one("DataTable")
        filled = len(fills)
        tui_fixtures._write(writer, run, 0, q, "answered")
        await app.poll_database().wait()
        await settle(pilot)
        assert len(fills) == filled
        row = {str(c.key.value): str(v) for c, v in zip(table.ordered_columns, table.get_row_at(0))}
        assert row["done"] == "1/5" and row["accuracy"] == "100.0%", row
        writer.create_run("eval", "second", "m", {}, n_planned=1)
        await app.poll_database().wait()
        await settle(pilot)
        assert len(fills) == filled + 1 and table.row_count == 2
    writer.close()
