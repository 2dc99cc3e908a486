"""A DataTable that holds one page of rows and asks for the next page at its edges.

DataTable keeps every row in Python memory, so for runs of a million trajectories it only ever
holds a page; moving past the last row (or before the first) posts `EdgeReached`, and the screen
loads the neighbouring page from SQL.
"""

from __future__ import annotations

from textual.message import Message
from textual.widgets import DataTable


class PagedTable(DataTable):
    class EdgeReached(Message):
        """The cursor tried to leave the page: direction +1 (down) or -1 (up)."""

        def __init__(self, table: "PagedTable", direction: int):
            super().__init__()
            self.table = table
            self.direction = direction

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
