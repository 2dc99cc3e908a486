"""`rl-inspect export`: every trajectory of a run as JSONL or Parquet, read back and compared with
the store field by field (through Store's own readers, not the export's), plus the file rules."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.rollout.tokens import TokenSequence
from core.store import FinishedTrajectory, Store, TrajectoryOutcome
from core.store.export import (ExportError, export_run, iter_record_chunks, jsonl_line, trajectory_record)
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, main
from tests.hostile_fixtures import PAYLOAD

HOSTILE = PAYLOAD + " \u2028ls\u2029ps\x85nel \ud7ff \U0010ffff \"quote\" \\ back"
"""Markup, escapes, bidi, wide text and every character Python's str.splitlines breaks on."""


def _tokens(n: int, seed: int, trainer: bool = False) -> TokenSequence:
    rng = np.random.default_rng(seed)
    seq = TokenSequence()
    seq.add_prompt(rng.integers(0, 50_000, 5).tolist())
    seq.add_generated(rng.integers(0, 50_000, n).tolist(), (-rng.random(n)).tolist())
    seq.add_scaffold([7, 8])
    seq.add_generated([9], [float("-inf")])  # not finite: null in an export
    if trainer:
        seq.trainer_logprobs = [math.nan] * 5 + (-rng.random(len(seq.ids) - 5)).tolist()
    return seq


