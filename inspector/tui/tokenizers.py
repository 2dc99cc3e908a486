"""Turning stored token ids back into text pieces for the token view.

The database keeps ids, not strings, so the viewer needs the run's tokenizer. It is loaded from
local files only (the embedded model's converted folder, a local model folder, or the local
Hugging Face cache); when none is found the view shows ids. Nothing is downloaded or converted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from loguru import logger


REPLACEMENT = "\ufffd"
"""What a byte-level tokenizer decodes a partial UTF-8 character to."""
MAX_SPLIT = 8
"""The most tokens one character is looked for over (a UTF-8 character is at most 4 bytes; byte
tokens may carry a neighbour's bytes too)."""


@dataclass
class TokenPieces:
    """Decoded text of each id, which ids are special (template) tokens, and split characters.

    A character whose UTF-8 bytes fall into several byte-level tokens (emoji, CJK) decodes to
    U+FFFD token by token; such a run is decoded together: its first token's piece holds the
    whole text and the others' pieces are "". parts[i] = (k, n, text) for each token of a run:
    the k-th (1-based) of n tokens that decode to `text` together.
    """

    pieces: list[str] | None
    special: set[int] = field(default_factory=set)
    parts: dict[int, tuple[int, int, str]] = field(default_factory=dict)


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
        def decode(run: list[int]) -> str:
            # No clean-up: " ." must stay " .", the token's exact text.
            return tokenizer.decode(run, clean_up_tokenization_spaces=False)

        cache: dict[int, str] = {}
        pieces = []
        for i in ids:
            if i not in cache:
                cache[i] = decode([i])
            pieces.append(cache[i])
        pieces, parts = join_split_characters(ids, pieces, decode)
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        special = set(tokenizer.all_special_ids) | {i for i, t in added.items() if getattr(t, "special", False)}
        return TokenPieces(pieces, special, parts)


def join_split_characters(ids: list[int], pieces: list[str], decode: Callable[[list[int]], str],
                          limit: int = MAX_SPLIT) -> tuple[list[str], dict[int, tuple[int, int, str]]]:
    """Decode together the runs of tokens that each decode to U+FFFD but form characters jointly.

    ids, pieces: one per token (pieces[i] = decode([ids[i]])). From each token whose piece holds
    U+FFFD, the run is extended over the following tokens (at most `limit` in all) until its joined
    decode holds none; then the first token gets the joined text and the rest get "". A token
    whose U+FFFD no run resolves (invalid bytes, or a real U+FFFD) keeps its piece. Returns the new
    pieces and parts: token index -> (k, n, text) for every token of a joined run (k is 1-based).
    """
    out, parts = list(pieces), {}
    memo: dict[tuple[int, ...], str] = {}
    i, n = 0, len(ids)
    while i < n:
        if REPLACEMENT not in pieces[i]:
            i += 1
            continue
        for j in range(i + 1, min(n, i + limit)):
            key = tuple(ids[i:j + 1])
            text = memo.get(key)
            if text is None:
                text = memo[key] = decode(list(key))
            if REPLACEMENT not in text:
                size = j - i + 1
                out[i] = text
                for k in range(size):
                    parts[i + k] = (k + 1, size, text)
                    if k:
                        out[i + k] = ""
                i = j + 1
                break
        else:
            i += 1
    return out, parts


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
