"""verifiers v1 traces (core.importers.verifiers_traces): the traces.jsonl of verifiers >= 0.4's
`eval` and prime-rl's rollouts/step_N/train/effective/traces.jsonl. tests/fixtures/verifiers_v1/ was
written by verifiers 0.4.0's own v1 code (tests/fixtures/verifiers_v1/make_traces.py says how)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.data.records import InputError
from core.importers import import_paths
from core.importers.cache import cached_import
from core.importers.detect import detect_format
from core.store import Store
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, main

FIXTURES = Path(__file__).parent / "fixtures" / "verifiers_v1"
EVAL = FIXTURES / "eval"
EVAL_FILE = EVAL / "traces.jsonl"
PRIME = FIXTURES / "prime_rl"
STEP = "rollouts/step_{}/train/effective/traces.jsonl"


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _branch(trace: dict) -> list[dict]:
    """The nodes of a single-branch trace (each node's parent is the one before)."""
    nodes = trace["nodes"]
    assert [n.get("parent") for n in nodes] == [None, *range(len(nodes) - 1)]
    return nodes


def test_fixtures_are_what_verifiers_writes():
    ep = _records(EVAL_FILE)[0]
    assert {"id", "env", "task", "run", "ok", "traces"} <= set(ep) and ep["run"]["type"] == "eval"
    trace = ep["traces"][0]
    assert trace["version"] == 1 and trace["verifiers"]["version"].startswith("0.4")
    assert all(not n["token_ids"] for n in trace["nodes"])  # text only: a plain OpenAI endpoint
    step = _records(PRIME / STEP.format(1))[0]
    assert step["run"]["work"] == {"type": "train", "step": 1} and "id" in step["group"]
    nodes = step["traces"][0]["nodes"]
    assert any(n.get("advantages") for n in nodes) and all(len(n["mask"]) == len(n["token_ids"]) for n in nodes)
    assert not any(n.get("advantages") for x in _records(PRIME / "rollouts/step_1/train/all/traces.jsonl")
                   for n in x["traces"][0]["nodes"])


def test_eval_traces_import_as_one_eval_run(tmp_path):
    for p in (EVAL, EVAL_FILE):
        assert detect_format(p) == "verifiers"
    episodes = _records(EVAL_FILE)
    (result,) = import_paths(tmp_path / "e.db", [EVAL])
    run_id, name, n = result.runs[0]
    assert (name, n) == ("scripted-add--canned", len(episodes)) and not result.notes
    with Store.open_readonly(tmp_path / "e.db") as store:
        run = store.run(run_id)
        assert (run["kind"], run["model"], run["status"]) == ("eval", "scripted/canned-1", "done")
        assert run["config"]["format"] == "verifiers" and run["config"]["env_id"] == "scripted-add"
        assert run["config"]["imported_from"] == str(EVAL.absolute())
        rows = store.trajectory_rows(run_id, limit=100)
        by_task: dict[int, list] = {}
        for ep, row in zip(episodes, rows):
            trace = ep["traces"][0]
            nodes = _branch(trace)
            data = trace["task"]["data"]
            by_task.setdefault(data["idx"], []).append(row)
            assert row["qidx"] == data["idx"] and row["question"] == data["prompt"]
            assert row["gold_answer"] == data["answer"]
            expected = sum(r["score"] * r["weight"] for r in trace["rewards"].values())
            # solved when the reward is exactly 1, unsolved when exactly 0 (prime-rl's solve rates)
            assert row["reward"] == pytest.approx(expected) and row["correct"] == {1.0: 1, 0.0: 0}[expected]
            assert (row["status"], row["finish_reason"]) == ("done", "final_answer")
            assert row["advantage"] is None and store.tokens(row["id"]) is None
            msgs = store.messages(row["id"])
            assert [(m.role, m.content) for m in msgs] == [(x["message"]["role"], x["message"].get("content") or "")
                                                           for x in nodes]
            assert [m.turn for m in msgs] == [0, 0, 1, 1, 2]
            call, saved = msgs[2].tool_call, nodes[2]["message"]["tool_calls"][0]
            assert call.name == "add" and call.arguments == json.loads(saved["arguments"])
            assert (row["tool_calls"], row["turns"]) == (1, 2)
            assert row["final_answer"] == nodes[-1]["message"]["content"]
            rewards = {r.name: r for r in store.rewards(row["id"])}
            assert rewards["correct"].weight == 1.0 and rewards["correct"].detail["episode"] == ep["id"]
            for metric, value in trace["metrics"].items():
                assert rewards[metric].value == pytest.approx(value) and rewards[metric].weight == 0.0
            assert row["started_at"] == pytest.approx(trace["timing"]["start"])
        for rows_of in by_task.values():  # the rollouts of one task: one group, samples 0..k-1
            assert len({r["group_id"] for r in rows_of}) == 1
            assert [r["sample"] for r in rows_of] == list(range(len(rows_of)))
        assert len({rows_of[0]["group_id"] for rows_of in by_task.values()}) == len(by_task)


def test_prime_rl_folder_is_a_train_run_with_tokens(tmp_path):
    for p in (PRIME, PRIME / "rollouts"):
        assert detect_format(p) == "verifiers"
    (result,) = import_paths(tmp_path / "p.db", [PRIME])
    run_id, name, n = result.runs[0]
    steps = {s: _records(PRIME / STEP.format(s)) for s in (1, 2)}
    assert (name, n) == ("add-grpo", sum(map(len, steps.values())))
    assert any("`all` subset" in x for x in result.notes)
    with Store.open_readonly(tmp_path / "p.db") as store:
        run = store.run(run_id)
        assert (run["kind"], run["model"]) == ("train", "scripted/canned-1")
        assert run["config"]["layout"] == "prime-rl" and set(run["config"]["files"]) >= {
            STEP.format(s).removeprefix("rollouts/") for s in (1, 2)}
        rows = store.trajectory_rows(run_id, limit=100)
        episodes = [(s, ep) for s in (1, 2) for ep in steps[s]]
        assert [r["step"] for r in rows] == [s for s, _ in episodes]
        groups = {}
        for (step, ep), row in zip(episodes, rows):
            groups.setdefault((step, ep["group"]["id"]), set()).add(row["group_id"])
            nodes = _branch(ep["traces"][0])
            seq = store.tokens(row["id"])
            assert seq.ids == [t for x in nodes for t in x["token_ids"]]
            assert seq.mask == [int(b) for x in nodes for b in x["mask"]]
            assert seq.prompt_len == seq.mask.index(1)
            sampled_lp = [lp for x in nodes for lp in x["logprobs"]]
            assert [lp for lp, b in zip(seq.logprobs, seq.mask) if b] == pytest.approx(sampled_lp)
            assert all(math.isnan(lp) for lp, b in zip(seq.logprobs, seq.mask) if not b)
            adv = [a for x in nodes for a in x.get("advantages") or []]
            assert row["advantage"] == pytest.approx(sum(adv) / len(adv))
            msgs = store.messages(row["id"])
            at = 0
            for m, x in zip(msgs, nodes):
                # A message's span is its node's; a sampled node's starts at its first sampled token,
                # as this project's own spans do (the generation prompt before it is the template's).
                first = x["mask"].index(True) if x["sampled"] and True in x["mask"] else 0
                assert (m.token_start, m.token_end) == (at + first, at + len(x["token_ids"]))
                at += len(x["token_ids"])
        assert all(len(g) == 1 for g in groups.values()) and len({min(g) for g in groups.values()}) == len(groups)
        assert {s["step"] for s in store.train_steps(run_id)} == {1, 2}
        # The mask lint then finds no generated token left untrained inside an assistant message.
        from core.lint import lint_store

        [report] = lint_store(store, run_id, tokenizer=None)
        assert "generated_untrained" not in {f.kind for f in report.findings}
        # The steps' token means were computed from these trajectories: nothing to check them against.
        assert all(s.get("completions/mean_length") for s in store.train_steps(run_id))
        assert "computed from the imported trajectories" in report.skipped["trainer_count_mismatch"]


def _grow(tmp_path: Path, steps=(1,)) -> Path:
    out = tmp_path / "out"
    for s in steps:
        dst = out / STEP.format(s)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PRIME / STEP.format(s), dst)
    return out


