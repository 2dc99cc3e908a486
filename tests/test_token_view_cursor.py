"""The token view's cursor, its info line, and its jumps (tool errors, drift, search hits).

The view is hosted alone in a tiny app and driven with keys and clicks; what is on screen is
read back from `render_line`, so a test sees the rows a user sees.
"""

from __future__ import annotations

import math

from textual.app import App, ComposeResult

from core.data.records import Message, ToolError
from core.rollout.tokens import TokenSequence
from inspector.tui.token_render import ERROR_MARK
from inspector.tui.widgets.token_view import TokenView
from tests.test_trajectory_widgets import big_sequence

SIZE = (100, 30)


class Host(App):
    def __init__(self, view: TokenView):
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        yield self.view


def rows(view: TokenView) -> list[str]:
    return [view.render_line(y).text.rstrip() for y in range(view.size.height)]


def info(view: TokenView) -> str:
    return rows(view)[view.header_rows - 1]  # the header's last row: the cursor's token


def cursor_cells(view: TokenView) -> list[tuple[int, str]]:
    """(screen row, text) of every reversed (cursor) segment on screen."""
    out = []
    for y in range(view.header_rows, view.size.height):
        for segment in view.render_line(y):
            if segment.style is not None and segment.style.reverse:
                out.append((y, segment.text))
    return out


def visible_rows(view: TokenView) -> range:
    top = int(view.scroll_y)
    return range(top, top + view.size.height - view.header_rows)


def two_turns() -> tuple[TokenSequence, list[str], list[Message]]:
    """prompt [0,4) | assistant [4,8) with a tool error | tool [9,11) | assistant [12,15)."""
    t = TokenSequence()
    t.add_prompt([1, 2, 3, 4])
    t.add_generated([10, 11, 12, 13], [math.log(0.5), -0.1, -2.0, -0.01])
    t.add_scaffold([5])
    t.add_scaffold([6, 7])
    t.add_scaffold([8])
    t.add_generated([14, 15, 16], [-0.2, -0.3, -0.4])
    pieces = ["<|im_start|>", "sys", "\n", "<|im_start|>", " a\tb", "\n", "[b]x[/b]", "<|im_end|>", "\n",
              "res", "\x1b[2J", "<|im_start|>", "ok", " done", "<|im_end|>"]
    error = ToolError("invalid_json", "bad call")
    messages = [Message("system", "s", 0, token_start=0, token_end=4),
                Message("user", "u", 0, token_start=0, token_end=4),
                Message("assistant", "a", 1, tool_error=error, token_start=4, token_end=8),
                Message("tool", "Error", 1, tool_error=error, token_start=9, token_end=11),
                Message("assistant", "ok done", 2, token_start=12, token_end=15)]
    return t, pieces, messages


async def test_it_opens_on_the_first_trained_token_with_its_label_on_top():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = big_sequence(3_000)
        view.show(t, pieces, messages, None, set())
        await pilot.pause()
        first = t.mask.index(1)
        assert first == 300 and view.cursor == first
        assert rows(view)[view.header_rows] == "── assistant (turn 1) ──" and view.token_at_scroll() == first
        assert info(view).startswith(f"#{first}  id {t.ids[first]}  ") and "assistant, turn 1" in info(view)
        # The screen keeps its place: a pending token given right after show() wins.
        place = messages[5].token_start
        view.show(t, pieces, messages, None, set())
        view.scroll_to_token(place)
        await pilot.pause()
        assert view.cursor == place and view.token_at_scroll() == place


async def test_arrows_home_end_and_pages_move_the_cursor_and_keep_it_in_view():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = big_sequence(3_000)
        view.show(t, pieces, messages, None, set())
        view.focus()
        await pilot.pause()
        start = view.cursor
        await pilot.press("right", "right", "left")
        assert view.cursor == start + 1
        assert info(view).startswith(f"#{start + 1}  id {t.ids[start + 1]}  {pieces[start + 1]!r}")
        [(y, text)] = cursor_cells(view)  # one token drawn reversed: this one
        assert text == pieces[start + 1].replace("\n", "↵").replace("\t", "⇥")
        column = view._token_x(view.cursor)
        for _ in range(40):
            before = view.cursor
            await pilot.press("down")
            assert view.cursor > before
            assert view.token_row(view.cursor) in visible_rows(view)
            assert view._token_x(view.cursor) <= column + 12  # the column is kept (within a token's width)
        for _ in range(40):
            before = view.cursor
            await pilot.press("up")
            assert view.cursor < before and view.token_row(view.cursor) in visible_rows(view)
        assert abs(view.cursor - (start + 1)) < 40  # back about where it began (labels are skipped)
        await pilot.press("pagedown")
        assert view.token_row(view.cursor) in visible_rows(view)
        await pilot.press("end")
        assert view.cursor == len(t.ids) - 1 and view.token_row(view.cursor) in visible_rows(view)
        await pilot.press("home")
        assert view.cursor == 0 and int(view.scroll_y) == 0
        for _ in range(5):
            await pilot.press("down")
        assert view.current_token() == view.cursor != view.token_at_scroll()  # on screen: the cursor
        view.scroll_to(y=view.token_row(view.cursor) + 5, animate=False)  # scrolled away: the top row
        await pilot.pause()
        assert view.current_token() == view.token_at_scroll() != view.cursor
        await pilot.press("home", "left")
        assert view.cursor == 0


