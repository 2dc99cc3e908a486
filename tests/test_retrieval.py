"""Retrievers: BM25 and dense search quality, the result format, and the on-disk index cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import core.retrieval.dense as dense_module
from core.data.demo_data import default_demo, generate_demo
from core.data.records import Chunk
from core.retrieval import (BM25Retriever, DenseRetriever, Hit, MiniLMEncoder, Retriever, build_retriever,
                            format_results)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    """One model load for the module (a couple of seconds)."""
    return MiniLMEncoder()


def _index_folders(tmp_path: Path, kind: str) -> list[Path]:
    root = tmp_path / "cache" / "indexes"
    return sorted(p for p in root.glob(f"{kind}-*")) if root.exists() else []


def _top_ids(retriever: Retriever, queries: list[str], k: int = 3) -> list[list[str]]:
    return [[h.chunk.id for h in hits] for hits in retriever.search_many(queries, k)]


# --- BM25 -------------------------------------------------------------------------------------

def test_bm25_finds_the_gold_chunk_of_demo_questions():
    chunks, questions = default_demo()
    retriever = build_retriever("bm25", chunks)
    results = retriever.search_many([q.question for q in questions], 2)
    found = sum(any(h.chunk.text == q.chunk_content for h in hits) for q, hits in zip(questions, results))
    assert found / len(questions) >= 0.95  # measured: 200/200


def test_bm25_hits_are_ranked_and_search_agrees_with_search_many():
    chunks, questions = generate_demo(50)
    retriever = BM25Retriever.build(chunks, cache=False)
    for question in questions[:10]:
        hits = retriever.search(question.question, 4)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(a.score >= b.score > 0 for a, b in zip(hits, hits[1:]))
        assert hits == retriever.search_many([question.question], 4)[0]
    assert len(retriever.search(questions[0].question, 500)) <= 50  # k past the corpus size is fine


def test_bm25_query_without_known_terms_returns_nothing():
    retriever = BM25Retriever.build(generate_demo(20)[0], cache=False)
    assert retriever.search("the of and", 3) == []
    assert retriever.search("qqqzzz unknownword", 3) == []
    assert format_results(retriever.search("the of", 2)) == "No results found."


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_is_an_error(query):
    retriever = BM25Retriever.build(generate_demo(5)[0], cache=False)
    with pytest.raises(ValueError, match="^empty query$"):
        retriever.search(query, 2)
    with pytest.raises(ValueError, match="empty query"):
        retriever.search_many(["fine", query], 2)


def test_bad_k_and_non_string_query():
    retriever = BM25Retriever.build(generate_demo(5)[0], cache=False)
    with pytest.raises(ValueError, match="k must be"):
        retriever.search("observatory", 0)
    with pytest.raises(ValueError, match="must be a string"):
        retriever.search(42, 2)  # type: ignore[arg-type]


def test_build_retriever_rejects_unknown_kind_and_empty_corpus():
    with pytest.raises(ValueError, match="unknown retriever 'faiss'"):
        build_retriever("faiss", generate_demo(3)[0])
    with pytest.raises(ValueError, match="empty corpus"):
        build_retriever("bm25", [])


# --- format -----------------------------------------------------------------------------------

def test_format_results_matches_the_seed_layout():
    hits = [Hit(Chunk("a", "First chunk."), 2.0, 1), Hit(Chunk("b", "Second\nchunk."), 1.0, 2)]
    assert format_results(hits) == "Result 1:\nFirst chunk.\n------\n\nResult 2:\nSecond\nchunk.\n------\n"
    assert format_results([]) == "No results found."


# --- cache ------------------------------------------------------------------------------------

def test_bm25_cache_is_reused_and_faster(tmp_path):
    chunks, questions = generate_demo(3000)
    queries = [q.question for q in questions[:50]]
    began = time.perf_counter()
    first = BM25Retriever.build(chunks)
    build_s = time.perf_counter() - began
    began = time.perf_counter()
    second = BM25Retriever.build(chunks)
    load_s = time.perf_counter() - began
    assert not first.from_cache and second.from_cache
    assert load_s < build_s
    assert second.search_many(queries, 3) == first.search_many(queries, 3)
    folders = _index_folders(tmp_path, "bm25")
    assert len(folders) == 1 and (folders[0] / "manifest.json").is_file()
    assert not [p for p in folders[0].parent.iterdir() if ".tmp-" in p.name]  # nothing half-written left
    # another corpus gets its own folder; cache=False writes nothing
    BM25Retriever.build(chunks[:100])
    BM25Retriever.build(chunks[:50], cache=False)
    assert len(_index_folders(tmp_path, "bm25")) == 2


@pytest.mark.parametrize("damage", ["truncate_array", "garble_vocab", "garble_manifest", "delete_array",
                                    "pickled_array", "wrong_manifest"])
def test_damaged_bm25_cache_is_rebuilt(tmp_path, damage):
    chunks, questions = generate_demo(200)
    queries = [q.question for q in questions[:20]]
    expected = _top_ids(BM25Retriever.build(chunks), queries)
    folder = _index_folders(tmp_path, "bm25")[0]
    array = folder / "data.csc.index.npy"
    if damage == "truncate_array":
        array.write_bytes(array.read_bytes()[:100])
    elif damage == "garble_vocab":
        (folder / "vocab.index.json").write_text("{not json", encoding="utf-8")
    elif damage == "garble_manifest":
        (folder / "manifest.json").write_text("", encoding="utf-8")
    elif damage == "delete_array":
        array.unlink()
    elif damage == "pickled_array":  # an object array can only be read with pickle: it must be refused
        np.save(array, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif damage == "wrong_manifest":
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps(manifest | {"fingerprint": "other"}))
    rebuilt = BM25Retriever.build(chunks)
    assert not rebuilt.from_cache
    assert _top_ids(rebuilt, queries) == expected
    assert BM25Retriever.build(chunks).from_cache  # and the repaired cache is used next time


def test_cache_write_failure_still_returns_a_retriever(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "indexes").write_text("a file where the index folder should be", encoding="utf-8")
    chunks, questions = generate_demo(10)
    retriever = BM25Retriever.build(chunks)
    assert not retriever.from_cache
    assert retriever.search(questions[3].question, 1)[0].chunk == chunks[3]


# --- dense ------------------------------------------------------------------------------------

TOPICS = [
    Chunk("cooking", "To bake sourdough, feed the starter, knead the dough, let it rise overnight and bake it hot."),
    Chunk("football", "The striker scored twice in the second half, and the home side won the league match."),
    Chunk("astronomy", "A comet's tail always points away from the sun, pushed by the solar wind and radiation."),
    Chunk("finance", "The central bank raised interest rates to slow inflation, and mortgage costs went up."),
    Chunk("gardening", "Prune roses in late winter, cutting just above an outward-facing bud."),
    Chunk("medicine", "Antibiotics treat bacterial infections but do nothing against viruses such as the flu."),
]


def test_encoder_gives_unit_vectors(encoder):
    vectors = encoder.encode(["a short text", "a much longer text about something else entirely", ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # batching and ordering by length do not change a text's embedding
    assert np.allclose(encoder.encode(["a short text"])[0], vectors[0], atol=1e-5)


def test_dense_finds_a_paraphrase(encoder):
    retriever = DenseRetriever.build(TOPICS, encoder=encoder, cache=False)
    queries = {"Why do icy visitors from deep space grow a trail facing away from our star?": "astronomy",
               "Which drugs cure an infection caused by germs, and which illnesses do they not help?": "medicine",
               "How do I make bread with a natural leaven?": "cooking",
               "Borrowing for a house got more expensive after the monetary authority acted.": "finance"}
    results = retriever.search_many(list(queries), 2)
    assert [hits[0].chunk.id for hits in results] == list(queries.values())
    assert all(hits[0].score > hits[1].score for hits in results)
    with pytest.raises(ValueError, match="empty query"):
        retriever.search(" ", 1)


def test_dense_cache_reuse_and_repair(tmp_path, encoder):
    first = DenseRetriever.build(TOPICS, encoder=encoder)
    second = DenseRetriever.build(TOPICS, encoder=encoder)
    assert not first.from_cache and second.from_cache
    assert np.array_equal(first.embeddings, second.embeddings)
    folder = _index_folders(tmp_path, "dense")[0]
    np.save(folder / "embeddings.npy", np.zeros((len(TOPICS), 384), dtype=np.float32))  # not unit vectors
    repaired = DenseRetriever.build(TOPICS, encoder=encoder)
    assert not repaired.from_cache and np.allclose(repaired.embeddings, first.embeddings, atol=1e-5)
    (folder / "embeddings.npy").write_bytes(b"\x93NUMPY garbage")
    assert not DenseRetriever.build(TOPICS, encoder=encoder).from_cache


def test_build_retriever_dense(monkeypatch, encoder):
    monkeypatch.setattr(dense_module, "MiniLMEncoder", lambda: encoder)
    retriever = build_retriever("dense", TOPICS)
    assert isinstance(retriever, DenseRetriever) and isinstance(retriever, Retriever)
    assert retriever.search("rose bushes pruning", 1)[0].chunk.id == "gardening"
