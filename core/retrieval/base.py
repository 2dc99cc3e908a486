"""What every retriever returns and promises: ranked hits for a query, the same way each time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from core.data.records import Chunk


@dataclass(frozen=True)
class Hit:
    """One search result: the chunk, the retriever's score (higher is better) and its 1-based rank."""

    chunk: Chunk
    score: float
    rank: int


@runtime_checkable
class Retriever(Protocol):
    """A search over a fixed list of chunks.

    search raises ValueError("empty query") for an empty or whitespace query: the agent loop turns
    that into the model's tool error rather than silently returning arbitrary chunks.
    """

    def search(self, query: str, k: int) -> list[Hit]: ...

    def search_many(self, queries: list[str], k: int) -> list[list[Hit]]: ...


class BatchSearch:
    """search() and search_many() with their argument checks; a retriever implements
    _search_batch(queries, k) for a non-empty list of valid queries."""

    def search(self, query: str, k: int) -> list[Hit]:
        return self.search_many([check_query(query, k)], k)[0]

    def search_many(self, queries: list[str], k: int) -> list[list[Hit]]:
        for query in queries:
            check_query(query, k)
        return self._search_batch(list(queries), k) if queries else []

    def _search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        raise NotImplementedError


def check_query(query: object, k: object) -> str:
    """The query, if it and k are usable; a ValueError that says why otherwise."""
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("empty query")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return query


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first; ties go to the earlier chunk, so results are
    the same on every run and machine."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    # Scores equal to the k-th best may sit outside the partition; include them so ties break by index.
    threshold = scores[candidates].min()
    candidates = np.flatnonzero(scores >= threshold)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


def hits_for(chunks: list[Chunk], scores: np.ndarray, indices: np.ndarray) -> list[Hit]:
    """Hits for the given chunk indices, ranked from 1 in the order given."""
    return [Hit(chunks[i], float(scores[i]), rank) for rank, i in enumerate(indices.tolist(), start=1)]