def test_a_growing_prime_rl_folder_imports_only_new_steps(tmp_path):
    out = _grow(tmp_path, (1,))
    db = tmp_path / "g.db"
    (first,) = import_paths(db, [out])
    assert first.runs[0][2] == len(_records(PRIME / STEP.format(1))) and first.runs[0][1] == "add-grpo"
    (again,) = import_paths(db, [out])
    assert again.skipped and "no new step files" in again.skipped
    partial = out / STEP.format(2)
    partial.parent.mkdir(parents=True)
    data = (PRIME / STEP.format(2)).read_bytes()
    partial.write_bytes(data[:-1])  # still being written: no final newline
    (mid,) = import_paths(db, [out])
    assert mid.skipped and any("still being written" in x for x in mid.notes)
    partial.write_bytes(data)
    (grown,) = import_paths(db, [out], name="ignored")
    assert grown.runs[0][0] == first.runs[0][0] and grown.runs[0][2] == len(_records(PRIME / STEP.format(2)))
    with Store.open_readonly(db) as store:
        assert len(store.runs()) == 1
        rows = store.trajectory_rows(first.runs[0][0], limit=100)
        assert sorted({r["step"] for r in rows}) == [1, 2]
        assert len({r["group_id"] for r in rows}) == 4  # two tasks per step, new ids for the new step


