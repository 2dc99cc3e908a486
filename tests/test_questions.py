"""Question files in three formats, their errors, and the seed's train/test split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.data.questions import load_questions, split_questions
from core.data.records import InputError, Question


def _error(path) -> InputError:
    with pytest.raises(InputError) as info:
        load_questions(path)
    return info.value


def _qs(n: int) -> list[Question]:
    return [Question(f"q{i}", f"question {i}?", str(i)) for i in range(n)]


# --- formats ----------------------------------------------------------------------------------

def test_jsonl(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [{"question": "Where?", "answer": "Qoruna", "id": "x1", "chunk_content": "chunk",
             "supporting_paragraphs": ["p1", "p2"]},
            {"question": "When?", "answer": 1873, "supporting_paragraphs": "only one"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load_questions(path) == [
        Question("x1", "Where?", "Qoruna", "chunk", ("p1", "p2")),
        Question("q1", "When?", "1873", None, ("only one",)),
    ]


def test_json_list_and_object(tmp_path):
    items = [{"question": "A?", "answer": "a"}, {"question": "B?", "answer": "b", "id": 7}]
    listed, wrapped = tmp_path / "l.json", tmp_path / "w.json"
    listed.write_text(json.dumps(items), encoding="utf-8")
    wrapped.write_text(json.dumps({"questions": items, "meta": 1}), encoding="utf-8")
    expected = [Question("q0", "A?", "a"), Question("7", "B?", "b")]
    assert load_questions(listed) == expected == load_questions(wrapped)


def test_csv(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('question,answer,chunk_content,supporting_paragraphs\n"Multi\nline?",42,,p\nB?,b,c,\n',
                    encoding="utf-8")
    assert load_questions(path) == [Question("q0", "Multi\nline?", "42", None, ("p",)),
                                    Question("q1", "B?", "b", "c", ())]


# --- errors -----------------------------------------------------------------------------------

def test_missing_unknown_and_empty_files(tmp_path):
    assert "no such file" in str(_error(tmp_path / "none.jsonl"))
    (tmp_path / "q.txt").write_text("x", encoding="utf-8")
    assert "unsupported" in str(_error(tmp_path / "q.txt"))
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    assert "no questions" in str(_error(tmp_path / "e.jsonl"))


@pytest.mark.parametrize("line, field, message", [
    ('{"answer": "a"}', "question", "missing"),
    ('{"question": "Q?"}', "answer", "missing"),
    ('{"question": "  ", "answer": "a"}', "question", "is empty"),
    ('{"question": "Q?", "answer": true}', "answer", "must be a string, got a boolean"),
    ('{"question": ["Q?"], "answer": "a"}', "question", "must be a string, got a list"),
    ('{"question": "Q?", "answer": "a", "id": {"x": 1}}', "id", "must be a non-empty string"),
    ('{"question": "Q?", "answer": "a", "chunk_content": 3}', "chunk_content", "must be a string"),
    ('{"question": "Q?", "answer": "a", "supporting_paragraphs": [1]}', "supporting_paragraphs", "list of strings"),
])
def test_jsonl_field_errors(tmp_path, line, field, message):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?", "answer": "ok"}\n' + line + "\n", encoding="utf-8")
    err = _error(path)
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert str(err).startswith(f"{path}:2: field '{field}': ") and message in str(err)


def test_jsonl_invalid_json_and_non_object(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok?", "answer": "ok"}\n{nope\n', encoding="utf-8")
    err = _error(path)
    assert err.line == 2 and "invalid JSON" in str(err)
    path.write_text('"just a string"\n', encoding="utf-8")
    assert _error(path).line == 1


def test_json_errors_name_the_item(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"question": "A?", "answer": "a"}] * 3 + [{"question": "B?"}]), encoding="utf-8")
    err = _error(path)
    assert (err.line, err.field) == (None, "answer")
    assert str(err) == f"{path}: field 'answer': missing in item 3"
    path.write_text(json.dumps({"items": []}), encoding="utf-8")
    assert "'questions' list" in str(_error(path))
    path.write_text('[{"question": "A?",\n "answer": }]', encoding="utf-8")
    err = _error(path)
    assert err.line == 2 and "invalid JSON" in str(err)
    path.write_text('[{"question": "A?", "answer": "a"}, 5]', encoding="utf-8")
    assert "item 1" in str(_error(path))


def test_csv_errors(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("question,reply\nA?,a\n", encoding="utf-8")
    err = _error(path)
    assert (err.line, err.field) == (1, "answer")
    path.write_text('question,answer\nA?,a\n"B\nb?",\n', encoding="utf-8")
    err = _error(path)
    assert (err.line, err.field) == (4, "answer")


def test_not_utf8(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"question": "caf\xe9?", "answer": "a"}\n')
    assert "not UTF-8" in str(_error(path))


# --- split ------------------------------------------------------------------------------------

def test_split_matches_the_seed_permutation():
    questions = _qs(10)
    # np.random.default_rng(42).permutation(10), written out so a change in numpy would show
    assert np.random.default_rng(42).permutation(10).tolist() == [5, 6, 0, 7, 3, 2, 4, 9, 1, 8]
    assert [q.id for q in split_questions(questions, "test")] == ["q5"]
    assert [q.id for q in split_questions(questions, "train")] == ["q6", "q0", "q7", "q3", "q2", "q4", "q9", "q1", "q8"]
    assert split_questions(questions, "all") == questions


@pytest.mark.parametrize("n, n_test", [(2, 1), (10, 1), (11, 2), (99, 10), (200, 20), (1001, 101)])
def test_split_sizes_and_disjointness(n, n_test):
    questions = _qs(n)
    test, train = split_questions(questions, "test"), split_questions(questions, "train")
    assert len(test) == n_test and len(train) == n - n_test
    assert {q.id for q in test}.isdisjoint({q.id for q in train})
    assert {q.id for q in test} | {q.id for q in train} == {q.id for q in questions}
    assert split_questions(questions, "test", seed=7) != test or n < 3


def test_split_equals_hugging_face_datasets():
    datasets = pytest.importorskip("datasets")
    for n in (10, 30, 123):
        split = datasets.Dataset.from_dict({"i": list(range(n))}).train_test_split(test_size=0.1, seed=42)
        for name in ("train", "test"):
            assert [int(q.id[1:]) for q in split_questions(_qs(n), name)] == split[name]["i"]


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        split_questions(_qs(3), "dev")
