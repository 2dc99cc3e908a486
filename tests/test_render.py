"""The pure text builders behind the trajectory widgets (inspector.tui.render).

Model text is data: markup and escapes must come out literally, long lines must fold, and the
token view must put every style, label and marker on the right characters.
"""

from __future__ import annotations

import io
import math
import random

import pytest
from rich.console import Console
from rich.text import Text

from core.data.records import Message, RewardResult, ToolCall, ToolError
from core.rollout.tokens import TokenSequence
from core.rollout.toolcalls import strip_reasoning
from inspector.tui import render, token_render
from inspector.tui.render import message_body, reward_rows, reward_total, split_reasoning, tool_call_line, tool_error_line, visible
from inspector.tui.token_render import DRIFT_MARK, token_counts, token_layout, token_summary, token_view

MARKUP = "[bold red]x[/] [link=http://x]y[/link]"
CONSOLE = Console(file=io.StringIO(), width=80, color_system="truecolor", legacy_windows=False)


def style_at(text: Text, offset: int):
    return text.get_style_at_offset(CONSOLE, offset)


# ----------------------------------------------------------------------------- literal text
def test_markup_shows_literally_everywhere():
    for message in (Message("assistant", f"<think>{MARKUP}</think>{MARKUP}", 1), Message("tool", MARKUP, 1)):
        text = message_body(message, gold=None)
        assert text.plain.count(MARKUP) == (2 if message.role == "assistant" else 1)
        assert all("link" not in str(span.style) for span in text.spans)
    assert MARKUP in tool_call_line(ToolCall("search_corpus", {"query": MARKUP})).plain
    assert MARKUP in tool_error_line(ToolError("invalid_json", MARKUP), 2).plain


def test_control_characters_are_made_visible_and_newlines_tabs_kept():
    assert visible("a\x1b[31mred\x1b[0m\tb\nc\x07\r") == "a␛[31mred␛[0m\tb\nc\\x07\\x0d"
    assert visible("\x9b2J\u202eevil") == "\\x9b2J\\u202eevil"
    assert visible(None) == ""
    body = message_body(Message("tool", "\x1b[2J\x1b[31mred", 1), None).plain
    assert "\x1b" not in body and body == "␛[2J␛[31mred"


def test_ten_thousand_character_lines_fold():
    text = message_body(Message("assistant", "x" * 10_000, 1), None)
    lines = CONSOLE.render_lines(text, CONSOLE.options.update_width(80), pad=False)
    assert len(lines) == 125
    assert all(sum(len(seg.text) for seg in line) <= 80 for line in lines)


# ----------------------------------------------------------------------------- messages
@pytest.mark.parametrize("content, expected", [
    ("<think>a</think>B<think>c", [("<think>a</think>", True), ("B", False), ("<think>c", True)]),
    ("reasoning</think>answer", [("reasoning</think>", True), ("answer", False)]),
    ("no reasoning", [("no reasoning", False)]),
    ("", []),
])
def test_split_reasoning(content, expected):
    assert split_reasoning(content) == expected


def test_split_reasoning_keeps_exactly_what_the_parser_keeps():
    rnd = random.Random(7)
    alphabet = ["<think>", "</think>", "<THINK>", "a", " ", "\n", "{}"]
    for _ in range(2000):
        content = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 9)))
        segments = split_reasoning(content)
        assert "".join(s for s, _ in segments) == content
        assert "".join(s for s, r in segments if not r) == strip_reasoning(content)


def test_assistant_reasoning_is_dimmed_and_the_rest_is_not():
    text = message_body(Message("assistant", "<think>why</think>Qoruna", 1), None)
    assert style_at(text, 3).dim and style_at(text, 3).italic
    assert not style_at(text, text.plain.index("Qoruna")).dim


def test_gold_chunk_is_highlighted_wherever_it_was_hit():
    result = Message("tool", "Result 1:\nGOLD\n------\nResult 2:\nGOLD\n", 1)
    text = message_body(result, "GOLD")
    lit = [text.plain[s.start:s.end] for s in text.spans if s.style == render.GOLD]
    assert lit == ["GOLD", "GOLD"]
    assert render.gold_chunk_hit(result, "GOLD")
    assert not render.gold_chunk_hit(Message("tool", "nothing", 1), "GOLD")
    assert not render.gold_chunk_hit(result, None)
    assert not render.gold_chunk_hit(Message("assistant", "GOLD", 1), "GOLD")
    assert not render.gold_chunk_hit(Message("user", "GOLD", 0), "GOLD")
    assert render.gold_chunk_hit(Message("ipython", "GOLD", 1), "GOLD")  # the seed's Llama 3 tool role
    assert "gold chunk hit" in render.gold_badge().plain