def _item(i: int, *, tokens: bool = True, status: str = "done") -> FinishedTrajectory:
    q = Question(f"q{i}", f"question {i} {HOSTILE}", f"gold {i}")
    call = ToolCall("search_corpus", {"query": f"x{i} {HOSTILE}", "n": i, "nested": [1, {"a": None}]}, '{"raw": 1}')
    messages = [
        Message("system", "sys " + HOSTILE, 0),
        Message("user", q.question, 0),
        Message("assistant", "call " + HOSTILE, 1, tool_call=call, token_start=5, token_end=10),
        Message("tool", "result", 1, tool_error=ToolError("search_failed", HOSTILE) if i % 2 else None),
        Message("assistant", f"answer {i}", 2, token_start=12, token_end=13),
    ]
    rewards = [RewardResult("correctness", float(i % 2), 1.0, {"judge": HOSTILE, "n": i}),
               RewardResult("formatting", 0.5, 0.25, {})]
    out = TrajectoryOutcome(status=status, finish_reason="answered" if tokens else None,
                            final_answer=f"answer {i} {HOSTILE}", turns=2, tool_calls=1, tool_errors=i % 2,
                            tokens=_tokens(5 + i, i) if tokens else None, rewards=rewards if tokens else [],
                            reward=0.5 * i if tokens else None, correct=None if i % 3 == 0 else bool(i % 2),
                            advantage=0.1 * i, drift_at=3 if i == 1 else None,
                            drift_kind="stop_token" if i == 1 else None)
    return FinishedTrajectory(qidx=i, question=q, messages=messages, outcome=out, sample=i % 2, step=i // 2,
                              group_id=i // 2, started_at=1000.0 + i, finished_at=2000.0 + i)


@pytest.fixture
def db(tmp_path) -> Path:
    """Run 1 of 7 trajectories (one interrupted without tokens, one with trainer logprobs) whose ids
    interleave with run 2's, so an id range of run 1 also holds run 2's rows."""
    path = tmp_path / "runs.db"
    with Store.open(path) as store:
        r1 = store.create_run("train", "run " + HOSTILE, "model " + HOSTILE, {}, n_planned=7)
        r2 = store.create_run("eval", "other", "m", {}, n_planned=3)
        for i in range(7):
            store.bulk_write(r1, [_item(i, tokens=i != 4, status="interrupted" if i == 4 else "done")])
            if i < 3:
                store.bulk_write(r2, [_item(100 + i)])
        first = store.trajectory_rows(r1, limit=1)[0]["id"]
        seq = store.tokens(first)
        store.set_trainer_logprobs(first, [math.nan] * 5 + [-0.5] * (len(seq.ids) - 5))
        store.finish_run(r1, "done")
        store.finish_run(r2, "done")
    return path


def _floats_or_none(values):
    return None if values is None else [None if not math.isfinite(v) else float(np.float32(v)) for v in values]


def _expected(store: Store, tid: int) -> dict:
    """A record built from Store's readers (independent of core.store.export)."""
    row = store.trajectory(tid)
    run = store.run(row["run_id"])
    seq = store.tokens(tid)
    messages = []
    for m in store.messages(tid):
        call = m.tool_call
        messages.append({
            "turn": m.turn, "role": m.role, "content": m.content,
            "tool_call": None if call is None else {"name": call.name, "arguments": call.arguments, "raw": call.raw},
            "tool_error": m.tool_error.to_dict() if m.tool_error else None,
            "token_span": [m.token_start, m.token_end] if m.token_start is not None else None})
    return {**row, "run_name": run["name"], "run_kind": run["kind"], "model": run["model"], "messages": messages,
            "rewards": sorted(([r.name, r.value, r.weight, r.detail] for r in store.rewards(tid))),
            "tokens": None if seq is None else {
                "prompt_len": seq.prompt_len, "ids": seq.ids, "mask": seq.mask,
                "logprobs": _floats_or_none(seq.logprobs), "trainer_logprobs": _floats_or_none(seq.trainer_logprobs)}}


def _normalised(record: dict) -> dict:
    """An exported record with its JSON-text fields decoded and float32 lists as floats."""
    record = dict(record)
    record["messages"] = [dict(m) for m in record["messages"]]
    for m in record["messages"]:
        if m["tool_call"] is not None:
            m["tool_call"] = {**m["tool_call"], "arguments": json.loads(m["tool_call"]["arguments"])}
    record["rewards"] = sorted([r["name"], r["value"], r["weight"], json.loads(r["detail"]) if r["detail"] else {}]
                               for r in record["rewards"])
    if record["tokens"] is not None:
        t = dict(record["tokens"])
        for key in ("logprobs", "trainer_logprobs"):
            t[key] = _floats_or_none([math.nan if v is None else v for v in t[key]]) if t[key] is not None else None
        t["ids"], t["mask"] = list(t["ids"]), list(t["mask"])
        record["tokens"] = t
    return record


def _check_against_store(db: Path, records: list[dict]) -> None:
    with Store.open_readonly(db) as store:
        ids = [r["id"] for r in store.trajectory_rows(1, limit=100)]
        assert [r["id"] for r in records] == ids and len(ids) == 7
        for record in records:
            expected = _expected(store, record["id"])
            got = _normalised(record)
            assert set(got) == set(expected), set(got) ^ set(expected)
            for key in expected:
                assert got[key] == expected[key], key


@pytest.mark.parametrize("chunk_size", [1, 3, 1000])
def test_jsonl_round_trip_equals_the_store(db, tmp_path, chunk_size):
    out = tmp_path / "run1.jsonl"
    with Store.open_readonly(db) as store:
        stats = export_run(store, 1, "jsonl", out, chunk_size=chunk_size)
    assert stats.trajectories == 7 and stats.bytes == out.stat().st_size
    text = out.read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 8
    assert len(text.splitlines()) == 7, "a separator inside a record must be escaped"
    records = [json.loads(line) for line in lines[:-1]]
    _check_against_store(db, records)
    interrupted = [r for r in records if r["status"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["tokens"] is None and interrupted[0]["rewards"] == []
    assert records[0]["tokens"]["logprobs"][:5] == [None] * 5  # NaN on the prompt
    assert records[0]["tokens"]["logprobs"][-1] is None  # -inf
    assert records[0]["tokens"]["trainer_logprobs"][5] == -0.5
    assert records[1]["tokens"]["trainer_logprobs"] is None
    assert {r["correct"] for r in records} == {None, 0, 1}


def test_parquet_round_trip_equals_the_store(db, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "run1.parquet"
    with Store.open_readonly(db) as store:
        stats = export_run(store, 1, "parquet", out, chunk_size=3)
    assert stats.trajectories == 7
    f = pq.ParquetFile(out)
    assert f.metadata.num_row_groups == 3  # one per chunk: memory stays flat
    records = f.read().to_pylist()
    _check_against_store(db, records)
    assert f.schema_arrow.field("tokens").type.field("ids").type.value_type.bit_width == 32


def test_both_formats_hold_the_same_records(db, tmp_path):
    import pyarrow.parquet as pq

    with Store.open_readonly(db) as store:
        export_run(store, 1, "jsonl", tmp_path / "a.jsonl")
        export_run(store, 1, "parquet", tmp_path / "a.parquet")
    from_json = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    from_parquet = pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert [_normalised(r) for r in from_json] == [_normalised(r) for r in from_parquet]


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_datasets_loads_the_export(db, tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    out = tmp_path / f"run1.{'jsonl' if fmt == 'json' else 'parquet'}"
    with Store.open_readonly(db) as store:
        export_run(store, 1, "jsonl" if fmt == "json" else "parquet", out)
    ds = datasets.load_dataset(fmt, data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 7
    _check_against_store(db, [ds[i] for i in range(len(ds))])


def test_the_tui_record_is_the_export_record_decoded(db):
    with Store.open_readonly(db) as store:
        exported = next(iter_record_chunks(store, 1))
        for record in exported:
            copy = trajectory_record(store, record["id"])
            rewards = sorted([r["name"], r["value"], r["weight"], r["detail"]] for r in copy["rewards"])
            assert _normalised(record) == {**copy, "rewards": rewards}
            json.dumps(copy, allow_nan=False)  # JSON-ready


def test_limit_and_an_empty_run(db, tmp_path):
    with Store.open(db) as store:
        empty = store.create_run("eval", "empty", "m", {})
        store.finish_run(empty, "done")
    with Store.open_readonly(db) as store:
        assert export_run(store, 1, "jsonl", tmp_path / "a.jsonl", limit=2, chunk_size=1).trajectories == 2
        assert export_run(store, empty, "parquet", tmp_path / "e.parquet").trajectories == 0
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 2


def test_jsonl_line_escapes_line_separators_and_refuses_nan():
    line = jsonl_line({"t": "a\u2028b\u2029c\x85d\ne"})
    assert len(line.splitlines()) == 1 and json.loads(line) == {"t": "a\u2028b\u2029c\x85d\ne"}
    with pytest.raises(ValueError):
        jsonl_line({"x": math.nan})


# ----------------------------------------------------------------------------- files and failures
def test_an_existing_file_is_kept_unless_force(db, tmp_path):
    out = tmp_path / "x.jsonl"
    out.write_text("keep me")
    with Store.open_readonly(db) as store:
        with pytest.raises(ExportError, match="already exists"):
            export_run(store, 1, "jsonl", out)
        assert out.read_text() == "keep me"
        export_run(store, 1, "jsonl", out, force=True)
    assert len(out.read_text().splitlines()) == 7


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("runs.db"))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_failed_export_leaves_no_file(db, tmp_path, fmt):
    out = tmp_path / f"x.{fmt}"
    seen = []

    def progress(n):
        seen.append(_outputs(tmp_path))
        raise KeyboardInterrupt

    with Store.open_readonly(db) as store:
        with pytest.raises(KeyboardInterrupt):
            export_run(store, 1, fmt, out, chunk_size=2, progress=progress)
    assert seen == [[f".x.{fmt}.{os.getpid()}.partial"]]  # written under a hidden name
    assert _outputs(tmp_path) == []  # ... and removed


def test_parquet_needs_a_file_and_formats_are_checked(db):
    with Store.open_readonly(db) as store:
        with pytest.raises(ExportError, match="output file"):
            export_run(store, 1, "parquet", None)
        with pytest.raises(ExportError, match="unknown export format"):
            export_run(store, 1, "csv", None)


# ----------------------------------------------------------------------------- the command
def test_cli_jsonl_to_stdout(db, capsys):
    assert main(["export", str(db), "--run", "1"]) == EXIT_OK
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.split("\n")[:-1]]
    _check_against_store(db, records)
    assert captured.err.startswith("rl-inspect: exported 7 trajectories of run 1 as jsonl to stdout")


def test_cli_parquet_file_format_from_suffix(db, tmp_path, capsys):
    import pyarrow.parquet as pq

    out = tmp_path / "r.parquet"
    assert main(["export", str(db), "--run", "1", "--out", str(out)]) == EXIT_OK
    _check_against_store(db, pq.read_table(out).to_pylist())
    assert "as parquet to" in capsys.readouterr().err
    assert main(["export", str(db), "--run", "1", "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert main(["export", str(db), "--run", "1", "--out", str(out), "--force", "--limit", "3"]) == EXIT_OK
    assert pq.read_metadata(out).num_rows == 3


@pytest.mark.parametrize("argv, says", [
    (["--run", "9"], "no run 9"),
    (["--run", "1", "--format", "parquet"], "needs an output file"),
    (["--run", "1", "--out", "/nonexistent-folder/x.jsonl"], "no such folder"),
])
def test_cli_bad_input_is_one_line_and_exit_2(db, capsys, argv, says):
    assert main(["export", str(db), *argv]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("rl-inspect: ") and says in captured.err


def test_cli_missing_database(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.db"), "--run", "1"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such database" in err
    assert not (tmp_path / "nope.db").exists()


@settings(max_examples=200, deadline=None)
@given(st.text(), st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5))
def test_any_text_is_one_jsonl_line_that_reads_back(text, values):
    record = {"content": text, "values": values}
    line = jsonl_line(record)
    assert len(line.splitlines()) == 1 and "\n" not in line
    assert json.loads(line) == record
    line.encode("utf-8")  # writable as UTF-8


def test_an_older_file_exports_read_only_with_the_new_columns_null(tmp_path):
    import pyarrow.parquet as pq

    from tests.test_store_migration import _v1_database, _v2_database_with_tokens

    for make in (_v1_database, _v2_database_with_tokens):
        db = tmp_path / f"{make.__name__}.db"
        make(db)
        before = db.read_bytes()
        with Store.open_readonly(db) as store:
            export_run(store, 1, "parquet", tmp_path / f"{make.__name__}.parquet")
        assert db.read_bytes() == before
        (record,) = pq.read_table(tmp_path / f"{make.__name__}.parquet").to_pylist()
        assert record["id"] == 1 and record["drift_kind"] is None and record["finish_detail"] is None
        if record["tokens"] is not None:
            assert record["tokens"]["ids"] == [1, 2, 3, 4] and record["tokens"]["trainer_logprobs"] is None
            assert record["tokens"]["logprobs"] == [None, None, -0.5, -1.0]
