"""`rl-inspect runs` shows every string from the database literally, one run per line."""

from __future__ import annotations

import unicodedata
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from core.store import Store
from core.store.queries import RunRow
from inspector.cli import EXIT_OK, main, one_line, run_row_line

_ROW = RunRow(id=7, kind="eval", name="plain", model="m", status="done", n_done=3, n_planned=4, accuracy=0.5,
              mean_reward=1.25, tool_error_rate=0.0, generated_tokens=10, created_at=0.0, duration=1.0,
              parent_run_id=None, train_step=None)
_UNSAFE = ("Cc", "Cf", "Cs", "Zl", "Zp")

# Pieces hostile to a terminal or a table: ANSI escapes, Rich markup, line breaks, tabs, wide
# characters, emoji (with a joiner), bidi overrides, an 8-bit CSI, a NUL.
_PIECES = st.sampled_from([
    "\x1b[31m", "\x1b[0m", "\x1b]8;;http://evil.example\x1b\\", "[bold red]", "[/]", "[link=x]", "\n", "\r\n",
    "\t", "\x00", "\x07", "\x9b", "\u202e", "\u2028", "\u200d", "観測所", "🔭", "👩‍🔬", "a", " ", "é", "e\u0301",
])
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=12).map("".join)


def _printable(text: str) -> list[str]:
    return [c for c in text if c.isprintable()]


def _is_subsequence(needle: list[str], haystack: str) -> bool:
    it = iter(haystack)
    return all(c in it for c in needle)


def _assert_safe(line: str) -> None:
    assert "\n" not in line and "\r" not in line
    bad = [c for c in line if unicodedata.category(c) in _UNSAFE]
    assert not bad, (line, bad)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_one_line_is_one_safe_line_keeping_printable_characters_in_order(text):
    shown = one_line(text)
    _assert_safe(shown)
    assert _is_subsequence(_printable(text), shown)


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.integers(min_value=1, max_value=40))
def test_one_line_clips_to_a_cell_width(text, cells):
    full = one_line(text)
    clipped = one_line(text, cells)
    _assert_safe(clipped)
    assert cell_len(clipped) <= cells
    if clipped != full:
        assert clipped.endswith("…") and full.startswith(clipped[:-1])


@settings(max_examples=300, deadline=None)
@given(name=_TEXT, model=_TEXT, kind=_TEXT, status=_TEXT)
def test_a_run_row_is_one_line_with_fixed_columns(name, model, kind, status):
    prefix = cell_len(run_row_line(replace(_ROW, name=""), name_cells=None))
    row = replace(_ROW, name=name, model=model, kind=kind, status=status)
    line = run_row_line(row, name_cells=None)
    _assert_safe(line)
    # The name is the last column and starts where it starts for every other run.
    assert cell_len(line) == prefix + cell_len(one_line(name))
    assert line.endswith(one_line(name))
    assert _is_subsequence(_printable(name), line)
    clipped = run_row_line(row, name_cells=20)
    _assert_safe(clipped)
    assert cell_len(clipped) <= prefix + 20


def test_runs_command_shows_hostile_names_literally(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    db = tmp_path / "runs.db"
    name = "\x1b[31mred\x1b[0m [bold red]loud[/]\nsecond line\tafter tab"
    with Store.open(db) as store:
        store.create_run("eval", name, "\x1b]0;title\x07model", {}, n_planned=2)
        store.create_run("eval", "calm", "m", {}, n_planned=1)
        store.create_run("eval", "観" * 500, "m", {}, n_planned=1)
    assert main(["runs", str(db)]) == EXIT_OK
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 4, out  # header and one line per run
    assert cell_len(lines[1]) <= 200 and lines[1].endswith("観…")  # a long name is clipped to the terminal
    assert "\x1b" not in out and "\x07" not in out and "\t" not in out
    assert "␛[31mred␛[0m [bold red]loud[/]" in out
    assert lines[2].endswith("  calm")  # newest first
    assert "loud[/]↵second line⇥after tab" in lines[3]
    assert "␛]0;title\\x07model" in lines[3]
