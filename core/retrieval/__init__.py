"""Search over the corpus: BM25 and dense retrievers behind one small protocol, cached on disk.

Heavy libraries (bm25s, torch, transformers) load only when a retriever is built.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.data.records import Chunk
from core.retrieval.base import Hit, Retriever
from core.retrieval.bm25 import BM25Retriever
from core.retrieval.dense import DenseRetriever, MiniLMEncoder
from core.retrieval.formatting import NO_RESULTS, format_results

RETRIEVERS = ("bm25", "dense")

__all__ = ["Hit", "Retriever", "BM25Retriever", "DenseRetriever", "MiniLMEncoder", "RETRIEVERS",
           "NO_RESULTS", "build_retriever", "format_results"]


def build_retriever(kind: str, chunks: Sequence[Chunk], cache: bool = True) -> Retriever:
    """A retriever of the given kind ("bm25" or "dense") over the chunks, from the disk cache when
    an index of the same corpus and settings is there (unless cache is False)."""
    if kind == "bm25":
        return BM25Retriever.build(chunks, cache=cache)
    if kind == "dense":
        return DenseRetriever.build(chunks, cache=cache)
    raise ValueError(f"unknown retriever {kind!r}; expected one of {', '.join(RETRIEVERS)}")
