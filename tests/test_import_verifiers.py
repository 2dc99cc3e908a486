"""verifiers eval results (core.importers.verifiers): the results.jsonl + metadata.json folder
`vf-eval` writes. tests/fixtures/verifiers/{results,with_tokens} were written by verifiers 0.3.0
itself against a scripted server (tests/fixtures/verifiers/make_results.py says how)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.records import InputError
from core.importers import import_paths
from core.importers.cache import cached_import
from core.importers.detect import detect_format
from core.store import Store
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, main

FIXTURES = Path(__file__).parent / "fixtures" / "verifiers"
RESULTS = FIXTURES / "results"
TOKENS = FIXTURES / "with_tokens"


def _records(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]


def _copy(folder: Path, tmp_path: Path, name: str = "run") -> Path:
    out = tmp_path / name
    shutil.copytree(folder, out)
    return out


def test_fixtures_are_what_verifiers_writes():
    """The generated files have the writer's shape (save_utils.state_to_output / save_metadata)."""
    meta = json.loads((RESULTS / "metadata.json").read_text())
    assert meta["env_id"] == "scripted-add" and meta["model"] == "scripted/canned-1"
    assert meta["rollouts_per_example"] == 2 and "avg_metrics" in meta and "date" not in meta
    rec = _records(RESULTS)[0]
    assert {"example_id", "prompt", "completion", "reward", "metrics", "timing"} <= set(rec)
    assert all(isinstance(tc, str) for m in rec["completion"] for tc in m.get("tool_calls") or [])
    step = _records(TOKENS)[0]["trajectory"][0]
    assert {"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "completion_logprobs"} <= set(step["tokens"])


def test_results_folder_imports_as_one_eval_run(tmp_path):
    assert detect_format(RESULTS) == "verifiers"
    assert detect_format(RESULTS / "results.jsonl") == "verifiers"
    records = _records(RESULTS)
    (result,) = import_paths(tmp_path / "v.db", [RESULTS])
    run_id, name, n = result.runs[0]
    assert (name, n) == ("scripted-add", len(records)) and not result.notes
    with Store.open_readonly(tmp_path / "v.db") as store:
        run = store.run(run_id)
        assert (run["kind"], run["model"], run["status"]) == ("eval", "scripted/canned-1", "done")
        config = run["config"]
        assert config["format"] == "verifiers" and config["env_id"] == "scripted-add"
        assert config["rollouts_per_example"] == 2 and config["tools"] == ["add"]
        assert config["imported_from"] == str(RESULTS.absolute())
        rows = store.trajectory_rows(run_id, limit=100)
        assert len(rows) == len(records)
        by_example: dict[int, list] = {}
        for rec, row in zip(records, rows):
            by_example.setdefault(rec["example_id"], []).append(row)
            assert row["qidx"] == rec["example_id"]
            assert row["reward"] == pytest.approx(rec["reward"])
            assert row["gold_answer"] == rec["answer"]
            assert row["correct"] == (rec["reward"] >= 0.5)
            assert store.tokens(row["id"]) is None  # text only
            msgs = store.messages(row["id"])
            assert len(msgs) == len(rec["prompt"]) + len(rec["completion"])
            assert [m.role for m in msgs] == [m["role"] for m in rec["prompt"] + rec["completion"]]
            assert row["question"] == next(m["content"] for m in rec["prompt"] if m["role"] == "user")
            calls = [m for m in msgs if m.tool_call is not None]
            assert calls and calls[0].tool_call.name == "add" and set(calls[0].tool_call.arguments) == {"a", "b"}
            assert row["tool_calls"] == sum(len(m.get("tool_calls") or []) for m in rec["completion"])
            assert [m.turn for m in msgs][:2] == [0, 0] and msgs[-1].role == "assistant"
            assert row["final_answer"] == rec["completion"][-1]["content"]
            rewards = {r.name: r for r in store.rewards(row["id"])}
            assert rewards["reward"].weight == 1.0
            for metric, value in rec["metrics"].items():
                assert rewards[metric].value == pytest.approx(value) and rewards[metric].weight == 0.0
            assert row["started_at"] == pytest.approx(rec["timing"]["start_time"])
        for rows_of in by_example.values():  # the rollouts of one example: one group, samples 0..k-1
            assert len({r["group_id"] for r in rows_of}) == 1
            assert [r["sample"] for r in rows_of] == list(range(len(rows_of)))
        assert len({rows_of[0]["group_id"] for rows_of in by_example.values()}) == len(by_example)


def test_traces_with_tokens_are_stored_as_tokens(tmp_path):
    assert detect_format(TOKENS) == "verifiers"
    records = _records(TOKENS)
    (result,) = import_paths(tmp_path / "t.db", [TOKENS])
    run_id = result.runs[0][0]
    with Store.open_readonly(tmp_path / "t.db") as store:
        for rec, row in zip(records, store.trajectory_rows(run_id, limit=100)):
            steps = [s["tokens"] for s in rec["trajectory"]]
            seq = store.tokens(row["id"])
            assert seq is not None
            first = steps[0]
            assert seq.prompt_len == len(first["prompt_ids"])
            assert seq.ids[:len(first["prompt_ids"])] == first["prompt_ids"]
            last = steps[-1]
            assert seq.ids == last["prompt_ids"] + last["completion_ids"]  # the scripted prompts extend
            assert sum(seq.mask) == sum(sum(s["completion_mask"]) for s in steps)
            # each completion's ids sit where its mask is 1, with its logprobs
            at = len(first["prompt_ids"])
            for k, s in enumerate(steps):
                if k:
                    at = len(s["prompt_ids"])
                n = len(s["completion_ids"])
                assert seq.ids[at:at + n] == s["completion_ids"] and seq.mask[at:at + n] == s["completion_mask"]
                assert seq.logprobs[at:at + n] == pytest.approx(s["completion_logprobs"])
                assert all(math.isnan(x) for x in seq.logprobs[at - 3:at])
                assert not any(seq.mask[at - 3:at])
            # the k-th assistant message spans the k-th step's completion tokens
            assistants = [m for m in store.messages(row["id"]) if m.role == "assistant"]
            assert len(assistants) == len(steps)
            for m, s in zip(assistants, steps):
                assert seq.ids[m.token_start:m.token_end] == s["completion_ids"]
        # so the mask lint finds the trained tokens inside assistant messages (it flagged them all)
        from core.lint import lint_store

        [report] = lint_store(store, run_id, tokenizer=None)
        assert not {"trained_outside_assistant", "logprob_on_untrained"} & {f.kind for f in report.findings}


def _token_record(advantage=None, steps=None) -> dict:
    steps = steps if steps is not None else [
        {"tokens": {"prompt_ids": [1, 2, 3], "prompt_mask": [0, 0, 0], "completion_ids": [4, 5],
                    "completion_mask": [1, 1], "completion_logprobs": [-0.5, -0.25]}, "advantage": 0.75},
        {"tokens": {"prompt_ids": [1, 2, 3, 4, 5, 6, 7], "prompt_mask": [0] * 7, "completion_ids": [8],
                    "completion_mask": [0], "completion_logprobs": [-1.0]}, "advantage": None}]
    rec = {"example_id": 0, "prompt": [{"role": "user", "content": "q"}],
           "completion": [{"role": "assistant", "content": "a"}], "reward": 1.0, "trajectory": steps}
    if advantage is not None:
        rec["advantage"] = advantage
    return rec


def test_token_steps_join_and_advantage(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_token_record()) + "\n" + json.dumps({**_token_record(advantage=-2.0),
                                                                     "example_id": 1}) + "\n", encoding="utf-8")
    (result,) = import_paths(tmp_path / "a.db", [path])
    assert any("no metadata.json" in n for n in result.notes)
    with Store.open_readonly(tmp_path / "a.db") as store:
        first, second = store.trajectory_rows(result.runs[0][0])
        seq = store.tokens(first["id"])
        assert (seq.ids, seq.mask, seq.prompt_len) == ([1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 1, 1, 0, 0, 0], 3)
        assert seq.logprobs[3:5] == [-0.5, -0.25] and math.isnan(seq.logprobs[5]) and seq.logprobs[7] == -1.0
        assert first["advantage"] == 0.75 and second["advantage"] == -2.0  # the record's own wins
        assert first["correct"] is None  # no pass threshold without metadata