def test_calls_and_errors_read_as_such():
    line = tool_call_line(ToolCall("search_corpus", {"query": "Veltran", "k": 2}))
    assert line.plain == '→ search_corpus(query="Veltran", k=2)'
    assert style_at(line, line.plain.index("Veltran")) == CONSOLE.get_style(render.QUERY)
    err = tool_error_line(ToolError("unknown_tool", "unknown tool 'web'"), 3)
    assert err.plain.startswith(" TOOL ERROR ")
    assert "unknown_tool" in err.plain and "unknown tool 'web'" in err.plain and "turn 3" in err.plain
    label = style_at(err, 2)
    assert label.bold and label.bgcolor.name == "red"


# ----------------------------------------------------------------------------- tokens
def sequence() -> tuple[TokenSequence, list[Message], list[str]]:
    """prompt [0,3) | assistant [3,6) | closing [6,7) | tool [7,9) | generation prompt [9,10)."""
    t = TokenSequence()
    t.add_prompt([1, 2, 3])
    t.add_generated([10, 11, 12], [math.log(0.99), math.log(0.02), math.log(0.5)])
    t.add_scaffold([4])
    t.add_scaffold([5, 6])
    t.add_scaffold([7])
    messages = [Message("system", "s", 0, token_start=0, token_end=3),
                Message("user", "u", 0, token_start=0, token_end=3),
                Message("assistant", "x", 1, token_start=3, token_end=6),
                Message("tool", "r", 1, token_start=7, token_end=9)]
    pieces = ["<|im_start|>", "sys", "\n", "ab", "\n", "cd", "<|im_end|>", "res\x1b", "\t", "<|im_start|>"]
    return t, messages, pieces


def token_spans(layout, i: int) -> tuple[Text, int]:
    return layout.lines[layout.token_line[i]], layout.token_col[i]


TRAINED_BG = {token_render.TRAINED.bgcolor, token_render.TRAINED_ALT.bgcolor}
MASKED_BG = {None, token_render.MASKED_ALT.bgcolor}


def test_the_mask_comes_first_and_the_token_class_second():
    """Issue 1: a template token shows its mask (a generated <|im_end|> looks trained, a prompt one
    masked) and its class on top (magenta, underlined), in both modes."""
    t, messages, pieces = sequence()
    layout = token_layout(t, pieces, messages, None, "mask", special={1, 12})  # 12: a generated <|im_end|>
    for i in range(len(t.ids)):
        style = style_at(*token_spans(layout, i))
        template = i == 5 or pieces[i].startswith("<|")  # id 12 (a generated <|im_end|>) or shaped <|..|>
        if t.mask[i]:
            assert style.bgcolor in TRAINED_BG and not style.dim, i
        else:
            assert style.bgcolor in MASKED_BG and style.dim, i
        assert bool(style.underline) == template and (style.color is not None and "magenta" in style.color.name) \
            == template, i
    trained_special, masked_special = (style_at(*token_spans(layout, i)) for i in (5, 6))
    assert trained_special != masked_special and trained_special.bgcolor in TRAINED_BG
    heat = token_layout(t, pieces, messages, None, "logprob", special={12})
    on_heat = style_at(*token_spans(heat, 5))  # generated template token: heat background, class on top
    assert on_heat.bgcolor not in TRAINED_BG | MASKED_BG and on_heat.underline
    assert style_at(*token_spans(heat, 6)).dim  # the prompt's template token stays masked
    legend = token_render.mask_legend()
    template_styles = {style_at(legend, i).bgcolor for i, ch in enumerate(legend.plain) if ch == "t"
                       and style_at(legend, i).underline}
    assert template_styles & TRAINED_BG and template_styles & MASKED_BG  # both kinds in the legend


def test_neighbouring_tokens_alternate_shades_so_boundaries_show():
    """Issue 2: in a run of one kind, every other token takes the other shade of that kind."""
    t = TokenSequence()
    t.add_prompt([1, 2, 3, 4])
    t.add_generated([5, 6, 7, 8], [-0.1] * 4)
    layout = token_layout(t, ["a", "b", "c", "d", "e", "f", "g", "h"], [], None)
    bg = [style_at(*token_spans(layout, i)).bgcolor for i in range(8)]
    assert bg[0] == bg[2] != bg[1] == bg[3] and {bg[0], bg[1]} == MASKED_BG
    assert bg[4] == bg[6] != bg[5] == bg[7] and {bg[4], bg[5]} == TRAINED_BG
    heat = token_layout(t, ["a", "b", "c", "d", "e", "f", "g", "h"], [], None, "logprob")
    assert style_at(*token_spans(heat, 4)).bgcolor != style_at(*token_spans(heat, 5)).bgcolor  # same p, two shades


