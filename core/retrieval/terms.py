"""BM25 terms for every script: words where text has spaces, character n-grams where it has none.

bm25s splits text with the regex r"(?u)\\b\\w\\w+\\b" (scikit-learn's CountVectorizer default):
right for English, but a Chinese or Japanese sentence has no spaces, so a whole clause became one
term and a two-character word inside it matched nothing (issue 13). Here text in scripts written
without spaces between words is cut into character unigrams and bigrams, and every other part of
the text is split exactly as bm25s splits it, so English terms, and English scores, do not change.

Why n-grams and not a word segmenter: segmenters (jieba for Chinese, MeCab/Sudachi for Japanese,
ICU's dictionary break iterator for Thai) are one dependency and one dictionary per language, and a
query segmented differently from the corpus misses. Overlapping unigrams+bigrams need nothing and
have one property that makes lexical search work: every term of a word is also a term of any text
that contains the word (tests/test_retrieval_cjk.py checks it). Bigrams give precision, unigrams
find one-character words. This is Lucene's CJKAnalyzer (CJKBigramFilter with outputUnigrams=true)
applied to the scripts listed in UNSPACED_BLOCKS.

Korean is written with spaces, but particles and endings attach to words (관측소는 = 관측소 +
는), so a query for the bare word missed the same way; Lucene's CJKBigramFilter bigrams Hangul by
default too, and so does this. Thai, Lao, Khmer and Myanmar are written without spaces between
words, so the same rule applies; their combining vowel signs are part of a run, not breaks in it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence

WORD_PATTERN = r"(?u)\b\w\w+\b"
"""bm25s' default splitter (bm25s.tokenization.tokenize's token_pattern), kept for spaced scripts."""

TERMS_VERSION = "bm25s-words+unspaced-uni-bigrams/1"
"""Names this module's rule in the BM25 cache key: change it whenever the terms change."""

UNSPACED_BLOCKS: tuple[tuple[str, int, int], ...] = (
    ("Hangul Jamo", 0x1100, 0x11FF),
    ("Thai", 0x0E00, 0x0E7F),
    ("Lao", 0x0E80, 0x0EFF),
    ("Myanmar", 0x1000, 0x109F),
    ("Khmer", 0x1780, 0x17FF),
    ("Khmer Symbols", 0x19E0, 0x19FF),
    ("CJK iteration marks and ideographic zero (々 〆 〇)", 0x3005, 0x3007),
    ("Hiragana", 0x3040, 0x309F),
    ("Katakana", 0x30A0, 0x30FF),
    ("Bopomofo", 0x3100, 0x312F),
    ("Hangul Compatibility Jamo", 0x3130, 0x318F),
    ("Bopomofo Extended", 0x31A0, 0x31BF),
    ("Katakana Phonetic Extensions", 0x31F0, 0x31FF),
    ("CJK Unified Ideographs Extension A", 0x3400, 0x4DBF),
    ("CJK Unified Ideographs", 0x4E00, 0x9FFF),
    ("Hangul Jamo Extended-A", 0xA960, 0xA97F),
    ("Myanmar Extended-B", 0xA9E0, 0xA9FF),
    ("Myanmar Extended-A", 0xAA60, 0xAA7F),
    ("Hangul Syllables", 0xAC00, 0xD7AF),
    ("Hangul Jamo Extended-B", 0xD7B0, 0xD7FF),
    ("CJK Compatibility Ideographs", 0xF900, 0xFAFF),
    ("Halfwidth Katakana and Hangul", 0xFF66, 0xFFDC),
    ("Kana Supplement and Extended-A/B, Small Kana Extension", 0x1AFF0, 0x1B16F),
    ("CJK Unified Ideographs Extensions B-F, Compatibility Supplement", 0x20000, 0x2FA1F),
    ("CJK Unified Ideographs Extensions G-H", 0x30000, 0x323AF),
)
"""(name, first, last) of the Unicode blocks whose letters, marks and digits are cut into n-grams.
Within a block only categories L*, M* and N* count, so punctuation such as the katakana middle dot
(・) or the Thai signs ๏ ๚ ๛ end a run, while the prolonged sound mark (ー, Lm)
and combining vowel signs (Mn) stay in it."""


LETTERS_ONLY = frozenset({"CJK Unified Ideographs Extension A", "CJK Unified Ideographs", "Hangul Syllables",
                          "CJK Unified Ideographs Extensions B-F, Compatibility Supplement",
                          "CJK Unified Ideographs Extensions G-H"})
"""Blocks that hold only letters (and not yet assigned code points, harmless to include): taken
whole, without reading the category of each of their ~190,000 code points."""


@functools.cache
def _runs() -> re.Pattern[str]:
    """One regex matching maximal runs of unspaced-script characters; built on first use, not at
    import (a few milliseconds)."""
    spans: list[list[int]] = []
    for name, first, last in sorted(UNSPACED_BLOCKS, key=lambda b: b[1]):
        points = [(first, last)] if name in LETTERS_ONLY else [
            (cp, cp) for cp in range(first, last + 1) if unicodedata.category(chr(cp))[0] in "LMN"]
        for a, b in points:
            if spans and a == spans[-1][1] + 1:
                spans[-1][1] = b
            else:
                spans.append([a, b])
    cls = "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in spans)
    return re.compile(f"[{cls}]+")


_words = re.compile(WORD_PATTERN).findall


def is_unspaced(ch: str) -> bool:
    """Whether the one character `ch` belongs to a script this module cuts into n-grams."""
    return _runs().fullmatch(ch) is not None


def split_terms(text: str) -> list[str]:
    """The terms of `text` (already lowercased, as bm25s lowercases before splitting), in order.

    Runs of unspaced-script characters give each character and each pair of neighbours:
    "观测站" -> ["观", "观测", "测", "测站", "站"]. The text between runs is split by WORD_PATTERN,
    so a text with no such character is split exactly as bm25s splits it. A run ends at any other
    character, so "qwen模型" -> ["qwen", "模", "模型", "型"]. Never raises; [] for "".
    """
    terms: list[str] = []
    pos = 0
    for run in _runs().finditer(text):
        if run.start() > pos:
            terms.extend(_words(text[pos:run.start()]))
        chars = run.group()
        for i, ch in enumerate(chars):
            terms.append(ch)
            if i + 1 < len(chars):
                terms.append(chars[i:i + 2])
        pos = run.end()
    if pos < len(text):
        terms.extend(_words(text[pos:]))
    return terms


def terms_of(texts: Sequence[str], stopwords: Iterable[str] | None = None) -> list[list[str]]:
    """Each text lowercased, split by split_terms, without `stopwords` (default: bm25s' English
    list, the same one `bm25s.tokenize(stopwords="en")` uses). One list of terms per text."""
    if stopwords is None:
        from bm25s.stopwords import STOPWORDS_EN

        stopwords = STOPWORDS_EN
    stop = frozenset(stopwords)
    return [[t for t in split_terms(text.lower()) if t not in stop] for text in texts]
