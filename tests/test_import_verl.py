"""verl rollout dumps (core.importers.verl). verl needs Ray and GPUs, so the files are written here
the way its writer does: `_dump_generations` copied from volcengine/verl
verl/trainer/ppo/ray_trainer.py (commit b178a3cd, v0.7.0-125), as a plain function."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.records import InputError
from core.importers import import_paths
from core.importers.detect import detect_format
from core.store import Store
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, main


def dump_generations(global_steps, inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path):
    """verl's RayPPOTrainer._dump_generations, with self.global_steps as an argument."""
    os.makedirs(dump_path, exist_ok=True)
    filename = os.path.join(dump_path, f"{global_steps}.jsonl")
    n = len(inputs)
    base_data = {"input": inputs, "output": outputs, "gts": gts, "score": scores, "step": [global_steps] * n}
    for k, v in reward_extra_infos_dict.items():
        if len(v) == n:
            base_data[k] = v
    lines = []
    for i in range(n):
        entry = {k: v[i] for k, v in base_data.items()}
        lines.append(json.dumps(entry, ensure_ascii=False))
    with open(filename, "w") as f:
        f.write("\n".join(lines) + "\n")


PROMPTS = ["user\nWhat is 2+3? Let's think step by step.\nassistant\n",
           "user\nNatalia sold 48 clips… How many?\nassistant\n"]


def _step(folder, step, n=2, acc=True):
    """One step: each prompt sampled n times (verl repeats with interleave=True)."""
    inputs = [p for p in PROMPTS for _ in range(n)]
    outputs = [f"#### {5 if i % 2 == 0 else 6}" for i in range(len(inputs))]
    scores = [1.0 if i % 2 == 0 else 0.0 for i in range(len(inputs))]
    extra = {"acc": [s > 0 for s in scores], "pred": [o[5:] for o in outputs], "short": [1]}  # short: not dumped
    if not acc:
        extra.pop("acc")
    dump_generations(step, inputs, outputs, ["5", {"answer": 72}] * n if n == 1 else ["5"] * n + [{"answer": 72}] * n,
                     scores, extra, str(folder))


def test_folder_imports_as_one_train_run(tmp_path):
    dump = tmp_path / "rollouts"
    for step in (1, 2, 10):
        _step(dump, step)
    assert detect_format(dump) == "verl"
    (result,) = import_paths(tmp_path / "v.db", [dump])
    run_id, name, n = result.runs[0]
    assert (name, n) == ("rollouts", 12)
    with Store.open_readonly(tmp_path / "v.db") as store:
        run = store.run(run_id)
        assert (run["kind"], run["status"], run["config"]["format"]) == ("train", "done", "verl")
        assert sorted(run["config"]["files"]) == ["1.jsonl", "10.jsonl", "2.jsonl"]
        rows = store.trajectory_rows(run_id, limit=100)
        assert [r["step"] for r in rows] == [1] * 4 + [2] * 4 + [10] * 4
        assert [r["group_id"] for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        assert [r["sample"] for r in rows[:4]] == [0, 1, 0, 1]
        assert [r["qidx"] for r in rows[:4]] == [0, 0, 1, 1] and rows[4]["qidx"] == 0
        first = rows[0]
        assert (first["reward"], first["correct"], first["gold_answer"]) == (1.0, 1, "5")
        assert rows[2]["gold_answer"] == '{"answer": 72}' and rows[1]["correct"] == 0
        assert store.tokens(first["id"]) is None
        assert [(m.role, m.content) for m in store.messages(first["id"])] == [("user", PROMPTS[0]),
                                                                               ("assistant", "#### 5")]
        rewards = {r.name: r for r in store.rewards(first["id"])}
        assert rewards["score"].value == 1.0 and rewards["score"].detail["pred"] == "5"
        assert rewards["acc"].weight == 0.0 and "short" not in rewards
        steps = store.train_steps(run_id)
        assert [s["step"] for s in steps] == [1, 2, 10] and steps[0]["reward"] == 0.5


def test_grown_folder_adds_only_new_steps(tmp_path):
    dump, db = tmp_path / "r", tmp_path / "v.db"
    _step(dump, 1)
    (first,) = import_paths(db, [dump])
    (again,) = import_paths(db, [dump])
    assert again.skipped and "no new step files" in again.skipped
    _step(dump, 2, acc=False)
    (dump / "3.jsonl").write_text('{"input": "x", "output": "y", "score": 1.0, "step": 3}', encoding="utf-8")
    (grown,) = import_paths(db, [dump])
    assert grown.runs == [(first.runs[0][0], "r", 4)]
    assert any("3.jsonl: still being written" in n for n in grown.notes)
    with Store.open_readonly(db) as store:
        assert len(store.runs()) == 1
        rows = store.trajectory_rows(first.runs[0][0], limit=100)
        assert [r["group_id"] for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3]
        assert [r["qidx"] for r in rows[4:]] == [0, 0, 1, 1]  # the same prompts keep their question
        assert rows[-1]["correct"] == 0  # score 0, no acc: score > 0 decides


def test_single_file_and_cli(tmp_path, capsys):
    _step(tmp_path / "d", 7)
    db = tmp_path / "c.db"
    assert main(["import", str(tmp_path / "d" / "7.jsonl"), "--db", str(db), "--name", "mine"]) == EXIT_OK
    assert "imported 4 trajectories into run 1 (mine)" in capsys.readouterr().err
    bad = tmp_path / "d" / "8.jsonl"
    bad.write_text('{"input": "x", "output": 3, "score": 1}\n', encoding="utf-8")
    assert main(["import", str(bad), "--db", str(db), "--format", "verl"]) == EXIT_BAD_INPUT
    assert f"{bad}:1: field 'output'" in capsys.readouterr().err


@pytest.mark.parametrize("line, field", [
    ('{"output": "y", "score": 1}', "input"),
    ('{"input": "x", "output": "y"}', "score"),
    ('{"input": "x", "output": "y", "score": "1"}', "score"),
    ('{"input": "x", "output": "y", "score": 1, "step": "one"}', "step"),
    ('{"input": "x", "output": "y", "score": 1', None),
    ('[1, 2]', None),
])
def test_bad_lines(tmp_path, line, field):
    dump = tmp_path / "r"
    _step(dump, 1)
    (dump / "2.jsonl").write_text('{"input": "x", "output": "y", "score": 1, "step": 2}\n' + line + "\n",
                                  encoding="utf-8")
    with pytest.raises(InputError) as info:
        import_paths(tmp_path / "v.db", [dump], fmt="verl")
    assert (info.value.path, info.value.line, info.value.field) == (str(dump / "2.jsonl"), 2, field)
    with Store.open_readonly(tmp_path / "v.db") as store:
        assert store.runs() == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=40).filter(lambda b: b"\n" not in b),
                 st.dictionaries(st.sampled_from(["input", "output", "gts", "score", "step", "acc", "pred"]),
                                 st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
                                 | st.lists(st.integers(), max_size=2), max_size=6)
                 .map(lambda d: json.dumps(d).encode())))