def test_a_step_that_does_not_extend_restarts_the_sequence(tmp_path):
    steps = [{"tokens": {"prompt_ids": [1, 2], "prompt_mask": [0, 0], "completion_ids": [3], "completion_mask": [1],
                         "completion_logprobs": [-0.1]}},
             {"tokens": {"prompt_ids": [9, 9], "prompt_mask": [0, 0], "completion_ids": [4], "completion_mask": [1],
                         "completion_logprobs": [-0.2]}}]
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_token_record(steps=steps)) + "\n", encoding="utf-8")
    (result,) = import_paths(tmp_path / "r.db", [path], fmt="verifiers")
    assert any("did not extend" in n for n in result.notes)
    with Store.open_readonly(tmp_path / "r.db") as store:
        (row,) = store.trajectory_rows(result.runs[0][0])
        seq = store.tokens(row["id"])
        assert (seq.ids, seq.mask, seq.prompt_len) == ([9, 9, 4], [0, 0, 1], 2)


def test_older_shapes_string_prompts_and_openai_tool_calls(tmp_path):
    """verifiers 0.1.x: OpenAI-style tool calls (as objects or JSON text), metrics only as top-level
    keys named in avg_metrics, `task`; a completion environment's string prompt and completion."""
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({"env_id": "old-env", "model": "m", "avg_metrics": {"fmt": 1.0},
                                                      "pass_threshold": 0.5}))
    call = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"x\"}"}}
    lines = [
        {"example_id": 3, "task": "qa", "prompt": [{"role": "user", "content": "find x"}],
         "completion": [{"role": "assistant", "content": None, "tool_calls": [call, json.dumps(call)]},
                        {"role": "tool", "content": "x is 1", "tool_call_id": "c1"},
                        {"role": "assistant", "content": [{"type": "text", "text": "1"}]}],
         "answer": "1", "reward": 0.25, "fmt": 1.0, "info": {"k": 1}, "error": None},
        {"example_id": 3, "task": "qa", "prompt": "2+2=", "completion": "4", "reward": 1.0, "fmt": 0.0,
         "error": {"error": "ValueError", "message": "tool crashed\nat line 3"}},
    ]
    (folder / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (result,) = import_paths(tmp_path / "o.db", [folder])
    with Store.open_readonly(tmp_path / "o.db") as store:
        a, b = store.trajectory_rows(result.runs[0][0])
        assert (a["qidx"], a["tool_calls"], a["turns"], a["correct"]) == (3, 2, 2, 0)
        msgs = store.messages(a["id"])
        assert msgs[1].tool_call.name == "search" and msgs[1].tool_call.arguments == {"q": "x"}
        assert msgs[1].tool_call.raw == "{\"q\": \"x\"}" and msgs[3].content == "1"
        rewards = {r.name: r for r in store.rewards(a["id"])}
        assert rewards["fmt"].value == 1.0 and rewards["reward"].detail["info"] == {"k": 1}
        assert rewards["reward"].detail["task"] == "qa"
        assert [(m.role, m.content) for m in store.messages(b["id"])] == [("user", "2+2="), ("assistant", "4")]
        assert (b["status"], b["finish_detail"]) == ("failed", "tool crashed")
        assert (b["group_id"], b["sample"], b["qidx"]) == (a["group_id"], 1, 4)  # same example, other question


def test_same_results_twice_are_skipped(tmp_path):
    db = tmp_path / "s.db"
    assert import_paths(db, [RESULTS])[0].skipped is None
    again = import_paths(db, [RESULTS / "results.jsonl"])[0]  # the file alone: the same content
    assert again.skipped and "already imported" in again.skipped and not again.runs
    with Store.open_readonly(db) as store:
        assert len(store.runs()) == 1


def test_other_formats_are_not_taken_for_verifiers(tmp_path):
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text(json.dumps({"messages": [], "prompt": [], "completion": [], "reward": 1}) + "\n")
    assert detect_format(jsonl) == "jsonl"
    verl = tmp_path / "1.jsonl"
    verl.write_text(json.dumps({"input": "x", "output": "y", "score": 1.0, "step": 1}) + "\n")
    assert detect_format(verl) == "verl"
    v1 = tmp_path / "traces.jsonl"  # verifiers 0.4's `eval` / prime-rl's rollouts: core.importers.verifiers_traces
    v1.write_text(json.dumps({"id": "e1", "env": {"id": "x"}, "task": {"type": "T", "data": {"prompt": "q"}},
                              "traces": [], "ok": False}) + "\n")
    assert detect_format(v1) == "verifiers"
    (result,) = import_paths(tmp_path / "x.db", [v1], fmt="verifiers")
    assert result.runs and any("without traces" in n for n in result.notes)
    mixed = tmp_path / "results.jsonl"  # an episode after results rows: named, not misread
    mixed.write_text(json.dumps(_records(RESULTS)[0]) + "\n" + v1.read_text())
    with pytest.raises(InputError, match="v1 episode") as info:
        import_paths(tmp_path / "y.db", [mixed], fmt="verifiers")
    assert (info.value.line, info.value.field) == (2, "traces")
    plain = tmp_path / "p.jsonl"
    plain.write_text(json.dumps({"prompt": "x", "completion": "y"}) + "\n")  # neither id nor reward
    with pytest.raises(InputError, match="cannot tell the format"):
        detect_format(plain)


@pytest.mark.parametrize("record, field", [
    ({"prompt": [], "completion": []}, "example_id"),
    ({"example_id": "zero", "prompt": [], "completion": []}, "example_id"),
    ({"example_id": 0, "completion": []}, "prompt"),
    ({"example_id": 0, "prompt": 3, "completion": []}, "prompt"),
    ({"example_id": 0, "prompt": [{"content": "x"}], "completion": []}, "prompt[0].role"),
    ({"example_id": 0, "prompt": [], "completion": [{"role": "assistant", "content": 5}]}, "completion[0].content"),
    ({"example_id": 0, "prompt": [], "completion": [{"role": "assistant", "tool_calls": ["{not json"]}]},
     "completion[0].tool_calls[0]"),
    ({"example_id": 0, "prompt": [], "completion": [{"role": "assistant", "tool_calls": [{"arguments": "{}"}]}]},
     "completion[0].tool_calls[0].name"),
    ({"example_id": 0, "prompt": [], "completion": [], "reward": "high"}, "reward"),
    ({"example_id": 0, "prompt": [], "completion": [], "metrics": {"m": "x"}}, "metrics.m"),
    ({"example_id": 0, "prompt": [], "completion": [], "trajectory": {}}, "trajectory"),
    ({"example_id": 0, "prompt": [], "completion": [], "trajectory": [
        {"tokens": {"prompt_ids": [1], "completion_ids": [2, 3], "completion_mask": [1],
                    "completion_logprobs": [0, 0]}}]}, "trajectory[0].tokens.completion_mask"),
    ({"example_id": 0, "prompt": [], "completion": [], "trajectory": [
        {"tokens": {"prompt_ids": [1, 2 ** 40], "completion_ids": [], "completion_mask": [],
                    "completion_logprobs": []}}]}, "trajectory[0].tokens.prompt_ids"),
    ({"example_id": 0, "prompt": [], "completion": [], "trajectory": [
        {"tokens": {"prompt_ids": [1], "completion_ids": [2], "completion_mask": [1],
                    "completion_logprobs": ["x"]}}]}, "trajectory[0].tokens.completion_logprobs"),
])
def test_bad_record_names_file_line_and_field(tmp_path, record, field):
    folder = _copy(RESULTS, tmp_path)
    results = folder / "results.jsonl"
    results.write_text(results.read_text() + json.dumps(record) + "\n", encoding="utf-8")
    line = len(_records(RESULTS)) + 1
    db = tmp_path / "b.db"
    with pytest.raises(InputError) as info:
        import_paths(db, [folder])
    assert (info.value.path, info.value.line, info.value.field) == (str(results), line, field)
    with Store.open_readonly(db) as store:
        assert store.runs() == []  # the good lines before it were rolled back too


def test_truncated_results_and_bad_metadata(tmp_path):
    folder = _copy(RESULTS, tmp_path)
    results = folder / "results.jsonl"
    data = results.read_bytes()
    results.write_bytes(data[:len(data) - 40])  # cut inside the last record
    with pytest.raises(InputError) as info:
        import_paths(tmp_path / "t.db", [folder])
    assert info.value.line == len(_records(RESULTS)) and info.value.path == str(results)
    results.write_bytes(data)
    (folder / "metadata.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="must be a JSON object"):
        import_paths(tmp_path / "t.db", [folder])
    (folder / "metadata.json").write_text('{"model": 3}')
    with pytest.raises(InputError) as info:
        import_paths(tmp_path / "t.db", [folder])
    assert info.value.field == "model"
    with Store.open_readonly(tmp_path / "t.db") as store:
        assert store.runs() == []


def test_empty_results_are_refused(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "results.jsonl").write_text("")
    (folder / "metadata.json").write_text("{}")
    with pytest.raises(InputError, match="no records"):
        import_paths(tmp_path / "e.db", [folder], fmt="verifiers")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=40).filter(lambda b: b"\n" not in b),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                              lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                  st.sampled_from(["example_id", "prompt", "completion", "role", "content",
                                                   "tool_calls", "name", "arguments", "function", "reward",
                                                   "metrics", "trajectory", "tokens", "prompt_ids",
                                                   "completion_ids", "completion_mask", "completion_logprobs",
                                                   "timing", "start_time", "error", "answer"]), c, max_size=5),
                              max_leaves=14).map(lambda v: json.dumps(v).encode())))
