"""The parts of benchmarks/tui_live.py that read the viewer's output: rows, cursor colour, counts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("tui_live", Path(__file__).parents[1] / "benchmarks" / "tui_live.py")
tui_live = importlib.util.module_from_spec(_spec)
sys.modules["tui_live"] = tui_live  # its dataclasses look their module up
_spec.loader.exec_module(tui_live)


def test_rows_are_cut_at_textuals_absolute_moves_and_empty_moves_are_dropped():
    body = b"\x1b[4;1H\x1b[1;48;2;1;120;212m 21  live-eval\x1b[0m\n\x1b[5;1H\x1b[48;2;39;39;39m 20\x1b[0m\x1b[5;80H|\x1b[2;1H"
    rows = tui_live.split_rows(body)
    assert sorted(rows) == [4, 5]
    frame = tui_live.Frame(0.0, 0.0, rows)
    assert frame.text(4) == " 21  live-eval" and frame.text(5) == " 20|"


def test_backgrounds_reads_truecolor_256_and_basic_codes_but_not_foregrounds():
    assert tui_live.backgrounds(b"\x1b[1;38;2;9;9;9;48;2;1;120;212m") == {"48;2;1;120;212"}
    assert tui_live.backgrounds(b"\x1b[38;5;12;48;5;33mx\x1b[44m") == {"48;5;33", "44"}
    assert tui_live.backgrounds(b"\x1b[31;1mx") == set()


def test_counts_on_screen_and_their_latency_from_the_commits():
    def frame(end, text):
        return tui_live.Frame(end, end, {2: text.encode()})

    planned = f"{tui_live.PLANNED:,}"
    frames = [frame(1.0, f"run 21 · 2,000/{planned} done"), frame(1.5, "other"),
              frame(2.0, f"run 21 · 2,000/{planned} done"), frame(2.2, f"10/{planned}"),  # clipped: ignored
              frame(3.0, f"2,020/{planned}")]
    shown = tui_live.shown_counts(frames, 0.0, 10.0)
    assert shown == [(1.0, 2000), (3.0, 2020)]
    latencies, intervals = tui_live.refresh_latency(shown, [(0.5, 2000), (2.5, 2010), (2.8, 2020)])
    pool = tui_live.POOL
    assert latencies == pytest.approx([0.5] * pool + [0.5] * pool + [0.2] * pool)
    assert intervals == pytest.approx([2.0])
