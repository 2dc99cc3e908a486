"""Tool calls in the shapes models write, and every way a call can fail."""

from __future__ import annotations

import json

import pytest

from core.data.records import ToolCall, ToolError
from core.rollout.toolcalls import count_call_attempts, find_call_candidates, parse_tool_call, strip_reasoning

SEED_CALL = '{"type": "function", "function": {"name": "search_corpus", "parameters": {"query": "Veltran Observatory"}}}'


def _call(text: str) -> ToolCall:
    parsed = parse_tool_call(text)
    assert isinstance(parsed, ToolCall), parsed
    return parsed


def _error(text: str, kind: str, **kwargs) -> ToolError:
    parsed = parse_tool_call(text, **kwargs)
    assert isinstance(parsed, ToolError), parsed
    assert parsed.kind == kind, parsed
    return parsed


# --- strip_reasoning -------------------------------------------------------------------------

def test_strip_reasoning_removes_blocks_and_unclosed_tail():
    assert strip_reasoning("<think>a</think>x<think>\nb\n</think>y") == "xy"
    assert strip_reasoning("answer <think>cut off mid") == "answer "
    assert strip_reasoning("no reasoning") == "no reasoning"


def test_strip_reasoning_drops_text_before_an_orphan_close():
    # Qwen3-style templates open <think> in the prompt: the reply starts inside the reasoning.
    assert strip_reasoning("I should search.</think>\n\nQoruna") == "\n\nQoruna"


# --- recognised shapes -----------------------------------------------------------------------

def test_seed_shape():
    call = _call(SEED_CALL)
    assert call.name == "search_corpus"
    assert call.arguments == {"query": "Veltran Observatory"}
    assert call.raw == SEED_CALL


def test_seed_shape_with_arguments_key():
    call = _call('{"type": "function", "function": {"name": "search_corpus", "arguments": {"query": "q"}}}')
    assert call.arguments == {"query": "q"}


def test_name_and_parameters_with_surrounding_prose():
    call = _call('Let me search.\n{"name": "search_corpus", "parameters": {"query": "Qoruna founding"}}\nDone.')
    assert call.arguments == {"query": "Qoruna founding"}


def test_arguments_as_json_string_openai_style():
    args = json.dumps({"query": "moons of Kepler"})
    call = _call(json.dumps({"name": "search_corpus", "arguments": args}))
    assert call.arguments == {"query": "moons of Kepler"}


def test_tool_call_tags_hermes_style():
    text = '<tool_call>\n{"name": "search_corpus", "arguments": {"query": "Veltran"}}\n</tool_call>'
    call = _call(text)
    assert call.arguments == {"query": "Veltran"}
    assert call.raw == '{"name": "search_corpus", "arguments": {"query": "Veltran"}}'
    assert find_call_candidates(text)[0].source == "tag"


def test_json_code_fence():
    text = 'Searching:\n```json\n{"name": "search_corpus", "parameters": {"query": "Veltran"}}\n```'
    assert _call(text).arguments == {"query": "Veltran"}
    assert count_call_attempts(text) == 1


def test_plain_code_fence():
    text = '```\n{"name": "search_corpus", "parameters": {"query": "Veltran"}}\n```'
    assert _call(text).arguments == {"query": "Veltran"}


def test_braces_inside_the_query_string():
    # The seed's brace counter is thrown off by an unbalanced brace inside a string.
    text = '{"name": "search_corpus", "parameters": {"query": "set {x where x} and a lone }"}}'
    assert _call(text).arguments == {"query": "set {x where x} and a lone }"}
    assert count_call_attempts(text) == 1


def test_extra_arguments_are_kept():
    call = _call('{"name": "search_corpus", "parameters": {"query": "q", "k": 3}}')
    assert call.arguments == {"query": "q", "k": 3}


def test_nested_objects_are_not_separate_candidates():
    assert len(find_call_candidates(SEED_CALL)) == 1


def test_stray_closing_brace_after_a_tagged_call_is_ignored():
    text = '<tool_call>{"name": "search_corpus", "arguments": {"query": "q"}}}</tool_call>'
    assert _call(text).arguments == {"query": "q"}


# --- not calls -------------------------------------------------------------------------------

def test_json_inside_reasoning_is_not_a_call():
    text = f"<think>Maybe I should call {SEED_CALL}</think>The answer is Qoruna."
    assert parse_tool_call(text) is None
    assert count_call_attempts(text) == 0


def test_prose_with_braces_is_an_answer():
    for text in ["The set {a, b} has two elements.", "Use f(x) = {x | x > 0}.", "{not json}", "Qoruna"]:
        assert parse_tool_call(text) is None, text
        assert find_call_candidates(text) == []


def test_non_object_json_in_bare_text_is_not_a_call():
    assert parse_tool_call('["search_corpus", "q"]') is None
    assert parse_tool_call('```json\n["Paris"]\n```') is None


def test_single_quoted_python_dict_is_not_a_call():
    assert parse_tool_call("{'name': 'search_corpus', 'parameters': {'query': 'q'}}") is None


# --- failures --------------------------------------------------------------------------------