def test_any_line_imports_or_fails_cleanly(tmp_path, line):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"example_id": 0, "prompt": [], "completion": []}\n' + line + b"\n")
    db = tmp_path / "fuzz.db"
    db.unlink(missing_ok=True)
    try:
        import_paths(db, [path], fmt="verifiers")
    except InputError as exc:
        assert exc.path == str(path) and exc.line == 2, str(exc)
        with Store.open_readonly(db) as store:
            assert store.runs() == []


def test_cli_import(tmp_path, capsys):
    db = tmp_path / "cli.db"
    n = len(_records(RESULTS))
    assert main(["import", str(RESULTS), "--db", str(db)]) == EXIT_OK
    assert f"imported {n} trajectories into run 1 (scripted-add)" in capsys.readouterr().err
    assert main(["import", str(RESULTS), "--db", str(db)]) == EXIT_OK
    assert "already imported" in capsys.readouterr().err
    assert main(["import", str(TOKENS), "--db", str(db), "--format", "verifiers", "--name", "tok"]) == EXIT_OK
    assert "(tok)" in capsys.readouterr().err
    bad = _copy(RESULTS, tmp_path, "bad")
    (bad / "results.jsonl").write_text('{"example_id": 0, "prompt": [], "completion": 7}\n', encoding="utf-8")
    assert main(["import", str(bad), "--db", str(db)]) == EXIT_BAD_INPUT
    assert f"{bad / 'results.jsonl'}:1: field 'completion'" in capsys.readouterr().err