def test_logprob_mode_colours_trained_tokens_by_probability():
    t, messages, pieces = sequence()
    layout = token_layout(t, pieces, messages, None, "logprob")
    colours = [style_at(*token_spans(layout, i)).bgcolor.get_truecolor() for i in (3, 4, 5)]
    assert colours[0].green > 150 and colours[0].red < 30  # p=0.99: green
    assert colours[1].red > 150 and colours[1].green < 30  # p=0.02: red
    assert colours[2].red == colours[2].green > 150  # p=0.5: yellow
    assert style_at(*token_spans(layout, 8)).dim  # masked stays dim
    legend = token_render.logprob_legend()
    assert " 0 " in legend.plain and " 1 " in legend.plain
    with pytest.raises(ValueError):
        token_layout(t, pieces, messages, None, "heat")  # type: ignore[arg-type]
    layout.set_mode("mask")  # switching modes restyles the same text
    assert style_at(*token_spans(layout, 4)).bgcolor in TRAINED_BG


def test_message_boundaries_are_labelled_on_their_own_line_before_their_first_token():
    t, messages, pieces = sequence()
    layout = token_layout(t, pieces, messages, None)
    expected = {0: "── system + user prompt ──", 3: "── assistant (turn 1) ──", 6: "── template ──",
                7: "── tool (turn 1) ──", 9: "── template ──"}
    for token, label in expected.items():
        assert layout.token_col[token] == 0
        above = layout.token_line[token] - 1
        assert above in layout.label_lines and layout.lines[above].plain == label
    assert len(layout.label_lines) == len(expected)
    plain = token_view(t, pieces, messages, None).plain
    assert plain.index("── assistant (turn 1) ──\nab↵\n") < plain.index("── tool (turn 1) ──\nres␛⇥")


def test_tool_error_that_ended_the_chat_gets_no_label():
    t, messages, pieces = sequence()
    messages.append(Message("tool", "Error", 2, tool_error=ToolError("unknown_tool", "x")))
    assert "turn 2" not in token_view(t, pieces, messages, None).plain


def test_newline_tokens_show_and_break_the_line():
    t, messages, pieces = sequence()
    layout = token_layout(t, pieces, messages, None)
    line, col = token_spans(layout, 2)
    assert line.plain.endswith("sys↵") and line.plain[col] == "↵"
    assert layout.token_line[5] == layout.token_line[4] + 1  # "cd" starts the next line


def test_drift_marker_stands_right_before_the_drifting_token():
    t, messages, pieces = sequence()
    layout = token_layout(t, pieces, messages, drift_at=5)
    line, col = token_spans(layout, 5)
    assert line.plain[col - len(DRIFT_MARK):col] == DRIFT_MARK and line.plain[col:col + 2] == "cd"
    marker = style_at(line, col - 1)
    assert marker.bold and marker.bgcolor.name == "red"
    assert token_view(t, pieces, messages, drift_at=5).plain.count(DRIFT_MARK) == 1
    past = token_view(t, pieces, messages, drift_at=len(t.ids)).plain
    assert past.rstrip().endswith("the canonical rendering is longer)")


def test_without_a_tokenizer_ids_are_shown():
    t, messages, _ = sequence()
    plain = token_view(t, None, messages, None).plain
    assert "⟨1⟩⟨2⟩⟨3⟩" in plain and "⟨10⟩⟨11⟩⟨12⟩" in plain
    assert "no local tokenizer" in token_summary(t, None, have_pieces=False).plain


def test_counts_and_summary():
    t, messages, _ = sequence()
    assert token_counts(t) == {"total": 10, "trained": 3, "masked": 7, "prompt": 3, "completion": 7}
    summary = token_summary(t, drift_at=5).plain
    assert "10 tokens" in summary and "3 trained" in summary and "drift at token 5" in summary


def test_a_long_trajectory_is_laid_out_lazily():
    """Lines are built into Text only when asked for; a line's segments are its tokens in order."""
    rnd = random.Random(1)
    t = TokenSequence()
    t.add_prompt(list(range(200)))
    t.add_generated([rnd.randrange(50) for _ in range(10_000)], [-rnd.random() for _ in range(10_000)])
    pieces = [" w" if i % 50 else "\n" for i in t.ids]
    layout = token_layout(t, pieces, [], None)
    assert len(layout.token_line) == 10_200 and not isinstance(layout.lines, list)
    line = layout.token_line[5_000]
    segments = layout.segments(layout.line_start[line], layout.line_stop[line])
    first = list(layout.token_line).index(line)
    assert [text for text, _ in segments] == [pieces[i].replace("\n", "↵") for i in range(first, first + len(segments))]


