"""The DataTable every inspector screen uses: Textual's, with one stale-frame fix."""

from __future__ import annotations

from textual.widgets import DataTable


class Table(DataTable):
    """A DataTable whose drawn lines are dropped when measuring changes its column widths.

    Textual 8.2 measures auto-width columns on the table's next idle (`_update_dimensions`) and
    caches drawn lines by an update count that the measuring does not move. A frame drawn between
    `add_row` and that idle, with no resize after it, kept every column at its label's width: the
    runs screen at 160x45 showed 'grp…' for 'grpo-demo' on a loaded CI runner until the cursor
    moved (tests/test_tui_table.py). This overrides a private method because no public hook runs
    after the measuring; should Textual rename it, the override is simply never called.
    """

    _measured_widths: list[int] | None = None
    """Each column's drawn width as of the last measuring (cells, padding included)."""

    def _update_dimensions(self, new_rows) -> None:
        # Also runs after `update_cell(..., update_width=True)` has widened a column on the same
        # idle, so widths are compared with the last measuring rather than with this call's start.
        super()._update_dimensions(new_rows)
        widths = [column.get_render_width(self) for column in self.ordered_columns]
        if widths != self._measured_widths:
            self._measured_widths = widths
            self._update_count += 1  # part of every line-cache key: lines are drawn again
            self.refresh()