def test_open_a_results_folder_through_the_cache(tmp_path, monkeypatch):
    """`rl-inspect PATH` on a results folder: its cache database is keyed by results.jsonl's content."""
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = _copy(RESULTS, tmp_path)
    db, results = cached_import(folder)
    assert results[0].runs and results[0].runs[0][2] == len(_records(RESULTS))
    again, results = cached_import(folder)
    assert again == db and results[0].skipped
    results_file = folder / "results.jsonl"
    results_file.write_text(results_file.read_text() + results_file.read_text().splitlines()[0] + "\n")
    grown, results = cached_import(folder)  # an eval still writing: its own cache, no duplicates
    assert grown != db and results[0].runs[0][2] == len(_records(RESULTS)) + 1


def test_a_results_file_that_has_grown_replaces_its_earlier_import(tmp_path):
    # vf-eval appends to results.jsonl as groups finish: importing the same folder again later must
    # give one run holding every rollout, not a second run repeating the first ones.
    import shutil

    folder = tmp_path / "evals" / "run"
    shutil.copytree(RESULTS, folder)
    lines = (RESULTS / "results.jsonl").read_text().splitlines(keepends=True)
    (folder / "results.jsonl").write_text("".join(lines[:2]))
    db = tmp_path / "g.db"
    first = import_paths(db, [folder])[0]
    assert first.runs[0][2] == 2
    (folder / "results.jsonl").write_text("".join(lines))
    grown = import_paths(db, [folder])[0]
    assert grown.runs[0][2] == len(lines) and any("grown" in n for n in grown.notes)
    with Store.open_readonly(db) as store:
        assert [r["n_done"] for r in store.runs()] == [len(lines)]
    # A file rewritten with other content is another eval: kept beside the first, nothing replaced.
    (folder / "results.jsonl").write_text("".join(lines[1:]))
    import_paths(db, [folder])
    with Store.open_readonly(db) as store:
        assert sorted(r["n_done"] for r in store.runs()) == [len(lines) - 1, len(lines)]
