"""Question files as they come in the wild (issue 7): ids repeated across questions, and gold
given only as supporting paragraphs, which the chunk-hit reward and the gold highlight then use."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from core.scoring.judges import ExactMatchJudge
from core.data.questions import load_questions
from core.data.records import Message, Question
from core.scoring.rewards import RewardInput, RewardSuite, chunk_hit, final_answer, gold_spans
from core.store import Store

CALL = '{"name": "search_corpus", "parameters": {"query": "Veltran"}}'
FIRST = "The Veltran Observatory was founded in 1873."
LAST = "It stands on the island of Qoruna,\nnorth of the bay."
SUPPORTED = Question(id="s1", question="Where is the Veltran Observatory?", answer="Qoruna",
                     supporting=(FIRST, LAST))


@pytest.fixture
def warnings():
    """The loguru warnings logged while the test runs."""
    seen: list[str] = []
    sink = logger.add(lambda message: seen.append(message.record["message"]), level="WARNING")
    yield seen
    logger.remove(sink)


def _chat(*results: str) -> list[Message]:
    """A search per result, each answered by that tool result, then the answer."""
    messages = [Message("system", "You are helpful.", 0), Message("user", "Where?", 0)]
    for turn, result in enumerate(results, start=1):
        messages += [Message("assistant", CALL, turn), Message("tool", result, turn)]
    return messages + [Message("assistant", "Qoruna", len(results) + 1)]


def _suite_chunk_hit(question: Question, messages: list[Message]):
    results = RewardSuite(ExactMatchJudge()).score([RewardInput(question, messages, final_answer(messages))])[0]
    return {r.name: r for r in results}.get("chunk_hit")


# --- repeated ids ----------------------------------------------------------------------------

def test_repeated_ids_keep_every_question_in_file_order_with_one_warning(tmp_path, warnings):
    path = tmp_path / "questions.jsonl"
    rows = [("c1", "A?"), ("c1", "B?"), ("c2", "C?"), ("c1", "D?"), ("c2", "E?"), ("c3", "F?")]
    path.write_text("".join(json.dumps({"id": i, "question": q, "answer": "x"}) + "\n" for i, q in rows),
                    encoding="utf-8")
    questions = load_questions(path)
    assert [(q.id, q.question) for q in questions] == rows
    assert warnings == [(f"{path}: 2 ids are used by more than one question (5 questions); "
                         "every question is kept, identified by its position")]


def test_default_id_colliding_with_a_given_one_is_kept(tmp_path, warnings):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"id": "q1", "question": "A?", "answer": "a"}, {"question": "B?", "answer": "b"}]),
                    encoding="utf-8")
    assert [q.id for q in load_questions(path)] == ["q1", "q1"]
    assert warnings == [(f"{path}: 1 id is used by more than one question (2 questions); "
                         "every question is kept, identified by its position")]


def test_unique_ids_warn_nothing(tmp_path, warnings):
    path = tmp_path / "q.csv"
    path.write_text("id,question,answer\na,A?,a\nb,B?,b\n", encoding="utf-8")
    assert [q.id for q in load_questions(path)] == ["a", "b"]
    assert warnings == []


def test_store_keeps_questions_with_repeated_ids_by_position(tmp_path):
    questions = [Question("c1", "A?", "a"), Question("c1", "B?", "b", supporting=(FIRST, LAST)),
                 Question("c2", "C?", "c")]
    with Store.open(tmp_path / "runs.db") as store:
        run_id = store.create_run("eval", "repeated ids", "model", {}, n_planned=3)
        store.add_questions(run_id, questions)
        assert store.questions(run_id) == questions
        assert store.question(run_id, 1) == questions[1]


# --- gold from supporting paragraphs ---------------------------------------------------------

def test_gold_text_is_chunk_content_else_last_supporting_paragraph():
    assert SUPPORTED.gold_text == LAST
    assert Question("a", "Q?", "A", chunk_content="chunk", supporting=(FIRST, LAST)).gold_text == "chunk"
    assert Question("a", "Q?", "A").gold_text is None
    # a blank paragraph names no gold: the last one with text is used
    assert Question("a", "Q?", "A", supporting=(FIRST, " \n")).gold_text == FIRST
    assert Question("a", "Q?", "A", supporting=("", "  ")).gold_text is None


def test_supporting_only_question_scores_a_hit_on_the_last_paragraph():
    result = ("Result 1:\nsomething else\n------\n"
              "Result 2:\n  It stands on the island of   Qoruna,  north of\tthe bay.\n")
    r = _suite_chunk_hit(SUPPORTED, _chat("Result 1:\nnothing", result))
    assert r.value == 1.0
    assert r.detail == {"rule": "last_supporting_paragraph", "hit_turn": 2, "tool_results": 2}


def test_supporting_only_question_misses_when_only_an_earlier_paragraph_is_found():
    r = _suite_chunk_hit(SUPPORTED, _chat(f"Result 1:\n{FIRST}", "It stands on the island of Qoruna"))
    assert r.value == 0.0
    assert r.detail == {"rule": "last_supporting_paragraph", "hit_turn": None, "tool_results": 2}


def test_last_paragraph_in_the_answer_does_not_count():
    messages = _chat("Result 1:\nnothing")
    messages[-1] = Message("assistant", LAST, 2)
    assert chunk_hit(SUPPORTED, messages) == (0.0, {"rule": "last_supporting_paragraph", "hit_turn": None,
                                                    "tool_results": 1})


def test_chunk_content_rule_wins_and_stays_exact():
    question = Question("a", "Q?", "A", chunk_content="gold  chunk", supporting=(LAST,))
    # the seed's rule is a plain substring test: no whitespace folding, and the paragraph is ignored
    assert chunk_hit(question, _chat("gold chunk", LAST)) == (0.0, {"rule": "chunk_content", "hit_turn": None,
                                                                     "tool_results": 2})
    assert chunk_hit(question, _chat("x gold  chunk y"))[1] == {"rule": "chunk_content", "hit_turn": 1,
                                                                "tool_results": 1}


def test_no_gold_at_all_skips_the_reward():
    assert chunk_hit(Question("a", "Q?", "A", supporting=(" ",)), _chat(LAST)) is None


def test_gold_spans_locate_the_paragraph_in_the_original_text():
    text = "Result 1:\n  It stands on the island of\n\nQoruna,  north of the bay. And again:\tIt stands on " \
           "the island of Qoruna, north of the bay."
    spans = gold_spans(SUPPORTED, text)
    assert [text[a:b] for a, b in spans] == ["It stands on the island of\n\nQoruna,  north of the bay.",
                                             "It stands on the island of Qoruna, north of the bay."]
    assert gold_spans(SUPPORTED, "nothing here") == []
    assert gold_spans(Question("a", "Q?", "A"), text) == []
    exact = Question("a", "Q?", "A", chunk_content="ab")
    assert gold_spans(exact, "xab a b ab") == [(1, 3), (8, 10)]


_WORD = st.text(st.characters(blacklist_categories=("Cs",)).filter(lambda c: not c.isspace()), min_size=1, max_size=6)
_SPACE = st.text(st.sampled_from(" \t\n\r\u00a0\u2003\x0b"), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(_WORD, min_size=1, max_size=8), data=st.data(), before=st.text(max_size=20),
       after=st.text(max_size=20))
def test_whitespace_differences_never_change_a_hit(words, data, before, after):
    """Any re-spacing of the last paragraph, anywhere in a result, is a hit, and its span reads back
    as that paragraph once whitespace is collapsed."""
    paragraph = " ".join(words)
    spaced = "".join(w + data.draw(_SPACE) for w in words[:-1]) + words[-1]
    result = f"{before} {data.draw(_SPACE)}{spaced}{data.draw(_SPACE)} {after}"
    question = Question("a", "Q?", "A", supporting=("earlier", paragraph))
    value, detail = chunk_hit(question, _chat(result))
    assert (value, detail["rule"], detail["hit_turn"]) == (1.0, "last_supporting_paragraph", 1)
    spans = gold_spans(question, result)
    assert spans and all(" ".join(result[a:b].split()) == paragraph for a, b in spans)


@settings(max_examples=300, deadline=None)
@given(paragraph=st.text(max_size=30), result=st.text(max_size=60))
def test_spans_agree_with_the_reward(paragraph, result):
    question = Question("a", "Q?", "A", supporting=(paragraph,))
    hit = chunk_hit(question, _chat(result))
    if hit is None:
        assert not paragraph.strip() and gold_spans(question, result) == []
    else:
        assert hit[0] == (1.0 if gold_spans(question, result) else 0.0)