def test_same_eval_twice_is_skipped(tmp_path):
    db = tmp_path / "s.db"
    assert import_paths(db, [EVAL])[0].skipped is None
    again = import_paths(db, [EVAL_FILE], fmt="verifiers")[0]  # the file alone: the same content
    assert again.skipped and "already imported" in again.skipped
    with Store.open_readonly(db) as store:
        assert len(store.runs()) == 1


def test_other_formats_are_not_taken_for_v1(tmp_path):
    from tests.test_import_verifiers import RESULTS

    assert detect_format(RESULTS) == "verifiers"  # the legacy folder still goes to results.jsonl
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text(json.dumps({"messages": [], "traces": [], "task": {}}) + "\n")
    assert detect_format(jsonl) == "jsonl"
    verl = tmp_path / "1.jsonl"
    verl.write_text(json.dumps({"input": "x", "output": "y", "score": 1.0, "traces": []}) + "\n")
    assert detect_format(verl) == "verl"
    bare = tmp_path / "b.jsonl"
    bare.write_text(json.dumps({"traces": []}) + "\n")  # neither task nor env: not taken for an episode
    with pytest.raises(InputError, match="cannot tell the format"):
        detect_format(bare)
    steps = tmp_path / "ckpt" / "step_1"  # step_N folders without train/*/traces.jsonl
    steps.mkdir(parents=True)
    (steps / "x.jsonl").write_text("")
    with pytest.raises(InputError):
        detect_format(tmp_path / "ckpt")


def _episode(**trace) -> dict:
    base = {"version": 1, "task": {"type": "T", "data": {"idx": 0, "prompt": "q"}}, "agent": {"config": {}},
            "nodes": [{"message": {"role": "user", "content": "q"}},
                      {"parent": 0, "message": {"role": "assistant", "content": "a"}}],
            "rewards": {"r": {"score": 1.0, "weight": 1.0}}, "ok": True}
    base.update(trace)
    return {"id": "e", "env": {"id": "x"}, "task": base["task"], "traces": [base], "ok": True}


