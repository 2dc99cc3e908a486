"""Question files (.jsonl, .json, .csv) and the train/test split the seed trained and evaluated on.

Errors name the file, where in it (the line for .jsonl and .csv; "item N", 0-based, for .json,
whose items have no useful line) and the field, and are raised before any work starts.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from loguru import logger

from core.data.corpus import csv_records, csv_rows, jsonl_records, read_text
from core.data.records import InputError, Question

SPLITS = ("train", "test", "all")


def load_questions(path: str | Path) -> list[Question]:
    """Read questions: fields `question` and `answer` (required), `id`, `chunk_content`,
    `supporting_paragraphs` (a list of strings, or one string).

    A number answer becomes its decimal string (many QA sets store years as numbers). Missing ids
    default to "q{index}" (0-based position). Ids may repeat: files in the wild give one id per
    source chunk with several questions each. Every question is kept, in file order, and one
    loguru warning names the file and how many ids (and questions) repeat; nothing downstream
    keys by id (the store, resume and training use the position, qidx), so the id is a label.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "no such file" if not path.exists() else "not a file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = _jsonl_records(path)
    elif suffix == ".json":
        records = _json_records(path)
    elif suffix == ".csv":
        records = _csv_question_records(path)
    else:
        raise InputError(str(path), f"unsupported question file type {suffix or '(none)'!r}; "
                                    "expected .jsonl, .json or .csv")
    questions = [_question_from(path, line, where, index, record)
                 for index, (line, where, record) in enumerate(records)]
    if not questions:
        raise InputError(str(path), "no questions in this file")
    _warn_repeated_ids(path, questions)
    return questions


def _warn_repeated_ids(path: Path, questions: list[Question]) -> None:
    """One warning for all ids used by more than one question; silent when every id is unique."""
    uses = Counter(q.id for q in questions)
    repeated = [n for n in uses.values() if n > 1]
    if repeated:
        ids = f"{len(repeated)} id{'s are' if len(repeated) > 1 else ' is'}"
        logger.warning("{}: {} used by more than one question ({} questions); every question is kept, "
                       "identified by its position", path, ids, sum(repeated))


def split_questions(questions: list[Question], split: str, seed: int = 42,
                    test_size: float = 0.1) -> list[Question]:
    """The "train", "test" or "all" part of a question list, as the seed split it.

    Same indices as Hugging Face datasets' `Dataset.train_test_split(test_size, seed=seed)`: a
    permutation from `np.random.default_rng(seed)`, its first ceil(test_size * n) entries the test
    set and the rest the train set, both in permutation order. Computed here so that a training
    run and a later evaluation agree on which questions were held out, without needing datasets.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "all":
        return list(questions)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size!r}")
    n = len(questions)
    n_test = math.ceil(test_size * n)
    permutation = np.random.default_rng(seed).permutation(n)
    chosen = permutation[:n_test] if split == "test" else permutation[n_test:]
    return [questions[i] for i in chosen.tolist()]


Record = tuple[int | None, str, dict]
"""(line or None, " in item N" or "", the raw record)."""


def _jsonl_records(path: Path) -> Iterator[Record]:
    for lineno, record in jsonl_records(path):
        yield lineno, "", record


def _json_records(path: Path) -> Iterator[Record]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from exc
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(str(path), "expected a list of questions, or an object with a 'questions' list")
    for index, record in enumerate(items):
        if not isinstance(record, dict):
            raise InputError(str(path), f"expected an object, got {type(record).__name__} in item {index}")
        yield None, f" in item {index}", record


def _csv_question_records(path: Path) -> Iterator[Record]:
    reader = csv_rows(path)
    columns = reader.fieldnames or []
    for required in ("question", "answer"):
        if required not in columns:
            raise InputError(str(path), f"no such column; found {', '.join(columns) or 'no header'}",
                             line=1, field=required)
    for line, record in csv_records(path, reader):
        yield line, "", record


def _question_from(path: Path, line: int | None, where: str, index: int, record: dict) -> Question:
    """Check one record's fields and build its Question."""

    def fail(field: str, message: str) -> InputError:
        return InputError(str(path), f"{message}{where}", line=line, field=field)

    values: dict[str, str] = {}
    for field in ("question", "answer"):
        value = record.get(field)
        if field == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if value is None:
            raise fail(field, "missing")
        if not isinstance(value, str):
            raise fail(field, f"must be a string, got {_type_name(value)}")
        if not value.strip():
            raise fail(field, "is empty")
        values[field] = value
    qid = record.get("id")
    if qid is None:
        qid = f"q{index}"
    elif isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid) == "":
        raise fail("id", f"must be a non-empty string or an integer, got {qid!r}")
    chunk_content = record.get("chunk_content")
    if chunk_content is not None and not isinstance(chunk_content, str):
        raise fail("chunk_content", f"must be a string, got {_type_name(chunk_content)}")
    support = record.get("supporting_paragraphs")
    if support is None:
        support = []
    elif isinstance(support, str):
        support = [support]
    if not isinstance(support, list) or not all(isinstance(p, str) for p in support):
        raise fail("supporting_paragraphs", "must be a string or a list of strings")
    return Question(id=str(qid), question=values["question"], answer=values["answer"],
                    chunk_content=chunk_content or None, supporting=tuple(support))


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), type(value).__name__)
