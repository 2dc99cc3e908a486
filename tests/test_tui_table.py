"""The inspector's DataTable: a line drawn before the table measured its columns is not kept."""

from __future__ import annotations

from textual import events
from textual.app import App, ComposeResult

from inspector.tui.widgets.table import Table


class _OneTable(App):
    def compose(self) -> ComposeResult:
        yield Table(id="t")


async def test_a_line_drawn_before_the_columns_were_measured_is_drawn_again_after():
    """Textual 8 measures a DataTable's columns on its next idle and caches drawn lines by an
    update count that the measuring does not move: a frame drawn in between, with no resize after
    it (a loaded CI runner took one), kept every column at its label's width (the runs screen's
    snapshot at 160x45 showed 'grp…' for 'grpo-demo')."""
    app = _OneTable()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(Table)
        table.add_column("n", key="n")
        table.add_row("a-long-value", key="r")
        assert "a-long-value" not in table.render_line(1).text  # drawn at the label's width
        await table._on_idle(events.Idle())  # the measuring idle, with nothing between it and the next frame
        assert "a-long-value" in table.render_line(1).text