def reference_cuts(plain: str, width: int) -> list[int]:
    """Fold grapheme by grapheme as Rich measures them (what the fast paths must agree with)."""
    from rich.cells import split_graphemes
    cuts, used = [0], 0
    for start, _end, size in split_graphemes(plain)[0]:
        if used + size > width and used:
            cuts.append(start)
            used = 0
        used += size
    return cuts


@pytest.mark.parametrize("width", [1, 2, 3, 7, 40])
def test_folding_counts_cells_like_rich_for_wide_and_zero_width_text(width):
    t = TokenSequence()
    pieces = ["plain ascii text ", "東京", "\n", "😀", "e", "\u0301", "x" * 50, "\n", "ab", "👨\u200d👩", "\t", "\n",
              "\u0301z", "한국어", "—", "é"]
    t.add_prompt(list(range(len(pieces))))
    layout = token_layout(t, pieces, [], None)
    rows = layout.rows(width)
    for line in range(len(layout.line_start)):
        plain = layout.doc[layout.line_start[line]:layout.line_stop[line]]
        assert "\u200d" not in plain  # joiners are shown as escapes: no glyph spans two tokens
        assert layout.cuts(line, width) == reference_cuts(plain, width), (line, plain)
        assert rows[line] == len(layout.cuts(line, width))
    plain = layout.text().plain
    assert "◌\u0301" in plain and "\\u200d" in plain  # a lone combining mark gets a base of its own


# ----------------------------------------------------------------------------- rewards
def test_reward_rows_summarise_the_detail_that_explains_each_value():
    rewards = [
        RewardResult("correctness", 1.0, 1.0, {"judge": "llm", "reply": "Yes,\n[bold]same[/]", "verdict": "yes"}),
        RewardResult("formatting", 0.0, 1.0, {"tool_errors": ["unknown_tool", "invalid_json"]}),
        RewardResult("retry_behavior", 0.269, 1.0, {"tool_calls": 2}),
        RewardResult("chunk_hit", 1.0, 0.5, {"hit_turn": 2, "tool_results": 3}),
        RewardResult("length", 0.5, 2.0, {"chars": 40, "note": "short"}),
        RewardResult("mine", 0.0, 1.0, {"error": "ValueError: boom"}),
    ]
    rows = reward_rows(rewards)
    assert rows[0] == ("correctness", "1", "1.000", "llm replied: Yes, [bold]same[/]")
    assert rows[1][3] == "tool errors: unknown_tool, invalid_json"
    assert rows[2] == ("retry_behavior", "1", "0.269", "2 tool call(s) attempted")
    assert rows[3] == ("chunk_hit", "0.5", "1.000", "gold chunk found at turn 2")
    assert rows[4][3] == '{"chars": 40, "note": "short"}'
    assert rows[5][3] == "error: ValueError: boom"
    assert reward_total(rewards) == pytest.approx(1.0 + 0.0 + 0.269 + 0.5 + 1.0 + 0.0)


def test_reward_rows_for_string_judges_and_misses():
    rows = reward_rows([
        RewardResult("correctness", 0.0, 1.0, {"judge": "f1", "answer": "Istel", "gold": "Qoruna", "f1": 0.0}),
        RewardResult("correctness", 0.0, 1.0, {"judge": "llm", "reply": "", "verdict": "empty_answer"}),
        RewardResult("correctness", 0.0, 1.0, {"judge": "exact", "reply": " "}),
        RewardResult("formatting", 0.7, 1.0, {"tool_errors": []}),
        RewardResult("chunk_hit", 0.0, 1.0, {"hit_turn": None, "tool_results": 2}),
    ])
    assert [r[3] for r in rows] == ["f1: f1 0.0 ('Istel' vs 'Qoruna')", "llm: empty answer, not asked",
                                    "exact: empty reply", "no tool errors", "gold chunk in none of 2 tool result(s)"]
    long = reward_rows([RewardResult("correctness", 1.0, 1.0, {"judge": "llm", "reply": "y" * 1000})])[0][3]
    assert len(long) <= 240 and long.endswith("…")


def test_tool_error_kind_is_not_red_on_red():
    from rich.console import Console

    from core.data.records import ToolError
    from inspector.tui.render import tool_error_line

    text = tool_error_line(ToolError("unknown_tool", "unknown tool 'web'"), 2)
    console = Console(width=120)
    label = text.get_style_at_offset(console, 1)
    kind = text.get_style_at_offset(console, text.plain.index("unknown_tool"))
    assert label.bgcolor is not None and label.bgcolor.name == "red"
    assert kind.bgcolor is None and kind.color.name == "red"
