"""The product rule, proved over a hostile database: every string that comes from a database, a
model, a user file or a user reward is shown literally, in every widget and in the CLI's tables,
with control characters made visible.

`tests.hostile_fixtures.build_hostile` puts markup, ANSI and OSC 52 escapes, carriage returns,
backspaces, bidi overrides, joiners, wide characters, a 20,000-character line, tabs and
newlines in every text field. Here every screen is driven with keys at 80x24 and 160x45; after
each step the app must still be running and the screen (as Textual composes it, and as its SVG
screenshot) must hold no raw control character, while the hostile text must be on screen in its
visible form. The CLI's `runs` table is checked the same way, and a property test runs every
cell, line and Text builder over arbitrary text.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text
from textual import events

from core.data.records import Message, RewardResult, ToolCall, ToolError
from core.store import Store
from core.rollout.tokens import TokenSequence
from inspector import cli
from inspector.literal import show_escape, visible
from inspector.tui import format as fmt
from inspector.tui import render, token_render, tokenizers
from inspector.tui.app import create_app
from inspector.tui.screens.group import GroupScreen
from inspector.tui.screens.help import HelpScreen
from inspector.tui.screens.runs import RunsScreen
from inspector.tui.screens.trajectories import TrajectoriesScreen
from inspector.tui.screens.trajectory import TrajectoryScreen
from inspector.tui.widgets.paged_table import PagedTable
from inspector.tui.widgets.rewards_panel import rewards_text
from inspector.tui.widgets.token_view import TokenView
from inspector.tui.widgets.transcript import Fold, Transcript
from tests import hostile_fixtures as H
from tests.tui_fixtures import settle

SIZES = [(80, 24), (160, 45)]
WIDE = (160, 45)

# What must never reach a terminal raw: C0 controls, DEL, C1 controls (0x9b is an 8-bit CSI),
# line/paragraph separators and bidi embeddings, overrides and isolates.
_RAW = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
RAW_ON_SCREEN = re.compile(f"[{_RAW}]")
"""On a composed screen row even \\n and \\t are raw (a tab moves the terminal's cursor)."""
RAW_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""In a multi-line Text, \\n and \\t are allowed (Rich lays them out)."""
RAW_IN_SVG = RAW_IN_TEXT


def _raw(pattern: re.Pattern, text: str) -> list[str]:
    return sorted({f"U+{ord(m.group()):04X}" for m in pattern.finditer(text)})


def shown(text: str) -> str:
    """The visible form the rule asks for, written from the rule (not from the product): ESC as
    ␛, other C0/C1 controls and DEL as \\xNN, separators and bidi controls as \\uNNNN."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\x1b":
            out.append("␛")
        elif ch in "\n\t":
            out.append(ch)
        elif o < 0x20 or 0x7F <= o <= 0x9F:
            out.append(f"\\x{o:02x}")
        elif RAW_ON_SCREEN.match(ch):
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def shown_line(text: str | None) -> str:
    """`shown` on one line: a newline as ↵, a tab as ⇥, and also every other character of the
    categories that move the cursor or reorder text (Cc, Cf, Cs, Zl, Zp) escaped; None is a dash."""
    if text is None:
        return "–"
    out = []
    for ch in str(text):
        o = ord(ch)
        if ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("⇥")
        elif ch == "\x1b" or o < 0x20 or 0x7F <= o <= 0x9F:
            out.append(shown(ch))
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") or RAW_ON_SCREEN.match(ch):
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    return "".join(out)


def is_shown_cell(cell: str, raw: str | None) -> bool:
    """A cell shows `raw` literally: all of its one-line form, or a prefix of it and an ellipsis."""
    want = shown_line(raw)
    return cell == want or (cell.endswith("…") and want.startswith(cell[:-1]))


def table_cells(table) -> list[tuple[str, dict[str, str]]]:
    """(row key, {column key: plain text}) for every row of a DataTable."""
    out = []
    for i in range(table.row_count):
        key = table.coordinate_to_cell_key((i, 0)).row_key.value
        out.append((key, {str(col.key.value): str(v) for col, v in zip(table.ordered_columns, table.get_row_at(i))}))
    return out


@pytest.fixture
def db(tmp_path):
    return H.build_hostile(tmp_path / "hostile.db")


@pytest.fixture(autouse=True)
def train_tokenizer(monkeypatch):
    """The train run's model has a local tokenizer (the one its token ids came from), so its
    token view decodes hostile pieces; every other model name goes through the real loader."""
    from tests.local_tokenizers import chatml_tokenizer

    real = tokenizers._load
    monkeypatch.setattr(tokenizers, "_load", lambda model: chatml_tokenizer() if model == H.MODEL_TRAIN else real(model))


def _app(db, **kw):
    return create_app(db, refresh_seconds=0, **kw)


# ------------------------------------------------------------------ what is on screen
def screen_rows(app) -> list[str]:
    """The screen on top as Textual composes it for the terminal, one string per row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def region_rows(app, widget) -> list[str]:
    """The rows of the screen inside `widget`'s content region."""
    region = widget.content_region
    rows = app.screen._compositor.render_strips()[region.y:region.y + region.height]
    return [strip.crop(region.x, region.x + region.width).text for strip in rows]


def static_texts(screen) -> str:
    """What every Static of the screen holds (on screen or scrolled away, folded or not)."""
    from textual.widgets import Static

    return "\n".join(str(w.render()) for w in screen.query(Static))


class Checker:
    """Collects what breaks the rule, step by step, so one run reports every failure."""

    def __init__(self, pilot, size):
        self.pilot, self.size = pilot, size
        self.problems: list[str] = []

    @property
    def app(self):
        return self.pilot.app

    async def step(self, where: str) -> str:
        """Wait for the app, require it to be running, check the screen; the screen's text."""
        await settle(self.pilot)
        app = self.app
        for _ in range(100):  # on a busy machine the first read can land after the workers settled
            screen = app.screen
            if getattr(screen, "loaded", True) is not False and getattr(screen, "shown", True) is not None:
                break
            await self.pilot.pause(0.05)
            await settle(self.pilot)
        # The page is in the table; give the compositor a frame or two to draw it (under load a
        # single pause could capture the screen from before the table's refresh).
        await self.pilot.pause(0.1)
        await settle(self.pilot)
        assert app._exception is None, f"{self.size} {where}: the app raised {app._exception!r}"
        assert app.return_code is None and app.is_running, f"{self.size} {where}: the app stopped ({app.return_code})"
        rows = screen_rows(app)
        for y, row in enumerate(rows):
            bad = _raw(RAW_ON_SCREEN, row)
            if bad:
                self.problems.append(f"{self.size} {where}: raw {bad} on screen row {y}: {row!r}")
        svg = app.export_screenshot()
        bad = _raw(RAW_IN_SVG, svg)
        if bad:
            self.problems.append(f"{self.size} {where}: raw {bad} in the SVG screenshot")
        return "\n".join(rows)

    async def expect_on_screen(self, where: str, *needles: str, timeout: float = 15.0) -> str:
        """Every needle is on the composed screen. A table filled or resized late is drawn on a
        later frame (a loaded 2-core CI runner showed a frame from before the fill), so the screen
        is read again for up to `timeout` seconds before a needle counts as missing; a miss
        reports the screen as last read."""
        text = "\n".join(screen_rows(self.app))
        for _ in range(int(timeout / 0.05)):
            if all(n in text for n in needles):
                break
            await self.pilot.pause(0.05)
            text = "\n".join(screen_rows(self.app))
        missing = len(self.problems)
        self.expect(where, text, *needles)
        if len(self.problems) > missing:
            self.problems.append(f"{self.size} {where}: the screen read was:\n" + "\n".join(text.split("\n")[:12]))
        return text

    def expect(self, where: str, haystack: str, *needles: str) -> None:
        for needle in needles:
            if needle not in haystack:
                self.problems.append(f"{self.size} {where}: {needle!r} not shown literally")

    def expect_clean(self, where: str, text: str, pattern: re.Pattern = RAW_IN_TEXT) -> None:
        """No raw control character in `text`; each line that holds one is reported."""
        for line in text.split("\n"):
            bad = _raw(pattern, line)
            if bad:
                at = pattern.search(line).start()
                self.problems.append(f"{self.size} {where}: raw {bad} in widget text: {line[max(0, at - 40):at + 40]!r}")

    def expect_cells(self, where: str, rows: list[tuple[str, dict[str, str]]], raw_of) -> None:
        """Every cell of `rows` is clean, and the text columns show their raw value literally;
        raw_of(row key, column key) -> (is a text column, raw value)."""
        for key, cells in rows:
            for col, cell in cells.items():
                bad = _raw(RAW_ON_SCREEN, cell)
                if bad:
                    self.problems.append(f"{self.size} {where}: raw {bad} in cell {key}/{col}: {cell!r}")
                is_text, raw = raw_of(key, col)
                if is_text and not is_shown_cell(cell, raw):
                    self.problems.append(f"{self.size} {where}: cell {key}/{col} is {cell!r}, not the literal "
                                         f"{shown_line(raw)[:80]!r}")

    def done(self) -> None:
        assert not self.problems, "\n".join(self.problems)


# ------------------------------------------------------------------ runs screen
@pytest.mark.parametrize("size", SIZES)
async def test_runs_screen_shows_hostile_run_names_and_models_literally(db, size):
    app = _app(db)
    async with app.run_test(size=size) as pilot:
        c = Checker(pilot, size)
        await c.step("runs screen")
        assert isinstance(app.screen, RunsScreen) and app.screen.query_one("#runs-table").row_count == 2
        # The name column is 12 cells at 80 columns, 40 at 160.
        await c.expect_on_screen("runs screen", "HXRUNE [/IN", "HXRUNT [/] ")
        if size == WIDE:  # 40 cells of name at 160 columns: the first 39 characters, then …
            await c.expect_on_screen("runs screen", ("HXRUNE [/INST] [bold red]x[/] " + H.SHOWN_ANSI_RED)[:39],
                     "HXRUNT [/] [link=http://evil]y[/link] ␛[2J␛[H"[:39])
        table = app.screen.query_one("#runs-table")
        with Store.open_readonly(db) as store:
            runs = {str(r["id"]): r for r in store.runs()}
        c.expect_cells("runs table", table_cells(table),
                       lambda key, col: (col in ("name", "model", "kind", "status"), runs[key].get(col)))
        models = " ".join(cells["model"] for _, cells in table_cells(table))
        c.expect("runs table model cells", models, "HXMODE[/]" + H.SHOWN_ANSI_RED, "HXMODT[/INST]␛]52")
        await pilot.press("r")
        await c.step("runs screen after r (reload)")
        c.done()


async def test_a_hostile_database_file_name_is_shown_literally(tmp_path, capsys):
    name = "HXDB[bold red]x\x1b[31m\u202e.db"  # no "/" in a file name
    db = H.build_hostile(tmp_path / name)
    app = _app(db)
    async with app.run_test(size=WIDE) as pilot:
        c = Checker(pilot, WIDE)
        await c.step("runs screen of a hostile file name")
        await c.expect_on_screen("header", "HXDB[bold red]x␛[31m")
        c.done()
    empty = tmp_path / "HXEMPTY[bold]\x1b[2J.db"
    Store.open(empty).close()
    assert cli.main(["runs", str(empty)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert not _raw(RAW_IN_TEXT, out), out
    assert "HXEMPTY[bold]␛[2J.db" in out


# ------------------------------------------------------------------ trajectories screen
async def through_steps(c, pilot, kind: str) -> None:
    """A train run opens on its steps screen: check it, then `a` opens every trajectory."""
    from inspector.tui.screens.steps import StepsScreen

    if kind != "train":
        return
    text = await c.step("train steps")
    assert isinstance(c.app.screen, StepsScreen), type(c.app.screen)
    c.expect_clean("steps screen", text, RAW_ON_SCREEN)
    await pilot.press("a")


def _open_run_index(db, kind: str) -> int:
    with Store.open_readonly(db) as store:
        return next(r["id"] for r in store.runs() if r["kind"] == kind)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["eval", "train"])
async def test_trajectories_screen_filters_sort_and_search(db, size, kind):
    run = _open_run_index(db, kind)
    app = _app(db)
    async with app.run_test(size=size) as pilot:
        c = Checker(pilot, size)
        await c.step("runs screen")
        if kind == "eval":
            await pilot.press("down")  # the eval run is the older one: second row
        await pilot.press("enter")
        await through_steps(c, pilot, kind)
        await c.step(f"{kind} trajectories")
        screen = app.screen
        assert isinstance(screen, TrajectoriesScreen) and screen.run_id == run
        table = screen.query_one(PagedTable)
        n = table.row_count
        assert n == (11 if kind == "eval" else 4)
        run_line = str(screen.query_one("#run-line").render())
        c.expect_clean("run line", run_line, RAW_ON_SCREEN)
        with Store.open_readonly(db) as store:
            run_row = store.run(run)
            raw = {str(t): store.trajectory(t) for (t,) in store.conn.execute(
                "SELECT id FROM trajectories WHERE run_id=?", (run,)).fetchall()}
        c.expect("run line", run_line, shown_line(run_row["name"]), shown_line(run_row["model"]))
        text_columns = ("question", "final_answer", "gold_answer", "finish_reason")
        rows = table_cells(table)
        c.expect_cells("trajectory table", rows, lambda key, col: (col in text_columns, raw[key].get(col)))
        answers = " ".join(cells["final_answer"] for _, cells in rows)
        # At 80 columns the answer column is 12 cells: 11 and an ellipsis.
        c.expect("trajectory table answers", answers, "[/INST] HXA", "[bold red]x")
        if kind == "eval":
            c.expect("trajectory table answers", answers, "[/] HXA01", "[link=http", "␛[31mRED␛[", "HXA05 over",
                     "HXA06 \\u20", "HXA08 観測", "HXA09 WWW", "HXA10 line")
        if size == WIDE:  # the question column is on screen: its cells are drawn as they are
            wanted = [cells["question"].rstrip("…")[:18] for _, cells in rows]
            await c.expect_on_screen(f"{kind} trajectories screen", *wanted)

        for keys, where in ((("c",), "c: correct yes"), (("c",), "c: correct no"), (("c",), "c: any"),
                            (("e",), "e: tool errors"), (("e",), "e: no tool errors"), (("e",), "e: any")):
            await pilot.press(*keys)
            await c.step(where)
            c.expect_clean(f"filter line after {where}", str(screen.query_one("#filter-line").render()),
                           RAW_ON_SCREEN)
        # f cycles the finish reasons, the hostile one among them.
        seen = []
        for _ in range(4):
            await pilot.press("f")
            await c.step("f: finish reason")
            line = str(screen.query_one("#filter-line").render())
            c.expect_clean("filter line after f", line, RAW_ON_SCREEN)
            seen.append(line)
            if "cannot read" in line:
                c.problems.append(f"{size} f: {line!r}")
        c.expect("filter line after f", "\n".join(seen), "finish=HXFIN[/]" + H.SHOWN_ANSI_RED)
        await pilot.press("x")
        await c.step("x: clear")
        assert table.row_count == n

        # Sort: by the column under the column cursor, moved with the arrows.
        await pilot.press("s")
        await c.step("s: sort by id")
        question_at = screen.columns.index("question")
        await pilot.press(*["right"] * question_at, "s")
        await c.step("right…, s: sort by question")
        assert screen.query_state.sort == "question"
        await pilot.press("right", "s")
        await c.step("right, s: sort by answer")
        assert screen.query_state.sort == "final_answer"
        await pilot.press("left", "left", "s")
        await c.step("left, left, s")
        line = str(screen.query_one("#filter-line").render())
        assert "cannot read" not in line, line
        assert table.row_count == n

        # Search: a typed hostile string, then a pasted one with escapes in it.
        await pilot.press("slash", *"[/INST]", "enter")
        await c.step("/ [/INST] enter")
        line = str(screen.query_one("#filter-line").render())
        c.expect("filter line after search", line, "search '[/INST]'")
        assert "cannot read" not in line, line
        assert table.row_count == n  # every system prompt holds [/INST]
        await pilot.press("slash")
        box = screen.query_one("#search")
        box.value = ""
        box.post_message(events.Paste("HXAST [bold red]call[/] \x1b[31m\u202e"))
        await pilot.pause()
        await c.step("/ paste of an escape sequence")
        await pilot.press("enter")
        await c.step("paste, enter")
        line = str(screen.query_one("#filter-line").render())
        c.expect_clean("filter line after a pasted search", line, RAW_ON_SCREEN)
        c.expect("filter line after a pasted search", line, "search 'HXAST [bold red]call[/] ␛[31m")
        await pilot.press("x")
        await c.step("x after search")
        assert table.row_count == n
        c.done()


# ------------------------------------------------------------------ every trajectory
def _expected_in_trajectory(i: int, kind: str, sample: int) -> list[str]:
    """What the transcript and side panel of eval trajectory i (or train sample) must show."""
    answer = i if kind == "eval" else sample * 2
    q = 0 if kind == "train" else i
    out = [f"HXQ{q:02d} [bold]where[/bold] is {H.SHOWN_ANSI_RED} [/INST]?",
           f"HXG{q:02d} [/] gold ␛[1mbold? {H.SHOWN_CR_BS}",
           "HXSYS [/INST] You are ␛[2J␛[H a helper [bold]x[/]",
           f"HXUSR{q:02d} [/] HXQ{q:02d}",
           f"HXTHINK{q:02d} [/] {H.SHOWN_ANSI_RED} reason {H.SHOWN_BIDI} {H.SHOWN_CR_BS}",
           "HXAST [bold red]call[/] " + H.SHOWN_OSC52_BEL,
           "HXJUDGE[/]" + H.SHOWN_ANSI_RED,
           "[/INST] " + H.SHOWN_OSC52_BEL + " yes no maybe " + H.SHOWN_BIDI + " [bold red]x[/]",
           "HXFMT[/]" + H.SHOWN_ANSI_RED,
           "HXRWN[bold]x[/]" + H.SHOWN_ANSI_RED,
           "HXRWD [/]"]
    if answer in H.SHOWN_ANSWER_PIECES:
        out.append(H.SHOWN_ANSWER_PIECES[answer])
    error = (kind == "eval" and i == 4) or (kind == "train" and sample == 3)
    if error:
        out += ["HXERK[/]" + H.SHOWN_ANSI_RED, "HXERM [bold]unknown[/] " + H.SHOWN_OSC52_BEL]
    else:
        out += ["HXTOOL[/]" + H.SHOWN_ANSI_RED + "(", f"HXARG{q:02d} [/INST] " + H.SHOWN_OSC52_BEL,
                "HXCHUNK [/] the gold " + H.SHOWN_ANSI_RED + " chunk " + H.SHOWN_BIDI,
                f"{H.SHOWN_ANSI_RED} Result 2 [/]\\x0d\\x08 観測所"]
    if kind == "eval" and i == 6:
        out.append("HXROLE[/]" + H.SHOWN_ANSI_RED + " result")
    if kind == "eval" and i == 9:
        out.append("HXA09 " + "W" * 2000)
    if (kind == "eval" and i in (1, 7)) or (kind == "train" and sample == 1):
        out.append("HXFIN[/]" + H.SHOWN_ANSI_RED)
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["eval", "train"])
async def test_every_trajectory_every_view_and_key(db, size, kind):
    run = _open_run_index(db, kind)
    app = _app(db, open_run=run)
    async with app.run_test(size=size) as pilot:
        c = Checker(pilot, size)
        await through_steps(c, pilot, kind)
        await c.step(f"{kind} trajectories")
        listing = app.screen
        # A search first, so `m` has matches to jump to in every trajectory.
        await pilot.press("slash", *"HXAST", "enter")
        await c.step("search HXAST")
        table = listing.query_one(PagedTable)
        n = table.row_count
        assert n == (11 if kind == "eval" else 4)
        for row in range(n):
            table.move_cursor(row=row)
            await pilot.press("enter")
            where = f"{kind} row {row}"
            await c.step(where)
            screen = app.screen
            assert isinstance(screen, TrajectoryScreen) and screen.loaded, where
            index = int(screen.row["qidx"]) if kind == "eval" else int(screen.row["sample"])
            shown = static_texts(screen)
            c.expect_clean(f"{where} widgets", shown)
            c.expect(f"{where} widgets", shown,
                     *_expected_in_trajectory(index, kind, index))
            line = str(screen.query_one("#trajectory-line").render())
            c.expect_clean(f"{where} trajectory line", line, RAW_ON_SCREEN)
            transcript = screen.query_one(Transcript)
            transcript.focus()
            await pilot.press("home")  # the view opened on the first search match
            # Fold keys: `s` opens every prompt, `r` every reasoning block; again closes them.
            await pilot.press("s")
            await c.step(f"{where} s (prompts open)")
            prompts = [f for f in transcript.query(Fold) if f.has_class("prompt")]
            assert prompts and all(not f.collapsed for f in prompts), f"{where}: s left a prompt folded"
            if size == WIDE:
                await c.expect_on_screen(f"{where} open system prompt on screen", "HXSYS [/INST] You are ␛[2J␛[H")
            await pilot.press("r")
            await c.step(f"{where} r (reasoning open)")
            reasoning = [f for f in transcript.query(Fold) if f.has_class("reasoning")]
            assert reasoning and all(not f.collapsed for f in reasoning), f"{where}: r left reasoning folded"
            await pilot.press("r", "s")
            await c.step(f"{where} r, s (folded again)")
            for key in ("e", "d", "m"):
                await pilot.press(key)
                await c.step(f"{where} transcript {key}")
            # The token view, its mode, its jumps, and back.
            await pilot.press("t")
            await c.step(f"{where} t (tokens)")
            view = screen.query_one(TokenView)
            assert screen.query_one("#views").current == "tokens"
            for key in ("l", "e", "d", "m", "home", "right", "end", "l"):
                await pilot.press(key)
                await c.step(f"{where} tokens {key}")
            await pilot.press("home")
            await c.step(f"{where} tokens home")
            tokens_text = "".join(region_rows(app, view))
            if kind == "train":
                # Real pieces: the opening prompt, control characters made visible.
                c.expect(f"{where} token view", tokens_text, "HXSYS", "[/INST]", "␛[2J␛[H")
            else:
                c.expect(f"{where} token view", tokens_text, "⟨1000⟩")
            await pilot.press("t")
            await c.step(f"{where} t (back to transcript)")
            assert screen.query_one("#views").current == "transcript"
            await pilot.press("escape")
            await c.step(f"{where} escape")
            assert app.screen is listing
        c.done()


async def test_next_and_previous_walk_every_hostile_trajectory(db):
    app = _app(db, open_run=_open_run_index(db, "eval"))
    async with app.run_test(size=(80, 24)) as pilot:
        c = Checker(pilot, (80, 24))
        await c.step("eval trajectories")
        await pilot.press("enter")
        await c.step("trajectory 0")
        seen = {app.screen.trajectory_id}
        for k in range(12):
            await pilot.press("n")
            await c.step(f"n #{k}")
            seen.add(app.screen.trajectory_id)
        for k in range(12):
            await pilot.press("p")
            await c.step(f"p #{k}")
        assert len(seen) == 11
        c.done()


# ------------------------------------------------------------------ group, help, palette
@pytest.mark.parametrize("size", SIZES)
async def test_group_screen_shows_hostile_rewards_and_answers_literally(db, size):
    app = _app(db, open_run=_open_run_index(db, "train"))
    async with app.run_test(size=size) as pilot:
        c = Checker(pilot, size)
        await through_steps(c, pilot, "train")
        await c.step("train trajectories")
        await pilot.press("g")
        await c.step("g (group)")
        screen = app.screen
        assert isinstance(screen, GroupScreen)
        table = screen.query_one("#group-table")
        assert table.row_count == 4
        group_line = str(screen.query_one("#group-line").render())
        c.expect_clean("group line", group_line, RAW_ON_SCREEN)
        c.expect("group line", group_line, "HXQ00 [bold]where[/bold] is ␛[31mRED")
        with Store.open_readonly(db) as store:
            raw = {str(t): store.trajectory(t) for (t,) in store.conn.execute(
                "SELECT id FROM trajectories WHERE run_id=?", (_open_run_index(db, "train"),)).fetchall()}
        rows = [(key, dict(zip(["id", "sample", "correct", "reward", "advantage", "correctness", "formatting",
                                "HXRWN", "chunk_hit", "errors", "answer", "calls", "finish", "tokens"],
                               cells.values()))) for key, cells in table_cells(table)]
        assert len(rows[0][1]) == 14, rows[0]
        c.expect_cells("group table", rows, lambda key, col: (
            col in ("answer", "finish"), raw[key]["final_answer" if col == "answer" else "finish_reason"]))
        cells = " | ".join(" | ".join(cells.values()) for _, cells in rows)
        c.expect("group cells", cells, "[/INST] HXA00", "[bold red]x[/] HXA02", "HXFIN[/]" + H.SHOWN_ANSI_RED)
        titles = [str(col.label) for col in table.ordered_columns]
        c.expect_clean("group column titles", " ".join(titles), RAW_ON_SCREEN)
        assert shown_line(H.rewards(0, True)[2].name) in titles, titles
        if size == WIDE:
            await c.expect_on_screen("group screen", "[/INST] HXA00 the answer")
        await pilot.press("down", "enter")
        await c.step("group → trajectory")
        assert isinstance(app.screen, TrajectoryScreen)
        await pilot.press("escape")
        await c.step("back to group")
        await pilot.press("escape")
        await c.step("back to list")
        assert isinstance(app.screen, TrajectoriesScreen)
        c.done()


@pytest.mark.parametrize("size", SIZES)
async def test_help_and_command_palette_over_every_screen(db, size):
    app = _app(db)
    async with app.run_test(size=size) as pilot:
        c = Checker(pilot, size)
        await c.step("runs")

        async def help_and_palette(where):
            under = app.screen
            await pilot.press("question_mark")
            await c.step(f"{where} ?")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await c.step(f"{where} ? escape")
            assert app.screen is under
            await pilot.press("ctrl+p")
            await c.step(f"{where} ctrl+p")
            assert app.screen is not under  # the palette is up
            await pilot.press(*"sort")
            await c.step(f"{where} palette: typed")
            await pilot.press("escape")
            await c.step(f"{where} palette escape")
            if app.screen is not under:  # the first escape may only clear the typed text
                await pilot.press("escape")
                await c.step(f"{where} palette escape again")
            assert app.screen is under

        await help_and_palette("runs")
        await pilot.press("enter")
        await c.step("train steps")
        await help_and_palette("steps")
        await pilot.press("a")
        await c.step("train trajectories")
        await help_and_palette("trajectories")
        await pilot.press("enter")
        await c.step("trajectory")
        await help_and_palette("trajectory")
        await pilot.press("t")
        await c.step("tokens")
        await help_and_palette("tokens")
        await pilot.press("escape")
        await c.step("back")
        await pilot.press("g")
        await c.step("group")
        await help_and_palette("group")
        c.done()


# ------------------------------------------------------------------ the CLI
def test_cli_runs_table_shows_every_run_on_one_literal_line(db, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["runs", str(db)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert not _raw(RAW_IN_TEXT, out), [line for line in out.splitlines() if RAW_IN_TEXT.search(line)]
    lines = out.rstrip("\n").split("\n")
    assert len(lines) == 3, lines  # the header, then one line per run
    bad = [line for line in lines if _raw(RAW_ON_SCREEN, line)]
    assert not bad, bad
    train, evaluation = lines[1], lines[2]
    assert "HXRUNE [/INST] [bold red]x[/] " + H.SHOWN_ANSI_RED + " " + H.SHOWN_OSC52_BEL + " " + H.SHOWN_BIDI \
        in evaluation
    assert "⇥" in evaluation and "↵" in evaluation  # the tab and the newline of the name, made visible
    assert "HXRUNT [/] [link=http://evil]y[/link] ␛[2J␛[H" + H.SHOWN_CR_BS in train
    assert "HXMODE[/]" + H.SHOWN_ANSI_RED in evaluation
    assert "HXMODT[/INST]␛]52" in train
    # Columns line up: the name starts at the same cell on every line.
    starts = {cell_len(line[:line.index("HXRUN")]) for line in (train, evaluation)}
    assert starts == {cell_len(lines[0][:lines[0].index("name")])}


def test_cli_runs_json_round_trips_every_string(db, capsys):
    assert cli.main(["runs", str(db), "--json"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert not _raw(RAW_IN_TEXT, out)
    runs = json.loads(out)
    assert {r["name"] for r in runs} == {H.RUN_NAME_EVAL, H.RUN_NAME_TRAIN}
    assert {r["model"] for r in runs} == {H.MODEL_EVAL, H.MODEL_TRAIN}


# ------------------------------------------------------------------ property: every formatter
_PIECES = st.sampled_from([
    "[/INST]", "[/]", "[bold red]", "[link=http://evil]y[/link]", "[", "]", "\\", "\x1b[31m", "\x1b[0m",
    "\x1b]52;c;SGVsbG8=\x07", "\x1b]8;;http://evil\x1b\\", "\x9b2J", "\r", "\b", "\x00", "\x07", "\x7f", "\n",
    "\r\n", "\t", "\u202e", "\u2066", "\u2028", "\u2029", "\u200d", "\ufeff", "観測所", "🔭", "👩\u200d🔬", "e\u0301",
    "<think>", "</think>", "<|im_end|>", " ", "  ", "x",
])
TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=10)), max_size=14).map("".join)
PROPERTY = settings(max_examples=200, deadline=None)


def _printable(text: str, *, drop_space: bool = False) -> list[str]:
    return [ch for ch in text if ch.isprintable() and not (drop_space and ch.isspace())]


def _in_order(needle: list[str], haystack: str) -> bool:
    it = iter(haystack)
    return all(ch in it for ch in needle)


def _renders(text: Text, *, one_line: bool) -> str:
    """Render with Rich as the CLI would (no terminal): must not raise nor emit a control char."""
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=False, width=80, color_system=None).print(text)
    out = buffer.getvalue()
    assert not _raw(RAW_IN_TEXT, out), (text.plain, out)
    if one_line:
        assert "\t" not in out
    return out


def _clean_text(text: Text, *, one_line: bool) -> None:
    assert isinstance(text, Text)
    pattern = RAW_ON_SCREEN if one_line else RAW_IN_TEXT
    assert not _raw(pattern, text.plain), repr(text.plain)
    _renders(text, one_line=one_line)


@PROPERTY
@given(TEXT)
def test_visible_and_literal_keep_every_printable_character(s):
    shown = render.visible(s)
    assert not _raw(RAW_IN_TEXT, shown), repr(shown)
    assert _in_order(_printable(s), shown)
    text = render.literal(s)
    _clean_text(text, one_line=False)
    assert _in_order(_printable(s), text.plain)


@PROPERTY
@given(TEXT)
def test_one_line_is_one_clean_line(s):
    shown = fmt.one_line(s)
    assert not _raw(RAW_ON_SCREEN, shown), repr(shown)
    assert _in_order(_printable(s, drop_space=True), shown)
    assert fmt.one_line(None) == fmt.DASH


@PROPERTY
@given(TEXT, st.integers(min_value=1, max_value=40))
def test_clip_is_one_clean_line_within_its_width(s, width):
    full = fmt.one_line(s)
    clipped = fmt.clip(s, width)
    assert not _raw(RAW_ON_SCREEN, clipped), repr(clipped)
    assert cell_len(clipped) <= width, (clipped, width)
    if clipped != full:
        assert clipped.endswith(fmt.ELLIPSIS) and full.startswith(clipped[:-1])


@PROPERTY
@given(TEXT, st.one_of(st.none(), st.integers(min_value=1, max_value=40)), st.booleans())
def test_cell_is_one_clean_literal_line(s, width, right):
    text = fmt.cell(s, width, right=right)
    _clean_text(text, one_line=True)
    full = fmt.one_line(s)
    if width is None:
        assert text.plain == full
        assert _in_order(_printable(s, drop_space=True), text.plain)
    else:
        assert cell_len(text.plain) <= width
        assert text.plain == full or (text.plain.endswith(fmt.ELLIPSIS) and full.startswith(text.plain[:-1]))
    _clean_text(fmt.cell(len(s), right=True), one_line=True)


@PROPERTY
@given(st.lists(st.one_of(TEXT, st.tuples(TEXT, st.sampled_from(["bold", "dim", ""]))), max_size=5), TEXT)
def test_line_is_one_clean_literal_line(parts, extra):
    text = fmt.line(*parts, Text(render.visible(" ".join(extra.split()))))
    _clean_text(text, one_line=True)
    bodies = [p[0] if isinstance(p, tuple) else p for p in parts] + [extra]
    assert _in_order([ch for body in bodies for ch in _printable(body, drop_space=True)], text.plain)


@PROPERTY
@given(TEXT)
def test_split_reasoning_covers_the_message(s):
    pieces = render.split_reasoning(s)
    assert "".join(piece for piece, _ in pieces) == s


ROLES = st.sampled_from(["system", "user", "assistant", "tool", "ipython", "HXROLE[/]\x1b[31m"])


@PROPERTY
@given(ROLES, TEXT, st.one_of(st.none(), TEXT))
def test_message_body_shows_any_message_literally(role, content, gold):
    text = render.message_body(Message(role, content, 1), gold)
    _clean_text(text, one_line=False)
    assert _in_order(_printable(content), text.plain)


@PROPERTY
@given(TEXT, st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.lists(TEXT, max_size=3), st.none()),
                             max_size=3))