def test_branches_and_failures(tmp_path):
    """A trace whose graph forks (compaction) is one trajectory per branch; an errored trace is
    failed; an episode without traces is one failed trajectory with its task's prompt."""
    forked = _episode(nodes=[{"message": {"role": "user", "content": "q"}},
                             {"parent": 0, "message": {"role": "assistant", "content": "long"}},
                             {"parent": 0, "message": {"role": "assistant", "content": "short"}}])
    errored = _episode(ok=False, errors=[{"type": "ValueError", "message": "tool crashed\ntrace"}],
                       stop_condition="error", rewards={"r": None}, metrics={"m": None})
    empty = {"id": "e3", "env": {"id": "x"}, "task": {"type": "T", "data": {"idx": 5, "prompt": "p"}},
             "errors": [{"type": "Boot", "message": "sandbox failed"}], "traces": []}
    path = tmp_path / "traces.jsonl"
    huge = {**empty, "task": {"type": "T", "data": {"idx": 2 ** 70, "prompt": [{"role": "user", "content": "p2"}]}}}
    path.write_text("".join(json.dumps(x) + "\n" for x in (forked, errored, empty, huge)))
    (result,) = import_paths(tmp_path / "b.db", [path])
    assert any("1 extra branches" in x for x in result.notes) and any("without traces" in x for x in result.notes)
    with Store.open_readonly(tmp_path / "b.db") as store:
        a, b, c, d, e = store.trajectory_rows(result.runs[0][0])
        assert (e["question"], e["qidx"]) == ("p2", 6)  # an idx out of range: the next free qidx
        assert [m.content for m in store.messages(a["id"])] == ["q", "long"]
        assert [m.content for m in store.messages(b["id"])] == ["q", "short"]
        assert (a["group_id"], a["sample"], b["sample"], c["sample"]) == (b["group_id"], 0, 1, 2)
        assert (c["status"], c["finish_detail"], c["finish_reason"], c["reward"]) == ("failed", "tool crashed",
                                                                                        "error", None)
        assert (d["status"], d["finish_detail"], d["qidx"], d["question"]) == ("failed", "sandbox failed", 5, "p")


@pytest.mark.parametrize("trace, field", [
    ({"version": 2}, "traces[0].version"),
    ({"nodes": {}}, "traces[0].nodes"),
    ({"nodes": [{"parent": 0, "message": {"role": "user", "content": "q"}}]}, "traces[0].nodes[0].parent"),
    ({"nodes": [{"message": {"content": "q"}}]}, "traces[0].nodes[0].message.role"),
    ({"nodes": [{"message": {"role": "user", "content": 5}}]}, "traces[0].nodes[0].message.content"),
    ({"nodes": [{"message": {"role": "assistant", "tool_calls": [{"arguments": "{}"}]}}]},
     "traces[0].nodes[0].message.tool_calls[0].name"),
    ({"nodes": [{"message": {"role": "user", "content": "q"}, "token_ids": [1, 2], "mask": [False]}]},
     "traces[0].nodes[0].mask"),
    ({"nodes": [{"message": {"role": "user", "content": "q"}, "token_ids": [1, 2 ** 40], "mask": [0, 0]}]},
     "traces[0].nodes[0].token_ids"),
    ({"nodes": [{"message": {"role": "assistant", "content": "a"}, "token_ids": [1, 2], "mask": [False, True],
                 "logprobs": [-1.0, -2.0]}]}, "traces[0].nodes[0].logprobs"),
    ({"nodes": [{"message": {"role": "assistant", "content": "a"}, "token_ids": [1], "mask": [True],
                 "advantages": ["x"]}]}, "traces[0].nodes[0].advantages"),
    ({"rewards": {"r": {"weight": 1.0}}}, "traces[0].rewards.r.score"),
    ({"rewards": {"r": {"score": "high"}}}, "traces[0].rewards.r.score"),
    ({"metrics": {"m": "x"}}, "traces[0].metrics.m"),
    ({"metrics": []}, "traces[0].metrics"),
])
def test_bad_record_names_file_line_and_field(tmp_path, trace, field):
    path = tmp_path / "traces.jsonl"
    path.write_text(EVAL_FILE.read_text() + json.dumps(_episode(**trace)) + "\n", encoding="utf-8")
    db = tmp_path / "b.db"
    with pytest.raises(InputError) as info:
        import_paths(db, [path])
    assert (info.value.path, info.value.line, info.value.field) == (str(path), len(_records(EVAL_FILE)) + 1, field)
    with Store.open_readonly(db) as store:
        assert store.runs() == []  # the good lines before it were rolled back too


