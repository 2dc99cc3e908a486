"""The traces.jsonl that verifiers 0.4.0's own `vf-eval` CLI wrote, run end to end
(tests/fixtures/verifiers_v1/eval_cli/make_eval_cli.py says how: null harness, subprocess
runtime, a scripted stand-in chat-completions server), imported with the project's importer.
Ids, timestamps and ports in the fixture are verifiers' run-time values; nothing here depends on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.importers import import_paths
from core.importers.detect import detect_format
from core.store import Store

RUN = Path(__file__).parent / "fixtures" / "verifiers_v1" / "eval_cli" / "run"
TRACES = RUN / "traces.jsonl"


def _episodes() -> list[dict]:
    return [json.loads(x) for x in TRACES.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_fixture_is_what_vf_eval_writes():
    assert (RUN / "configs" / "resolved" / "eval.json").is_file()
    episodes = _episodes()
    assert [ep["task"]["data"]["idx"] for ep in episodes] == [0, 1]
    for ep in episodes:
        assert ep["run"]["type"] == "eval" and ep["ok"] and len(ep["traces"]) == 1
        trace = ep["traces"][0]
        assert trace["version"] == 1 and trace["verifiers"]["version"] == "0.4.0"
        assert trace["agent"]["config"]["harness"]["id"] == "null"
        assert trace["agent"]["runtime"]["type"] == "subprocess"
        assert [t["name"] for t in trace["tools"]] == ["add"]
        assert all(not n["token_ids"] for n in trace["nodes"])  # text only: an OpenAI-compatible endpoint


def test_vf_eval_traces_import_as_one_eval_run(tmp_path):
    for p in (RUN, TRACES):
        assert detect_format(p) == "verifiers"
    episodes = _episodes()
    (result,) = import_paths(tmp_path / "e.db", [RUN])
    run_id, _name, n = result.runs[0]
    assert n == len(episodes) == 2 and not result.notes
    with Store.open_readonly(tmp_path / "e.db") as store:
        run = store.run(run_id)
        assert (run["kind"], run["model"], run["status"]) == ("eval", "scripted/canned-1", "done")
        assert run["config"]["format"] == "verifiers" and run["config"]["env_id"] == "scripted-add-cli"
        rows = store.trajectory_rows(run_id, limit=100)
        assert len(rows) == 2
        for ep, row in zip(episodes, rows):
            trace = ep["traces"][0]
            nodes = trace["nodes"]
            assert [x.get("parent") for x in nodes] == [None, *range(len(nodes) - 1)]
            data = trace["task"]["data"]
            assert row["qidx"] == data["idx"] and row["question"] == data["prompt"]
            msgs = store.messages(row["id"])
            assert [(m.role, m.content) for m in msgs] == [
                (x["message"]["role"], x["message"].get("content") or "") for x in nodes]
            assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
            assert [m.turn for m in msgs] == [0, 0, 1, 1, 2]
            saved = nodes[2]["message"]["tool_calls"][0]
            call = msgs[2].tool_call
            assert call.name == saved["name"] == "add"
            assert call.arguments == json.loads(saved["arguments"]) == {"a": data["a"], "b": data["b"]}
            assert msgs[3].content == nodes[3]["message"]["content"] == str(data["a"] + data["b"])
            assert (row["tool_calls"], row["turns"]) == (1, 2)
            assert row["final_answer"] == nodes[-1]["message"]["content"]
            expected = sum(r["score"] * r["weight"] for r in trace["rewards"].values())
            assert row["reward"] == pytest.approx(expected)
            assert row["correct"] == {1.0: 1, 0.0: 0}[expected]
            rewards = {r.name: r for r in store.rewards(row["id"])}
            assert set(rewards) == set(trace["rewards"])
            assert rewards["correct"].value == pytest.approx(trace["rewards"]["correct"]["score"])
            assert rewards["correct"].weight == trace["rewards"]["correct"]["weight"] == 1.0
            assert row["status"] == "done" and row["finish_reason"] == trace["stop_condition"]
            assert store.tokens(row["id"]) is None  # no token ids in the traces
        # the stand-in answers 2 + 3 right and 10 + 4 one too high
        assert [r["reward"] for r in rows] == [1.0, 0.0]