def test_any_line_imports_or_fails_cleanly(tmp_path, line):
    dump = tmp_path / "fz"
    dump.mkdir(exist_ok=True)
    (dump / "1.jsonl").write_bytes(b'{"input": "x", "output": "y", "score": 1.0, "step": 1}\n' + line + b"\n")
    db = tmp_path / "fz.db"
    db.unlink(missing_ok=True)
    try:
        import_paths(db, [dump], fmt="verl")
    except InputError as exc:
        assert exc.path == str(dump / "1.jsonl") and exc.line == 2, str(exc)
        with Store.open_readonly(db) as store:
            assert store.runs() == []


@pytest.mark.parametrize("fmt", ["verl", "prime-rl"])
def test_two_imports_of_one_growing_folder_at_once_import_each_step_once(tmp_path, monkeypatch, fmt):
    """Another process (a second `rl-inspect FOLDER`) imports the same new step file between this
    import's look at what is already imported and its write: the write looks again, under its
    write lock, and adds nothing twice."""
    from core.importers import prime_rl, verl

    if fmt == "verl":
        folder = tmp_path / "rollouts"
        folder.mkdir()
        _step(folder, 1)
        module = verl
    else:
        from tests.test_import_verifiers_traces import _grow

        folder = _grow(tmp_path, (1,))
        module = prime_rl
    db = tmp_path / "r.db"
    looked = module._existing_run
    calls = []

    def stale_then_raced(store, source):
        seen = looked(store, source)
        if not calls:  # the other process wins the race right after this first look
            calls.append(1)
            import_paths(db, [folder])
        return seen

    monkeypatch.setattr(module, "_existing_run", stale_then_raced)
    (result,) = import_paths(db, [folder])
    with Store.open_readonly(db) as store:
        assert len(store.runs()) == 1
        per_step = store.conn.execute("SELECT step, COUNT(*) FROM trajectories GROUP BY step").fetchall()
    monkeypatch.setattr(module, "_existing_run", looked)
    (alone,) = import_paths(tmp_path / "alone.db", [folder])
    assert result.skipped and [n for _, n in per_step] == [alone.runs[0][2]]