def test_tool_call_line_shows_any_call_literally(name, arguments):
    text = render.tool_call_line(ToolCall(name, arguments, raw=name))
    _clean_text(text, one_line=False)
    wanted = _printable(name)
    for key, value in arguments.items():
        wanted += _printable(key)
        if isinstance(value, str):
            wanted += _printable(value)
    assert _in_order(wanted, text.plain)


@PROPERTY
@given(TEXT, TEXT, st.integers(min_value=0, max_value=99))
def test_tool_error_line_shows_any_error_literally(kind, message, turn):
    text = render.tool_error_line(ToolError(kind, message), turn)
    _clean_text(text, one_line=False)
    assert _in_order(_printable(kind) + _printable(message), text.plain)


DETAIL = st.dictionaries(st.sampled_from(["judge", "reply", "error", "why", "tool_errors", "answer", "gold",
                                          "verdict", "f1", "hit_turn", "tool_calls"]) | TEXT,
                         st.one_of(TEXT, st.lists(TEXT, max_size=3), st.integers(), st.none()), max_size=4)


STANDARD_REWARDS = st.sampled_from(["correctness", "formatting", "retry_behavior", "chunk_hit"])


@PROPERTY
@given(st.lists(st.tuples(STANDARD_REWARDS | TEXT, st.floats(-2, 2), st.floats(0, 3)), min_size=1, max_size=4))
def test_reward_rows_show_any_reward_name_literally(specs):
    """A user reward's name is user text: one clean line in the rewards panel."""
    rewards = [RewardResult(name, value, weight, {}) for name, value, weight in specs]
    rows = render.reward_rows(rewards)
    for (name, *_), row in zip(specs, rows):
        assert not _raw(RAW_ON_SCREEN, row[0]), (row, repr(row[0]))
        assert _in_order(_printable(name, drop_space=True), row[0]), (name, row[0])
    _clean_text(rewards_text(rows, [r.value for r in rewards], render.reward_total(rewards)), one_line=False)


