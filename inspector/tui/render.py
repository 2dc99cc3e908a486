"""Pure builders of Rich `Text` for one trajectory: messages, tool calls, errors, rewards (the token
view's are in inspector.tui.token_render).

Everything a model, a corpus or a judge wrote is data. Nothing here parses markup: Rich tags and
links show as typed, ANSI escapes and other control characters are made visible (they would
otherwise move the terminal's cursor), and long lines carry `overflow="fold"` so they wrap
instead of pushing the screen sideways. No Textual import: the widgets wrap these, and tests
check them without an app.
"""

from __future__ import annotations

import json
from typing import Any

from rich.style import Style
from rich.text import Text

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.rollout.toolcalls import reasoning_spans
from core.scoring.rewards import gold_spans
from inspector.literal import one_line, visible


_NOT_TOOL_ROLES = ("system", "user", "assistant")
"""Any other role is a tool result ("tool", or "ipython" in the seed's Llama 3 chats)."""

REASONING = Style(dim=True, italic=True)
GOLD = Style(color="black", bgcolor="green", bold=True)
GOLD_BADGE = GOLD
CALL = Style(color="cyan", bold=True)
QUERY = Style(color="yellow", bold=True)
ERROR_LABEL = Style(color="bright_white", bgcolor="red", bold=True)
ERROR_KIND = Style(color="red", bold=True)


def literal(text: str | None, style: Style | str = "") -> Text:
    """Model text as a foldable `Text`, shown exactly as typed."""
    return Text(visible(text), style=style, overflow="fold")


# ----------------------------------------------------------------------------- messages
def split_reasoning(content: str) -> list[tuple[str, bool]]:
    """(segment, is_reasoning) pieces of an assistant message, in order, covering all of it.

    The reasoning pieces are `core.rollout.toolcalls.reasoning_spans` (so the other pieces joined
    are exactly what `strip_reasoning` keeps, what the tool-call parser and the final answer see):
    <think>...</think> blocks, everything before a stray </think> (templates that open <think> in
    the prompt), and an unclosed trailing <think>...; think tags inside a call's strings are data.
    """
    if not content:
        return []
    segments: list[tuple[str, bool]] = []
    pos = 0
    for start, end in reasoning_spans(content):
        if start > pos:
            segments.append((content[pos:start], False))
        if end > start and segments and segments[-1][1] and start == pos:  # adjacent blocks read as one
            segments[-1] = (segments[-1][0] + content[start:end], True)
        elif end > start:
            segments.append((content[start:end], True))
        pos = end
    if pos < len(content):
        segments.append((content[pos:], False))
    return segments


Gold = Question | str | None
"""What a tool result is searched for: a question (its chunk_content, or its last supporting
paragraph, by the chunk_hit reward's own rule: core.scoring.rewards.gold_spans), or a literal text."""


def gold_spans_in(message: Message, gold: Gold) -> list[tuple[int, int]]:
    """Character spans of the gold text in a tool result's content ([] for other roles)."""
    content = message.content or ""
    if not gold or message.role in _NOT_TOOL_ROLES:
        return []
    if isinstance(gold, Question):
        return gold_spans(gold, content)
    spans, pos = [], 0
    while (found := content.find(gold, pos)) >= 0:
        pos = found + len(gold)
        spans.append((found, pos))
    return spans


def gold_chunk_hit(message: Message, gold: Gold) -> bool:
    """True when a tool result contains the gold text (the chunk_hit reward's test)."""
    return bool(gold_spans_in(message, gold))


def message_body(message: Message, gold: Gold = None) -> Text:
    """A message's content: reasoning dimmed for the assistant, the gold text lit in tool results.

    Whether the chunk was hit is `gold_chunk_hit(message, gold)`; `gold_badge()` is the
    marker to show beside it.
    """
    if message.role == "assistant":
        text = Text(overflow="fold")
        for piece, is_reasoning in split_reasoning(message.content or ""):
            text.append(visible(piece), style=REASONING if is_reasoning else "")
        return text
    # Split the original text around each occurrence, then make each piece visible: matching
    # in the shown text could pair a control character with the literal text of its escape.
    content, text, pos = message.content or "", Text(overflow="fold"), 0
    for start, end in gold_spans_in(message, gold):
        text.append(visible(content[pos:start]))
        text.append(visible(content[start:end]), style=GOLD)
        pos = end
    text.append(visible(content[pos:]))
    return text


def gold_badge() -> Text:
    return Text(" ✔ gold chunk hit ", style=GOLD_BADGE)