def test_two_calls():
    text = ('{"name": "search_corpus", "parameters": {"query": "a"}}\n'
            '<tool_call>{"name": "search_corpus", "parameters": {"query": "b"}}</tool_call>')
    err = _error(text, "multiple_calls")
    assert err.message == "expected one tool call, found 2"
    assert count_call_attempts(text) == 2
    assert [c.value["parameters"]["query"] for c in find_call_candidates(text)] == ["a", "b"]


def test_unknown_tool():
    err = _error('{"name": "web_search", "parameters": {"query": "q"}}', "unknown_tool")
    assert err.message == "unknown tool 'web_search' (known: search_corpus)"


def test_known_tools_are_configurable():
    call = parse_tool_call('{"name": "lookup", "parameters": {"query": "q"}}', tools=("search_corpus", "lookup"))
    assert isinstance(call, ToolCall) and call.name == "lookup"


@pytest.mark.parametrize("args, says", [
    ({}, "has no 'query'"),
    ({"query": ""}, "is empty"),
    ({"query": "   \n"}, "is empty"),
    ({"query": 42}, "must be a string, not a number"),
    ({"query": None}, "has no 'query'"),
])
def test_missing_query(args, says):
    err = _error(json.dumps({"name": "search_corpus", "parameters": args}), "missing_query")
    assert says in err.message


def test_invalid_json_in_tags():
    err = _error('<tool_call>{"name": "search_corpus", "arguments": {"query": "q"}</tool_call>', "invalid_json")
    assert err.message.startswith("invalid JSON in <tool_call>: ")
    assert "line 1 column" in err.message


def test_unclosed_tag_is_an_attempt():
    # A reply cut off by the token limit mid-call still attempted a call.
    err = _error('<tool_call>{"name": "search_corpus", "argum', "invalid_json")
    assert "<tool_call>" in err.message


def test_invalid_json_in_json_fence():
    err = _error('```json\n{"name": "search_corpus", "parameters": {"query": "q",}}\n```', "invalid_json")
    assert "```json" in err.message


def test_empty_tags():
    _error("<tool_call>\n</tool_call>", "invalid_json")


def test_invalid_arguments_string():
    err = _error('{"name": "search_corpus", "arguments": "{query: q}"}', "invalid_json")
    assert "'arguments' string is not valid JSON" in err.message


@pytest.mark.parametrize("text, says", [
    ('{"answer": "Qoruna"}', "not a tool call"),
    ('{"name": "search_corpus"}', "no 'parameters' or 'arguments'"),
    ('{"name": "search_corpus", "parameters": ["q"]}', "must be an object, not an array"),
    ('{"name": 3, "parameters": {"query": "q"}}', "no 'name'"),
    ('<tool_call>["search_corpus"]</tool_call>', "expected a JSON object, found an array"),
])
def test_malformed_calls(text, says):
    err = _error(text, "malformed_call")
    assert says in err.message


def test_messages_are_one_line():
    texts = ['<tool_call>{"name": \n"search_corpus", "arguments": {"query": </tool_call>',
             '{"answer": "x"}', '{"name": "x", "parameters": {}}']
    for text in texts:
        err = parse_tool_call(text)
        assert isinstance(err, ToolError) and "\n" not in err.message


def test_function_form_of_qwen3_coder_and_nemotron_templates():
    from core.data.records import ToolCall

    text = ("<think>Search.</think>\n<tool_call>\n<function=search_corpus>\n<parameter=query>\n1873 census\n"
            "</parameter>\n</function>\n</tool_call>")
    call = parse_tool_call(text)
    assert isinstance(call, ToolCall) and call.arguments == {"query": "1873 census"}
    assert parse_tool_call("<tool_call>\n<function=search_corpus>\n<parameter=query>\n1873\n</parameter>\n"
                           "</function>\n</tool_call>").arguments == {"query": "1873"}
    assert parse_tool_call("<tool_call>\n<function=web>\n</function>\n</tool_call>").kind == "unknown_tool"


def test_gemma4_lfm2_and_glm_call_forms():
    from core.data.records import ToolCall

    gemma = parse_tool_call('<|tool_call>call:search_corpus{query:<|"|>Veltran, "the" {x}<|"|>}<tool_call|>')
    assert isinstance(gemma, ToolCall) and gemma.arguments == {"query": 'Veltran, "the" {x}'}
    lfm = parse_tool_call("<|tool_call_start|>[search_corpus(query=\"Qoruna's harbour\")]<|tool_call_end|>")
    assert isinstance(lfm, ToolCall) and lfm.arguments == {"query": "Qoruna's harbour"}
    assert lfm.raw == "search_corpus(query=\"Qoruna's harbour\")"  # the text as written, to strip it exactly
    glm = parse_tool_call("<tool_call>search_corpus\n<arg_key>query</arg_key>\n<arg_value>1873</arg_value>\n</tool_call>")
    assert isinstance(glm, ToolCall) and glm.arguments == {"query": "1873"}
    # Python call syntax is read, never run.
    unsafe = parse_tool_call("<|tool_call_start|>[search_corpus(query=__import__('os').getcwd())]<|tool_call_end|>")
    assert unsafe.kind == "invalid_json" and "literals" in unsafe.message
    assert parse_tool_call("<|tool_call>nonsense<tool_call|>").kind == "invalid_json"