@PROPERTY
@given(st.lists(st.tuples(STANDARD_REWARDS, st.floats(-2, 2), st.floats(0, 3), DETAIL), min_size=1, max_size=4))
def test_reward_rows_show_any_detail_on_one_clean_line(specs):
    """Details (a judge's reply, error text, anything a user reward returns) explain a reward on
    one clean line of at most 240 characters."""
    rewards = [RewardResult(name, value, weight, detail) for name, value, weight, detail in specs]
    rows = render.reward_rows(rewards)
    for (name, _, _, detail), row in zip(specs, rows):
        for cell in row:
            assert not _raw(RAW_ON_SCREEN, cell), (row, repr(cell))
        assert row[0] == name and cell_len(row[3]) <= 240  # cells: a combining mark takes none
        reply = detail.get("reply")
        if name == "correctness" and "error" not in detail and detail.get("verdict") != "empty_answer" \
                and isinstance(reply, str) and reply.strip():
            assert _in_order(_printable(reply, drop_space=True)[:100], row[3]) or row[3].endswith("…"), (reply, row)
    _clean_text(rewards_text(rows, [r.value for r in rewards], render.reward_total(rewards)), one_line=False)


@PROPERTY
@given(st.lists(TEXT, min_size=1, max_size=12), ROLES, st.sampled_from(["mask", "logprob"]))
@example(["a\U000e0100b", "\ufe0f"], "assistant", "mask")  # invisible: shown as \U000e0100, \ufe0f
def test_token_view_shows_any_piece_literally(pieces, role, mode):
    tokens = TokenSequence()
    tokens.add_prompt(list(range(len(pieces) // 2)))
    rest = len(pieces) - len(pieces) // 2
    tokens.add_generated(list(range(100, 100 + rest)), [-0.5] * rest)
    messages = [Message("user", "q", 0, token_start=0, token_end=len(pieces) // 2),
                Message(role, "a", 1, tool_error=ToolError("HX[/]\x1b[31m", "m\x1b"),
                        token_start=len(pieces) // 2, token_end=len(pieces))]
    text = token_render.token_view(tokens, pieces, messages, drift_at=len(pieces) - 1, mode=mode)
    _clean_text(text, one_line=False)
    assert "\t" not in text.plain
    # Characters that draw nothing are shown as their escape (token_render._INVISIBLE).
    shown = [token_render._INVISIBLE.sub(show_escape, piece) for piece in pieces]
    assert _in_order([ch for piece in shown for ch in _printable(piece)], text.plain)
    labels = token_render.boundary_labels(messages, len(pieces))
    for label in labels.values():
        assert not _raw(RAW_ON_SCREEN, label), repr(label)


@pytest.mark.parametrize("ch, shown", [("\x07", "\\x07"), ("\u200b", "\\u200b"), ("\U000e0100", "\\U000e0100")])
def test_an_escape_names_its_character_unambiguously(ch, shown):
    """An escape reads back as the one character it stands for (\\ue0100 would read as U+E010 then '0')."""
    assert token_render._INVISIBLE.sub(show_escape, visible(f"a{ch}b")) == f"a{shown}b"
