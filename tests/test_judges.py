"""Judges on tricky strings; the LLM judge with a scripted test double for the model."""

from __future__ import annotations

import pytest

from core.scoring.judges import (JUDGE_MAX_TOKENS, ContainsJudge, ExactMatchJudge, F1Judge, JudgeItem, LLMJudge,
                                 build_judge, normalize_answer, read_yes_no)


def _item(answer: str, gold: str = "Eiffel Tower", question: str = "What is in Paris?") -> JudgeItem:
    return JudgeItem(question=question, gold=gold, answer=answer)


class ScriptedComplete:
    """Test double for a model: returns canned replies and records every call."""

    def __init__(self, replies: list[str]):
        self.replies = replies
        self.calls: list[list[str]] = []

    def __call__(self, prompts: list[str]) -> list[str]:
        self.calls.append(list(prompts))
        return self.replies[: len(prompts)]


def scripted_complete(replies: list[str]) -> ScriptedComplete:
    return ScriptedComplete(replies)


# --- normalisation and deterministic judges --------------------------------------------------

@pytest.mark.parametrize("raw, normal", [
    ("The Eiffel Tower.", "eiffel tower"),
    ("  an   APPLE, a day ", "apple day"),
    ("U.S.", "us"),
    ("“Qoruna”—island", "qorunaisland"),
    ("Theatre", "theatre"),
    ("", ""),
])
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_is_normalised():
    judge = ExactMatchJudge()
    right, wrong, empty = judge.judge([_item("the eiffel tower!"), _item("Eiffel Tower, Paris"), _item("")])
    assert right.correct and right.score == 1.0
    assert right.detail == {"answer": "eiffel tower", "gold": "eiffel tower"}
    assert not wrong.correct and wrong.score == 0.0
    assert not empty.correct


def test_exact_match_empty_answer_against_empty_gold_is_not_correct():
    assert not ExactMatchJudge().judge([_item("The", gold="the")])[0].correct


def test_f1_judge_scores_overlap():
    # answer tokens: eiffel tower in paris (4); gold: eiffel tower (2); overlap 2
    # precision 2/4, recall 2/2, f1 = 2 * 0.5 * 1 / 1.5 = 2/3
    verdict = F1Judge().judge([_item("The Eiffel Tower in Paris")])[0]
    assert verdict.correct
    assert verdict.score == pytest.approx(2 / 3)
    assert verdict.detail["f1"] == pytest.approx(2 / 3, abs=1e-6)


def test_f1_judge_threshold():
    # answer "tower" vs gold "eiffel tower": p=1, r=1/2, f1=2/3; a threshold of 0.7 rejects it.
    assert F1Judge(threshold=0.5).judge([_item("tower")])[0].correct
    assert not F1Judge(threshold=0.7).judge([_item("tower")])[0].correct
    assert not F1Judge().judge([_item("Big Ben")])[0].correct
    with pytest.raises(ValueError, match="threshold"):
        F1Judge(threshold=1.5)


def test_contains_judge_needs_whole_tokens_in_order():
    judge = ContainsJudge()
    verdicts = judge.judge([
        _item("It is the Eiffel Tower, of course.", gold="Eiffel Tower"),
        _item("a Parisian tower", gold="Paris"),
        _item("Tower Eiffel", gold="Eiffel Tower"),
        _item("anything", gold="the"),
    ])
    assert [v.correct for v in verdicts] == [True, False, False, False]
    assert verdicts[0].detail == {"answer": "it is eiffel tower of course", "gold": "eiffel tower"}


# --- the LLM judge ---------------------------------------------------------------------------

@pytest.mark.parametrize("reply, verdict", [
    ("Yes", "yes"), ("yes.", "yes"), ("  **YES**\n", "yes"), ('"Yes"', "yes"), ("Yes, it matches.", "yes"),
    ("No", "no"), ("no!", "no"), ("No, yes-men would say otherwise.", "no"),
    ("<think>It matches, so yes.</think> Yes", "yes"), ("<think>Hmm, yes", "unparseable"),
    ("The answer is yes", "unparseable"), ("Answer: Yes", "unparseable"), ("Yes-ish", "unparseable"),
    ("Yesterday", "unparseable"), ("", "unparseable"), ("Not sure", "unparseable"),
])
def test_read_yes_no_is_strict(reply, verdict):
    assert read_yes_no(reply) == verdict


def test_llm_judge_calls_the_model_once_for_the_batch():
    complete = scripted_complete(["Yes", "No, yes-men would say otherwise.", "I think yes"])
    judge = LLMJudge(complete)
    items = [_item("Eiffel Tower"), _item("Big Ben"), _item("Louvre")]
    verdicts = judge.judge(items)
    assert len(complete.calls) == 1
    prompts = complete.calls[0]
    assert len(prompts) == 3
    for prompt, item in zip(prompts, items):
        assert item.question in prompt and item.gold in prompt and item.answer in prompt
        assert "Yes or No" in prompt
    # A reply with no yes or no is not judged (None), not wrong (issue 13); it scores 0.0.
    assert [v.correct for v in verdicts] == [True, False, None]
    assert [v.score for v in verdicts] == [1.0, 0.0, 0.0]
    assert verdicts[1].detail["reply"] == "No, yes-men would say otherwise."
    assert verdicts[1].detail["verdict"] == "no"
    assert verdicts[2].detail == {"reply": "I think yes", "verdict": "unparseable", "max_tokens": JUDGE_MAX_TOKENS}


def test_llm_judge_does_not_ask_about_empty_answers():
    complete = scripted_complete(["Yes"])
    verdicts = LLMJudge(complete).judge([_item("   "), _item("Eiffel Tower")])
    assert len(complete.calls[0]) == 1
    assert not verdicts[0].correct and verdicts[0].detail["verdict"] == "empty_answer"
    assert verdicts[1].correct


def test_llm_judge_empty_batch_asks_nothing():
    complete = scripted_complete([])
    assert LLMJudge(complete).judge([]) == []
    assert complete.calls == []


def test_llm_judge_rejects_a_reply_count_mismatch():
    with pytest.raises(ValueError, match="1 replies for 2 prompts"):
        LLMJudge(scripted_complete(["Yes"])).judge([_item("a"), _item("b")])


# --- build_judge -----------------------------------------------------------------------------

def test_build_judge_by_name():
    assert isinstance(build_judge("exact"), ExactMatchJudge)
    assert isinstance(build_judge("f1"), F1Judge)
    assert isinstance(build_judge("contains"), ContainsJudge)
    judge = build_judge("llm", scripted_complete(["Yes"]))
    assert isinstance(judge, LLMJudge) and judge.name == "llm"


def test_build_judge_errors():
    with pytest.raises(ValueError, match="unknown judge 'gpt' \\(valid: llm, exact, f1, contains\\)"):
        build_judge("gpt")
    with pytest.raises(ValueError, match="'llm' judge needs"):
        build_judge("llm")
