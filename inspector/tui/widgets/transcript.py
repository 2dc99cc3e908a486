"""The transcript of one trajectory, turn by turn.

System and user prompts are folded (long, and the same for every question); reasoning is dimmed
and folded; tool calls read as calls; a tool error stands out at its turn; search results light
the gold chunk where the search found it. Everything is `Static(Text)`: model text never goes
through markup, titles included (a Collapsible's str title is parsed as markup, so titles are
given as Text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Collapsible, Static

from core.data.records import Message, Question
from inspector.tui.render import REASONING, Gold, cut_line, gold_badge, gold_chunk_hit, literal, message_body, split_reasoning, tool_call_line, tool_error_line, visible

_TITLE_WIDTH = 70
MATCH = "bold black on yellow"
"""Where the list's search phrase occurs in an opened trajectory."""


class Fold(Collapsible):
    """A Collapsible that a bulk toggle can open or close without scrolling to it.

    Collapsible scrolls itself into view after every toggle; when `r` opens every reasoning
    fold at once, each would pull the view down and the last one would win.
    """

    def __init__(self, *children: Widget, title: Text, collapsed: bool = True, classes: str = ""):
        super().__init__(*children, title=title, collapsed=collapsed, classes=classes)  # type: ignore[arg-type]
        self._quiet = False

    def set_collapsed_quietly(self, collapsed: bool) -> None:
        if self.collapsed != collapsed:
            self._quiet = self.is_mounted  # the scroll is only scheduled once mounted
            self.collapsed = collapsed

    def scroll_visible(self, *args, **kwargs) -> None:
        if self._quiet:
            self._quiet = False
            return
        super().scroll_visible(*args, **kwargs)


class MessageBlock(Vertical):
    """Everything shown for one message (its turn rule included, so the rule scrolls with it)."""

    def __init__(self, *children: Widget, message_index: int, classes: str = ""):
        super().__init__(*children, classes=classes)
        self.message_index = message_index


