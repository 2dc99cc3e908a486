"""The fast tokenizer's Rust backend called directly, for the per-turn tokenising of the engine.

`tokenizer(texts)` in transformers 5 is `backend_tokenizer.encode_batch(texts)` followed by a
Python conversion of every Encoding into lists (ids, attention mask, offsets): on the pool
benchmark that conversion and the cut at message boundaries over the converted offsets cost
about a third as much as the Rust encoding itself (benchmarks/engine_overhead.py). Here the
Encodings are read where they are: the ids once, and each boundary found with
`Encoding.char_to_token` instead of converting every offset.

Exactness: the direct call is used only when it is the call transformers itself makes (the
tokenizer class does not override `_batch_encode_plus`, the backend has no truncation or padding
set, special-token splitting agrees) and a probe text gives the same ids both ways; otherwise
`BackendEncoder.of` returns None and callers keep transformers' call. The boundary rule is
core.rollout.chat._cut's (a token goes to the piece its start is in; a token spanning a boundary
belongs to the piece it starts in), found locally; where the local check cannot prove that rule
(a boundary no token covers, offsets out of order around it), the offsets are converted and
`_cut`'s scan decides.
"""

from __future__ import annotations

from typing import Any, Sequence

_PROBE = ("<|im_start|>user\nWhere is the Veltran Observatory?  Naïve café — 東京 42\t\n"
          "<tool_call>{\"name\": \"search_corpus\"}</tool_call>\n\n")


class BackendEncoder:
    """Direct encode calls on a transformers fast tokenizer's `backend_tokenizer`."""

    def __init__(self, backend: Any):
        self.backend = backend
        self._fast = getattr(backend, "encode_batch_fast", None)

    @classmethod
    def of(cls, tokenizer: Any) -> "BackendEncoder | None":
        """The encoder for `tokenizer`, or None when calling its backend directly might not give
        the ids `tokenizer(text, add_special_tokens=False)` gives (see the module docstring).
        Never raises."""
        try:
            from transformers.tokenization_utils_tokenizers import TokenizersBackend

            backend = getattr(tokenizer, "backend_tokenizer", None)
            if backend is None or not getattr(tokenizer, "is_fast", False):
                return None
            if any(getattr(type(tokenizer), name, None) is not getattr(TokenizersBackend, name, False)
                   for name in ("__call__", "_encode_plus")):
                return None  # a tokenizer class with its own encoding path
            if backend.truncation is not None or backend.padding is not None:
                return None
            if bool(backend.encode_special_tokens) != bool(getattr(tokenizer, "split_special_tokens", False)):
                return None
            encoder = cls(backend)
            probe = [_PROBE, _PROBE[7:], " " + _PROBE]
            expected = [list(ids) for ids in tokenizer(probe, add_special_tokens=False)["input_ids"]]
            if encoder.encode_many(probe) != expected or [e.ids for e in encoder._encode(probe)] != expected:
                return None
            return encoder
        except Exception:  # noqa: BLE001  (anything unexpected: keep transformers' own call)
            return None

    def _encode(self, texts: Sequence[str]) -> list[Any]:
        return self.backend.encode_batch(list(texts), add_special_tokens=False)

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """ids: list[int] of each text, no special tokens added, in one batched call (the Rust
        side encodes the texts in parallel; without offsets where the installed tokenizers has
        `encode_batch_fast`)."""
        if not texts:
            return []
        encodings = (self._fast or self.backend.encode_batch)(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def encode_pieces(self, items: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """For each item (its pieces of text), the ids of the joined pieces cut into one list per
        piece (an empty list where no token starts in a piece). Pieces are tokenised together,
        as the model reads them, in one batched call for all items."""
        encodings = self._encode(["".join(pieces) for pieces in items])
        return [_cut_encoding(e, pieces) for e, pieces in zip(encodings, items)]


def _cut_encoding(encoding: Any, pieces: Sequence[str]) -> list[list[int]]:
    ids = encoding.ids
    cuts = []
    total = 0
    for text in pieces[:-1]:
        total += len(text)
        at = _boundary(encoding, total, len(ids))
        if at is None:
            return _cut_by_offsets(ids, encoding.offsets, pieces)
        cuts.append(at)
    out, begin = [], 0
    for end in [*cuts, len(ids)]:
        end = max(end, begin)
        out.append(ids[begin:end])
        begin = end
    return out


def _boundary(encoding: Any, char: int, n: int) -> int | None:
    """The index of the first token starting at or after character `char`, proven from the
    tokens around it; None when that needs the whole offsets list."""
    if char <= 0:
        return 0
    token = encoding.char_to_token(char)
    if token is None:
        last = encoding.token_to_chars(n - 1) if n else None
        return n if last is not None and last[1] <= char else None  # the boundary is at the end
    start = encoding.token_to_chars(token)[0]
    if start >= char:  # the token begins here: the one before must begin before the boundary
        if token and encoding.token_to_chars(token - 1)[0] >= char:
            return None
        return token
    # The token spans the boundary: it belongs to the earlier piece; the next must begin after.
    if token + 1 < n and encoding.token_to_chars(token + 1)[0] < char:
        return None
    return token + 1


def _cut_by_offsets(ids: list[int], offsets: Sequence[tuple[int, int]], pieces: Sequence[str]) -> list[list[int]]:
    from core.rollout.chat import _cut

    segments = _cut(ids, offsets, pieces, list(range(len(pieces))))
    out: list[list[int]] = [[] for _ in pieces]
    for segment in segments:
        out[segment.message_index] = segment.ids
    return out