async def test_a_click_puts_the_cursor_on_the_token_under_it():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = two_turns()
        view.show(t, pieces, messages, None, set())
        await pilot.pause()
        screen = rows(view)
        y = screen.index("ok done<|im_end|>")
        # padding 0 1: content starts one cell in; click on the "d" of " done"
        await pilot.click(TokenView, offset=(1 + screen[y].index("done"), y))
        assert view.cursor == 13
        assert "' done'" in info(view) and "assistant, turn 2" in info(view)


async def test_info_line_shows_masked_tokens_without_logprob_and_template_tokens_without_owner():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = two_turns()
        view.show(t, pieces, messages, None, set())
        await pilot.pause()
        assert view.cursor == 4 and "' a\\tb'" in info(view)  # repr shows the tab
        view.scroll_to_token(10)
        await pilot.pause()
        line = info(view)
        assert line.startswith("#10  id 7  '\\x1b[2J'  masked  logprob –  p –") and "tool, turn 1" in line
        view.scroll_to_token(8)
        await pilot.pause()
        assert "'\\n'" in info(view) and "template (no message)" in info(view)
        view.scroll_to_token(4)
        await pilot.pause()
        assert "logprob -0.6931  p=0.5000" in info(view)


async def test_tool_errors_drift_and_search_hits_are_jumps_that_wrap():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = big_sequence(3_000)
        error = ToolError("unknown_tool", "unknown tool 'web'")
        assistants = [m for m in messages if m.role == "assistant"]
        for m in (assistants[1], assistants[3]):
            m.tool_error = error
        view.show(t, pieces, messages, drift_at=2_500, special=set())
        view.focus()
        await pilot.pause()
        assert view.next_tool_error() and view.cursor == assistants[1].token_start
        assert rows(view)[view.header_rows].startswith(f"{ERROR_MARK}: unknown_tool")  # marker, then label, on top
        assert rows(view)[view.header_rows + 1] == f"── assistant (turn {assistants[1].turn}) ──"
        await pilot.press("e")
        assert view.cursor == assistants[3].token_start
        await pilot.press("e")  # wraps
        assert view.cursor == assistants[1].token_start
        await pilot.press("d")
        assert view.cursor == 2_500 and view.token_row(2_500) in visible_rows(view)
        assert not view.next_search_hit()
        view.set_search_hits([assistants[2].token_start, 10_000_000, assistants[0].token_start])
        assert view.next_search_hit() and view.cursor == assistants[0].token_start  # after 2,500: wraps
        await pilot.press("m")
        assert view.cursor == assistants[2].token_start
        keys = {binding.key: binding for binding in TokenView.BINDINGS}
        assert all(keys[k].description for k in "edm")
        view.show(t, pieces, [m for m in messages if m.role != "assistant"], drift_at=None, special=set())
        await pilot.pause()
        assert not view.next_tool_error() and not view.go_to_drift()


async def test_tool_error_marker_stands_before_the_failed_messages_label():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = two_turns()
        view.show(t, pieces, messages, drift_at=None, special=set())
        await pilot.pause()
        view.scroll_to(y=0, animate=False)
        await pilot.pause()
        body = [r for r in rows(view)[view.header_rows:] if r]
        assert " a⇥b↵" in body and "res␛[2J" in body  # model text is data: literal, escapes visible
        assert "[b]x[/b]<|im_end|>" in body
        k = body.index("── assistant (turn 1) ──")
        assert body[k - 1] == f"{ERROR_MARK}: invalid_json — bad call (turn 1)"
        assert sum(r.startswith(ERROR_MARK) for r in body) == 1  # the tool's own error message is not marked


async def test_split_characters_show_once_and_each_byte_token_stays_a_token():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t = TokenSequence()
        t.add_prompt([1])
        t.add_generated([240, 159, 152, 128, 2], [-0.1] * 5)  # 😀 as four byte tokens, then "!"
        pieces = ["Hi ", "😀", "", "", "", "!"]
        parts = {1 + k: (k + 1, 4, "😀") for k in range(4)}
        view.show(t, pieces, [], None, set(), parts=parts)
        await pilot.pause()
        assert "Hi 😀···!" in rows(view)
        await pilot.press("right", "right")
        assert view.cursor == 3
        assert info(view).startswith("#3  id 152  ''  (byte token 3 of 4 of '😀')  trained")
        [(_, text)] = cursor_cells(view)
        assert text == "·"
