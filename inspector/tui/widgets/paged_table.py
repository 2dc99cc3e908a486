"""A DataTable that holds one page of rows, asks for the next page at its edges, and has a
column cursor for sorting from the keyboard.

DataTable keeps every row in Python memory, so for runs of a million trajectories it only ever
holds a page; moving past the last row (or before the first) posts `EdgeReached`, and the screen
loads the neighbouring page from SQL. With a row cursor, DataTable's left/right only scroll;
here they move a column cursor (its header drawn reversed) that `s` sorts by, and the header
of the sorted column carries ↑ or ↓.
"""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from inspector.tui.widgets.table import Table


class PagedTable(Table):
    class EdgeReached(Message):
        """The cursor tried to leave the page: direction +1 (down) or -1 (up)."""

        def __init__(self, table: "PagedTable", direction: int):
            super().__init__()
            self.table = table
            self.direction = direction

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.titles: dict[str, str] = {}
        """Column key -> its plain title."""
        self.column_cursor = 0
        """Index of the column `s` sorts by."""
        self.sorted_by: tuple[str, bool] | None = None
        """(column key, descending) of the order shown."""

    def add_titled_column(self, title: str, key: str) -> None:
        self.titles[key] = title
        self.add_column(Text(title), key=key)
        self._relabel()

    @property
    def cursor_column_key(self) -> str:
        return list(self.titles)[self.column_cursor]

    def set_sorted(self, key: str, descending: bool) -> None:
        self.sorted_by = (key, descending)
        self._relabel()

    def _relabel(self) -> None:
        for i, (key, title) in enumerate(self.titles.items()):
            label = Text(title)
            if self.sorted_by and self.sorted_by[0] == key:
                label.append("↓" if self.sorted_by[1] else "↑", style="bold")
            if i == self.column_cursor:
                label.stylize("reverse")
            self.columns[key].label = label
        self._require_update_dimensions = True
        self.refresh()

    def _move_column(self, step: int) -> None:
        if not self.titles:
            return
        self.column_cursor = max(0, min(len(self.titles) - 1, self.column_cursor + step))
        self._relabel()
        region = self._get_column_region(self.column_cursor)
        self.scroll_to_region(region, animate=False, spacing=self._get_fixed_offset(), force=True)

    def action_cursor_left(self) -> None:
        if self.cursor_type == "row":
            self._move_column(-1)
        else:
            super().action_cursor_left()

    def action_cursor_right(self) -> None:
        if self.cursor_type == "row":
            self._move_column(+1)
        else:
            super().action_cursor_right()

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.EdgeReached(self, +1))
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.row_count and self.cursor_row <= 0:
            self.post_message(self.EdgeReached(self, -1))
            return
        super().action_cursor_up()
