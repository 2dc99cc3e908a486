"""Inspect eval logs (core.importers.inspect_log). The logs are genuine: written by inspect_ai itself
with its mock model, offline, by tests/fixtures/inspect/make_logs.py (run once per session in a
subprocess, about 6 s), one `.eval` and one `.json` of the same task."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.records import InputError
from core.importers import import_paths
from core.importers.detect import detect_format
from core.importers.inspect_log import looks_like_head, score_correct, score_float
from core.store import Store
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, main



def _copy(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    dst = dst_dir / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


def _count(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    with Store.open(db) as store:
        return store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize("kind", ["eval", "json"])
def test_import_carries_messages_tool_errors_rewards(logs, tmp_path, kind):
    db = tmp_path / "i.db"
    [result] = import_paths(db, [logs[kind]])
    assert result.skipped is None
    [(run_id, name, n)] = result.runs
    assert (name, n) == ("adder", 6)  # 3 samples x 2 epochs
    with Store.open(db) as store:
        run = store.run(run_id)
        assert (run["kind"], run["model"], run["status"]) == ("eval", "mockllm/model", "done")
        config = run["config"] if isinstance(run["config"], dict) else json.loads(run["config"])
        assert config["format"] == "inspect" and config["task"] == "adder"
        assert config["model"] == "mockllm/model" and "task_args" in config and "model_args" in config
        assert config["eval_config"]["epochs"] == 2
        rows = store.conn.execute(
            "SELECT id, qidx, sample, question, gold_answer, final_answer, status, finish_reason, correct,"
            " reward, tool_calls, tool_errors, finish_detail FROM trajectories WHERE run_id=? ORDER BY qidx, sample",
            (run_id,)).fetchall()
        assert [(r[1], r[2]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
        good = rows[0]
        assert good[3:12] == ("What is 2+3?", "5", "The answer is 5", "done", "stop", 1, 1.0, 2, 1)
        assert rows[2][8:10] == (0, 0.0)  # target "3": match() says I
        failed = rows[4]
        assert failed[3] == "boom <b>not markup</b> [red]x[/red]"  # text kept as data
        assert failed[6] == "failed" and "scripted failure" in failed[12] and failed[9] is None

        messages = store.messages(good[0])
        assert [(m.role, m.turn) for m in messages] == [("user", 0), ("assistant", 1), ("tool", 1),
                                                        ("assistant", 2), ("tool", 2), ("assistant", 3)]
        assert messages[1].tool_call.name == "add" and messages[1].tool_call.arguments == {"x": -2, "y": 3}
        assert messages[2].tool_error.message == "negative numbers are not allowed"
        assert messages[2].tool_error.kind == "unknown"  # Inspect's ToolCallError.type for a ToolError
        assert messages[1].tool_error == messages[2].tool_error
        assert messages[3].tool_error is None and messages[4].content == "5" and messages[4].tool_error is None
        assert messages[5].content == "The answer is 5" and messages[5].tool_call is None

        rewards = {r.name: r for r in store.rewards(good[0])}
        assert set(rewards) == {"match", "shape.length"}  # shape.label is text: left out
        assert (rewards["match"].value, rewards["match"].weight) == (1.0, 1.0)
        assert rewards["match"].detail["value"] == "C"
        assert rewards["shape.length"].weight == 0.0
        assert rewards["shape.length"].value == float(len("The answer is 5"))
        assert store.tokens(good[0]) is None  # text only: Inspect logs have no token ids
    assert _count(db, "tokens") == 0
    assert any("shape.label" in note for note in result.notes)


def test_eval_and_json_logs_import_alike(logs, tmp_path):
    db = tmp_path / "both.db"
    results = import_paths(db, [logs["eval"], logs["json"]])
    ids = [r.runs[0][0] for r in results]
    with Store.open(db) as store:
        def shape(run_id):
            return [tuple(r) for r in store.conn.execute(
                "SELECT qidx, sample, question, gold_answer, final_answer, status, correct, reward, turns,"
                " tool_calls, tool_errors FROM trajectories WHERE run_id=? ORDER BY qidx, sample", (run_id,))]
        assert shape(ids[0]) == shape(ids[1])


def test_reimport_adds_nothing(logs, tmp_path, capsys):
    db = tmp_path / "r.db"
    log = _copy(logs["eval"], tmp_path)
    assert main(["import", str(log), "--db", str(db)]) == EXIT_OK
    before = (_count(db, "runs"), _count(db, "trajectories"), _count(db, "messages"), _count(db, "rewards"))
    assert before[0] == 1 and before[1] == 6
    capsys.readouterr()
    assert main(["import", str(log), "--db", str(db)]) == EXIT_OK
    assert "already imported" in capsys.readouterr().err
    renamed = _copy(logs["eval"], tmp_path, "other-name.eval")  # same content, another path
    [result] = import_paths(db, [renamed])
    assert result.skipped and "run 1" in result.skipped
    assert (_count(db, "runs"), _count(db, "trajectories"), _count(db, "messages"), _count(db, "rewards")) == before


def test_auto_detects_eval_and_inspect_json(logs, tmp_path):
    assert detect_format(logs["eval"]) == "inspect"
    assert detect_format(logs["json"]) == "inspect"
    plain = tmp_path / "records.json"  # a JSONL file named .json is still JSONL
    plain.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    assert detect_format(plain) == "jsonl"
    one_line = tmp_path / "one.jsonl"  # an Inspect log written on one line is recognised too
    one_line.write_text(json.dumps({"version": 2, "status": "success", "eval": {"task": "t"}}) + "\n")
    assert detect_format(one_line) == "inspect"
    db = tmp_path / "a.db"
    assert import_paths(db, [logs["json"]], fmt="inspect")[0].runs[0][2] == 6


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.0])
def test_truncated_eval_is_input_error_naming_the_file(logs, tmp_path, capsys, cut):
    data = logs["eval"].read_bytes()
    bad = tmp_path / "cut.eval"
    bad.write_bytes(data[:int(len(data) * cut)])
    db = tmp_path / "t.db"
    with pytest.raises(InputError) as err:
        import_paths(db, [bad])
    assert err.value.path == str(bad)
    assert "truncated" in err.value.detail  # in words, not only the zip reader's "EOCD not found"
    assert _count(db, "runs") == 0 and _count(db, "trajectories") == 0
    assert main(["import", str(bad), "--db", str(db)]) == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0]


def test_corrupt_sample_in_eval_writes_nothing(logs, tmp_path):
    """A zip whose header is fine but one sample is not valid JSON: the error comes mid-stream,
    after trajectories were handed to the store; the transaction leaves nothing."""
    import zipfile

    bad = tmp_path / "corrupt.eval"
    with zipfile.ZipFile(logs["eval"]) as src, zipfile.ZipFile(bad, "w") as dst:
        names = src.namelist()
        samples = sorted(n for n in names if n.startswith("samples/"))
        assert len(samples) == 6
        for n in names:
            data = src.read(n)
            if n == samples[-1]:
                data = data[:len(data) // 2]
            dst.writestr(n, data)
    db = tmp_path / "c.db"
    with pytest.raises(InputError) as err:
        import_paths(db, [bad])
    assert err.value.path == str(bad)
    assert _count(db, "runs") == 0 and _count(db, "trajectories") == 0 and _count(db, "messages") == 0


def test_newer_schema_version_names_the_field(logs, tmp_path):
    text = logs["json"].read_text(encoding="utf-8")
    assert text.lstrip().startswith('{\n  "version": 2,')
    newer = tmp_path / "newer.json"
    newer.write_text(text.replace('"version": 2,', '"version": 3,', 1), encoding="utf-8")
    with pytest.raises(InputError) as err:
        import_paths(tmp_path / "n.db", [newer])
    assert err.value.field == "version" and err.value.path == str(newer)


def test_not_a_log_json_names_the_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"version": 2, "status": "success", "eval": 3}', encoding="utf-8")
    with pytest.raises(InputError) as err:
        import_paths(tmp_path / "x.db", [bad], fmt="inspect")
    assert err.value.path == str(bad) and err.value.field == "eval"


def test_missing_inspect_ai_names_the_extra(logs, tmp_path, monkeypatch, capsys):
    for mod in [m for m in sys.modules if m == "inspect_ai" or m.startswith("inspect_ai.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "inspect_ai", None)  # `import inspect_ai...` raises ImportError
    jsonl = tmp_path / "first.jsonl"
    jsonl.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    db = tmp_path / "m.db"
    with pytest.raises(InputError) as err:
        import_paths(db, [jsonl, logs["eval"]])
    assert "pip install 'rl-inspect[inspect]'" in str(err.value) and str(logs["eval"]) in str(err.value)
    assert _count(db, "runs") == 0  # checked before any source is written
    assert main(["import", str(logs["json"]), "--db", str(db)]) == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "rl-inspect[inspect]" in lines[0]


# ------------------------------------------------------------------------------------ untrusted text
@given(st.binary(max_size=300))
def test_head_sniffer_never_raises(head):
    assert looks_like_head(head) in (True, False)


@given(st.text(max_size=200))
def test_head_sniffer_reads_inspect_heads(tail):
    head = ('{\n  "version": 2,\n  "status": "' + tail).encode("utf-8")
    assert looks_like_head(head)
    assert not looks_like_head(b'{"messages": []}' + tail.encode("utf-8"))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: (st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=8)


@given(_json)
def test_score_conversions_never_raise_and_agree(value):
    f = score_float(value)
    c = score_correct(value)
    assert f is None or (isinstance(f, float) and f == f and abs(f) != float("inf"))
    if c is True:
        assert f == 1.0
    if c is False:
        assert f == 0.0


def test_score_conversions_follow_inspect():
    from inspect_ai.scorer import value_to_float

    to_float = value_to_float()
    for value in ["C", "I", "P", "N", "yes", "No", "true", "3.5", 2, 0.25, True, False]:
        assert score_float(value) == to_float(value), value
    assert score_float("maybe") is None and score_float([1, 2]) is None
    assert [score_correct(v) for v in ["C", "I", "P", "N", 1, 0, 1.0, 0.5, True, "yes"]] == [
        True, False, None, None, True, False, True, None, True, None]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_eval_bytes_give_input_error(logs, tmp_path, data):
    """Any cut of a genuine log, or any bytes, named .eval: InputError naming the file, nothing written."""
    raw = logs["eval"].read_bytes()
    if data.draw(st.booleans()):
        blob = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        blob = data.draw(st.binary(max_size=2000))
    bad = tmp_path / "damaged.eval"
    bad.write_bytes(blob)
    db = tmp_path / "d.db"
    with pytest.raises(InputError) as err:
        import_paths(db, [bad])
    assert err.value.path == str(bad)
    assert _count(db, "trajectories") == 0


def test_log_that_did_not_succeed_imports_what_it_holds(logs, tmp_path):
    text = logs["json"].read_text(encoding="utf-8")
    cancelled = tmp_path / "cancelled.json"
    cancelled.write_text(text.replace('"status": "success",', '"status": "cancelled",', 1), encoding="utf-8")
    [result] = import_paths(tmp_path / "s.db", [cancelled])
    assert result.runs[0][2] == 6
    assert any("log status 'cancelled'" in note for note in result.notes)


def test_inspect_log_on_one_jsonl_line_imports(logs, tmp_path):
    record = json.loads(logs["json"].read_text(encoding="utf-8"))
    one = tmp_path / "one-line.jsonl"
    one.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert detect_format(one) == "inspect"
    [result] = import_paths(tmp_path / "o.db", [one])
    assert result.runs[0][1:] == ("adder", 6)


def test_scores_dict_headline_and_colliding_names():
    from inspect_ai.scorer import Score

    from core.importers.inspect_log import convert_scores

    scores = {"s": Score(value={"label": "text", "acc": "C"}), "s.acc": Score(value=0.5)}
    rewards, reward, correct, left_out = convert_scores(scores, "s")
    assert (reward, correct, left_out) == (1.0, True, ["s.label"])  # the first number of the headline
    assert [(r.name, r.value, r.weight) for r in rewards] == [("s.acc", 1.0, 1.0), ("s.acc#2", 0.5, 0.0)]


def test_cli_accepts_format_inspect_and_every_importer_is_a_choice(logs, tmp_path):
    """The CLI's --format choices are the importers' FORMATS (inspect was missing from them)."""
    from core.importers import FORMATS

    db = tmp_path / "forced.db"
    assert main(["import", str(logs["json"]), "--db", str(db), "--format", "inspect"]) == EXIT_OK
    assert _count(db, "trajectories") == 6
    for fmt in FORMATS:
        with pytest.raises(SystemExit) as done:
            main(["import", "--format", fmt, "--help"])
        assert done.value.code == 0


def test_an_eval_log_missing_a_sample_imports_the_others_in_order(logs, tmp_path, monkeypatch):
    """A log that did not finish names samples it lacks: the chunked reader (core.importers.
    inspect_log._eval_samples) falls back to one sample at a time for that chunk and skips the
    missing one; with chunks of 2 the order is still the header's (sample id, then epoch)."""
    from core.importers import inspect_log

    monkeypatch.setattr(inspect_log, "_CHUNK", 2)
    read_header = inspect_log._header

    def header_naming_a_missing_sample(path):
        header = read_header(path)
        ids = list(header.eval.dataset.sample_ids)
        header.eval.dataset.sample_ids = [ids[0], "not-in-the-log", *ids[1:]]
        return header

    monkeypatch.setattr(inspect_log, "_header", header_naming_a_missing_sample)
    db = tmp_path / "g.db"
    [result] = import_paths(db, [logs["eval"]])
    assert result.runs[0][2] == 6
    with Store.open(db) as store:
        order = [tuple(r) for r in store.conn.execute("SELECT qidx, sample FROM trajectories ORDER BY id")]
    assert order == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


def test_an_eval_log_central_directory_is_read_once_per_import(logs, tmp_path, monkeypatch):
    """A log's zip central directory (one entry per sample) is parsed once per import, not once
    per chunk: parsed per chunk, a 100k-sample import re-read it ~390 times and slowed from 266
    to 169 trajectories/s (benchmarks/README.md)."""
    from inspect_ai._util import async_zip

    from core.importers import inspect_log

    monkeypatch.setattr(inspect_log, "_CHUNK", 2)
    parse = async_zip._parse_central_directory
    calls = []

    async def counted(*args, **kwargs):
        calls.append(args[1])
        return await parse(*args, **kwargs)

    monkeypatch.setattr(async_zip, "_parse_central_directory", counted)
    header = inspect_log._header(logs["eval"])
    calls.clear()
    samples = list(inspect_log._samples(logs["eval"], header))
    assert [(s.id, s.epoch) for s in samples] == [(i, e) for i in header.eval.dataset.sample_ids for e in (1, 2)]
    assert len(calls) == 1
