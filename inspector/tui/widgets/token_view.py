"""One trajectory as tokens: mask or logprob heat, template tokens, boundaries, drift, tool errors.

A trajectory can hold 100k tokens. This widget is a ScrollView on Textual's Line API:
`token_render.token_layout` joins the tokens into one document and finds its lines with numpy (no Text
per line), folding counts cells per line for the width, and a line is turned into strips only when
it scrolls into view (then cached). Folding is by character cells, not words, so the row of every
token is known exactly and `scroll_to_token` / `token_at_scroll` round-trip.

A token cursor (arrows, home/end, page keys, a click) picks one token; the header's last line
says what it is: position, id, its text as repr, mask, logprob and p, and the message it is in.
`e`, `d` and `m` jump to the next tool error, the drift and the next search hit.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
from rich.cells import get_character_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.actions import SkipAction
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.data.records import Message
from core.rollout.tokens import TokenSequence
from inspector.tui.token_render import TOKEN_MODES, TokenLayout, TokenMode, advantage_legend, gap_legend, logprob_legend, mask_legend, message_spans, token_info, token_layout, token_summary, tool_error_tokens
from inspector.tui.tokenizers import TokenPieces

Parts = dict[int, tuple[int, int, str]]
"""Token index -> (k, n, text): the k-th of n byte-level tokens that decode to `text` together."""


_NO_DATA = {"advantage": "advantage: none stored (not a training step's trajectory)",
            "gap": "gap: no trainer logprobs stored (this project's training steps and prime-rl imports with "
                   "a token export have them)"}
"""Why a colour mode has no data, said when `l` skips it."""


class TokenView(ScrollView, can_focus=True):
    """Tokens of one trajectory under a fixed header (counts, legend, the cursor's token)."""

    DEFAULT_CSS = """
    TokenView {
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-gutter: stable;
        padding: 0 1;
        background: $surface;
        &:focus { background-tint: $foreground 5%; }
    }
    """

    BINDINGS = [
        Binding("l", "toggle_mode", "Colour: mask/logprob/advantage/gap", id="tokens.mode",
                tooltip="Colour trained tokens by the mask, exp(logprob), the advantage they were trained "
                        "with, or trainer − rollout logprob (the last two for training steps)"),
        Binding("e", "next_tool_error", "Next tool error", id="tokens.error",
                tooltip="Move the cursor to the next assistant message whose tool call failed"),
        Binding("d", "go_to_drift", "Drift", id="tokens.drift",
                tooltip="Move the cursor to the first token where the re-rendered chat differs"),
        Binding("m", "next_search_hit", "Next match", id="tokens.match",
                tooltip="Move the cursor to the next token of a search match"),
        Binding("f", "next_flag", "Next lint finding", id="tokens.flag",
                tooltip="Move the cursor to the next token a mask-lint finding names (rl-inspect lint)"),
        Binding("left", "cursor_step(-1)", "Previous token", show=False),
        Binding("right", "cursor_step(1)", "Next token", show=False),
        Binding("up", "cursor_row(-1)", "Row up", show=False),
        Binding("down", "cursor_row(1)", "Row down", show=False),
        Binding("pageup", "cursor_page(-1)", "Page up", show=False),
        Binding("pagedown", "cursor_page(1)", "Page down", show=False),
        Binding("home", "cursor_home", "First token", show=False),
        Binding("end", "cursor_end", "Last token", show=False),
    ]

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.mode: TokenMode = "mask"
        self.advantage: float | None = None
        """What trained tokens are coloured by: the mask, or exp(logprob) on a heat scale."""
        self.cursor: int | None = None
        """The token under the cursor (None when no tokens are shown)."""
        self._data: tuple[TokenSequence, list[str] | None, list[Message], int | None, set[int], Parts] | None = None
        self._layout: TokenLayout | None = None
        self._spans: list[tuple[int, int, str]] = []
        self._span_starts: list[int] = []
        self._errors: list[int] = []
        self._hits: list[int] = []
        self._flags: list[int] = []
        self._goal_x: int | None = None
        """The cell column up/down keep while they pass shorter rows."""
        self._message = Text()
        self._width = 0
        self._header_lines: list[tuple[Text, list[int]]] = []
        """The fixed header's lines with their fold points; drawn lazily into `_header`."""
        self._header: list[Strip] | None = None
        self._info: Strip | None = None
        self._row_start: list[int] = [0]
        """First content row of each logical line, plus the total row count at the end."""
        self._cuts: LRUCache[int, list[int]] = LRUCache(4096)
        self._strips: LRUCache[int, list[Strip]] = LRUCache(1024)
        self._base: Style | None = None
        self._styled: dict[Style, Style] = {}
        """Token style -> the same over the widget's base style."""
        self._pending_token: int | None = None
        self._anchor: tuple[int, int] | None = None
        """(token, row) of the last scroll_to_token: while the view stays there, that token is the
        place, so toggling to the transcript and back lands on the same message, not on the row's
        first token."""

    # ------------------------------------------------------------------ content
    def show(self, tokens: TokenSequence, pieces: list[str] | TokenPieces | None, messages: list[Message],
             drift_at: int | None, special: set[int] | None = None, parts: Parts | None = None,
             advantage: float | None = None) -> None:
        """Show a trajectory's tokens, the cursor on the first trained token and in view.

        advantage: the trajectory's advantage (training steps), for the "advantage" colour mode.
        pieces: the decoded text per token (len(tokens.ids)), or a `TokenPieces` (its special
        ids and split-character parts are used too), or None (ids are shown). drift_at: token
        position where the re-rendered chat differs (may be len(ids): past the end).
        """
        special = set(special or ())
        if isinstance(pieces, TokenPieces):
            special |= pieces.special
            parts = parts if parts is not None else pieces.parts
            pieces = pieces.pieces
        self._data = (tokens, pieces, messages, drift_at, special, parts or {})
        self.advantage = advantage
        if self.mode not in self.modes():
            self.mode = "mask"
        self._layout = token_layout(tokens, pieces, messages, drift_at, self.mode, special, parts, advantage)
        self._spans = message_spans(messages)
        self._span_starts = [start for start, _, _ in self._spans]
        self._errors = sorted(tool_error_tokens(messages, len(tokens.ids)))
        self._hits, self._flags = [], []
        try:
            first = tokens.mask.index(1) if tokens.ids else None
        except ValueError:  # nothing trained
            first = 0
        self.cursor, self._goal_x = first, None
        self._pending_token = None
        self._relayout()
        if first is not None:
            self.scroll_to_token(first)
        elif self._width:
            self.scroll_to(y=0, animate=False, immediate=True, force=True)

    def show_message(self, text: str) -> None:
        """No tokens to show (e.g. a trajectory that never finished): say why instead."""
        self._data, self._layout, self.cursor = None, None, None
        self._errors, self._hits, self._spans, self._span_starts, self._flags = [], [], [], [], []
        self._message = Text(text, style="italic")
        self._pending_token = None
        self._relayout()
        if self._width:
            self.scroll_to(y=0, animate=False, immediate=True, force=True)

    def modes(self) -> tuple[TokenMode, ...]:
        """The colour modes this trajectory has data for: mask and logprob always; advantage and
        gap for a training step's trajectory (an advantage, the trainer's logprobs)."""
        tokens = self._data[0] if self._data is not None else None
        return tuple(m for m in TOKEN_MODES
                     if m == "mask" or m == "logprob"
                     or (m == "advantage" and self.advantage is not None)
                     or (m == "gap" and tokens is not None and tokens.trainer_logprobs is not None))

    def action_toggle_mode(self) -> None:
        """Next colour mode this trajectory has data for (`modes`); rows and the place stay. On
        wrapping back to mask, the modes left out are named with why (the key bar lists all four)."""
        modes = self.modes()
        self.mode = modes[(modes.index(self.mode) + 1) % len(modes)] if self.mode in modes else "mask"
        missing = [_NO_DATA.get(m, f"{m}: no data") for m in TOKEN_MODES if m not in modes]
        if self.mode == "mask" and missing:
            self.notify("; ".join(missing), title="not shown for this trajectory", timeout=6)
        if self._layout is not None:
            self._layout.set_mode(self.mode)
        self._strips.clear()
        if self._width:
            self._fold_header()
        self.refresh()

    def _relayout(self) -> None:
        self._cuts.clear()
        self._anchor = None
        self._width = 0  # forces the rows to be counted again
        self._reflow()

    def _header_text(self) -> Text:
        if self._data is None:
            return self._message
        tokens, pieces, _, drift_at, _, _ = self._data
        text = token_summary(tokens, drift_at, have_pieces=pieces is not None)
        text.append("\n")
        legend = {"logprob": logprob_legend, "advantage": lambda: advantage_legend(self.advantage),
                  "gap": lambda: gap_legend(tokens.trainer_logprobs is not None)}.get(self.mode, mask_legend)
        text.append_text(legend())
        return text

    def _info_text(self) -> Text:
        """The cursor's token: position, id, piece, mask, logprob, p, its message (see `token_info`)."""
        tokens, pieces, _, _, _, parts = self._data
        i = self.cursor
        piece = pieces[i] if pieces is not None and i < len(pieces) else None
        k = bisect_right(self._span_starts, i) - 1
        owner = self._spans[k][2] if k >= 0 and i < self._spans[k][1] else None
        return token_info(i, tokens, piece, parts.get(i), owner, self.advantage)

    # ------------------------------------------------------------------ folding
    def _fold_width(self) -> int:
        """Columns text may use: inside the padding and clear of the scrollbar."""
        return self.scrollable_content_region.width

    def _reflow(self) -> None:
        """Count rows for the current width; cheap (cells per line, numpy), so done on every resize."""
        width = self._fold_width()
        if width <= 0:
            return
        self._width = width
        self._strips.clear()
        self._cuts.clear()
        self._anchor = None  # rows move when the width changes
        if self._layout is not None:
            rows = np.asarray(self._layout.rows(width), dtype=np.int64)
            self._row_start = [0] + np.cumsum(rows).tolist()
        else:
            self._row_start = [0]
        self._fold_header()
        self.refresh()
        if self._pending_token is not None:
            token, self._pending_token = self._pending_token, None
            self.scroll_to_token(token)

    def _fold_header(self) -> None:
        self._header_lines = [(line, _fold_cuts(line.plain, self._width))
                              for line in self._header_text().split("\n", allow_blank=True)]
        self._header, self._info = None, None
        self.virtual_size = Size(self._width, self._header_rows + self._row_start[-1])

    @property
    def header_rows(self) -> int:
        """Screen rows the fixed header takes (counts and legend folded to the width, the info line)."""
        return self._header_rows

    @property
    def _header_rows(self) -> int:
        """Rows of the fixed header: counts and legend (folded), and one for the cursor's token."""
        return sum(len(cuts) for _, cuts in self._header_lines) + (self.cursor is not None)

    def _content_height(self) -> int:
        return max(1, self.scrollable_content_region.height - self._header_rows)

    def _line_cuts(self, index: int) -> list[int]:
        cuts = self._cuts.get(index)
        if cuts is None:
            cuts = self._layout.cuts(index, self._width)
            self._cuts[index] = cuts
        return cuts

    def _fold_strips(self, line: Text, cuts: list[int]) -> list[Strip]:
        parts = line.divide(cuts[1:]) if len(cuts) > 1 else [line]
        console, base = self.app.console, self.rich_style
        return [Strip(part.render(console), part.cell_len).apply_style(base).crop_extend(0, self.size.width, base)
                for part in parts]

    def _line_strips(self, index: int) -> list[Strip]:
        """The rows of logical line `index`, straight from the layout's segments (no Text)."""
        layout, base, width = self._layout, self._base_style(), self.size.width
        styled = self._styled
        cuts = self._line_cuts(index)
        lo, hi, first_row = layout.line_start[index], layout.line_stop[index], self._row_start[index]
        strips = []
        for k, cut in enumerate(cuts):
            end = lo + cuts[k + 1] if k + 1 < len(cuts) else hi
            segments = []
            for text, style in layout.segments(lo + cut, end, self.cursor):
                full = styled.get(style)
                if full is None:
                    full = styled[style] = base + style
                segments.append(Segment(text, full))
            strips.append(Strip(segments).crop_extend(0, width, base).apply_offsets(0, first_row + k))
        return strips

    def _base_style(self) -> Style:
        """The widget's own style (background, focus tint) under every token; cached until it changes."""
        if self._base is None:
            self._base, self._styled = self.rich_style, {}
        return self._base

    def on_resize(self, event: events.Resize) -> None:
        self._reflow_in_place()

    def _reflow_in_place(self) -> None:
        if self._fold_width() == self._width:
            return
        place = self.token_at_scroll() if self._width else None
        self._reflow()
        if place is not None:
            self._scroll_to_place(place)

    def notify_style_update(self) -> None:
        """Focus and theme change the base colours: draw again, same rows."""
        super().notify_style_update()
        self._strips.clear()
        self._header, self._info, self._base = None, None, None

    # ------------------------------------------------------------------ Line API
    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._fold_width() != self._width:
            # The text area changed without a Resize (a gutter or scrollbar change): fold again
            # after this frame rather than in the middle of drawing it.
            self.call_later(self._reflow_in_place)
            return Strip.blank(width, self.rich_style)
        if self._header is None:
            self._header = [strip for line, cuts in self._header_lines for strip in self._fold_strips(line, cuts)]
        if y < len(self._header):
            return self._header[y]
        if self.cursor is not None and y == len(self._header):
            if self._info is None:
                info = self._info_text()
                info.truncate(self._width, overflow="ellipsis")
                self._info = self._fold_strips(info, [0])[0]
            return self._info
        row = int(self.scroll_offset.y) + y - self._header_rows
        if self._layout is None or not 0 <= row < self._row_start[-1]:
            return Strip.blank(width, self.rich_style)
        index = bisect_right(self._row_start, row) - 1
        strips = self._strips.get(index)
        if strips is None:
            strips = self._line_strips(index)
            self._strips[index] = strips
        return strips[row - self._row_start[index]]

    # ------------------------------------------------------------------ place keeping
    def token_row(self, index: int) -> int | None:
        """The content row (0 = first row under the header) where token `index` begins."""
        if self._layout is None or not self._width or not 0 <= index < len(self._layout.token_start):
            return None
        line = int(self._layout.token_line[index])
        cuts = self._line_cuts(line)
        return self._row_start[line] + bisect_right(cuts, int(self._layout.token_col[index])) - 1

    def scroll_to_token(self, index: int) -> None:
        """Put the cursor on token `index` and scroll it to the top row (its labels just above)."""
        if self._layout is None or not len(self._layout.token_start):
            return
        index = max(0, min(index, len(self._layout.token_start) - 1))
        self._set_cursor(index)
        if not self._width:
            self._pending_token = index  # not laid out yet: done on the first resize
            return
        self._scroll_to_place(index)

    def _scroll_to_place(self, index: int) -> None:
        """Scroll so token `index` is on the top row, below the label lines right above it."""
        row = self.token_row(index)
        line = int(self._layout.token_line[index])
        if self._layout.token_col[index] == 0:
            while line - 1 in self._layout.label_lines:
                line -= 1
                row -= 1
        # force: right after a re-layout the scrollbar may not be up yet, which would veto the scroll
        self.scroll_to(y=row, animate=False, immediate=True, force=True)
        self._anchor = (index, row)

    def token_at_scroll(self) -> int | None:
        """The first token on the top row (the token running through it when none begins there)."""
        layout = self._layout
        if layout is None or not len(layout.token_start) or not self._width:
            return self._pending_token
        row = min(int(self.scroll_offset.y), self._row_start[-1] - 1)
        if self._anchor is not None and self._anchor[1] == row and self._anchor[0] < len(layout.token_start):
            return self._anchor[0]
        line = bisect_right(self._row_start, row) - 1
        if line in layout.label_lines:
            return min(int(np.searchsorted(layout.token_line, line, side="right")), len(layout.token_start) - 1)
        begin, end = self._row_range(row)
        j = int(np.searchsorted(layout.token_start, begin, side="left"))
        if j < len(layout.token_start) and layout.token_start[j] < end:
            return j
        return max(0, j - 1)

    def current_token(self) -> int | None:
        """The token the user is at: the cursor's while it is on screen, else `token_at_scroll()`
        (the user scrolled away with the wheel or the scrollbar). For keeping the place elsewhere."""
        if self.cursor is not None and self._width:
            row, top = self.token_row(self.cursor), int(self.scroll_offset.y)
            if top <= row < top + self._content_height():
                return self.cursor
        return self.token_at_scroll()

    def _row_range(self, row: int) -> tuple[int, int]:
        """The document offsets [begin, end) that content row `row` shows."""
        line = bisect_right(self._row_start, row) - 1
        cuts = self._line_cuts(line)
        k = row - self._row_start[line]
        lo = self._layout.line_start[line]
        return lo + cuts[k], (lo + cuts[k + 1] if k + 1 < len(cuts) else self._layout.line_stop[line])

    # ------------------------------------------------------------------ cursor
    def _set_cursor(self, index: int) -> None:
        """Move the cursor (redraws the lines of the old and new token and the info line)."""
        old, self.cursor = self.cursor, index
        if old == index:
            return
        for token in (old, index):
            if token is not None and self._layout is not None and token < len(self._layout.token_start):
                first = int(self._layout.token_line[token])
                last = bisect_right(self._layout.line_start, int(self._layout.token_stop[token]) - 1) - 1
                for line in range(first, last + 1):
                    self._strips.discard(line)
        self._info = None
        self.refresh()

    def _move_cursor(self, index: int, jump: bool = False) -> None:
        """Put the cursor on `index` and scroll as little as keeps it in view (or, for a jump to a
        place off screen, put it on the top row below its labels)."""
        index = max(0, min(index, len(self._layout.token_start) - 1))
        self._set_cursor(index)
        if not self._width:
            self._pending_token = index
            return
        row, top, height = self.token_row(index), int(self.scroll_offset.y), self._content_height()
        if top <= row < top + height:
            return
        if jump:
            self._scroll_to_place(index)
        elif row < top:
            self.scroll_to(y=row, animate=False, immediate=True, force=True)
        else:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True, force=True)

    def _token_x(self, index: int) -> int:
        """The cell column where token `index` begins, in its row."""
        begin, _ = self._row_range(self.token_row(index))
        return self._layout.cell_len(begin, int(self._layout.token_start[index]))

    def token_at(self, row: int, x: int) -> int | None:
        """The token drawn at content row `row`, cell column `x` (the row's last token when x is
        past its end); None for a row that holds no token (a label)."""
        layout = self._layout
        if layout is None or not self._width or not 0 <= row < self._row_start[-1]:
            return None
        begin, end = self._row_range(row)
        first, last = layout.tokens_in(begin, end)
        if first > last:
            return None
        pos, used = begin, 0
        if layout.cell_len(begin, end) == end - begin:
            pos = begin + max(0, x)
        else:
            while pos < end and used + get_character_cell_size(layout.doc[pos]) <= x:
                used += get_character_cell_size(layout.doc[pos])
                pos += 1
        j = layout.token_at_offset(pos)
        if j < first or (j < last and pos >= layout.token_stop[j]):
            j += 1  # on a marker (drift) before a token: that token
        return max(first, min(j, last))

    def action_cursor_step(self, delta: int) -> None:
        """Move the cursor `delta` tokens."""
        if self.cursor is not None:
            self._goal_x = None
            self._move_cursor(self.cursor + delta)

    def action_cursor_row(self, delta: int, rows: int = 1) -> None:
        """Move the cursor `rows` rows up (delta -1) or down (+1), keeping its column."""
        if self.cursor is None or not self._width:
            return
        row = self.token_row(self.cursor)
        if self._goal_x is None:
            self._goal_x = self._token_x(self.cursor)
        goal, r = self._goal_x, row + delta * rows
        r = max(0, min(r, self._row_start[-1] - 1))
        while 0 <= r < self._row_start[-1]:
            j = self.token_at(r, goal)
            if j is not None and delta > 0 and self.token_row(j) < r:
                # A token folded over from the row above: moving down lands on the row's first own token.
                begin, end = self._row_range(r)
                j = int(np.searchsorted(self._layout.token_start, begin, side="left"))
                j = j if j < len(self._layout.token_start) and self._layout.token_start[j] < end else None
            if j is not None and (self.token_row(j) - row) * delta > 0:
                self._move_cursor(j)
                self._goal_x = goal
                return
            r += delta

    def action_cursor_page(self, delta: int) -> None:
        """Scroll a page and move the cursor the same number of rows."""
        if self.cursor is None or not self._width:
            return
        page = self._content_height()
        self.scroll_to(y=int(self.scroll_offset.y) + delta * page, animate=False, immediate=True, force=True)
        self.action_cursor_row(delta, page)

    def action_cursor_home(self) -> None:
        if self.cursor is not None:
            self._goal_x = None
            self._move_cursor(0)
            self.scroll_to(y=0, animate=False, immediate=True, force=True)

    def action_cursor_end(self) -> None:
        if self.cursor is not None:
            self._goal_x = None
            self._move_cursor(len(self._layout.token_start) - 1)

    def on_click(self, event: events.Click) -> None:
        """A click on a token puts the cursor there."""
        offset = event.get_content_offset(self)
        if offset is None or self.cursor is None or offset.y < self._header_rows:
            return
        token = self.token_at(int(self.scroll_offset.y) + offset.y - self._header_rows, offset.x)
        if token is not None:
            self._goal_x = None
            self._move_cursor(token)

    # ------------------------------------------------------------------ jumps
    def _jump_after(self, positions: list[int]) -> bool:
        """Move to the first of `positions` (sorted) after the cursor, wrapping; False if none."""
        if self.cursor is None or not positions:
            return False
        k = bisect_right(positions, self.cursor)
        self._goal_x = None
        self._move_cursor(positions[k % len(positions)], jump=True)
        return True

    def next_tool_error(self) -> bool:
        """Cursor to the first token of the next assistant message with a tool error (wraps).

        Returns False (and stays) when the trajectory has none.
        """
        return self._jump_after(self._errors)

    def go_to_drift(self) -> bool:
        """Cursor to the drift position (the last token when drift is past the end); False if none."""
        if self._data is None or self._data[3] is None or self.cursor is None:
            return False
        self._goal_x = None
        self._move_cursor(min(self._data[3], len(self._layout.token_start) - 1), jump=True)
        return True

    def set_search_hits(self, token_positions: list[int]) -> None:
        """The token positions `next_search_hit` visits (any order; out-of-range ones dropped)."""
        n = len(self._layout.token_start) if self._layout is not None else 0
        self._hits = sorted({p for p in token_positions if 0 <= p < n})

    def set_flags(self, token_positions: list[int]) -> None:
        """The token positions mask-lint findings name, which `next_flag` visits (any order;
        out-of-range ones dropped). show() clears them."""
        n = len(self._layout.token_start) if self._layout is not None else 0
        self._flags = sorted({p for p in token_positions if 0 <= p < n})

    def next_flag(self) -> bool:
        """Cursor to the next flagged token after it (wraps); False when there are none."""
        return self._jump_after(self._flags)

    def action_next_flag(self) -> None:
        if not self.next_flag():
            self._nowhere("f", "no mask-lint finding on a token of this trajectory")

    def next_search_hit(self) -> bool:
        """Cursor to the next search hit after it (wraps); False when there are none."""
        return self._jump_after(self._hits)

    def action_next_tool_error(self) -> None:
        if not self.next_tool_error():
            self._nowhere("e", "no tool errors in this trajectory's tokens")

    def action_go_to_drift(self) -> None:
        if not self.go_to_drift():
            self._nowhere("d", "no drift: the re-rendered chat matches the tokens")

    def action_next_search_hit(self) -> None:
        if not self.next_search_hit():
            self._nowhere("m", "no search matches in the tokens")

    def _nowhere(self, key: str, message: str) -> None:
        """A jump found nothing: let a screen that binds the same key say why (it knows whether a
        search is on, say); alone, say it here."""
        for node in self.ancestors:
            for cls in type(node).__mro__:
                if any(isinstance(b, Binding) and key in b.key.split(",") for b in cls.__dict__.get("BINDINGS", ())):
                    raise SkipAction()
        self.notify(message, timeout=2)


def _fold_cuts(plain: str, width: int) -> list[int]:
    """Character offsets where each folded row of a header line starts (always [0, ...]): after
    the last space that fits, or mid-word when a word is wider than the row."""
    cuts, used, space = [0], 0, None
    for i, ch in enumerate(plain):
        size = get_character_cell_size(ch)
        if used + size > width and used:
            cut = space + 1 if space is not None and space + 1 > cuts[-1] else i
            cuts.append(cut)
            used, space = sum(get_character_cell_size(c) for c in plain[cut:i]), None
        used += size
        if ch == " ":
            space = i
    return cuts
