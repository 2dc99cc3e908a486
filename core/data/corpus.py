"""Loading a knowledge corpus: text files cut into chunks, or chunk files (.jsonl, .csv).

Every problem with the input is an `InputError` naming the file, the line and the field, raised
before anything is indexed or written, so a bad corpus costs one clear line and no half-built run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from core.data.records import Chunk, InputError

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
"""Files cut into chunks by character count."""

TEXT_FIELDS = ("text", "content", "chunk")
"""Names accepted for a chunk's text in .jsonl and .csv corpora, in order of preference."""

_SENTENCE_ENDS = (". ", "! ", "? ", ".\n", "!\n", "?\n")


def load_corpus(path: str | Path, chunk_size: int = 1000, chunk_overlap: int = 100) -> list[Chunk]:
    """Read a corpus: a .jsonl or .csv of chunks, a text/Markdown file, or a folder of them.

    Text is cut into chunks of at most chunk_size characters, each starting about chunk_overlap
    characters before the previous one ended, so a fact cut in two is still whole in one chunk.
    Folders are read recursively in sorted order (dot-folders skipped) so ids are stable.
    """
    path = Path(path)
    _check_sizes(path, chunk_size, chunk_overlap)
    if not path.exists():
        raise InputError(str(path), "no such file or folder")
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                        and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                       key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise InputError(str(path), f"no {', '.join(TEXT_SUFFIXES)} files in this folder")
        chunks = [c for f in files for c in _text_chunks(f, f.relative_to(path).as_posix(),
                                                         chunk_size, chunk_overlap)]
    else:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            chunks = _unique(path, _jsonl_chunks(path))
        elif suffix == ".csv":
            chunks = _unique(path, _csv_chunks(path))
        elif suffix in TEXT_SUFFIXES:
            chunks = list(_text_chunks(path, path.name, chunk_size, chunk_overlap))
        else:
            raise InputError(str(path), f"unsupported corpus type {suffix or '(none)'!r}; "
                                        f"expected a folder, .jsonl, .csv or one of {', '.join(TEXT_SUFFIXES)}")
    if not chunks:
        raise InputError(str(path), "the corpus is empty: no text to search")
    return chunks


def corpus_fingerprint(chunks: Iterable[Chunk]) -> str:
    """A sha256 over chunk ids and texts, in order: same corpus, same fingerprint, on any machine.

    Lengths are hashed before contents so that no two different corpora can run together into the
    same byte stream. Index caches and resumed runs use it to notice a changed corpus.
    """
    digest = hashlib.sha256()
    for chunk in chunks:
        for part in (chunk.id, chunk.text):
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def split_text(text: str, chunk_size: int, chunk_overlap: int) -> list[str]:
    """Cut text into pieces of at most chunk_size characters with about chunk_overlap in common.

    A piece ends at the last paragraph break in its second half if there is one, else at the last
    sentence end there, else at the last space, else mid-word; the next piece starts at a word
    boundary about chunk_overlap characters earlier. Whitespace-only pieces are dropped.
    """
    pieces: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + chunk_size, n)
        cut = end if end == n else _best_cut(text, start, end, chunk_size)
        piece = text[start:cut].strip()
        if piece:
            pieces.append(piece)
        if cut >= n:
            break
        start = _next_start(text, start, cut, chunk_overlap)
    return pieces


def _best_cut(text: str, start: int, end: int, chunk_size: int) -> int:
    """Where to end the piece text[start:...]: the latest good boundary not after end."""
    half = start + chunk_size // 2
    para = text.rfind("\n\n", half, end)
    if para != -1:
        return para + 2
    sentence = max(text.rfind(mark, half, end) for mark in _SENTENCE_ENDS)
    if sentence != -1:
        return sentence + 2
    space = max(text.rfind(" ", start + 1, end), text.rfind("\n", start + 1, end))
    return space + 1 if space != -1 else end


def _next_start(text: str, start: int, cut: int, overlap: int) -> int:
    """Start of the next piece: overlap characters before cut, moved forward to a word start."""
    nxt = max(cut - overlap, start + 1)
    if 0 < nxt < cut and not text[nxt - 1].isspace():
        space = min((i for i in (text.find(" ", nxt, cut), text.find("\n", nxt, cut)) if i != -1), default=-1)
        nxt = space + 1 if space != -1 else cut
    while nxt < len(text) and text[nxt].isspace():
        nxt += 1
    return nxt


