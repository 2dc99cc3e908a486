"""One-row status and filter lines that update without a layout pass."""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static


class Line(Static):
    """A Static one row high (`.status-line`, `.filter-line` fix its height): new text never
    changes its size, so `update` skips the screen's layout pass.

    A layout pass re-measures every widget of the screen, a DataTable's columns included: on the
    runs screen, whose status line changes every second while a run is running, it cost ~100 ms
    of the event loop per update on this project's 2-core machine (benchmarks/tui_live.py) and
    kept key presses waiting that long.
    """

    def update(self, content: VisualType = "", *, layout: bool = False) -> None:
        super().update(content, layout=layout)
