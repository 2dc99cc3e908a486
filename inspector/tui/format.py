"""Small formatting helpers shared by the screens (numbers, durations, dates)."""

from __future__ import annotations

from datetime import datetime

DASH = "–"


def pct(x: float | None) -> str:
    return DASH if x is None else f"{x:.1%}"


def num(x: float | None, digits: int = 3) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def count(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s // 60 % 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{seconds:.1f}s"


def when(timestamp: float | None) -> str:
    return DASH if timestamp is None else datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def yes_no(x: bool | int | None) -> str:
    return DASH if x is None else ("✔" if x else "✘")


def clip(text: str | None, width: int) -> str:
    """One line of at most `width` characters (newlines shown as spaces)."""
    if text is None:
        return DASH
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