def test_truncated_and_bad_step_files(tmp_path):
    path = tmp_path / "traces.jsonl"
    data = EVAL_FILE.read_bytes()
    path.write_bytes(data[:len(data) - 40])  # cut inside the last episode
    with pytest.raises(InputError) as info:
        import_paths(tmp_path / "t.db", [path], fmt="verifiers")
    assert (info.value.path, info.value.line) == (str(path), len(_records(EVAL_FILE)))
    out = _grow(tmp_path, (1, 2))
    bad = out / STEP.format(2)
    bad.write_text(bad.read_text() + json.dumps(_episode(version="1.0")) + "\n")
    with pytest.raises(InputError) as info:
        import_paths(tmp_path / "t.db", [out])
    assert (info.value.path, info.value.field) == (str(bad), "traces[0].version")
    with Store.open_readonly(tmp_path / "t.db") as store:
        assert store.runs() == []  # step 1 was rolled back with it


_KEYS = ["traces", "task", "data", "idx", "prompt", "answer", "version", "nodes", "parent", "message", "role",
         "content", "tool_calls", "name", "arguments", "token_ids", "mask", "logprobs", "advantages", "rewards",
         "score", "weight", "metrics", "errors", "ok", "timing", "start", "group", "id", "env", "run"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=40).filter(lambda b: b"\n" not in b),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                              lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), c,
                                                                                   max_size=5),
                              max_leaves=16).map(lambda v: json.dumps(v).encode()),
                 st.builds(lambda t: json.dumps({"task": {}, "traces": [t]}).encode(),
                           st.dictionaries(st.sampled_from(_KEYS), st.recursive(
                               st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                               lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), c,
                                                                                    max_size=4),
                               max_leaves=14), max_size=6))))
def test_any_line_imports_or_fails_cleanly(tmp_path, line):
    path = tmp_path / "traces.jsonl"
    path.write_bytes(json.dumps(_episode()).encode() + b"\n" + line + b"\n")
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
    n = len(_records(EVAL_FILE))
    assert main(["import", str(EVAL), "--db", str(db)]) == EXIT_OK
    assert f"imported {n} trajectories into run 1 (scripted-add--canned)" in capsys.readouterr().err
    assert main(["import", str(EVAL_FILE), "--db", str(db)]) == EXIT_OK
    assert "already imported" in capsys.readouterr().err
    assert main(["import", str(PRIME), "--db", str(db), "--format", "verifiers", "--name", "tr"]) == EXIT_OK
    assert "(tr)" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_episode(nodes=7)) + "\n", encoding="utf-8")
    assert main(["import", str(bad), "--db", str(db)]) == EXIT_BAD_INPUT
    assert f"{bad}:1: field 'traces[0].nodes'" in capsys.readouterr().err


def test_open_through_the_cache(tmp_path, monkeypatch):
    """`rl-inspect PATH`: an eval folder's cache is keyed by its traces.jsonl, a prime-rl folder's
    by its path (it grows)."""
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "eval"
    shutil.copytree(EVAL, folder)
    db, results = cached_import(folder)
    assert results[0].runs[0][2] == len(_records(EVAL_FILE))
    again, results = cached_import(folder / "traces.jsonl")
    assert again == db and results[0].skipped
    out = _grow(tmp_path, (1,))
    tdb, results = cached_import(out)
    assert results[0].runs
    _grow(tmp_path, (2,))
    grown, results = cached_import(out)
    assert grown == tdb and results[0].runs[0][2] == len(_records(PRIME / STEP.format(2)))


