"""The pure text builders behind the trajectory views: literal model text, masks, boundaries."""

from __future__ import annotations

import math

from core.records import Message, ToolCall, ToolError
from core.tokens import TokenSequence
from inspector.tui.text import (
    assistant_text,
    heat,
    split_reasoning,
    tool_call_text,
    tool_error_text,
    tool_result_text,
    token_counts,
    token_text,
    visible,
)


def test_control_characters_are_made_visible_and_markup_stays_literal():
    assert visible("a\x1b[31mred\x1b[0m\tb\nc\x07") == "a␛[31mred␛[0m\tb\nc\\x07"
    text = assistant_text("[bold red]x[/] [link=http://e.x]y[/link]")
    assert text.plain == "[bold red]x[/] [link=http://e.x]y[/link]"
    assert not text.spans or all(span.style == "" for span in text.spans)


def test_reasoning_is_split_and_dimmed_even_when_unclosed():
    assert split_reasoning("<think>a</think>B<think>c") == [("<think>a</think>", True), ("B", False),
                                                             ("<think>c", True)]
    text = assistant_text("<think>why</think>Qoruna")
    dim = [s for s in text.spans if "dim" in str(s.style)]
    assert text.plain[dim[0].start:dim[0].end] == "<think>why</think>"


def test_gold_chunk_is_highlighted_wherever_it_was_hit():
    text, hit = tool_result_text("Result 1:\nGOLD\n------\nResult 2:\nGOLD\n", "GOLD")
    assert hit and [text.plain[s.start:s.end] for s in text.spans] == ["GOLD", "GOLD"]
    assert tool_result_text("nothing here", "GOLD")[1] is False
    assert tool_result_text("nothing here", None)[1] is False


def test_calls_and_errors_read_as_such():
    assert tool_call_text(ToolCall("search_corpus", {"query": "Veltran"})).plain == '→ search_corpus(query="Veltran")'
    err = tool_error_text(ToolError("unknown_tool", "unknown tool 'web'"), 3).plain
    assert "TOOL ERROR" in err and "unknown_tool" in err and "turn 3" in err


def _sequence():
    t = TokenSequence()
    t.add_prompt([1, 2, 3])
    t.add_generated([10, 11], [-0.1, -3.0])
    t.add_scaffold([4, 5])
    messages = [Message("system", "s", 0, token_start=0, token_end=3), Message("user", "u", 0, token_start=0, token_end=3),
                Message("assistant", "x", 1, token_start=3, token_end=5), Message("tool", "r", 1, token_start=5, token_end=7)]
    return t, messages


def test_token_text_marks_mask_boundaries_specials_and_drift():
    t, messages = _sequence()
    pieces = ["<s>", "a", "b", "c", "d", "\n", "e"]
    text = token_text(t, pieces, messages, drift_at=5, special={1})
    plain = text.plain
    assert plain.index("── system + user prompt ──") < plain.index("<s>")
    assert plain.index("── assistant (turn 1) ──") < plain.index("cd") < plain.index("⚠drift▸") < plain.index("↵")
    styles = {plain[s.start:s.end]: str(s.style) for s in text.spans}
    assert "green" in styles["cd"] or "rgb(20,90,40)" in styles["cd"]  # trained
    assert styles["ab"] == "dim" and "magenta" in styles["<s>"]
    assert token_counts(t) == {"total": 7, "trained": 2, "masked": 5, "prompt": 3, "completion": 4}


def test_logprob_mode_colours_trained_tokens_by_probability():
    t, messages = _sequence()
    text = token_text(t, None, messages, None, set(), mode="logprob")
    assert "⟨10⟩" in text.plain
    assert heat(math.log(0.99)).startswith("rgb(") and heat(math.log(0.99)) != heat(math.log(0.01))
    styles = [str(s.style) for s in text.spans if "⟨1" in text.plain[s.start:s.end]]
    assert any(heat(-0.1) in s for s in styles) and any(heat(-3.0) in s for s in styles)