def _check_sizes(path: Path, chunk_size: int, chunk_overlap: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(str(path), f"chunk_size must be a positive integer, got {chunk_size!r}", field="chunk_size")
    if isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int) or chunk_overlap < 0:
        raise InputError(str(path), f"chunk_overlap must be a non-negative integer, got {chunk_overlap!r}",
                         field="chunk_overlap")
    if chunk_overlap >= chunk_size:
        raise InputError(str(path), f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size "
                                    f"({chunk_size})", field="chunk_overlap")


def read_text(path: Path) -> str:
    """A file's text as UTF-8 (a BOM is dropped); anything else is an InputError with the byte offset."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(str(path), f"not UTF-8 text (bad byte at offset {exc.start})", line=line) from exc


def _text_chunks(path: Path, rel: str, chunk_size: int, chunk_overlap: int) -> Iterator[Chunk]:
    text = read_text(path).replace("\r\n", "\n")
    for index, piece in enumerate(split_text(text, chunk_size, chunk_overlap)):
        yield Chunk(id=f"{rel}#{index}", text=piece, source=rel)


def jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; shared with the question loader."""
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(str(path), f"invalid JSON: {exc.msg} (column {exc.colno})", line=lineno) from exc
        if not isinstance(record, dict):
            raise InputError(str(path), f"expected a JSON object, got {type(record).__name__}", line=lineno)
        yield lineno, record


def _jsonl_chunks(path: Path) -> Iterator[tuple[int, Chunk]]:
    for index, (lineno, record) in enumerate(jsonl_records(path)):
        yield lineno, _chunk_from(path, lineno, record, f"{path.name}#{index}")


def _csv_chunks(path: Path) -> Iterator[tuple[int, Chunk]]:
    reader = csv_rows(path)
    columns = reader.fieldnames or []
    if not any(name in columns for name in TEXT_FIELDS):
        raise InputError(str(path), f"no text column: expected one of {', '.join(TEXT_FIELDS)}; "
                                    f"found {', '.join(columns) or 'no header'}", line=1, field="text")
    column = next(name for name in TEXT_FIELDS if name in columns)
    for index, (line, record) in enumerate(csv_records(path, reader)):
        if column not in record:
            raise InputError(str(path), "is empty", line=line, field=column)
        yield line, _chunk_from(path, line, record, f"{path.name}#{index}")


def csv_rows(path: Path) -> csv.DictReader:
    """A DictReader over a UTF-8 CSV file; only CR and LF end lines, as the csv module expects.
    strict: a quote left open at the end of the file (a truncated file) is an error, not one cell."""
    return csv.DictReader(io.StringIO(read_text(path), newline=""), strict=True)


def csv_records(path: Path, reader: csv.DictReader) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) pairs, empty cells and cells past the header left out; line is where the row ends.
    InputError for malformed CSV, naming the line where the row that cannot be read starts."""
    ended = reader.line_num  # the header, once read
    try:
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            ended = reader.line_num
    except csv.Error as exc:
        raise InputError(str(path), f"malformed CSV: {exc}", line=ended + 1) from exc


def _chunk_from(path: Path, line: int, record: dict, default_id: str) -> Chunk:
    """A Chunk from one record of a chunk file, checking each field."""
    name = next((f for f in TEXT_FIELDS if f in record), None)
    if name is None:
        raise InputError(str(path), f"missing; expected one of {', '.join(TEXT_FIELDS)}", line=line, field="text")
    text = record[name]
    if not isinstance(text, str):
        raise InputError(str(path), f"must be a string, got {_json_type(text)}", line=line, field=name)
    if not text.strip():
        raise InputError(str(path), "is empty", line=line, field=name)
    chunk_id = record.get("id", default_id)
    if isinstance(chunk_id, bool) or not isinstance(chunk_id, (str, int)) or str(chunk_id) == "":
        raise InputError(str(path), f"must be a non-empty string or an integer, got {chunk_id!r}",
                         line=line, field="id")
    source = record.get("source", path.name)
    if not isinstance(source, str):
        raise InputError(str(path), f"must be a string, got {_json_type(source)}", line=line, field="source")
    return Chunk(id=str(chunk_id), text=text, source=source)


def _unique(path: Path, rows: Iterable[tuple[int, Chunk]]) -> list[Chunk]:
    """The chunks in order, refusing a repeated id (it would make search results ambiguous)."""
    first_line: dict[str, int] = {}
    chunks = []
    for line, chunk in rows:
        if chunk.id in first_line:
            raise InputError(str(path), f"duplicate id {chunk.id!r} (first on line {first_line[chunk.id]})",
                             line=line, field="id")
        first_line[chunk.id] = line
        chunks.append(chunk)
    return chunks


def _json_type(value: object) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
