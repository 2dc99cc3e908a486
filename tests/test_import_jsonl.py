"""`rl-inspect import` of the documented JSONL (core.importers.jsonl): an export imported into a
fresh database exports again to the same records; minimal records; idempotence; bad lines."""

from __future__ import annotations

import io
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.records import InputError
from core.importers import import_paths
from core.importers.detect import detect_format
from core.store import Store
from core.store.export import export_run, iter_records
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, main
from tests import tui_fixtures


def _export(db, run_id) -> list[dict]:
    with Store.open_readonly(db) as store:
        return list(iter_records(store, run_id))


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("id", "run_id")}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    db = tui_fixtures.build(folder / "src.db")
    with Store.open(db) as store:  # one trajectory with trainer logprobs and token_exact 0
        tid = store.conn.execute("SELECT id FROM trajectories t JOIN tokens k ON k.trajectory_id=t.id"
                                 " WHERE run_id=2 ORDER BY id LIMIT 1").fetchone()[0]
        n = store.conn.execute("SELECT length(mask) FROM tokens WHERE trajectory_id=?", (tid,)).fetchone()[0]
        store.set_trainer_logprobs(tid, [math.nan] * 40 + [-0.5] * (n - 40))
        store.conn.execute("UPDATE trajectories SET token_exact=0 WHERE id=?", (tid,))
    files = {}
    with Store.open_readonly(db) as store:
        for run_id in (1, 2):
            out = folder / f"run{run_id}.jsonl"
            export_run(store, run_id, "jsonl", out)
            files[run_id] = out
    return db, files


def test_round_trip_keeps_every_field(source, tmp_path):
    db, files = source
    target = tmp_path / "imported.db"
    results = import_paths(target, [files[1], files[2]])
    assert [len(r.runs) for r in results] == [1, 1]
    for run_id, result in zip((1, 2), results):
        new_id, name, n = result.runs[0]
        original = _export(db, run_id)
        again = _export(target, new_id)
        assert n == len(original) == len(again)
        assert [_comparable(r) for r in again] == [_comparable(r) for r in original]
    with Store.open_readonly(target) as store:
        runs = {r["id"]: r for r in store.runs()}
        assert all(r["status"] == "done" for r in runs.values())
        assert runs[2]["kind"] == "train" and runs[1]["name"] == "demo-eval"
        assert json.loads(store.conn.execute("SELECT config FROM runs WHERE id=2").fetchone()[0])["format"] == "jsonl"
        # the counters are what the source run's are
        with Store.open_readonly(db) as src:
            for column in ("n_done", "n_correct", "n_judged", "n_with_tool_error", "generated_tokens"):
                assert runs[1][column] == src.run(1)[column], column
        assert store.tokens(store.conn.execute("SELECT MIN(id) FROM trajectories WHERE run_id=2 AND "
                                               "id IN (SELECT trajectory_id FROM tokens)").fetchone()[0]) is not None


def test_same_file_twice_is_skipped(source, tmp_path):
    _, files = source
    target = tmp_path / "t.db"
    assert import_paths(target, [files[1]])[0].skipped is None
    again = import_paths(target, [files[1]])[0]
    assert again.skipped and "already imported" in again.skipped and not again.runs
    with Store.open_readonly(target) as store:
        assert len(store.runs()) == 1


def test_minimal_records(tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
         "tokens": {"ids": [1, 2, 3, 4], "mask": [0, 0, 1, 1], "logprobs": [None, None, -0.1, -0.2]},
         "reward": 1.0, "step": 3, "group_id": 0, "advantage": 0.5, "answer": "4"},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": [{"type": "text", "text": "five"}],
                       "tool_calls": [{"id": "c1", "type": "function",
                                       "function": {"name": "calc", "arguments": "{\"x\": 2}"}}]},
                      {"role": "tool", "content": "4"}, {"role": "assistant", "content": "5"}],
         "rewards": {"correct": 0.0, "format": 1.0}, "step": 3, "group_id": 0, "correct": False},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    assert detect_format(path) == "jsonl"
    (result,) = import_paths(tmp_path / "m.db", [path], name="mine")
    run_id, name, n = result.runs[0]
    assert (name, n) == ("mine", 2)
    with Store.open_readonly(tmp_path / "m.db") as store:
        run = store.run(run_id)
        assert (run["kind"], run["model"], run["status"]) == ("train", "unknown", "done")
        first, second = store.trajectory_rows(run_id)
        assert (first["question"], first["gold_answer"], first["final_answer"]) == ("2+2?", "4", "4")
        assert (first["reward"], first["advantage"], first["step"], first["group_id"]) == (1.0, 0.5, 3, 0)
        seq = store.tokens(first["id"])
        assert (seq.ids, seq.mask, seq.prompt_len) == ([1, 2, 3, 4], [0, 0, 1, 1], 2)
        assert math.isnan(seq.logprobs[0]) and seq.logprobs[2] == pytest.approx(-0.1)
        assert [r.name for r in store.rewards(first["id"])] == ["reward"]
        assert store.tokens(second["id"]) is None
        assert (second["reward"], second["correct"], second["tool_calls"], second["turns"]) == (1.0, 0, 1, 2)
        msgs = store.messages(second["id"])
        assert [m.turn for m in msgs] == [0, 0, 1, 1, 2]
        assert msgs[2].content == "five" and msgs[2].tool_call.name == "calc"
        assert msgs[2].tool_call.arguments == {"x": 2}