class Transcript(VerticalScroll, can_focus=True):
    """Messages of one trajectory and its verdict."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    BINDINGS = [
        Binding("r", "toggle_reasoning", "Fold reasoning", id="transcript.reasoning",
                tooltip="Open or close every reasoning block"),
        Binding("s", "toggle_prompts", "Fold prompts", id="transcript.prompts",
                tooltip="Open or close the system and user prompts"),
    ]

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._blocks: list[MessageBlock] = []
        self._messages: list[Message] = []
        self._hits: list[int] = []

    def show(self, messages: list[Message], question: Question | None, final_answer: str | None,
             gold_answer: str | None, correct: bool | None, *, search: str | None = None,
             hits: Iterable[int] = (), finish_reason: str | None = None) -> None:
        """Replace what is shown with this trajectory, from the top.

        `search`: the list's full-text phrase (a trailing * is a prefix), lit wherever it occurs;
        `hits`: positions of the messages the search index matched, marked and reachable with
        `next_search_hit`; `finish_reason`: the trajectory's, to mark a last reply cut by a token
        limit (render.cut_line)."""
        self.remove_children()
        self._messages = messages
        self._hits = sorted(set(hits))
        phrase = (search or "").strip().rstrip("*").strip()
        gold_chunk = question  # its chunk_content, or last supporting paragraph (render.Gold)
        errors_at_tool = {m.turn for m in messages if m.role != "assistant" and m.tool_error is not None}
        # Only a tokenised trajectory can say a result was never fed to the model (no token span);
        # a text-only one (imported from another tool) has no spans at all.
        tokenised = any(m.token_start is not None for m in messages)
        self._blocks = []
        turn = None
        for index, message in enumerate(messages):
            first_of_turn = message.turn != turn
            turn = message.turn
            rule = Static(Text(f"Turn {turn}"), classes="turn-rule") if first_of_turn and turn >= 1 else None
            parts = [rule] if rule else []
            if message.role in ("system", "user"):
                parts.append(_prompt(message, phrase))
            elif message.role == "assistant":
                parts += _assistant(message, phrase, show_error=message.turn not in errors_at_tool)
                cut = cut_line(finish_reason) if index == len(messages) - 1 else None
                if cut is not None:
                    parts.append(Static(cut, classes="cut"))
            else:
                parts += _tool_result(message, gold_chunk, phrase, tokenised)
            hit = gold_chunk_hit(message, gold_chunk)
            classes = f"role-{_css_name(message.role)}{' gold-hit' if hit else ''}"
            classes += " search-hit" if index in self._hits else ""
            self._blocks.append(MessageBlock(*parts, message_index=index, classes=classes))
        self.mount_all([*self._blocks, Static(_verdict(final_answer, gold_answer, correct), classes="verdict")])
        self.scroll_home(animate=False)

    # ------------------------------------------------------------------ place keeping
    def message_index_at_scroll(self) -> int:
        """The message whose block is at the top of the view (0 before anything is shown)."""
        top = self.scroll_y
        best = 0
        for block in self._blocks:
            if block.virtual_region.y > top:
                break
            best = block.message_index
        return best

    def scroll_to_message(self, index: int) -> None:
        """Put message `index` at the top, once the layout has placed it."""
        self.call_after_refresh(self._scroll_to_block, index)

    def _scroll_to_block(self, index: int) -> None:
        for block in self._blocks:
            if block.message_index == index and block.is_attached:
                self.scroll_to(y=block.virtual_region.y, animate=False, immediate=True)
                return

    # ------------------------------------------------------------------ jumps
    def _jump(self, targets: list[int]) -> int | None:
        """Scroll to the first target message after the one at the top (wrapping); its index."""
        if not targets:
            return None
        here = self.message_index_at_scroll()
        at_top = self.scroll_y == 0 and here == 0 and 0 in targets
        later = [t for t in targets if t > here or (t == here and at_top and not self._jumped)]
        target = later[0] if later else targets[0]
        self._jumped = True
        self.scroll_to_message(target)
        return target

    _jumped = False

    def tool_error_positions(self) -> list[int]:
        """Messages with a tool error (the assistant's call, or the result that carries it)."""
        return [i for i, m in enumerate(self._messages) if m.tool_error is not None]

    def next_tool_error(self) -> int | None:
        """Scroll to the next message with a tool error; None when the trajectory has none."""
        return self._jump(self.tool_error_positions())

    def next_search_hit(self) -> int | None:
        """Scroll to the next message the list's search matched; None when none did."""
        return self._jump(self._hits)

    def go_to_token(self, token: int) -> int | None:
        """Scroll to the message whose token span holds `token` (the drift position)."""
        spans = [i for i, m in enumerate(self._messages)
                 if m.token_start is not None and m.token_end is not None and m.token_start <= token < m.token_end]
        if not spans:
            before = [i for i, m in enumerate(self._messages) if m.token_start is not None and m.token_start <= token]
            spans = before[-1:]
        if not spans:
            return None
        self.scroll_to_message(spans[-1])
        return spans[-1]

    # ------------------------------------------------------------------ folds
    def action_toggle_reasoning(self) -> None:
        self._toggle([f for f in self.query(Fold) if f.has_class("reasoning")])

    def action_toggle_prompts(self) -> None:
        self._toggle([f for f in self.query(Fold) if f.has_class("prompt")])

    def _toggle(self, folds: list[Fold]) -> None:
        """Open all when any is closed, else close all; the message at the top stays at the top."""
        if not folds:
            return
        place = self.message_index_at_scroll()
        collapse = all(not f.collapsed for f in folds)
        for fold in folds:
            fold.set_collapsed_quietly(collapse)
        if self.scroll_y > 0:
            self.scroll_to_message(place)


def _marked(text: Text, phrase: str) -> Text:
    """`text` with `phrase` lit wherever it occurs (case-insensitive); `text` itself is changed."""
    if phrase:
        text.highlight_words([phrase], MATCH, case_sensitive=False)
    return text


def _css_name(role: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in role) or "unknown"


def _prompt(m: Message, phrase: str = "") -> Widget:
    lines = [line for line in m.content.splitlines() if line.strip()]
    first = visible(lines[0].strip()) if lines else "(empty)"
    title = Text(f"{m.role}: ", style="bold")
    title.append(first if len(first) <= _TITLE_WIDTH else first[: _TITLE_WIDTH - 1] + "…")
    title.append(f"  ({len(m.content):,} chars)", style="dim")
    return Fold(Static(_marked(literal(m.content), phrase)), title=_marked(title, phrase),
                classes=f"prompt role-{_css_name(m.role)}")


def _assistant(m: Message, phrase: str = "", show_error: bool = True) -> list[Widget]:
    parts: list[Widget] = [Static(Text("assistant"), classes="role")]
    segments = split_reasoning(m.content or "")
    for piece, is_reasoning in segments:
        if is_reasoning:
            title = Text(f"reasoning ({len(piece):,} chars)", style=REASONING)
            parts.append(Fold(Static(_marked(literal(piece, REASONING), phrase)), title=title, classes="reasoning"))
        elif piece.strip():
            body = message_body(Message("assistant", piece.strip("\n"), m.turn))
            parts.append(Static(_marked(body, phrase), classes="reply"))
    if not (m.content or "").strip():
        parts.append(Static(Text("(empty reply)", style="dim italic")))
    if m.tool_call is not None:
        parts.append(Static(tool_call_line(m.tool_call), classes="call"))
    if m.tool_error is not None and show_error:
        parts.append(Static(tool_error_line(m.tool_error, m.turn), classes="tool-error"))
    return parts


def _tool_result(m: Message, gold_chunk: Gold, phrase: str = "", tokenised: bool = True) -> list[Widget]:
    header = Text(f"{visible(m.role)} result", style="bold")
    if gold_chunk_hit(m, gold_chunk):
        header.append("  ")
        header.append_text(gold_badge())
    if m.tool_error is not None and m.token_start is None and tokenised:
        header.append("  (ended the chat: the model never saw it)", style="dim")
    parts: list[Widget] = [Static(header, classes="role")]
    if m.tool_error is not None:
        parts.append(Static(tool_error_line(m.tool_error, m.turn), classes="tool-error"))
        # The agent writes the error itself as the result; show the content only if it says more.
        if m.content.strip() and m.content.strip() != f"Error: {m.tool_error.kind}: {m.tool_error.message}":
            parts.append(Static(_marked(message_body(m, gold_chunk), phrase), classes="tool-body"))
    else:
        parts.append(Static(_marked(message_body(m, gold_chunk), phrase), classes="tool-body"))
    return parts


def _verdict(answer: str | None, gold: str | None, correct: bool | None) -> Text:
    text = Text("Final answer: ", style="bold", overflow="fold")
    text.append(visible(answer) if answer else "(none)")
    text.append("\nGold: ", style="bold")
    text.append(visible(gold) if gold else "(none)")
    text.append("\n")
    if correct is None:
        text.append("? not judged", style="dim")
    else:
        text.append("✔ correct" if correct else "✘ wrong", style="bold green" if correct else "bold red")
    return text
