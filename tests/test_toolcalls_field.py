"""Tool-call parsing on replies from the field: tags and think blocks written inside JSON strings,
prose that mentions a tag, and calls cut off mid-way (issue 13, "tags inside strings").

Tags (<tool_call>, </tool_call>, <think>, </think>, ``` fences, Gemma's and LFM2's call tokens) are
recognised only outside string literals of a call; a tag mentioned in prose without a call after
it is part of the answer.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data.records import ToolCall
from core.rollout.toolcalls import count_call_attempts, find_call_candidates, parse_tool_call, strip_reasoning
from inspector.tui.render import split_reasoning


def _query_of(text: str) -> str:
    parsed = parse_tool_call(text)
    assert isinstance(parsed, ToolCall), parsed
    return parsed.arguments["query"]


# --- the three field cases --------------------------------------------------------------------

def test_closing_tag_inside_the_query_string_does_not_end_the_call():
    text = ('<tool_call>\n{"name": "search_corpus", "arguments": {"query": "what does </tool_call> mean in Qwen"}}'
            "\n</tool_call>")
    assert _query_of(text) == "what does </tool_call> mean in Qwen"
    assert count_call_attempts(text) == 1


@pytest.mark.parametrize("query", ["what does </think> mean", "the <think> tag", "<think>x</think> in Qwen3",
                                   "</think>", "<think>"])
@pytest.mark.parametrize("shape", ["tag", "bare", "fence"])
def test_think_tags_inside_the_query_string_keep_the_call(query, shape):
    call = json.dumps({"name": "search_corpus", "arguments": {"query": query}})
    text = {"tag": f"<tool_call>\n{call}\n</tool_call>", "bare": call, "fence": f"```json\n{call}\n```"}[shape]
    assert _query_of(text) == query
    assert strip_reasoning(text) == text  # nothing in it is reasoning
    assert count_call_attempts(text) == 1


def test_prose_that_mentions_the_tag_is_an_answer():
    text = "Qwen marks calls with a <tool_call> tag. The observatory is on Qoruna."
    assert parse_tool_call(text) is None
    assert count_call_attempts(text) == 0
    assert strip_reasoning(text) == text


@pytest.mark.parametrize("text", [
    "Use <tool_call> and </tool_call> around a call. Qoruna.",
    "The </tool_call> tag closes it; <TOOL_CALL> opens it.",
    "Gemma writes <|tool_call> tags, LFM2 <|tool_call_start|> ones. The answer is Qoruna.",
    "Qwen3 closes its reasoning with </think>",
])
def test_other_prose_mentions_are_answers(text):
    assert parse_tool_call(text) is None, text
    assert count_call_attempts(text) == 0


# --- the same kind in every call shape ---------------------------------------------------------

def test_fence_marker_inside_the_query_string():
    text = '```json\n{"name": "search_corpus", "parameters": {"query": "print ``` in markdown"}}\n```'
    assert _query_of(text) == "print ``` in markdown"


def test_gemma_and_lfm2_end_tokens_inside_strings():
    gemma = '<|tool_call>call:search_corpus{query:<|"|>what is <tool_call|> in Gemma<|"|>}<tool_call|>'
    assert _query_of(gemma) == "what is <tool_call|> in Gemma"
    lfm = "<|tool_call_start|>[search_corpus(query='the <|tool_call_end|> token')]<|tool_call_end|>"
    assert _query_of(lfm) == "the <|tool_call_end|> token"


def test_xml_parameter_value_holding_the_closing_tag():
    text = ("<tool_call>\n<function=search_corpus>\n<parameter=query>\nwhat does </tool_call> mean\n</parameter>\n"
            "</function>\n</tool_call>")
    assert _query_of(text) == "what does </tool_call> mean"


def test_two_tagged_calls_with_tags_in_strings_are_two_attempts():
    one = '<tool_call>{"name": "search_corpus", "arguments": {"query": "a </tool_call> b"}}</tool_call>'
    assert count_call_attempts(one + "\n" + one) == 2
    assert parse_tool_call(one + one).kind == "multiple_calls"


# --- reasoning still works as before ----------------------------------------------------------

def test_reasoning_that_mentions_tags_before_an_orphan_close():
    # Qwen3-style: the template opened <think>, the reply starts inside it and mentions the tag.
    text = ("I need to emit a <tool_call> with JSON, maybe {\"name\": \"search_corpus\" ...\n</think>\n\n"
            '<tool_call>\n{"name": "search_corpus", "arguments": {"query": "Veltran"}}\n</tool_call>')
    assert _query_of(text) == "Veltran"
    assert count_call_attempts(text) == 1
    assert strip_reasoning(text).startswith("\n\n<tool_call>")


def test_reasoning_block_then_call_with_think_in_query():
    text = ('<think>search first</think>\n<tool_call>{"name": "search_corpus", "arguments": '
            '{"query": "</think> and <think>"}}</tool_call>')
    assert _query_of(text) == "</think> and <think>"
    assert strip_reasoning(text) == text[len("<think>search first</think>"):]


def test_json_only_thought_about_is_still_not_a_call():
    text = ('<think>maybe {"name": "search_corpus", "arguments": {"query": "</think>"}}</think>The answer is '
            "Qoruna.")
    # A think block ends at its first </think> (reasoning is free text, as templates read it); the
    # leftover JSON tail before the second </think> is reasoning too (the orphan-close rule).
    assert parse_tool_call(text) is None
    assert strip_reasoning(text) == "The answer is Qoruna."


# --- cut-off calls count the same in both shapes -------------------------------------------------

def test_a_bare_call_cut_mid_way_is_an_attempt_like_a_tagged_one():
    call = '{"name": "search_corpus", "arguments": {"query": "Veltran Obs'
    tagged, bare = "<tool_call>\n" + call, call
    assert count_call_attempts(tagged) == count_call_attempts(bare) == 1
    assert parse_tool_call(bare).kind == parse_tool_call(tagged).kind == "invalid_json"
    # A cut query that holds a tag is still one cut call, not a second region.
    assert count_call_attempts('{"name": "search_corpus", "arguments": {"query": "a <tool_call> b') == 1


def test_prose_with_an_unclosed_brace_is_still_an_answer():
    for text in ["The set {a, b", "f(x) = {x | x > 0", "{not json"]:
        assert parse_tool_call(text) is None, text


# --- property tests ----------------------------------------------------------------------------

TAGS = ["<tool_call>", "</tool_call>", "<think>", "</think>", "```", "```json", "<|tool_call>", "<tool_call|>",
        "<|tool_call_start|>", "<|tool_call_end|>", "<function=x>", "</function>", "{", "}", "[", '"', "\\", "\n",
        "<arg_key>", "'"]
QUERY = st.lists(st.one_of(st.sampled_from(TAGS), st.text(min_size=1, max_size=6)), min_size=1, max_size=8).map(
    "".join).filter(lambda q: q.strip())


def _shapes(query: str) -> dict[str, str]:
    call = json.dumps({"name": "search_corpus", "arguments": {"query": query}})
    seed = json.dumps({"type": "function", "function": {"name": "search_corpus", "parameters": {"query": query}}})
    return {
        "bare": call,
        "seed": f"Let me search.\n{seed}",
        "tag": f"<tool_call>\n{call}\n</tool_call>",
        "fence": f"```json\n{call}\n```",
        "think_then_tag": f"<think>I will search.</think>\n<tool_call>\n{call}\n</tool_call>",
        "orphan_then_tag": f"I will search.</think>\n\n<tool_call>\n{call}\n</tool_call>",
        "think_then_bare": f"<think>\nsearch\n</think>\n{call}",
    }


@settings(max_examples=200, deadline=None)
@given(QUERY, st.sampled_from(["bare", "seed", "tag", "fence", "think_then_tag", "orphan_then_tag",
                               "think_then_bare"]))
def test_any_tag_text_in_a_query_is_data(query, shape):
    text = _shapes(query)[shape]
    assert _query_of(text) == query
    assert count_call_attempts(text) == 1
    pieces = split_reasoning(text)
    assert "".join(p for p, _ in pieces) == text
    assert "".join(p for p, r in pieces if not r) == strip_reasoning(text)


WORDS = st.sampled_from(["Qwen", "marks", "calls", "with", "a", "tag.", "The", "observatory", "is", "on",
                         "Qoruna.", "and", "Use", "</tool_call>", "<tool_call>", "</think>", "`code`"])


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=12))
def test_prose_mentioning_tags_is_an_answer(words):
    # A tag followed by a word (never by JSON, XML or a call) is a mention, not a call.
    plain = {"Qwen", "marks", "calls", "with", "a", "tag.", "The", "observatory", "is", "on", "Qoruna.", "and", "Use"}
    fixed: list[str] = []
    for i, word in enumerate(words):
        fixed.append(word)
        if word == "<tool_call>" and (i + 1 == len(words) or words[i + 1] not in plain):
            fixed.append("tag.")
    text = " ".join(fixed)
    assert parse_tool_call(text) is None
    assert find_call_candidates(text) == []


def test_reasoning_prefix_with_a_tag_mention_and_an_open_object():
    # The mention is prose ("with {" is not a call's arguments) and the open object in the thought
    # ends at the </think> outside its strings: the reply's call is still found.
    text = ('Okay, I need a <tool_call> with {"name": ... and then </think>\n\n<tool_call>\n'
            '{"name": "search_corpus", "arguments": {"query": "x"}}\n</tool_call>')
    assert _query_of(text) == "x"
    assert count_call_attempts(text) == 1


def test_thousands_of_nested_brackets_are_broken_json_not_a_crash():
    # json recurses per nesting level; such a reply must not take the run down.
    assert parse_tool_call('{"a":' * 3000) is not None  # an open object: a cut-off call
    assert parse_tool_call("<tool_call>" + "[" * 3000).kind == "invalid_json"
    assert parse_tool_call("Answer: " + "[" * 3000) is None
