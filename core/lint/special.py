"""A run's model's tokenizer, found offline, for the checks that need one (special_trained,
text_mismatch), and its special token ids.

The database stores ids, not text, so which ids are special (end-of-turn, headers, think tags that
a tokenizer marks special) and what a span of ids reads as need the model's tokenizer. It is looked
up the way the token view does (inspector/tui/tokenizers.py): the embedded model's converted
folder, a local model folder, or the local Hugging Face cache; nothing is downloaded. Without one
those checks are skipped, and the report says why.
"""

from __future__ import annotations

import threading
from typing import Any

from loguru import logger

_cache: dict[str, Any] = {}
_lock = threading.Lock()


def local_tokenizer(model: str) -> Any | None:
    """The transformers tokenizer of `model` loaded with local_files_only, or None when none
    loads offline. Cached per model name and folder looked in; the first call imports transformers
    (seconds)."""
    key = f"{model}\0{_location(model)}"  # where it is looked for: RL_INSPECT_CACHE may move the embedded one
    with _lock:
        if key not in _cache:
            _cache[key] = _load(model)
        return _cache[key]


def special_token_ids(model: str) -> frozenset[int] | None:
    """Ids the local tokenizer of `model` calls special (all_special_ids and added tokens marked
    special), or None when no tokenizer loads offline."""
    tok = local_tokenizer(model)
    return None if tok is None else special_ids_of(tok)


def special_ids_of(tok: Any) -> frozenset[int]:
    """all_special_ids of a transformers tokenizer, plus its added tokens marked special."""
    added = getattr(tok, "added_tokens_decoder", {}) or {}
    return frozenset(tok.all_special_ids) | {i for i, t in added.items() if getattr(t, "special", False)}


def _location(model: str):
    from pathlib import Path

    from core.models import embedded_model_folder, is_embedded

    return embedded_model_folder() if is_embedded(model) else Path(model).expanduser()


def _load(model: str) -> Any | None:
    try:
        from transformers import AutoTokenizer

        location = _location(model)
        source = str(location) if location.is_dir() else model
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as exc:  # no local tokenizer: the checks needing one are skipped, and the report says so
        logger.info("lint: no local tokenizer for {}: {}", model, exc)
        return None
