"""Lexical search with bm25s: exact names and numbers, which invented-fact corpora are made of.

Terms come from core.retrieval.terms: words as bm25s splits them, and character unigrams+bigrams
in scripts written without spaces (Chinese, Japanese, Thai ...), so a word inside a sentence is found.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger

from core.data.corpus import corpus_fingerprint
from core.data.records import Chunk
from core.retrieval.base import BatchSearch, Hit, hits_for, top_k
from core.retrieval.cache import index_folder, load_or_build
from core.retrieval.terms import TERMS_VERSION, terms_of

if TYPE_CHECKING:
    import bm25s

BM25_PARAMS: dict[str, Any] = {"method": "lucene", "k1": 1.5, "b": 0.75, "stopwords": "en",
                               "tokenizer": TERMS_VERSION, "unicode": unicodedata.unidata_version}
"""bm25s defaults, English stopwords, no stemming; part of the cache key, with the splitting rule
and the Unicode version whose character categories it reads (core.retrieval.terms), so an index
cached under another rule is never reused."""


class BM25Retriever(BatchSearch):
    """BM25 over the chunks. Only chunks sharing a term with the query are returned, so a query
    of stopwords or unknown words gets no results rather than arbitrary ones."""

    kind = "bm25"

    def __init__(self, chunks: Sequence[Chunk], index: bm25s.BM25, *, from_cache: bool = False):
        self.chunks = list(chunks)
        self.index = index
        self.from_cache = from_cache
        """Whether the index was read from the disk cache rather than built."""

    @classmethod
    def build(cls, chunks: Sequence[Chunk], *, cache: bool = True) -> BM25Retriever:
        """Index the chunks, or load the index cached for exactly these chunks."""
        chunks = list(chunks)
        if not chunks:
            raise ValueError("cannot index an empty corpus")
        if not cache:
            return cls(chunks, _build_index(chunks))
        folder, manifest = index_folder(cls.kind, corpus_fingerprint(chunks), BM25_PARAMS)
        index, loaded = load_or_build(folder, manifest, lambda f: _load_index(f, len(chunks)),
                                      lambda: _build_index(chunks), _save_index)
        return cls(chunks, index, from_cache=loaded)

    def _search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        """The k best chunks for each query (fewer if fewer contain a query term), tokenised in one call."""
        return [self._search_tokens(query_tokens, k) for query_tokens in terms_of(queries)]

    def _search_tokens(self, query_tokens: list[str], k: int) -> list[Hit]:
        vocab = self.index.vocab_dict
        ids = [vocab[t] for t in query_tokens if t and t in vocab]
        if not ids:
            return []
        scores = self.index.get_scores_from_ids(ids)
        matching = np.flatnonzero(scores > 0)
        best = matching[top_k(scores[matching], k)]
        return hits_for(self.chunks, scores, best)


def _build_index(chunks: list[Chunk]) -> bm25s.BM25:
    import bm25s

    logger.debug("building BM25 index over {} chunks", len(chunks))
    tokens = _as_ids(terms_of([c.text for c in chunks]))
    index = bm25s.BM25(method=BM25_PARAMS["method"], k1=BM25_PARAMS["k1"], b=BM25_PARAMS["b"])
    index.index(tokens, show_progress=False)
    return index


def _as_ids(docs: list[list[str]]) -> bm25s.tokenization.Tokenized:
    """Term ids numbered by first appearance, as bm25s.tokenize numbers them (same vocabulary for
    English text as before terms.py existed)."""
    from bm25s.tokenization import Tokenized

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(term, len(vocab)) for term in doc] for doc in docs]
    return Tokenized(ids=ids, vocab=vocab)


def _save_index(index: bm25s.BM25, folder: Path) -> None:
    index.save(str(folder), allow_pickle=False, show_progress=False)


def _load_index(folder: Path, n_chunks: int) -> bm25s.BM25:
    """Load without pickle and check the arrays agree with each other and with the corpus size."""
    import bm25s

    index = bm25s.BM25.load(str(folder), allow_pickle=False, load_corpus=False, show_progress=False)
    scores = index.scores
    data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
    if scores["num_docs"] != n_chunks:
        raise ValueError(f"index has {scores['num_docs']} documents, corpus has {n_chunks}")
    term_ids = [v for term, v in index.vocab_dict.items() if term]
    if (term_ids and max(term_ids) >= len(indptr) - 1) or len(data) != len(indices) or int(indptr[-1]) != len(data):
        raise ValueError("index arrays are inconsistent")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_chunks):
        raise ValueError("index refers to documents outside the corpus")
    if np.any(np.diff(indptr) < 0):
        raise ValueError("index pointers are not increasing")
    return index