def test_an_eval_traces_file_that_has_grown_replaces_its_earlier_import(tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    lines = EVAL_FILE.read_text().splitlines(keepends=True)
    (folder / "traces.jsonl").write_text("".join(lines[:1]))
    db = tmp_path / "g.db"
    import_paths(db, [folder])
    (folder / "traces.jsonl").write_text("".join(lines))
    grown = import_paths(db, [folder])[0]
    assert any("grown" in n for n in grown.notes)
    whole = import_paths(tmp_path / "whole.db", [EVAL_FILE])[0].runs[0][2]
    with Store.open_readonly(db) as store:
        assert [r["n_done"] for r in store.runs()] == [grown.runs[0][2]] == [whole]


EVAL_STEP = "rollouts/step_{}/eval/effective/traces.jsonl"


def test_prime_rl_step_evals_are_eval_runs_linked_to_their_step(tmp_path):
    """step_N/eval/effective/traces.jsonl (prime-rl's held-out eval at step N) is an eval run whose
    parent is the train run and train_step N, as --eval-every's own evals; the steps screen's row
    for step N names it and shows its mean reward."""
    from core.store.queries import train_step_rows

    db = tmp_path / "p.db"
    (result,) = import_paths(db, [PRIME])
    episodes = _records(PRIME / EVAL_STEP.format(2))
    [train, (eval_id, eval_name, n)] = result.runs
    assert eval_name == "add-grpo-step2-scripted-add-eval" and n == len(episodes) == 4
    assert any("`all` subset" in x for x in result.notes)
    with Store.open_readonly(db) as store:
        run = store.run(eval_id)
        assert (run["kind"], run["parent_run_id"], run["train_step"]) == ("eval", train[0], 2)
        assert run["model"] == "scripted/canned-1" and run["status"] == "done"
        assert set(store.run(train[0])["config"]["files"]) >= {
            p.removeprefix("rollouts/") for p in (STEP.format(1), STEP.format(2), EVAL_STEP.format(2))}
        rows = store.trajectory_rows(eval_id, limit=100)
        assert len(rows) == 4 and {r["step"] for r in rows} == {None}
        assert store.tokens(rows[0]["id"]).ids == [t for x in _branch(episodes[0]["traces"][0])
                                                   for t in x["token_ids"]]
        steps = {s.step: s for s in train_step_rows(store, train[0])}
        assert steps[1].eval_run_id is None and steps[2].eval_run_id == eval_id
        rewards = [ep["traces"][0]["rewards"]["correct"]["score"] for ep in episodes]
        assert steps[2].get("eval_reward") == pytest.approx(sum(rewards) / len(rewards))
    (again,) = import_paths(db, [PRIME])
    assert again.skipped and "no new step files" in again.skipped


def test_an_eval_before_any_train_step_names_the_train_run(tmp_path):
    """prime-rl evaluates the base model at step 0, before any train step file exists: the train
    run is made then, named and modelled from the eval's episodes, and later steps join it."""
    out = tmp_path / "out"
    dst = out / EVAL_STEP.format(0)
    dst.parent.mkdir(parents=True)
    shutil.copy(PRIME / EVAL_STEP.format(2), dst)
    db = tmp_path / "z.db"
    (first,) = import_paths(db, [out])
    [(train_id, name, n), (eval_id, eval_name, m)] = first.runs
    assert (name, n, eval_name, m) == ("add-grpo", 0, "add-grpo-step0-scripted-add-eval", 4)
    step1 = out / STEP.format(1)
    step1.parent.mkdir(parents=True)
    shutil.copy(PRIME / STEP.format(1), step1)
    (later,) = import_paths(db, [out])
    assert later.runs == [(train_id, "add-grpo", 4)]
    with Store.open_readonly(db) as store:
        assert store.run(train_id)["model"] == "scripted/canned-1"
        assert store.run(eval_id)["train_step"] == 0


def test_prime_rl_metric_log_fills_the_steps(tmp_path):
    """The run folder's metrics.jsonl (prime-rl's FileMonitor: trainer and orchestrator lines of
    {step, time, name: value}) becomes each imported step's metrics: every number under its own
    name, and the trainer's loss, entropy, mismatch KL, grad norm, learning rate and step time
    under the names the steps screen shows. The reward stays the mean of the step's trajectories.
    A line still being written is left for later; a grown log updates the steps on re-import."""
    from core.store.queries import train_step_rows

    out = _grow(tmp_path, (1, 2))
    lines = (PRIME / "metrics.jsonl").read_text().splitlines(keepends=True)
    half = len(lines) // 2  # step 1's lines
    (out / "metrics.jsonl").write_text("".join(lines[:half]) + lines[half][:-5])
    db = tmp_path / "m.db"
    (first,) = import_paths(db, [out])
    with Store.open_readonly(db) as store:
        rows = {r.step: r for r in train_step_rows(store, first.runs[0][0])}
    assert rows[1].get("loss") == pytest.approx(0.01) and rows[1].get("loss/mean") == pytest.approx(0.01)
    assert rows[1].get("entropy") == pytest.approx(0.4) and rows[1].get("mismatch_kl") == pytest.approx(0.001)
    assert rows[1].get("grad_norm") == pytest.approx(0.25) and rows[1].get("learning_rate") == pytest.approx(1e-6)
    assert rows[1].get("step_seconds") == pytest.approx(31.0) and rows[1].get("perf/mfu") == pytest.approx(12.5)
    assert rows[1].get("reward") == pytest.approx(0.5) and rows[1].get("time") is None
    assert rows[2].get("loss") is None and rows[2].get("reward") == pytest.approx(0.5)
    (out / "metrics.jsonl").write_text("".join(lines))
    (grown,) = import_paths(db, [out])
    assert grown.skipped is None and grown.runs[0][2] == 0 and any("metrics.jsonl" in x for x in grown.notes)
    with Store.open_readonly(db) as store:
        rows = {r.step: r for r in train_step_rows(store, first.runs[0][0])}
    assert rows[2].get("loss") == pytest.approx(0.02) and rows[2].get("reward") == pytest.approx(0.5)
    (again,) = import_paths(db, [out])
    assert again.skipped and "no new step files" in again.skipped


def test_a_malformed_metric_log_names_file_line_and_field(tmp_path):
    out = _grow(tmp_path, (1,))
    (out / "metrics.jsonl").write_text('{"step": 1, "loss/mean": 0.5}\n{"time": 3.0, "loss/mean": 0.1}\n')
    with pytest.raises(InputError) as err:
        import_paths(tmp_path / "b.db", [out])
    assert "metrics.jsonl" in str(err.value) and err.value.line == 2 and err.value.field == "step"
    assert not (tmp_path / "b.db").exists() or _count_runs(tmp_path / "b.db") == 0


def _count_runs(db: Path) -> int:
    with Store.open_readonly(db) as store:
        return len(store.runs())


def test_correct_follows_prime_rls_solve_rule():
    """prime-rl calls a trace solved at reward 1.0 and unsolved at 0 (orchestrator/metrics.py
    solve_rates): correct True / False there, None (no verdict) for partial credit or no reward."""
    from core.importers.verifiers_traces import solved

    assert solved(1.0) is True and solved(0.0) is False
    assert solved(0.5) is None and solved(None) is None and solved(2.0) is None


def _exports(step: int) -> list[dict]:
    return [json.loads(x) for x in (PRIME / f"token_exports/step_{step}/rank_0.jsonl").read_text().splitlines()]


def test_prime_rl_token_exports_give_the_trainers_logprobs(tmp_path):
    """prime-rl's trainer token export (token_exports/step_N/rank_R.jsonl, complete once STABLE is
    there) holds the trainer's logprob of each trained token: stored as the trajectory's trainer
    logprobs (the token view's gap mode), matched to the step's trajectory by its token ids. A
    sequence that matches none (cut at the trainer's max length) is counted in the notes; a step
    not yet STABLE waits; the mask lint then finds nothing missing."""
    db = tmp_path / "p.db"
    (result,) = import_paths(db, [PRIME])
    assert any("token_exports: the trainer's logprobs of 4 trajectories" in x and "1 exported sequence" in x
               for x in result.notes)
    exports = {tuple(r["token_ids"]): r for r in _exports(1)}
    with Store.open_readonly(db) as store:
        run_id = result.runs[0][0]
        rows = store.trajectory_rows(run_id, limit=100)
        for row in rows:
            seq = store.tokens(row["id"])
            if row["step"] == 2:  # not STABLE yet
                assert seq.trainer_logprobs is None
                continue
            export = exports[tuple(seq.ids)]
            want = [lp if m else math.nan for lp, m in zip(export["trainer_logprobs"], export["loss_mask"])]
            assert seq.trainer_logprobs == pytest.approx(want, nan_ok=True)
        assert set(store.run(run_id)["config"]["files"]) >= {"token_exports/step_1/rank_0.jsonl"}
        from core.lint import lint_store

        [report] = lint_store(store, run_id, tokenizer=None)
        assert "trainer_logprob_missing" not in report.counts()
    (again,) = import_paths(db, [PRIME])
    assert again.skipped


def test_a_token_export_arriving_later_is_read_on_the_next_import(tmp_path):
    out = _grow(tmp_path, (1,))
    db = tmp_path / "g.db"
    import_paths(db, [out])
    folder = out / "token_exports" / "step_1"
    folder.mkdir(parents=True)
    shutil.copy(PRIME / "token_exports/step_1/rank_0.jsonl", folder / "rank_0.jsonl")
    (waiting,) = import_paths(db, [out])
    assert waiting.skipped  # no STABLE marker yet: the trainer's ranks may still be writing
    (folder / "STABLE").touch()
    (read,) = import_paths(db, [out])
    assert read.skipped is None and any("trainer's logprobs of 4" in x for x in read.notes)
    with Store.open_readonly(db) as store:
        assert all(store.tokens(r["id"]).trainer_logprobs is not None
                   for r in store.trajectory_rows(read.runs[0][0], limit=100))


def test_a_malformed_token_export_names_file_line_and_field(tmp_path):
    out = _grow(tmp_path, (1,))
    folder = out / "token_exports" / "step_1"
    folder.mkdir(parents=True)
    record = _exports(1)[0]
    record["trainer_logprobs"] = record["trainer_logprobs"][:-3]
    (folder / "rank_0.jsonl").write_text(json.dumps(record) + "\n")
    (folder / "STABLE").touch()
    with pytest.raises(InputError) as err:
        import_paths(tmp_path / "b.db", [out])
    assert err.value.line == 1 and err.value.field == "trainer_logprobs" and "rank_0.jsonl" in err.value.path


_METRIC_VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
_EXPORT_KEYS = ["token_ids", "loss_mask", "trainer_logprobs", "step"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metric_line=st.dictionaries(st.sampled_from(["step", "time", "loss/mean", "optim/lr", "x"]), _METRIC_VALUES,
                                   max_size=5).map(lambda v: json.dumps(v).encode()),
       export_line=st.dictionaries(st.sampled_from(_EXPORT_KEYS), _METRIC_VALUES | st.lists(_METRIC_VALUES, max_size=4),
                                   max_size=4).map(lambda v: json.dumps(v).encode()))
@example(metric_line=b'{"step": Infinity, "loss/mean": 1}',
         export_line=b'{"token_ids": [1], "loss_mask": [true], "trainer_logprobs": [0.5]}')
@example(metric_line=b'{"step": NaN}', export_line=b'{"token_ids": [], "loss_mask": [], "trainer_logprobs": []}')
@example(metric_line=b'{"step": 1}',
         export_line=b'{"token_ids": [1], "loss_mask": [true], "trainer_logprobs": [1e999]}')
def test_any_metric_or_token_export_line_imports_or_fails_cleanly(tmp_path, metric_line, export_line):
    """prime-rl's metric log and token export are untrusted too: any line either imports or is one
    InputError naming that file and line, with nothing written."""
    import uuid

    out = _grow(tmp_path / uuid.uuid4().hex, (1,))
    (out / "metrics.jsonl").write_bytes(metric_line + b"\n")
    folder = out / "token_exports" / "step_1"
    folder.mkdir(parents=True)
    (folder / "rank_0.jsonl").write_bytes(export_line + b"\n")
    (folder / "STABLE").touch()
    db = out / "fuzz.db"
    try:
        import_paths(db, [out])
    except InputError as exc:
        assert exc.path.endswith(("metrics.jsonl", "rank_0.jsonl")) and exc.line == 1, str(exc)
        with Store.open_readonly(db) as store:
            assert store.runs() == []
