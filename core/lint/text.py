"""text_mismatch: an assistant message's trained tokens must decode to its stored text.

The transcript a person reads is `messages.content`; the loss trains on the mask-1 ids of the
message's token span. When the two disagree (a mask shifted by a token, spans written against
another tokenisation, text re-rendered after parsing, an importer that stored the parsed reply
beside the raw ids) the viewer shows one reply and the trainer learns another. This check
decodes each span's mask-1 ids with the run's model's tokenizer and compares.

Accepted decodings, the ways a backend turns generated ids into text (core/backends/hf.py
decodes the ids without the final stop token; vLLM skips special tokens by default):
decode(T), decode(T[:-1]) and decode(T, skip_special_tokens=True), T the span's mask-1 ids.

Speed: byte-level BPE tokenizers (SmolLM, Qwen, Llama 3, DeepSeek, GPT-2 style; the families
this project meets most) are decoded by a byte table in numpy: each id's bytes gathered into one
buffer per chunk, compared with the UTF-8 of the stored text. Only spans that differ there (or
whose tokenizer is not byte-level) go through the tokenizer's own batch_decode, which decides. The
tokenizers library's decode is ~20-85 us per span on this machine; the table path is what keeps a
million-trajectory lint in the tens of seconds.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from core.lint.findings import Finding
from core.lint.special import special_ids_of

class SpanDecoder:
    """Decides whether token spans decode to given texts, as the run's tokenizer decodes them.

    tokenizer: a transformers tokenizer (PreTrainedTokenizerFast or slow). Building one costs a
    pass over the vocabulary (about 0.1 s for 49k ids); `SpanDecoder.of` keeps one per tokenizer.
    """

    _made: dict[int, tuple[Any, "SpanDecoder"]] = {}

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        special = sorted(i for i in special_ids_of(tokenizer) if i >= 0)
        self.special = np.zeros(max(special, default=-1) + 2, dtype=bool)  # the last entry stays False
        self.special[special] = True
        self.table = _byte_table(tokenizer)

    @classmethod
    def of(cls, tokenizer: Any) -> "SpanDecoder":
        """The decoder of `tokenizer`, built once per tokenizer object."""
        held = cls._made.get(id(tokenizer))
        if held is None or held[0] is not tokenizer:
            held = cls._made[id(tokenizer)] = (tokenizer, cls(tokenizer))
        return held[1]

    def _is_special(self, ids: np.ndarray) -> np.ndarray:
        return self.special[np.clip(ids, -1, self.special.size - 1)] & (ids >= 0)

    def mismatches(self, spans: Sequence[np.ndarray], texts: Sequence[str]) -> list[str | None]:
        """Per span (its mask-1 ids, an int array): None when `texts[i]` is one of its accepted
        decodings (module docstring), else the decoding to show (without a final special token)."""
        lens = np.fromiter((s.size for s in spans), dtype=np.int64, count=len(spans))
        flat = np.concatenate(spans).astype(np.int64) if spans else np.zeros(0, dtype=np.int64)
        return self.mismatches_flat(flat, lens, texts)

    def mismatches_flat(self, flat: np.ndarray, lens: np.ndarray, texts: Sequence[str]) -> list[str | None]:
        """mismatches() for spans laid end to end: flat: int64 ids, length sum(lens); lens: ids
        per span, one per text."""
        out: list[str | None] = [None] * len(texts)
        unsure = self._table_unsure(flat, lens, texts) if self.table is not None else list(range(len(texts)))
        if not unsure:
            return out
        bounds = np.r_[0, np.cumsum(lens)]
        spans = [flat[bounds[i]: bounds[i + 1]].tolist() for i in unsure]
        decode = self.tokenizer.batch_decode
        whole, head = decode(spans), decode([s[:-1] for s in spans])
        plain = decode(spans, skip_special_tokens=True)
        for j, i in enumerate(unsure):
            if texts[i] not in (whole[j], head[j], plain[j]):
                ends_special = bool(spans[j]) and bool(self._is_special(np.array(spans[j][-1:]))[0])
                out[i] = head[j] if ends_special else whole[j]
        return out

    def _table_unsure(self, flat: np.ndarray, lens: np.ndarray, texts: Sequence[str]) -> list[int]:
        """Indices of spans whose byte-table decoding (a final special token dropped) differs from
        the UTF-8 of their text, or which hold an id outside the table. All numpy but one
        str.encode per text."""
        buf, off, size = self.table
        n = lens.size
        ends = np.cumsum(lens)
        last = ends - 1
        drop = (lens > 0) & self._is_special(flat[np.maximum(last, 0)] if flat.size else np.zeros(n, np.int64))
        keep = np.ones(flat.size, dtype=bool)
        keep[last[drop]] = False
        ids, kept = flat[keep], lens - drop
        outside = (ids < 0) | (ids >= size.size)
        piece = np.where(outside, 0, size[np.where(outside, 0, ids)])
        # Each span's bytes: the pieces of its ids laid end to end in one gathered buffer.
        starts = np.cumsum(piece) - piece
        data = buf[np.repeat(off[np.where(outside, 0, ids)] - starts, piece) + np.arange(int(piece.sum()))]
        bounds = np.r_[0, np.cumsum(kept)]
        got_len = np.diff(np.r_[0, np.cumsum(piece)][bounds])
        has_outside = np.diff(np.r_[0, np.cumsum(outside)][bounds]) > 0
        # A lone surrogate cannot come out of a decode: its bytes (surrogatepass) then differ.
        want = [t.encode("utf-8", "surrogatepass") for t in texts]
        want_len = np.fromiter(map(len, want), dtype=np.int64, count=n)
        wanted = np.frombuffer(b"".join(want), dtype=np.uint8)
        same_len = (got_len == want_len) & ~has_outside
        differ = data[np.repeat(same_len, got_len)] != wanted[np.repeat(same_len, want_len)]
        per_span = np.diff(np.r_[0, np.cumsum(differ)][np.r_[0, np.cumsum(got_len[same_len])]])
        ok = np.zeros(n, dtype=bool)
        ok[np.flatnonzero(same_len)] = per_span == 0
        return np.flatnonzero(~ok).tolist()


def _byte_table(tokenizer: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(bytes buffer uint8, offset per id, length per id) giving the UTF-8 bytes each id decodes
    to, or None when the tokenizer is not a plain byte-level BPE (its decoder is not ByteLevel, or
    it cleans up tokenisation spaces), whose decode is not a concatenation of per-id bytes.

    The id -> bytes map is GPT-2's (transformers.convert_slow_tokenizer.bytes_to_unicode, the
    one the tokenizers ByteLevel decoder inverts); added tokens decode to their content."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.decoder).__name__ != "ByteLevel":
        return None
    if getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return None
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    to_latin1 = str.maketrans({c: chr(b) for b, c in bytes_to_unicode().items()})
    added = {i: t.content for i, t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items()}
    vocab = backend.get_vocab(with_added_tokens=False)
    n = max(max(vocab.values(), default=-1), max(added, default=-1)) + 1
    pieces = [b""] * n
    try:
        for token, i in vocab.items():
            pieces[i] = token.translate(to_latin1).encode("latin-1")
    except UnicodeEncodeError:  # a character outside the byte alphabet: not plain byte-level
        return None
    for i, content in added.items():
        pieces[i] = content.encode("utf-8")
    size = np.fromiter(map(len, pieces), dtype=np.int64, count=n)
    off = np.cumsum(size) - size
    return np.frombuffer(b"".join(pieces), dtype=np.uint8), off, size


def check_texts(decoder: SpanDecoder, tids: np.ndarray, offsets: np.ndarray, plen: np.ndarray, lens: np.ndarray,
                ids: np.ndarray, mask: np.ndarray, s_seg: np.ndarray, s_start: np.ndarray, s_end: np.ndarray,
                turns: np.ndarray, contents: np.ndarray, findings: list[Finding]) -> None:
    """Append a text_mismatch finding per assistant span whose mask-1 ids do not decode to its
    stored text (core.lint.checks' chunk coordinates: ids, mask the chunk's joined arrays;
    trajectory i at offsets[i], lens[i] tokens, prompt_len plen[i]; span j of trajectory
    s_seg[j] is [s_start[j], s_end[j]), its turn turns[j] and text contents[j]; spans in order
    within a trajectory, none out of range).

    The decoded tokens are the span's mask-1 ids plus a trained neighbour on either side when
    that token is after the prompt and in no other assistant span: a mask shifted off its turn
    then fails here as well as in trained_outside_assistant. A span inside the prompt or with no
    mask-1 token is left to the kinds that already report it (prompt_trained, nothing_trained,
    generated_untrained). The finding's span is the message's [token_start, token_end).
    Cost: a few numpy passes over the spans' tokens, one str.encode per span."""
    ok = (s_start >= plen[s_seg]) & (s_end > s_start)
    same_prev = np.r_[False, s_seg[1:] == s_seg[:-1]]
    same_next = np.r_[s_seg[1:] == s_seg[:-1], False]
    prev_end = np.where(same_prev, np.r_[-1, s_end[:-1]], -1)
    next_start = np.where(same_next, np.r_[s_start[1:], 0], np.iinfo(np.int64).max)
    lo = np.where((s_start > plen[s_seg]) & (prev_end < s_start), s_start - 1, s_start)
    hi = np.where((s_end < lens[s_seg]) & (next_start > s_end), s_end + 1, s_end)
    pick = np.flatnonzero(ok)
    if pick.size == 0:
        return
    g_lo, width = offsets[s_seg[pick]] + lo[pick], (hi - lo)[pick]
    pos = np.repeat(g_lo - (np.cumsum(width) - width), width) + np.arange(int(width.sum()))
    trained = mask[pos] == 1
    per_span = np.bincount(np.repeat(np.arange(pick.size), width)[trained], minlength=pick.size)
    some = np.flatnonzero(per_span > 0)
    verdicts = decoder.mismatches_flat(ids[pos[trained]].astype(np.int64), per_span[some],
                                       contents[pick[some]].tolist())
    for k, decoded in zip(some.tolist(), verdicts):
        if decoded is None:
            continue
        j = int(pick[k])
        start, end, content = int(s_start[j]), int(s_end[j]), contents[j]
        at = _first_difference(decoded, content)
        findings.append(Finding(
            "text_mismatch", int(tids[s_seg[j]]),
            f"turn {turns[j]} [{start}, {end}): trained tokens decode to {_window(decoded, at)} but the stored "
            f"text is {_window(content, at)} (first difference at character {at})", ((start, end),)))


def _first_difference(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _window(text: str, at: int, width: int = 24) -> str:
    """repr of up to `width` characters of `text` around position `at`, with '…' for cut ends."""
    lo = max(0, at - width // 2)
    hi = min(len(text), lo + width)
    return ("…" if lo else "") + repr(text[lo:hi]) + ("…" if hi < len(text) else "")
