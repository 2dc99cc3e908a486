"""Trajectories as plain records (messages, rewards, tokens, mask), one or a whole run streamed.

`trajectory_record` is what the TUI copies to the clipboard; `export_run` writes every
trajectory of a run as JSONL or Parquet (`rl-inspect export`), usable as an SFT/RL data set and
loadable with `datasets.load_dataset("json" | "parquet", data_files=...)`.

A record keeps the store's names (core/store/schema.py): the `trajectories` columns as they are
(`correct` is 1, 0 or null, as stored), `run_name`, `run_kind` and `model` from `runs`, and

    messages  [{turn, role, content, tool_call: {name, arguments, raw} | null,
                tool_error: {kind, message} | null, token_span: [start, end) | null}]
    rewards   [{name, value, weight, detail}]
    tokens    {prompt_len, ids, mask, logprobs, trainer_logprobs} | null   (null: never finished)

In an export, free-form JSON the model or a reward wrote (`tool_call.arguments`, a reward's
`detail`) stays JSON text, as stored: its shape changes from row to row, and a data set needs one
schema for every row. Logprobs are the stored float32 values, with null where the store holds NaN
(tokens the model did not generate) and where a value is not finite (JSON has no infinity).

A run is read in id order, `chunk_size` trajectories at a time with four queries per chunk (rows,
messages, rewards, token blobs of an id range), each chunk in one read transaction, so memory does
not grow with the run and a writer running beside it is seen as of some chunk boundary.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np

from core.store.store import Store, StoreError

FORMATS = ("jsonl", "parquet")
CHUNK_SIZE = 1000
"""Trajectories read (and, for Parquet, written as one row group) at a time: ~5 MB of records for
trajectories of 200 tokens and 5 messages."""

TRAJECTORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "int64"), ("run_id", "int64"), ("qidx", "int64"), ("sample", "int64"), ("step", "int64"),
    ("group_id", "int64"), ("question", "string"), ("gold_answer", "string"), ("final_answer", "string"),
    ("status", "string"), ("finish_reason", "string"), ("finish_detail", "string"), ("correct", "int64"),
    ("reward", "float64"), ("advantage", "float64"), ("turns", "int64"), ("tool_calls", "int64"),
    ("tool_errors", "int64"), ("prompt_tokens", "int64"), ("completion_tokens", "int64"),
    ("generated_tokens", "int64"), ("drift_at", "int64"), ("drift_kind", "string"), ("token_exact", "int64"),
    ("started_at", "float64"), ("finished_at", "float64"),
)
"""The `trajectories` columns a record carries, with their Arrow type (a column missing from an
older file is null)."""
RUN_COLUMNS: tuple[tuple[str, str, str], ...] = (("run_name", "name", "string"), ("run_kind", "kind", "string"),
                                                 ("model", "model", "string"))
"""(record field, `runs` column, Arrow type)."""


class ExportError(ValueError):
    """An export that cannot start (unknown format, existing output, missing folder); one line."""


@dataclass
class ExportStats:
    """What an export wrote."""

    trajectories: int
    bytes: int
    """Bytes written (the file's size; for a stream, the UTF-8 length of the lines)."""
    seconds: float
    path: Path | None
    """The output file, None for a stream."""


# ---------------------------------------------------------------------------------------- reading
def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _floats(a: np.ndarray | None) -> list[float | None] | None:
    """A float32 array as a list, None where NaN or not finite."""
    if a is None:
        return None
    values = a.astype(object)  # one vectorised assignment instead of a Python loop over the NaNs
    values[~np.isfinite(a)] = None
    return values.tolist()


def _lists(tokens: dict[str, Any]) -> dict[str, Any]:
    """A record's tokens with numpy arrays (as read) turned into JSON-ready lists."""
    return {"prompt_len": tokens["prompt_len"], "ids": tokens["ids"].tolist(), "mask": tokens["mask"].tolist(),
            "logprobs": _floats(tokens["logprobs"]), "trainer_logprobs": _floats(tokens["trainer_logprobs"])}


def _tool_call(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    call = json.loads(text)
    return {"name": call["name"], "arguments": json.dumps(call.get("arguments"), ensure_ascii=False),
            "raw": call.get("raw", "")}


def _columns(store: Store, table: str) -> set[str]:
    return {r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")}


class _Reader:
    """Reads the records of trajectory id ranges of one run (four queries per range)."""

    def __init__(self, store: Store, run_id: int):
        self.store, self.run_id = store, run_id
        have = _columns(store, "trajectories")
        self.select = ", ".join(c if c in have else f"NULL AS {c}" for c, _ in TRAJECTORY_COLUMNS)
        self.trainer = "trainer_logprobs" if "trainer_logprobs" in _columns(store, "tokens") else "NULL"
        run = store.conn.execute("SELECT name, kind, model FROM runs WHERE id=?", (run_id,)).fetchone()
        if run is None:
            raise StoreError(f"{store.path}: no run {run_id}")
        self.run_fields = dict(zip((f for f, _, _ in RUN_COLUMNS), run))

    def rows_after(self, after_id: int, limit: int) -> list[tuple]:
        return self.store.conn.execute(
            f"SELECT {self.select} FROM trajectories WHERE run_id=? AND id>? ORDER BY id LIMIT ?",
            (self.run_id, after_id, limit)).fetchall()

    def records(self, rows: list[tuple], *, arrays: bool = False) -> list[dict[str, Any]]:
        """The records of `rows` (trajectory rows of this run, in id order); with `arrays`, a
        record's token fields are the stored numpy arrays (NaN kept) instead of lists."""
        if not rows:
            return []
        lo, hi = rows[0][0], rows[-1][0]
        conn = self.store.conn
        # An id range may hold other runs' trajectories (two writers at once, a run resumed after
        # others): the subquery names this run's ids, each looked up by index, so a range spanning
        # another run's million trajectories costs nothing more.
        ours = "trajectory_id IN (SELECT id FROM trajectories WHERE run_id=? AND id BETWEEN ? AND ?)"
        args = (self.run_id, lo, hi)
        messages: dict[int, list] = {r[0]: [] for r in rows}
        for tid, turn, role, content, call, kind, message, start, end in conn.execute(
                "SELECT trajectory_id, turn, role, content, tool_call, error_kind, error_message, token_start,"
                f" token_end FROM messages WHERE {ours} ORDER BY trajectory_id, position", args):
            into = messages.get(tid)
            if into is not None:
                into.append({"turn": turn, "role": role, "content": content, "tool_call": _tool_call(call),
                             "tool_error": {"kind": kind, "message": message or ""} if kind else None,
                             "token_span": [start, end] if start is not None else None})
        rewards: dict[int, list] = {r[0]: [] for r in rows}
        for tid, name, value, weight, detail in conn.execute(
                f"SELECT trajectory_id, name, value, weight, detail FROM rewards WHERE {ours}"
                " ORDER BY trajectory_id, name", args):
            into = rewards.get(tid)
            if into is not None:
                into.append({"name": name, "value": _finite(value), "weight": _finite(weight), "detail": detail})
        tokens: dict[int, dict] = {}
        for tid, prompt_len, ids, mask, logprobs, trainer in conn.execute(
                f"SELECT trajectory_id, prompt_len, ids, mask, logprobs, {self.trainer} FROM tokens WHERE {ours}",
                args):
            if tid in messages:
                read = {"prompt_len": prompt_len, "ids": np.frombuffer(ids, dtype="<i4"),
                        "mask": np.frombuffer(mask, dtype=np.uint8), "logprobs": np.frombuffer(logprobs, dtype="<f4"),
                        "trainer_logprobs": None if trainer is None else np.frombuffer(trainer, dtype="<f4")}
                tokens[tid] = read if arrays else _lists(read)
        names = [c for c, _ in TRAJECTORY_COLUMNS]
        out = []
        for row in rows:
            record = dict(zip(names, row))
            record["reward"], record["advantage"] = _finite(record["reward"]), _finite(record["advantage"])
            record.update(self.run_fields)
            tid = record["id"]
            record["messages"] = messages[tid]
            record["rewards"] = rewards[tid]
            record["tokens"] = tokens.get(tid)
            out.append(record)
        return out


def trajectory_record(store: Store, trajectory_id: int) -> dict[str, Any]:
    """Everything stored about one trajectory, as JSON-ready data (the TUI's copy).

    The export's record (module docstring), except that a tool call's arguments and a reward's
    detail are decoded into objects, for a person to read. StoreError when there is no such
    trajectory."""
    run = store.conn.execute("SELECT run_id FROM trajectories WHERE id=?", (trajectory_id,)).fetchone()
    if run is None:
        raise StoreError(f"{store.path}: no trajectory {trajectory_id}")
    reader = _Reader(store, run[0])
    record = reader.records(store.conn.execute(
        f"SELECT {reader.select} FROM trajectories WHERE id=?", (trajectory_id,)).fetchall())[0]
    for m in record["messages"]:
        if m["tool_call"] is not None:
            m["tool_call"]["arguments"] = json.loads(m["tool_call"]["arguments"])
    for r in record["rewards"]:
        r["detail"] = json.loads(r["detail"]) if r["detail"] else {}
    return record


def iter_record_chunks(store: Store, run_id: int, *, chunk_size: int = CHUNK_SIZE, limit: int | None = None,
                       arrays: bool = False) -> Iterator[list[dict[str, Any]]]:
    """The records of run `run_id` in id order, `chunk_size` at a time (at most `limit` in all);
    `arrays`: token fields as numpy arrays (int32 ids, uint8 mask, float32 logprobs with NaN).

    Each chunk is read in one read transaction when the connection is not in one already.
    StoreError when there is no such run; ValueError when chunk_size < 1."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, not {chunk_size}")
    reader = _Reader(store, run_id)
    conn, after, left = store.conn, 0, limit
    while left is None or left > 0:
        take = chunk_size if left is None else min(chunk_size, left)
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")
        try:
            rows = reader.rows_after(after, take)
            records = reader.records(rows, arrays=arrays)
        finally:
            if own:
                conn.execute("COMMIT")
        if not records:
            return
        yield records
        after = records[-1]["id"]
        if left is not None:
            left -= len(records)
        if len(records) < take:
            return


def iter_records(store: Store, run_id: int, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """One record per trajectory of run `run_id`, in id order (arguments as iter_record_chunks)."""
    for chunk in iter_record_chunks(store, run_id, **kwargs):
        yield from chunk


# ---------------------------------------------------------------------------------------- writing
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
"""json.dumps leaves these raw, and Python's str.splitlines breaks lines on them: escaped, a line
of the file is a record for every reader."""


def jsonl_line(record: dict[str, Any]) -> str:
    """One record as one JSONL line (no newline): UTF-8 text, no NaN or infinity (ValueError)."""
    line = json.dumps(record, ensure_ascii=False, allow_nan=False)
    if "\u0085" in line or "\u2028" in line or "\u2029" in line:
        line = line.translate(_LINE_BREAKS)
    return line


def parquet_schema():
    """The Arrow schema of a Parquet export: one column per record field, nested lists and
    structs for messages, rewards and tokens (module docstring)."""
    import pyarrow as pa

    scalar = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
    message = pa.struct([
        ("turn", pa.int64()), ("role", pa.string()), ("content", pa.string()),
        ("tool_call", pa.struct([("name", pa.string()), ("arguments", pa.string()), ("raw", pa.string())])),
        ("tool_error", pa.struct([("kind", pa.string()), ("message", pa.string())])),
        ("token_span", pa.list_(pa.int64())),
    ])
    reward = pa.struct([("name", pa.string()), ("value", pa.float64()), ("weight", pa.float64()),
                        ("detail", pa.string())])
    tokens = pa.struct([("prompt_len", pa.int64()), ("ids", pa.list_(pa.int32())), ("mask", pa.list_(pa.uint8())),
                        ("logprobs", pa.list_(pa.float32())), ("trainer_logprobs", pa.list_(pa.float32()))])
    return pa.schema([*((name, scalar[t]) for name, t in TRAJECTORY_COLUMNS),
                      *((name, scalar[t]) for name, _, t in RUN_COLUMNS),
                      ("messages", pa.list_(message)), ("rewards", pa.list_(reward)), ("tokens", tokens)])


def write_jsonl(chunks: Iterator[list[dict[str, Any]]], stream: IO[str],
                progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write records as JSONL lines to a text stream; returns (records, UTF-8 bytes)."""
    n = size = 0
    for chunk in chunks:
        text = "".join(jsonl_line(r) + "\n" for r in chunk)
        stream.write(text)
        n += len(chunk)
        size += len(text.encode("utf-8")) if not text.isascii() else len(text)
        if progress:
            progress(n)
    return n, size


def write_parquet(chunks: Iterator[list[dict[str, Any]]], path: Path,
                  progress: Callable[[int], None] | None = None) -> int:
    """Write records to a Parquet file (zstd, `parquet_schema`), one row group per chunk; returns the
    records written. The chunks come from `iter_record_chunks(..., arrays=True)` (token fields as
    numpy arrays); their records lose their "tokens" key."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    others = pa.schema([f for f in schema if f.name != "tokens"])
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for chunk in chunks:
            tokens = [r.pop("tokens") for r in chunk]
            table = pa.Table.from_pylist(chunk, schema=others)
            writer.write_table(pa.Table.from_arrays([*table.columns, _token_column(tokens, schema.field("tokens").type)],
                                                    schema=schema))
            n += len(chunk)
            if progress:
                progress(n)
    return n


def _token_column(tokens: list[dict[str, Any] | None], struct_type):
    """The `tokens` struct column of a chunk, built from the stored arrays without going through
    Python lists (most of an export's values are token values): each list column is one
    concatenated numpy array with offsets; null where a trajectory has no tokens, and a logprob
    null where it is NaN or not finite (as in JSONL)."""
    import pyarrow as pa

    missing = np.array([t is None for t in tokens], dtype=bool)

    def lists(key: str, dtype: str, *, floats: bool = False):
        parts = [t[key] if t is not None and t[key] is not None else None for t in tokens]
        lengths = np.array([0 if a is None else len(a) for a in parts], dtype=np.int64)
        offsets = np.zeros(len(parts) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        present = [a for a in parts if a is not None]
        values = np.concatenate(present).astype(dtype, copy=False) if present else np.zeros(0, dtype=dtype)
        values = pa.array(values, mask=~np.isfinite(values)) if floats else pa.array(values)
        return pa.ListArray.from_arrays(pa.array(offsets), values,
                                        mask=pa.array(np.array([a is None for a in parts], dtype=bool)))

    children = [pa.array([None if t is None else t["prompt_len"] for t in tokens], type=pa.int64()),
                lists("ids", "<i4"), lists("mask", "u1"), lists("logprobs", "<f4", floats=True),
                lists("trainer_logprobs", "<f4", floats=True)]
    return pa.StructArray.from_arrays(children, fields=list(struct_type), mask=pa.array(missing))


def _partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}.partial")


def export_run(store: Store, run_id: int, fmt: str, out: str | Path | None = None, *, stream: IO[str] | None = None,
               force: bool = False, chunk_size: int = CHUNK_SIZE, limit: int | None = None,
               progress: Callable[[int], None] | None = None) -> ExportStats:
    """Write every trajectory of run `run_id` as `fmt` ("jsonl" or "parquet"), streaming.

    `out` None: JSONL lines go to `stream` (Parquet needs a file). A file is written beside `out`
    under a hidden partial name and renamed onto `out` only when complete, so an interrupted or
    killed export never leaves a half file under the final name (a failed one removes its partial
    file). An existing `out` is replaced only with `force`. `progress(n)` is called after each
    chunk with the records written so far. Raises ExportError (a ValueError) for a bad format or
    output, StoreError for an unknown run or an unreadable database."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (one of: {', '.join(FORMATS)})")
    _Reader(store, run_id)  # an unknown run is refused before any file is made
    started = time.perf_counter()
    chunks = iter_record_chunks(store, run_id, chunk_size=chunk_size, limit=limit, arrays=fmt == "parquet")
    if out is None:
        if fmt == "parquet":
            raise ExportError("a Parquet export needs an output file (--out FILE)")
        if stream is None:
            raise ExportError("an export without an output file needs a stream")
        n, size = write_jsonl(chunks, stream, progress)
        stream.flush()
        return ExportStats(n, size, time.perf_counter() - started, None)
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a folder, not a file")
    if not out.parent.is_dir():
        raise ExportError(f"{out}: no such folder {out.parent}")
    if out.exists() and not force:
        raise ExportError(f"{out}: already exists (pass --force to replace it)")
    partial = _partial_path(out)
    try:
        if fmt == "jsonl":
            with open(partial, "x", encoding="utf-8", newline="\n", buffering=1 << 20) as f:
                n, _ = write_jsonl(chunks, f, progress)
        else:
            n = write_parquet(chunks, partial, progress)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ExportStats(n, out.stat().st_size, time.perf_counter() - started, out)
