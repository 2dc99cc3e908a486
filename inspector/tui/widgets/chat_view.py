"""The transcript of one trajectory, turn by turn.

System and user prompts are folded (they are long and the same for every question), reasoning
is dimmed and folded, tool calls read as calls, tool errors stand out at their turn, and search
results show the gold chunk highlighted where the search found it.
"""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Collapsible, Static

from core.records import Message, Question
from inspector.tui.text import assistant_text, plain, split_reasoning, tool_call_text, tool_error_text, \
    tool_result_text, visible


class ChatView(VerticalScroll, can_focus=True):
    """Messages of one trajectory; each top-level child carries the index of its message."""

    BINDINGS = [
        Binding("r", "toggle_reasoning", "Fold reasoning", id="chat.reasoning"),
        Binding("s", "toggle_prompts", "Fold prompts", id="chat.prompts"),
    ]

    def show(self, messages: list[Message], question: Question | None, final_answer: str | None,
             gold_answer: str | None, correct: bool | None) -> None:
        self.remove_children()
        gold_chunk = question.chunk_content if question else None
        widgets: list[Widget] = []
        turn = 0
        for index, message in enumerate(messages):
            if message.turn != turn:
                turn = message.turn
                widgets.append(Static(Text(f"── Turn {turn} ──", style="bold blue"), classes="turn-rule"))
            widgets.append(self._message_widget(index, message, gold_chunk))
        widgets.append(self._verdict(final_answer, gold_answer, correct))
        self.mount_all(widgets)
        self.scroll_home(animate=False)

    def _message_widget(self, index: int, m: Message, gold_chunk: str | None) -> Widget:
        if m.role in ("system", "user"):
            first = visible(m.content.strip().splitlines()[0] if m.content.strip() else "")
            # Titles are read as markup by Collapsible: escape model/user text so "[/]" stays literal.
            box = Collapsible(Static(plain(m.content)), title=escape(f"{m.role}: {first[:70]}"), collapsed=True,
                              classes=f"message {m.role}")
        elif m.role == "assistant":
            box = self._assistant(m)
        else:
            body, hit = tool_result_text(m.content, gold_chunk)
            parts: list[Widget] = []
            label = Text(f"{m.role} result", style="bold")
            if hit:
                label.append("  ✔ gold chunk hit", style="bold green")
            parts.append(Static(label))
            if m.tool_error is not None:
                parts.append(Static(tool_error_text(m.tool_error, m.turn), classes="tool-error"))
            else:
                parts.append(Static(body))
            box = _Group(*parts, classes=f"message tool{' hit' if hit else ''}")
        box.message_index = index
        return box

    def _assistant(self, m: Message) -> Widget:
        parts: list[Widget] = [Static(Text("assistant", style="bold"))]
        segments = split_reasoning(m.content)
        for piece, reasoning in segments:
            if reasoning:
                parts.append(Collapsible(Static(plain(piece, "dim italic")), title=f"reasoning ({len(piece):,} chars)",
                                         collapsed=True, classes="reasoning"))
            elif piece.strip():
                parts.append(Static(assistant_text(piece)))
        if m.tool_call is not None:
            parts.append(Static(tool_call_text(m.tool_call)))
        if m.tool_error is not None:
            parts.append(Static(tool_error_text(m.tool_error, m.turn), classes="tool-error"))
        return _Group(*parts, classes="message assistant")

    def _verdict(self, answer: str | None, gold: str | None, correct: bool | None) -> Widget:
        text = Text("Final answer: ", style="bold")
        text.append(visible(answer) if answer else "(none)")
        text.append("\nGold answer:  ", style="bold")
        text.append(visible(gold))
        if correct is not None:
            text.append("\n✔ correct" if correct else "\n✘ wrong", style="bold green" if correct else "bold red")
        return Static(text, classes="verdict")

    # ---------------------------------------------------------------- place keeping
    def message_index_at_scroll(self) -> int:
        """The message at the top of the view."""
        top = self.scroll_y
        best = 0
        for child in self.children:
            index = getattr(child, "message_index", None)
            if index is not None and child.virtual_region.y <= top:
                best = index
        return best

    def scroll_to_message(self, index: int) -> None:
        for child in self.children:
            if getattr(child, "message_index", None) == index:
                self.scroll_to_widget(child, top=True, animate=False)
                return

    def action_toggle_reasoning(self) -> None:
        boxes = list(self.query(".reasoning"))
        collapse = not all(b.collapsed for b in boxes)
        for box in boxes:
            box.collapsed = collapse

    def action_toggle_prompts(self) -> None:
        boxes = [b for b in self.query(Collapsible) if b.has_class("system") or b.has_class("user")]
        collapse = not all(b.collapsed for b in boxes)
        for box in boxes:
            box.collapsed = collapse


class _Group(Widget):
    """A message's parts stacked; sized to its content."""

    DEFAULT_CSS = "_Group { height: auto; }"

    def __init__(self, *children: Widget, classes: str = ""):
        super().__init__(*children, classes=classes)
