"""Rewards against values worked out by hand from the seed's formulas."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest

from core.scoring.judges import ExactMatchJudge, JudgeItem, Verdict
from core.data.records import Message, Question, ToolCall, ToolError
from core.scoring.rewards import (RewardInput, RewardSuite, final_answer, load_reward_function, parse_weights,
                          retry_value)

CALL = '{"name": "search_corpus", "parameters": {"query": "Veltran Observatory"}}'
CHUNK = "The Veltran Observatory was founded in 1873 on the island of Qoruna."
QUESTION = Question(id="q1", question="Where is the Veltran Observatory?", answer="Qoruna", chunk_content=CHUNK)


def _opening() -> list[Message]:
    return [Message("system", "You are helpful.", 0), Message("user", "Question: where?", 0)]


def _chat(*turns: tuple[str, str | None], error: ToolError | None = None) -> list[Message]:
    """Assistant replies, each followed by a tool result when one is given."""
    messages = _opening()
    for k, (reply, result) in enumerate(turns, start=1):
        messages.append(Message("assistant", reply, k))
        if result is not None:
            messages.append(Message("tool", result, k))
    return messages


def _input(messages: list[Message], question: Question = QUESTION) -> RewardInput:
    return RewardInput(question, messages, final_answer(messages))


class RecordingJudge:
    """Test double: exact match, recording each batch it was asked to judge."""

    name = "recording"

    def __init__(self) -> None:
        self.batches: list[list[JudgeItem]] = []

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        self.batches.append(list(items))
        return ExactMatchJudge().judge(items)


def _by_name(results) -> dict:
    return {r.name: r for r in results}


# --- final_answer ----------------------------------------------------------------------------

def test_final_answer_is_last_assistant_message_without_reasoning():
    messages = _chat((CALL, CHUNK), ("<think>It says Qoruna.</think>\n Qoruna \n", None))
    assert final_answer(messages) == "Qoruna"
    assert final_answer(_opening()) == ""


# --- retry_behavior: the seed's curve, worked by hand ---------------------------------------

@pytest.mark.parametrize("n, expected", [
    (0, 1 / (1 + math.exp(6))),                 # x=-4: exp(4 + 2)  -> ~0.0024726
    (1, 1 / (1 + math.exp(3 + 1.5))),           # x=-3
    (2, 1 / (1 + math.exp(2 + 1))),             # x=-2
    (3, 1 / (1 + math.exp(1 + 0.5))),           # x=-1
    (4, 0.5),                                   # x=0
    (5, 1 / (1 + math.exp(-1 + 0.5))),          # x=1  -> ~0.6225
    (6, 1 / (1 + math.exp(-2 + 1))),            # x=2  -> ~0.7311
    (7, 1 / (1 + math.exp(-3 + 1.5)) - 0.2),    # x=3, penalty 0.2 -> ~0.6176
    (8, max(0.1, 1 / (1 + math.exp(-4 + 2)) - 0.4)),  # ~0.4808
    (10, 1 / (1 + math.exp(-6 + 3)) - 0.8),     # ~0.1526
    (11, 0.1),                                  # 1/(1+e^-3.5) - 1.0 < 0.1: the floor
])
def test_retry_curve(n, expected):
    assert retry_value(n) == pytest.approx(expected, abs=1e-12)


def test_retry_curve_spot_values():
    assert retry_value(0) == pytest.approx(0.0024726, abs=1e-7)
    assert retry_value(5) == pytest.approx(0.6224593, abs=1e-7)


def _retry(messages: list[Message]):
    return _by_name(RewardSuite(ExactMatchJudge()).score([_input(messages)])[0])["retry_behavior"]


def test_retry_counts_attempts_over_all_assistant_messages():
    # 1 + 2 (two calls in one reply) + 1 (a broken call in tags) + 0 (thinking about JSON) = 4
    messages = _chat((CALL, CHUNK), (CALL + "\n" + CALL, "Error"),
                     ('<tool_call>{"name": "search_corpus"</tool_call>', "Error"),
                     (f"<think>{CALL}</think>Qoruna", None))
    r = _retry(messages)
    assert r.detail == {"tool_calls": 4}
    assert r.value == 0.5


def test_retry_without_assistant_is_zero():
    r = _retry(_opening())
    assert r.value == 0.0 and r.detail == {"tool_calls": 0}


def test_retry_with_answer_only():
    r = _retry(_chat(("Qoruna", None)))
    assert r.value == pytest.approx(1 / (1 + math.exp(6)))


# --- formatting ------------------------------------------------------------------------------

def test_formatting_clean_trajectory():
    f = _by_name(RewardSuite(ExactMatchJudge()).score([_input(_chat((CALL, CHUNK), ("Qoruna", None)))])[0])["formatting"]
    assert f.value == 0.7 and f.detail == {"tool_errors": []}


def test_formatting_any_tool_error_is_zero():
    error = ToolError("invalid_json", "invalid JSON in <tool_call>: Expecting value at line 1 column 1")
    messages = _chat(("<tool_call>{</tool_call>", "Error: invalid_json"))
    messages[-2].tool_error = error   # the agent records it on the call...
    messages[-1].tool_error = error   # ...and on the tool message reporting it: counted once
    f = _by_name(RewardSuite(ExactMatchJudge()).score([_input(messages)])[0])["formatting"]
    assert f.value == 0.0 and f.detail == {"tool_errors": ["invalid_json"]}


def test_formatting_error_only_on_tool_message():
    messages = _chat((CALL, ""))
    messages[-1].tool_error = ToolError("search_failed", "RuntimeError: index missing")
    f = _by_name(RewardSuite(ExactMatchJudge()).score([_input(messages)])[0])["formatting"]
    assert f.value == 0.0 and f.detail == {"tool_errors": ["search_failed"]}


# --- chunk_hit -------------------------------------------------------------------------------

def _chunk(messages: list[Message], question: Question = QUESTION):
    return _by_name(RewardSuite(ExactMatchJudge()).score([_input(messages, question)])[0]).get("chunk_hit")


def test_chunk_hit():
    r = _chunk(_chat((CALL, "Result 1:\nunrelated"), (CALL, f"Result 1:\n{CHUNK}\n------"), ("Qoruna", None)))
    assert r.value == 1.0 and r.detail == {"rule": "chunk_content", "hit_turn": 2, "tool_results": 2}


def test_chunk_miss_and_answer_text_does_not_count():
    r = _chunk(_chat((CALL, "Result 1:\nunrelated"), (CHUNK, None)))
    assert r.value == 0.0 and r.detail == {"rule": "chunk_content", "hit_turn": None, "tool_results": 1}


def test_chunk_hit_in_seed_ipython_role():
    messages = _opening() + [Message("assistant", CALL, 1), Message("ipython", CHUNK, 1)]
    assert _chunk(messages).value == 1.0


def test_chunk_hit_skipped_without_chunk_content():
    question = Question(id="q2", question="Where?", answer="Qoruna")
    suite = RewardSuite(ExactMatchJudge())
    names = [r.name for r in suite.score([_input(_chat((CALL, CHUNK)), question)])[0]]
    assert names == ["correctness", "formatting", "retry_behavior"]


# --- correctness and the suite ---------------------------------------------------------------

def test_judge_is_called_once_for_the_batch():
    judge = RecordingJudge()
    right = _input(_chat((CALL, CHUNK), ("<think>found it</think>The Qoruna.", None)))
    wrong = _input(_chat(("Paris", None)))
    results = RewardSuite(judge).score([right, wrong])
    assert len(judge.batches) == 1
    assert judge.batches[0] == [JudgeItem(QUESTION.question, "Qoruna", "The Qoruna."),
                                JudgeItem(QUESTION.question, "Qoruna", "Paris")]
    c_right, c_wrong = _by_name(results[0])["correctness"], _by_name(results[1])["correctness"]
    assert c_right.value == 1.0 and c_wrong.value == 0.0
    assert c_right.detail == {"judge": "recording", "answer": "qoruna", "gold": "qoruna"}


def test_empty_batch():
    judge = RecordingJudge()
    assert RewardSuite(judge).score([]) == []
    assert judge.batches == []


def test_weights_and_total():
    suite = RewardSuite(ExactMatchJudge(), weights={"correctness": 2.0, "formatting": 0.5})
    assert suite.names == ["correctness", "formatting", "retry_behavior", "chunk_hit"]
    results = suite.score([_input(_chat((CALL, CHUNK), ("Qoruna", None)))])[0]
    by = _by_name(results)
    assert {n: r.weight for n, r in by.items()} == {
        "correctness": 2.0, "formatting": 0.5, "retry_behavior": 1.0, "chunk_hit": 1.0}
    # n=1 call: x=-3, retry = 1/(1+exp(3+1.5))
    expected = 2.0 * 1.0 + 0.5 * 0.7 + 1.0 * (1 / (1 + math.exp(4.5))) + 1.0 * 1.0
    assert suite.total(results) == pytest.approx(expected)


def test_unknown_weight_name():
    with pytest.raises(ValueError, match="unknown reward 'corectness' in weights"):
        RewardSuite(ExactMatchJudge(), weights={"corectness": 1.0})


def test_parse_weights():
    assert parse_weights("correctness=2, formatting=0.5,") == {"correctness": 2.0, "formatting": 0.5}
    assert parse_weights("") == {}
    for bad, says in [("correctness", "expected NAME=NUMBER"), ("=2", "expected NAME=NUMBER"),
                      ("correctness=lots", "'lots' is not a number"), ("chunk_hit=nan", "finite"),
                      ("a=1,a=2", "given twice")]:
        with pytest.raises(ValueError, match=says):
            parse_weights(bad)


# --- user rewards ----------------------------------------------------------------------------

USER_MODULE = '''
def short_answer(messages, question):
    answer = [m for m in messages if m["role"] == "assistant"][-1]["content"]
    return (1.0 if len(answer) < 20 else 0.0), {"length": len(answer), "gold": question["answer"]}

def search_count(messages, question):
    return sum(1 for m in messages if m["tool_call"] is not None)

def broken(messages, question):
    raise RuntimeError("boom")

def wrong_type(messages, question):
    return "high"

NOT_A_FUNCTION = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    package = tmp_path / "myrewards"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "basic.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "badsyntax.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "myrewards.basic"
    for name in ("myrewards", "myrewards.basic", "badsyntax"):
        sys.modules.pop(name, None)


def test_user_rewards(user_module):
    suite = RewardSuite(ExactMatchJudge(), weights={"short_answer": 3.0},
                        extra=[f"{user_module}:short_answer", f"{user_module}:search_count"])
    assert suite.names[-2:] == ["short_answer", "search_count"]
    messages = _chat((CALL, CHUNK), ("Qoruna", None))
    messages[2].tool_call = ToolCall("search_corpus", {"query": "Veltran Observatory"}, CALL)
    by = _by_name(suite.score([_input(messages)])[0])
    assert by["short_answer"].value == 1.0 and by["short_answer"].weight == 3.0
    assert by["short_answer"].detail == {"length": 6, "gold": "Qoruna"}
    assert by["search_count"].value == 1.0 and by["search_count"].detail == {}


def test_failing_user_reward_scores_zero_not_the_run(user_module):
    suite = RewardSuite(ExactMatchJudge(), extra=[f"{user_module}:broken", f"{user_module}:wrong_type"])
    by = _by_name(suite.score([_input(_chat(("Qoruna", None)))])[0])
    assert by["broken"].value == 0.0 and by["broken"].detail == {"error": "RuntimeError: boom", "reward_failure": "raised",
                                                                 "at": "basic.py:10 in broken"}
    assert by["wrong_type"].value == 0.0 and "returned str" in by["wrong_type"].detail["error"]
    assert by["correctness"].value == 1.0


@pytest.mark.parametrize("spec, says", [
    ("myrewards.basic", "expected 'package.module:function'"),
    ("myrewards.basic:", "expected 'package.module:function'"),
    ("no_such_pkg.mod:fn", "cannot import module 'no_such_pkg.mod'"),
    ("badsyntax:f", "importing 'badsyntax' failed: SyntaxError"),
    ("myrewards.basic:missing", "has no attribute 'missing'"),
    ("myrewards.basic:NOT_A_FUNCTION", "'NOT_A_FUNCTION' is a int, not a function"),
])
def test_user_reward_loading_errors(user_module, spec, says):
    with pytest.raises(ValueError) as info:
        load_reward_function(spec)
    message = str(info.value)
    assert says in message and spec in message and "\n" not in message


def test_user_reward_name_clash(user_module, tmp_path):
    (tmp_path / "clash.py").write_text("def correctness(messages, question):\n    return 1.0\n")
    try:
        with pytest.raises(ValueError, match="name 'correctness' is already taken"):
            RewardSuite(ExactMatchJudge(), extra=["clash:correctness"])
    finally:
        sys.modules.pop("clash", None)
