"""The special token ids of a run's model, from a tokenizer found offline, for special_trained.

The database stores ids, not text, so which ids are special (end-of-turn, headers, think tags that
a tokenizer marks special) needs the model's tokenizer. It is looked up the way the token view
does (inspector/tui/tokenizers.py): the embedded model's converted folder, a local model folder,
or the local Hugging Face cache; nothing is downloaded. Without one the check is skipped.
"""

from __future__ import annotations

import threading

from loguru import logger

_cache: dict[str, frozenset[int] | None] = {}
_lock = threading.Lock()


def special_token_ids(model: str) -> frozenset[int] | None:
    """Ids the local tokenizer of `model` calls special (all_special_ids and added tokens marked
    special), or None when no tokenizer loads offline. Cached per model name; the first call
    imports transformers (seconds)."""
    with _lock:
        if model not in _cache:
            _cache[model] = _load(model)
        return _cache[model]


def _load(model: str) -> frozenset[int] | None:
    from pathlib import Path

    try:
        from transformers import AutoTokenizer

        from core.models import embedded_model_folder, is_embedded

        location = embedded_model_folder() if is_embedded(model) else Path(model).expanduser()
        source = str(location) if location.is_dir() else model
        tok = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as exc:  # no local tokenizer: the check is skipped, and the report says so
        logger.info("lint: no local tokenizer for {}: {}", model, exc)
        return None
    added = getattr(tok, "added_tokens_decoder", {}) or {}
    return frozenset(tok.all_special_ids) | {i for i, t in added.items() if getattr(t, "special", False)}
