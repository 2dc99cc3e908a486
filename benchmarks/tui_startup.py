"""The TUI on a database of 1,000,000 trajectories: time to first screen and per action.

Drives the real app headless (Textual's Pilot), from `create_app` to the runs screen drawn,
then opening the 1M-trajectory run to its first page, then sort, filter and search, each timed
until its page is on screen. Peak memory is the process's maximum RSS.

    .venv/bin/python benchmarks/build_big_db.py            # once: /tmp/rl-inspect-big.db
    .venv/bin/python benchmarks/tui_startup.py [--db /tmp/rl-inspect-big.db]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

from inspector.tui.app import create_app
from inspector.tui.screens.trajectories import TrajectoriesScreen
from inspector.tui.widgets.paged_table import PagedTable


async def _ready(pilot, screen_type=None) -> None:
    while screen_type is not None and not isinstance(pilot.app.screen, screen_type):
        await asyncio.sleep(0.005)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def measure(db: str) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    began = time.perf_counter()
    app = create_app(db, refresh_seconds=0)
    async with app.run_test(size=(140, 40)) as pilot:
        await _ready(pilot)
        rows.append(("start → runs screen drawn", time.perf_counter() - began, 1.0))
        table = app.screen.query_one("#runs-table")
        big = next(i for i in range(table.row_count) if table.get_row_at(i)[2] == "big-eval")
        table.move_cursor(row=big)

        async def timed(label: str, goal: float, action) -> None:
            t = time.perf_counter()
            await action()
            rows.append((label, time.perf_counter() - t, goal))

        async def open_run():
            await pilot.press("enter")
            await _ready(pilot, TrajectoriesScreen)

        await timed("open 1M run → first page", 1.0, open_run)
        screen = app.screen
        assert screen.query_one(PagedTable).row_count == 100

        async def page_shown():
            while screen.shown != (screen.query_state, screen.page_offset):
                await asyncio.sleep(0.002)
            await pilot.pause()

        async def step(label, start):
            """Time `start` until its page is drawn, then until its count is in too."""
            t = time.perf_counter()
            await start()
            await page_shown()
            rows.append((label, time.perf_counter() - t, 0.3))
            await _ready(pilot)
            rows.append(("  … and its count", time.perf_counter() - t, 0.3))

        async def clear():
            await pilot.press("x")
            await _ready(pilot)

        def keys(*names):
            async def run():
                for name in names:
                    await pilot.press(name)
            return run

        def sort(key, descending):
            async def run():
                if screen.query_state.sort == key:
                    screen.action_sort("id")
                    await _ready(pilot)
                screen.query_state = type(screen.query_state)(screen.run_id, screen.query_state.filter,
                                                              key, descending)
                screen.reload()
            return run

        await step("sort by reward ↓", sort("reward", True))
        await step("sort by question ↑", sort("question", False))
        await step("sort by tokens ↓", sort("tokens", True))
        for label, key in (("filter correct = yes", "c"), ("filter tool error", "e"), ("filter finish reason", "f")):
            await clear()
            await step(label, keys(key))
        await clear()

        async def search():
            await pilot.press("slash")
            screen.query_one("#search").value = "Veltran"
            await pilot.press("enter")

        await step("full-text search 'Veltran'", search)
        await step("next page", keys("right_square_bracket"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="/tmp/rl-inspect-big.db")
    args = parser.parse_args()
    rows = asyncio.run(measure(args.db))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"TUI on {args.db} (headless, Pilot); each step timed until its page is on screen")
    print(f"{'step':<32} {'ms':>8} {'goal ms':>8} {'ms/goal':>8}")
    for label, seconds, goal in rows:
        print(f"{label:<32} {seconds * 1e3:>8.0f} {goal * 1e3:>8.0f} {seconds / goal:>7.2f}x")
    print(f"peak RSS {peak_mb:.0f} MB (goal 500 MB)")


if __name__ == "__main__":
    main()