@pytest.mark.parametrize("record, field", [
    ({}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"messages": [], "tokens": {"ids": [1, 2], "mask": [0]}}, "tokens.mask"),
    ({"messages": [], "tokens": {"ids": [1, 2 ** 40], "mask": [0, 1]}}, "tokens.ids"),
    ({"messages": [], "tokens": {"ids": [1, 2], "mask": [0, 2]}}, "tokens.mask"),
    ({"messages": [], "tokens": {"ids": [1], "mask": [1], "logprobs": ["x"]}}, "tokens.logprobs"),
    ({"messages": [], "reward": "high"}, "reward"),
    ({"messages": [], "step": 1.5}, "step"),
    ({"messages": [], "correct": "yes"}, "correct"),
    ({"messages": [], "run_kind": "chat"}, "run_kind"),
    ({"messages": [], "rewards": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]}, "rewards[1].name"),
])
def test_bad_record_names_file_line_and_field(tmp_path, record, field):
    path = tmp_path / "bad.jsonl"
    good = {"messages": [{"role": "user", "content": "ok"}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    db = tmp_path / "b.db"
    with pytest.raises(InputError) as info:
        import_paths(db, [path], fmt="jsonl")
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)
    with Store.open_readonly(db) as store:
        assert store.runs() == []  # the good first line was rolled back too


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=40).filter(lambda b: b"\n" not in b),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                              lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                  st.sampled_from(["messages", "role", "content", "tokens", "ids", "mask", "reward",
                                                   "rewards", "step", "turn", "name", "value"]), c, max_size=4),
                              max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_any_line_imports_or_fails_cleanly(tmp_path, line):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b'{"messages": []}\n' + line + b"\n")
    db = tmp_path / "fuzz.db"
    db.unlink(missing_ok=True)
    try:
        import_paths(db, [path], fmt="jsonl")
    except InputError as exc:
        assert exc.path == str(path) and exc.line in (2, None), str(exc)
        with Store.open_readonly(db) as store:
            assert store.runs() == []


def test_cli_import(source, tmp_path, capsys):
    _, files = source
    db = tmp_path / "cli.db"
    assert main(["import", str(files[1]), "--db", str(db)]) == EXIT_OK
    assert "imported 30 trajectories" in capsys.readouterr().err
    assert main(["import", str(files[1]), "--db", str(db)]) == EXIT_OK
    assert "already imported" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [}\n', encoding="utf-8")
    assert main(["import", str(bad), "--db", str(db)]) == EXIT_BAD_INPUT
    assert f"{bad}:1" in capsys.readouterr().err
    unknown = tmp_path / "other.jsonl"
    unknown.write_text('{"prompt": "x"}\n', encoding="utf-8")
    assert main(["import", str(unknown), "--db", str(db)]) == EXIT_BAD_INPUT
    assert "cannot tell the format" in capsys.readouterr().err


def test_export_stream_imports(source, tmp_path):
    """The stream form of the export (stdout) is the same format."""
    db, _ = source
    buf = io.StringIO()
    with Store.open_readonly(db) as store:
        export_run(store, 2, "jsonl", stream=buf)
    path = tmp_path / "s.jsonl"
    path.write_text(buf.getvalue(), encoding="utf-8")
    (result,) = import_paths(tmp_path / "s.db", [path])
    assert result.runs[0][2] == 8


def test_a_line_that_is_not_json_names_where_in_the_line(tmp_path):
    """json's message alone ("Unterminated string starting at") ends where its position was."""
    path = tmp_path / "cut.jsonl"
    path.write_text('{"messages": []}\n{"messages": [{"role": "user", "content": "abc\n', encoding="utf-8")
    with pytest.raises(InputError) as err:
        import_paths(tmp_path / "c.db", [path], fmt="jsonl")
    assert err.value.line == 2 and "at column 47" in err.value.detail
