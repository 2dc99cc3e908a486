"""A one-line progress display on stderr for headless evaluations.

On a terminal the line redraws in place; in a log (CI, a pipe) a line is printed at most every
ten seconds, so logs stay readable. stdout is left alone for `--json`.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from core.evaluate import Progress


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


class ProgressLine:
    """Callable progress sink for `core.evaluate.evaluate`."""

    def __init__(self, stream: TextIO | None = None, width: int = 24):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last_print = 0.0
        self._drawn = False

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        finished = p.done >= p.total
        if not self.tty and not finished and now - self._last_print < 10:
            return
        self._last_print = now
        line = self.render(p)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
            if finished:
                self.stream.write("\n")
                self._drawn = False
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def render(self, p: Progress) -> str:
        frac = p.done / p.total if p.total else 1.0
        filled = int(frac * self.width)
        bar = "█" * filled + "░" * (self.width - filled)
        acc = f"{p.accuracy:.0%}" if p.accuracy is not None else "–"
        eta = "–"
        if 0 < p.done < p.total:
            eta = _duration(p.elapsed / p.done * (p.total - p.done))
        return (f"{bar} {p.done}/{p.total}  acc {acc}  tool errors {p.tool_error_trajectories}"
                f"  {p.tokens_per_second:.1f} tok/s  {_duration(p.elapsed)} elapsed  eta {eta}")

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
