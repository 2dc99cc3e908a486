"""Model text as Rich `Text`, never as markup.

Everything a model or a corpus wrote is data: Rich tags, links and ANSI escapes must show as
typed, control characters must not reach the terminal, and very long lines must fold. These
pure functions build the pieces the trajectory widgets show.
"""

from __future__ import annotations

import math
import re

from rich.text import Text

from core.records import Message, ToolCall, ToolError
from core.tokens import TokenSequence

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_THINK = re.compile(r"(<think>.*?(?:</think>|$))", re.DOTALL | re.IGNORECASE)


def visible(text: str | None) -> str:
    """Control characters (ANSI escapes included) shown as ␛ / \\xNN; newlines and tabs kept."""
    if not text:
        return ""
    return _CONTROL.sub(lambda m: "␛" if m.group(0) == "\x1b" else f"\\x{ord(m.group(0)):02x}", text)


def plain(text: str | None, style: str = "") -> Text:
    """Literal text that folds long lines."""
    return Text(visible(text), style=style, overflow="fold")


def split_reasoning(content: str) -> list[tuple[str, bool]]:
    """(segment, is_reasoning) pieces of an assistant message; an unclosed <think> runs to the end."""
    out = []
    for piece in _THINK.split(content):
        if piece:
            out.append((piece, bool(_THINK.fullmatch(piece))))
    return out


def assistant_text(content: str) -> Text:
    """Reasoning dimmed and italic, the rest as written."""
    text = Text(overflow="fold")
    for piece, reasoning in split_reasoning(content):
        text.append(visible(piece), style="dim italic" if reasoning else "")
    return text


def tool_result_text(content: str, gold_chunk: str | None) -> tuple[Text, bool]:
    """The search result with the gold chunk highlighted wherever it appears; (text, hit)."""
    text = plain(content)
    hit = False
    if gold_chunk:
        needle = visible(gold_chunk)
        start = text.plain.find(needle)
        while start >= 0:
            hit = True
            text.stylize("bold black on green", start, start + len(needle))
            start = text.plain.find(needle, start + len(needle))
    return text, hit


def tool_call_text(call: ToolCall) -> Text:
    text = Text("→ ", style="bold cyan")
    text.append(visible(call.name), style="bold cyan")
    text.append("(")
    for i, (key, value) in enumerate(call.arguments.items()):
        if i:
            text.append(", ")
        text.append(f"{visible(str(key))}=")
        text.append(visible(repr(value) if not isinstance(value, str) else f'"{value}"'), style="bold yellow")
    text.append(")")
    return text


def tool_error_text(error: ToolError, turn: int) -> Text:
    text = Text(" TOOL ERROR ", style="bold white on red")
    text.append(f" {visible(error.kind)} ", style="bold red")
    text.append(visible(error.message))
    text.append(f"  (turn {turn})", style="dim")
    return text


def heat(logprob: float) -> str:
    """A colour from red (p≈0) through yellow to green (p≈1) for a token's probability."""
    p = max(0.0, min(1.0, math.exp(logprob)))
    red, green = (255, int(510 * p)) if p < 0.5 else (int(510 * (1 - p)), 255)
    return f"rgb({red},{green},60)"


def logprob_legend() -> Text:
    text = Text("p: ")
    for p in (0.05, 0.25, 0.5, 0.75, 0.95):
        text.append(f" {p:.2f} ", style=f"black on {heat(math.log(p))}")
    return text


def token_counts(tokens: TokenSequence) -> dict[str, int]:
    trained = sum(tokens.mask)
    return {"total": len(tokens.ids), "trained": trained, "masked": len(tokens.ids) - trained,
            "prompt": tokens.prompt_len, "completion": tokens.completion_len}


def token_text(tokens: TokenSequence, pieces: list[str] | None, messages: list[Message], drift_at: int | None,
               special: set[int], mode: str = "mask") -> Text:
    """Every token, trained ones set apart from masked ones, message boundaries and drift marked.

    mode "mask": trained tokens bold on a green tint, masked ones dim. mode "logprob": trained
    tokens coloured by probability. Special (template) tokens are magenta either way.
    """
    starts: dict[int, str] = {}
    for m in messages:
        if m.token_start is not None and m.token_start not in starts:
            starts[m.token_start] = m.role if m.turn == 0 else f"{m.role} (turn {m.turn})"
    if len(messages) >= 2 and messages[0].token_start == messages[1].token_start == 0:
        starts[0] = "system + user prompt"
    text = Text(overflow="fold")
    run: list[str] = []
    run_style = ""

    def flush() -> None:
        # Consecutive tokens of one style become one span: in mask mode a 10k-token trajectory
        # is a few hundred spans instead of 10k, which is what makes it quick to wrap and draw.
        if run:
            text.append("".join(run), style=run_style)
            run.clear()

    for i, tok in enumerate(tokens.ids):
        if i in starts or (drift_at is not None and i == drift_at):
            flush()
        if i in starts:
            if i:
                text.append("\n")
            text.append(f"── {starts[i]} ──\n", style="bold blue")
        if drift_at is not None and i == drift_at:
            text.append("⚠drift▸", style="bold white on red")
        piece = pieces[i] if pieces else f"⟨{tok}⟩"
        if tok in special:
            style = "bold magenta"
        elif tokens.mask[i]:
            lp = tokens.logprobs[i]
            style = (f"bold {heat(lp)}" if mode == "logprob" and not math.isnan(lp)
                     else "bold bright_white on rgb(20,90,40)")
        else:
            style = "dim"
        if style != run_style:
            flush()
            run_style = style
        run.append(visible(piece).replace("\n", "↵\n"))
    flush()
    return text
