"""Turning stored token ids back into text pieces for the token view.

The database keeps ids, not strings, so the viewer needs the run's tokenizer. It is loaded from
local files only (the embedded model's converted folder, a local model folder, or the local
Hugging Face cache); when none is found the view shows ids. Nothing is downloaded or converted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger


@dataclass
class TokenPieces:
    """Decoded text of each id, and which ids are special (template) tokens."""

    pieces: list[str] | None
    special: set[int] = field(default_factory=set)


class TokenizerCache:
    """One tokenizer per model name, loaded on first use (in a worker thread)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, model: str) -> Any | None:
        with self._lock:
            if model not in self._loaded:
                self._loaded[model] = _load(model)
            return self._loaded[model]

    def pieces(self, model: str, ids: list[int]) -> TokenPieces:
        tokenizer = self.get(model)
        if tokenizer is None:
            return TokenPieces(None)
        cache: dict[int, str] = {}
        pieces = []
        for i in ids:
            if i not in cache:
                cache[i] = tokenizer.decode([i])
            pieces.append(cache[i])
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        special = set(tokenizer.all_special_ids) | {i for i, t in added.items() if getattr(t, "special", False)}
        return TokenPieces(pieces, special)


def _load(model: str) -> Any | None:
    from transformers import AutoTokenizer

    from core.models import embedded_model_folder, is_embedded

    if is_embedded(model):
        location = embedded_model_folder()
    else:
        location = Path(model).expanduser()
    try:
        if location.is_dir():
            return AutoTokenizer.from_pretrained(str(location), local_files_only=True)
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception as exc:  # no local tokenizer: the token view shows ids
        logger.info("no local tokenizer for {}: {}", model, exc)
        return None
