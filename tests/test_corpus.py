"""Corpus loading: chunking text at natural boundaries, chunk files, and every bad-input error."""

from __future__ import annotations

import json

import pytest

from core.data.corpus import corpus_fingerprint, load_corpus, split_text
from core.data.records import Chunk, InputError

PARAGRAPHS = [
    "The Veltran Observatory stands on the island of Qoruna. It was founded in 1873 by Ilse Marrow.",
    "Its largest telescope has a mirror 214 centimetres across. The staff number about forty.",
    "Visitors reach it by ferry from the port of Selmouth, twice a week in summer and once in winter.",
]


def _error(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return info.value


# --- text files -------------------------------------------------------------------------------

def test_markdown_file_cut_at_paragraphs(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("\n\n".join(PARAGRAPHS) + "\n", encoding="utf-8")
    chunks = load_corpus(path, chunk_size=120, chunk_overlap=0)
    assert [c.id for c in chunks] == ["notes.md#0", "notes.md#1", "notes.md#2"]
    assert [c.text for c in chunks] == PARAGRAPHS
    assert {c.source for c in chunks} == {"notes.md"}
    # a larger chunk takes whole paragraphs while they fit
    two = load_corpus(path, chunk_size=200, chunk_overlap=0)
    assert [c.text for c in two] == ["\n\n".join(PARAGRAPHS[:2]), PARAGRAPHS[2]]


def test_split_prefers_sentences_then_words_and_overlaps():
    text = " ".join(PARAGRAPHS)
    pieces = split_text(text, 120, 30)
    assert all(len(p) <= 120 for p in pieces)
    words = set(text.split())
    for piece in pieces:  # no piece starts or ends inside a word
        assert piece.split()[0] in words and piece.split()[-1] in words
    assert pieces[0] == PARAGRAPHS[0]  # the last sentence end that fits wins over a later space
    for before, after in zip(pieces, pieces[1:]):  # consecutive pieces share some words
        assert after.split()[0] in before.split()[-8:]
    covered = " ".join(pieces)
    assert all(w in covered for w in words)


def test_split_hard_cuts_a_word_longer_than_a_chunk():
    pieces = split_text("x" * 25, 10, 2)
    assert all(len(p) <= 10 for p in pieces) and "".join(pieces).count("x") >= 25


def test_folder_read_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "b" / "z.txt").write_text("Zeta text here.", encoding="utf-8")
    (tmp_path / "a.markdown").write_text("Alpha text here.", encoding="utf-8")
    (tmp_path / "c.MD").write_text("Gamma text.", encoding="utf-8")
    (tmp_path / "skip.py").write_text("print('no')", encoding="utf-8")
    (tmp_path / ".git" / "x.md").write_text("hidden", encoding="utf-8")
    (tmp_path / "empty.md").write_text("", encoding="utf-8")
    chunks = load_corpus(tmp_path)
    assert [(c.id, c.source) for c in chunks] == [("a.markdown#0", "a.markdown"), ("b/z.txt#0", "b/z.txt"),
                                                  ("c.MD#0", "c.MD")]


def test_utf8_bom_and_crlf(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes("\ufeffFirst paragraph.\r\n\r\nSecond.".encode("utf-8"))
    assert [c.text for c in load_corpus(path, chunk_size=20, chunk_overlap=0)] == ["First paragraph.", "Second."]


# --- chunk files ------------------------------------------------------------------------------

def test_jsonl_chunks(tmp_path):
    path = tmp_path / "chunks.jsonl"
    rows = [{"id": "a", "text": "one", "source": "doc1"}, {"content": "two"}, {"chunk": "three", "id": 7}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    chunks = load_corpus(path)
    assert chunks == [Chunk("a", "one", "doc1"), Chunk("chunks.jsonl#1", "two", "chunks.jsonl"),
                      Chunk("7", "three", "chunks.jsonl")]


def test_csv_chunks_with_quoted_newlines(tmp_path):
    path = tmp_path / "chunks.csv"
    path.write_text('id,text,source\na,"line one\nline two",s\n,second,\n', encoding="utf-8")
    chunks = load_corpus(path)
    assert chunks == [Chunk("a", "line one\nline two", "s"), Chunk("chunks.csv#1", "second", "chunks.csv")]


# --- errors name file, line and field ---------------------------------------------------------

def test_missing_file(tmp_path):
    err = _error(load_corpus, tmp_path / "nope.md")
    assert err.path.endswith("nope.md") and "no such file" in str(err)


@pytest.mark.parametrize("name, content", [("e.md", ""), ("e.md", "  \n\n "), ("e.jsonl", "\n\n")])
def test_empty_corpus(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert "empty" in str(_error(load_corpus, path))


def test_empty_folder(tmp_path):
    (tmp_path / "x.py").write_text("", encoding="utf-8")
    assert "no .md" in str(_error(load_corpus, tmp_path))


def test_invalid_json_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": "bad",\n', encoding="utf-8")
    err = _error(load_corpus, path)
    assert err.line == 3 and str(err).startswith(f"{path}:3: invalid JSON")


def test_line_not_an_object(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('["text"]\n', encoding="utf-8")
    assert _error(load_corpus, path).line == 1


def test_missing_text_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n{"body": "x"}\n', encoding="utf-8")
    err = _error(load_corpus, path)
    assert (err.line, err.field) == (2, "text")
    assert str(err) == f"{path}:2: field 'text': missing; expected one of text, content, chunk"


def test_non_string_text(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"content": 12}\n', encoding="utf-8")
    err = _error(load_corpus, path)
    assert (err.line, err.field) == (1, "content") and "must be a string, got a number" in str(err)


def test_empty_text_and_bad_id_and_source(tmp_path):
    path = tmp_path / "c.jsonl"
    for line, field in (('{"text": "  "}', "text"), ('{"text": "x", "id": [1]}', "id"),
                        ('{"text": "x", "source": 3}', "source")):
        path.write_text('{"text": "fine"}\n' + line + "\n", encoding="utf-8")
        err = _error(load_corpus, path)
        assert (err.line, err.field) == (2, field)


def test_duplicate_id(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n{"id": "a", "text": "z"}\n',
                    encoding="utf-8")
    err = _error(load_corpus, path)
    assert (err.line, err.field) == (3, "id") and "duplicate id 'a' (first on line 1)" in str(err)


def test_csv_errors(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,body\n1,x\n", encoding="utf-8")
    err = _error(load_corpus, path)
    assert (err.line, err.field) == (1, "text") and "found id, body" in str(err)
    path.write_text('id,text\n1,x\n2,\n', encoding="utf-8")
    err = _error(load_corpus, path)
    assert (err.line, err.field) == (3, "text") and "empty" in str(err)
    path.write_text('id,text\n1,"multi\nline"\n1,y\n', encoding="utf-8")
    err = _error(load_corpus, path)
    assert (err.line, err.field) == (4, "id")


@pytest.mark.parametrize("size, overlap, field", [(0, 0, "chunk_size"), (100, -1, "chunk_overlap"),
                                                  (100, 100, "chunk_overlap"), (100, 150, "chunk_overlap"),
                                                  ("100", 10, "chunk_size")])
def test_bad_chunk_sizes(tmp_path, size, overlap, field):
    path = tmp_path / "a.md"
    path.write_text("text", encoding="utf-8")
    assert _error(load_corpus, path, chunk_size=size, chunk_overlap=overlap).field == field


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("first line\ncaf\xe9\n".encode("latin-1"))
    err = _error(load_corpus, path)
    assert err.line == 2 and "not UTF-8" in str(err) and str(path) in str(err)


def test_unsupported_type(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_bytes(b"PAR1")
    assert "unsupported corpus type '.parquet'" in str(_error(load_corpus, path))


# --- fingerprint ------------------------------------------------------------------------------

def test_fingerprint_is_stable_and_sensitive():
    chunks = [Chunk("a", "one"), Chunk("b", "two")]
    fp = corpus_fingerprint(chunks)
    assert fp == corpus_fingerprint([Chunk("a", "one", "other source"), Chunk("b", "two")])
    assert len(fp) == 64 and fp == corpus_fingerprint(list(chunks))
    assert fp != corpus_fingerprint(chunks[::-1])
    assert fp != corpus_fingerprint([Chunk("a", "one"), Chunk("b", "two!")])
    assert fp != corpus_fingerprint([Chunk("a", "one"), Chunk("c", "two")])
    # boundaries matter: "ab"+"c" is not "a"+"bc"
    joined = corpus_fingerprint([Chunk("x", "ab"), Chunk("y", "c")])
    assert joined != corpus_fingerprint([Chunk("x", "a"), Chunk("y", "bc")])
    # pinned: stored runs compare fingerprints across versions, so the hashing must not drift
    assert fp == "f6c7405453e85add3a5ab83c182515d12f6966aa58f040ac4b3afd592ebf878a"


def test_csv_ending_inside_an_open_quote_is_refused(tmp_path):
    """The csv module's default accepts `"b` running to the end of the file as one cell: a
    truncated file would silently become one huge chunk."""
    path = tmp_path / "c.csv"
    path.write_text('id,text\n1,"a?"\n2,"b\n3,c\n', encoding="utf-8")
    err = _error(load_corpus, path)
    assert "malformed CSV" in str(err) and str(path) in str(err)
    assert err.line == 3  # the row whose quote never closes starts on line 3 (was reported as 2)
