"""One trajectory as tokens: the assistant mask, logprobs, template tokens, message boundaries."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.records import Message
from core.tokens import TokenSequence
from inspector.tui.text import logprob_legend, token_counts, token_text


class TokenPane(VerticalScroll, can_focus=True):
    BINDINGS = [Binding("l", "toggle_mode", "Mask/logprob colours", id="tokens.mode")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mode = "mask"
        self._data: tuple | None = None
        self._line_of_token: list[int] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="token-header")
        yield Static("", id="token-body")

    def show(self, tokens: TokenSequence, pieces: list[str] | None, messages: list[Message],
             drift_at: int | None, special: set[int]) -> None:
        self._data = (tokens, pieces, messages, drift_at, special)
        self._render_tokens()

    def show_message(self, text: str) -> None:
        self._data = None
        self.query_one("#token-header", Static).update(Text(text, style="italic"))
        self.query_one("#token-body", Static).update("")

    def _render_tokens(self) -> None:
        tokens, pieces, messages, drift_at, special = self._data
        c = token_counts(tokens)
        header = Text(f"{c['total']:,} tokens · ", style="bold")
        header.append(f"{c['trained']:,} trained", style="bold bright_white on rgb(20,90,40)")
        header.append(f" · {c['masked']:,} masked", style="dim")
        header.append(f" · prompt {c['prompt']:,} · completion {c['completion']:,}")
        if drift_at is not None:
            header.append(f" · ⚠ drift at token {drift_at}", style="bold red")
        if pieces is None:
            header.append(" · no local tokenizer: showing ids", style="italic")
        header.append("\n")
        header.append(logprob_legend() if self.mode == "logprob" else Text("mask: ", style="")
                      + Text(" trained ", style="bold bright_white on rgb(20,90,40)") + Text(" masked ", style="dim")
                      + Text(" template ", style="bold magenta"))
        self.query_one("#token-header", Static).update(header)
        body = token_text(tokens, pieces, messages, drift_at, special, self.mode)
        self._line_of_token = _token_lines(body.plain, tokens, pieces)
        self.query_one("#token-body", Static).update(body)

    def action_toggle_mode(self) -> None:
        self.mode = "logprob" if self.mode == "mask" else "mask"
        if self._data:
            self._render_tokens()

    def scroll_to_token(self, index: int) -> None:
        """Scroll so the line holding token `index` is at the top (approximate under wrapping)."""
        if 0 <= index < len(self._line_of_token):
            # +2 header lines, -1 so the message's boundary label stays in view
            self.scroll_to(y=max(0, self._line_of_token[index] + 1), animate=False)

    def token_at_scroll(self) -> int | None:
        if not self._line_of_token:
            return None
        line = max(0, int(self.scroll_y) - 2)
        for i, token_line in enumerate(self._line_of_token):
            if token_line >= line:
                return i
        return len(self._line_of_token) - 1


def _token_lines(plain: str, tokens: TokenSequence, pieces: list[str] | None) -> list[int]:
    """The (unwrapped) line each token starts on, counted from the rendered text's newlines."""
    lines, line, pos = [], 0, 0
    for i, tok in enumerate(tokens.ids):
        piece = pieces[i] if pieces else f"⟨{tok}⟩"
        found = plain.find(piece.replace("\n", "↵\n")[:1] or " ", pos) if piece else pos
        if found < 0:
            found = pos
        line += plain.count("\n", pos, found)
        lines.append(line)
        pos = found
    return lines
