"""BM25 in languages written without spaces: a word inside a sentence is found, English is unchanged.

Issue 13: a Chinese query for a two-character word found nothing in a chunk whose sentence held
it, because text was split on whitespace and a whole clause became one term.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data.demo_data import generate_demo
from core.data.records import Chunk
from core.retrieval import BM25Retriever, build_retriever
from core.retrieval.bm25 import BM25_PARAMS
from core.retrieval.cache import index_folder
from core.retrieval.terms import is_unspaced, split_terms, terms_of


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))


def _chunks(texts: list[str]) -> list[Chunk]:
    return [Chunk(f"c{i}", text) for i, text in enumerate(texts)]


def _top(retriever, query: str, k: int = 3) -> list[str]:
    return [h.chunk.id for h in retriever.search(query, k)]


ZH = [
    "韦尔特兰天文台位于科鲁纳岛的北岸，建于一九八七年。",
    "量子计算机使用量子比特进行运算，比传统计算机更快。",
    "北京是中国的首都，也是一座历史悠久的城市。",
    "这座岛上的渔民每天清晨出海捕鱼。",
]

JA = [
    "ヴェルトラン天文台はコルナ島の北岸にあり、一九八七年に建てられた。",
    "量子コンピュータは量子ビットを使って計算する。",
    "東京は日本の首都であり、大きな都市です。",
    "島の漁師たちは毎朝早く海へ出かける。",
]


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("query, gold", [
    ("天文", "c0"),       # two characters inside the first sentence
    ("科鲁纳", "c0"),
    ("首都", "c2"),
    ("量子", "c1"),
    ("渔民", "c3"),
    ("韦尔特兰天文台在哪里？", "c0"),  # a whole question, not a term of the corpus
])
def test_chinese_word_inside_a_sentence_is_found_first(query, gold, cache):
    retriever = BM25Retriever.build(_chunks(ZH), cache=cache)
    assert _top(retriever, query)[:1] == [gold]


@pytest.mark.parametrize("query, gold", [
    ("天文台", "c0"),
    ("コルナ", "c0"),      # katakana name
    ("首都", "c2"),
    ("量子ビット", "c1"),
    ("漁師", "c3"),
    ("ヴェルトラン天文台はどこにありますか", "c0"),
])
def test_japanese_word_inside_a_sentence_is_found_first(query, gold):
    retriever = BM25Retriever.build(_chunks(JA), cache=False)
    assert _top(retriever, query)[:1] == [gold]


def test_mixed_english_and_chinese():
    chunks = _chunks(["Qwen 模型的观测站 is on Qoruna", "Llama 模型的训练数据", "the observatory of Veltran"])
    retriever = BM25Retriever.build(chunks, cache=False)
    assert _top(retriever, "观测站")[:1] == ["c0"]
    assert _top(retriever, "qwen")[:1] == ["c0"]
    assert _top(retriever, "Qwen模型")[:1] == ["c0"]   # no space between the scripts in the query
    assert _top(retriever, "训练")[:1] == ["c1"]
    assert _top(retriever, "observatory") == ["c2"]


def test_korean_and_thai_words_are_found_inside_longer_text():
    """Korean attaches particles to words (관측소는 = 관측소 + 는); Thai is written without spaces."""
    ko = BM25Retriever.build(_chunks(["벨트란 관측소는 코루나 섬에 있다.", "서울은 한국의 수도이다."]), cache=False)
    assert _top(ko, "관측소")[:1] == ["c0"]
    assert _top(ko, "수도")[:1] == ["c1"]
    th = BM25Retriever.build(_chunks(["หอดูดาวเวลทรานตั้งอยู่บนเกาะโครูนา", "กรุงเทพเป็นเมืองหลวงของประเทศไทย"]),
                             cache=False)
    assert _top(th, "หอดูดาว")[:1] == ["c0"]
    assert _top(th, "เมืองหลวง")[:1] == ["c1"]


def test_terms_of_a_chinese_run_are_unigrams_and_bigrams():
    assert split_terms("观测站") == ["观", "观测", "测", "测站", "站"]
    assert split_terms("qwen模型") == ["qwen", "模", "模型", "型"]
    assert split_terms("的") == ["的"]
    # punctuation between runs ends a run: no bigram across it
    assert "站北" not in split_terms("观测站，北岸") and "站，" not in split_terms("观测站，北岸")
    # the katakana prolonged sound mark belongs to the word; the middle dot separates words
    assert "ター" in split_terms("コンピューター・サイエンス")
    assert not any("・" in t for t in split_terms("コンピューター・サイエンス"))


# --- English is unchanged ----------------------------------------------------------------------

def _bm25s_terms(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


ENGLISH = (st.text(st.sampled_from(list("abc XYZ 0123 the and of _-.,'\n\tÉéß")), max_size=80)
           | st.text(st.characters(exclude_categories=("Cs",)).filter(lambda c: not is_unspaced(c)), max_size=80))


@settings(max_examples=200, deadline=None)
@given(ENGLISH)
def test_text_without_unspaced_scripts_is_split_as_bm25s_splits_it(text):
    """English, Cyrillic, Arabic, Devanagari ...: the same terms as before, stopwords removed alike."""
    assert terms_of([text]) == _bm25s_terms([text])


def test_english_scores_are_exactly_those_of_plain_bm25s():
    """The index built from our terms scores every chunk as an index built by bm25s alone."""
    import bm25s

    chunks, questions = generate_demo(60)
    ours = BM25Retriever.build(chunks, cache=False)
    plain = bm25s.BM25(method=BM25_PARAMS["method"], k1=BM25_PARAMS["k1"], b=BM25_PARAMS["b"])
    plain.index(bm25s.tokenize([c.text for c in chunks], stopwords="en", show_progress=False), show_progress=False)
    for q in questions[:20]:
        terms = _bm25s_terms([q.question])[0]
        ids_ours = [ours.index.vocab_dict[t] for t in terms if t in ours.index.vocab_dict]
        ids_plain = [plain.vocab_dict[t] for t in terms if t in plain.vocab_dict]
        assert np.array_equal(ours.index.get_scores_from_ids(ids_ours), plain.get_scores_from_ids(ids_plain))


def test_the_cache_key_names_the_tokeniser(tmp_path):
    """An index cached with the whitespace tokenisation is never reused for the new one."""
    old_params = {"method": "lucene", "k1": 1.5, "b": 0.75, "stopwords": "en"}
    assert index_folder("bm25", "fp", old_params)[0] != index_folder("bm25", "fp", BM25_PARAMS)[0]
    assert "tokenizer" in BM25_PARAMS and "unicode" in BM25_PARAMS
    first = build_retriever("bm25", _chunks(ZH))
    second = build_retriever("bm25", _chunks(ZH))
    assert not first.from_cache and second.from_cache
    assert _top(second, "首都")[:1] == ["c2"]


# --- properties of the splitter ------------------------------------------------------------------

UNSPACED_LETTERS = st.sampled_from(list("观测站的天文台首都科鲁纳ひらがなカタカナーコンピュータ한국어관측소ไทยหอดูดาว々〇"))
ANY_TEXT = st.text(st.one_of(UNSPACED_LETTERS, st.characters(exclude_categories=("Cs",))), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT)
def test_no_unspaced_character_is_dropped_and_splitting_is_deterministic(text):
    terms = split_terms(text.lower())
    assert terms == split_terms(text.lower())
    singles = set(terms)
    for ch in text.lower():
        if is_unspaced(ch):
            assert ch in singles


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT, st.text(UNSPACED_LETTERS, min_size=1, max_size=6), ANY_TEXT)
def test_a_word_inside_any_text_keeps_all_its_terms(before, word, after):
    """Whatever surrounds a word of an unspaced script, each of its terms is a term of the whole:
    so BM25 finds it in a sentence."""
    assert set(split_terms(word)) <= set(split_terms(before + word + after))