def tool_call_line(call: ToolCall) -> Text:
    """`search_corpus(query="...")`: the call as the model meant it, its query emphasised."""
    text = Text("→ ", style=CALL, overflow="fold")
    text.append(visible(call.name), style=CALL)
    text.append("(")
    for i, (key, value) in enumerate(call.arguments.items()):
        if i:
            text.append(", ")
        text.append(f"{visible(str(key))}=")
        shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else f'"{value}"'
        text.append(visible(shown), style=QUERY if key == "query" else "bold")
    text.append(")")
    return text


def tool_error_line(error: ToolError, turn: int) -> Text:
    """A white-on-red label that cannot be missed, then the kind in red and the message on the
    normal background (a base style on the whole Text would put the red kind on red)."""
    text = Text(overflow="fold")
    text.append(" TOOL ERROR ", style=ERROR_LABEL)
    text.append(f" {visible(error.kind)} ", style=ERROR_KIND)
    text.append(visible(error.message))
    text.append(f"  (turn {turn})", style="dim")
    return text


CUT_LABEL = Style(color="black", bgcolor="yellow", bold=True)
_CUT_BY = {"max_tokens": "the token limit", "context_length": "the model's context length"}
"""The finish reasons of a reply stopped by a token limit (core.rollout.agent.TRUNCATED), and which."""


def cut_line(finish_reason: str | None) -> Text | None:
    """The mark under a reply cut by a token limit (a trajectory finished as max_tokens or
    context_length on an assistant reply, core.rollout.agent): the reply did not end and any call
    in it was not run. None for any other finish reason."""
    limit = _CUT_BY.get(finish_reason or "")
    if limit is None:
        return None
    text = Text(overflow="fold")
    text.append(" ✂ CUT ", style=CUT_LABEL)
    text.append(f" {finish_reason}: ", style="bold")
    text.append(f"generation stopped by {limit}; the reply is unfinished and a call in it was not run")
    return text


# ----------------------------------------------------------------------------- rewards
_DETAIL_WIDTH = 240


def reward_rows(rewards: list[RewardResult]) -> list[tuple[str, str, str, str]]:
    """(name, weight, value, why) per reward; why is the one detail that explains the value."""
    return [(one_line(r.name, _DETAIL_WIDTH), f"{r.weight:g}", f"{r.value:.3f}", _one_line(detail_summary(r)))
            for r in rewards]


def reward_total(rewards: list[RewardResult]) -> float:
    """The weighted sum, as `core.scoring.rewards.Rewards.total` computes it."""
    return sum(r.value * r.weight for r in rewards)


def detail_summary(reward: RewardResult) -> str:
    """The detail that explains a reward's value in a few words; the whole detail as JSON when
    it has an unexpected shape (a user reward may store anything under any name)."""
    d = reward.detail if isinstance(reward.detail, dict) else {"detail": reward.detail}
    try:
        return _explained(reward.name, d)
    except (TypeError, ValueError, AttributeError):
        return json.dumps(d, ensure_ascii=False, default=str)


def _explained(name: str, d: dict[str, Any]) -> str:
    if "error" in d:
        return f"error: {d['error']}"
    if name == "correctness":
        judge = d.get("judge", "judge")
        if d.get("verdict") == "empty_answer":
            return f"{judge}: empty answer, not asked"
        if d.get("verdict") == "unparseable":  # no yes/no once reasoning is stripped: not judged, not wrong
            cut = f", cut at {d.get('max_tokens', '?')} tokens" if d.get("cut") else ""
            reply = str(d.get("reply", ""))
            return f"{judge}: no verdict (unparseable reply{cut}), not judged: {reply}" if reply.strip() \
                else f"{judge}: no verdict (empty reply{cut}), not judged"
        if "reply" in d:
            return f"{judge} replied: {d['reply']}" if str(d["reply"]).strip() else f"{judge}: empty reply"
        if "f1" in d:
            return f"{judge}: f1 {d['f1']} ({d.get('answer', '')!r} vs {d.get('gold', '')!r})"
        if "answer" in d:
            return f"{judge}: {d.get('answer', '')!r} vs {d.get('gold', '')!r}"
    elif name == "formatting" and isinstance(d.get("tool_errors"), list):
        errors = d["tool_errors"]
        return f"tool errors: {', '.join(map(str, errors))}" if errors else "no tool errors"
    elif name == "retry_behavior" and "tool_calls" in d:
        return f"{d['tool_calls']} tool call(s) attempted"
    elif name == "chunk_hit" and "hit_turn" in d:
        results = d.get("tool_results")
        if d["hit_turn"] is None:
            return f"gold chunk in none of {results} tool result(s)" if results is not None else "gold chunk not found"
        return f"gold chunk found at turn {d['hit_turn']}"
    return json.dumps(d, ensure_ascii=False, default=str) if d else ""


def _one_line(text: str) -> str:
    return one_line(" ".join(text.split()), _DETAIL_WIDTH)
