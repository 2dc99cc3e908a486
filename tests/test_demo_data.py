"""The demo corpus: deterministic, unique names at scale, answers inside their chunks."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from core.data.demo_data import (DEFAULT_DEMO_CHUNKS, capacity, default_demo, entity_names, generate_demo,
                            iter_demo_chunks)

KIND_MARKERS = ("Observatory", "market town", " born ", "string instrument", "barque", "Mount ", " Guild of ",
                "Festival")


def test_same_seed_same_output_other_seed_other_output():
    assert generate_demo(60, seed=0) == generate_demo(60, seed=0)
    chunks0, _ = generate_demo(60, seed=0)
    chunks1, _ = generate_demo(60, seed=1)
    assert [c.id for c in chunks0] == [c.id for c in chunks1]
    assert all(a.text != b.text for a, b in zip(chunks0, chunks1))


def test_chunk_i_does_not_depend_on_how_many_are_generated():
    # 4100 crosses the first random block (4096 rows).
    small, _ = generate_demo(4100, seed=3)
    assert list(iter_demo_chunks(4100, seed=3)) == small
    assert list(iter_demo_chunks(4200, seed=3))[:4100] == small


def test_default_demo():
    chunks, questions = default_demo()
    assert DEFAULT_DEMO_CHUNKS == 200
    assert (chunks, questions) == generate_demo(200, seed=0)
    assert chunks[0].id == "demo-000000" and chunks[199].id == "demo-000199"
    assert {c.source for c in chunks} == {"demo"}
    # every entity kind is present, and the text reads as prose
    for marker in KIND_MARKERS:
        assert sum(marker in c.text for c in chunks) >= 10, marker


def test_questions_match_their_chunks():
    chunks, questions = generate_demo(2000, seed=0)
    names = entity_names(2000, seed=0)
    assert len(questions) == len(chunks)
    for chunk, question, name in zip(chunks, questions, names):
        assert question.chunk_content == chunk.text
        assert question.answer and question.answer in chunk.text
        assert len(question.answer) <= 40
        assert name.lower() in question.question.lower() and name.lower() in chunk.text.lower()
        assert 250 <= len(chunk.text) <= 750
    assert len({q.id for q in questions}) == len(questions)
    assert len({q.question for q in questions}) == len(questions)


def test_names_and_ids_unique_at_20k_and_never_reused_as_other_words():
    chunks, _ = generate_demo(20_000, seed=0)
    names = [n.lower() for n in entity_names(20_000, seed=0)]
    assert len(set(names)) == len(names) == 20_000
    assert len({c.id for c in chunks}) == 20_000
    assert len({c.text for c in chunks}) == 20_000
    # each entity name occurs in exactly one chunk: the one about it
    wanted = set(names)
    counts = Counter(w for c in chunks for w in set(re.findall(r"\w+", c.text.lower())) if w in wanted)
    assert all(counts[n] == 1 for n in names)


def test_every_possible_name_is_distinct_and_no_ordinary_word_of_the_corpus():
    assert capacity() >= 1_000_000
    names = {n.lower() for n in entity_names(capacity(), seed=5)}
    assert len(names) == capacity()
    chunks, _ = generate_demo(3000, seed=5)
    first_names = {n.lower() for n in entity_names(3000, seed=5)}
    words = {w for c in chunks for w in re.findall(r"\w+", c.text.lower())} - first_names
    assert not words & names  # e.g. "several" or "botanist" would make that entity unsearchable


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_chunks"):
        generate_demo(-1)
    with pytest.raises(ValueError, match="distinct names"):
        generate_demo(capacity() + 1)
    with pytest.raises(ValueError, match="seed"):
        generate_demo(3, seed=-2)
    assert generate_demo(0) == ([], [])
