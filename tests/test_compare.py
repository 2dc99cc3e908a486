"""`rl-inspect compare DB A B` and core.store.compare: questions matched by text, flips by the
strict-majority rule, runs of different sizes and partial overlap, the CLI's exit codes and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from rich.cells import cell_len

from core.data.records import Question
from core.store import Store, StoreError, TrajectoryOutcome
from core.store.compare import CHANGES, Comparison, Mean, QuestionRow, QuestionStats, RunSide, compare_runs, question_key
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, main
from inspector.compare_text import WIDTH, comparison_lines

SAMPLE_DB = Path(__file__).resolve().parent.parent / "sample_runs" / "smollm2-demo.db"


def _traj(store: Store, run: int, text: str, correct: bool | None, *, qidx: int = 0, reward: float | None = 1.0,
          calls: int = 1, errors: int = 0, status: str = "done") -> int:
    tid = store.start_trajectory(run, qidx, Question("q", text, "gold"))
    if status != "running":
        store.finish_trajectory(run, tid, TrajectoryOutcome(
            status=status, finish_reason="answered", final_answer="x", turns=1, tool_calls=calls,
            tool_errors=errors, tokens=None, reward=reward, correct=correct))
    return tid


@pytest.fixture
def db(tmp_path) -> dict:
    """Run A (base) and run B (checkpoint), of different sizes and partly overlapping.

    Shared: "gain" wrong→right, "lose" right→wrong, "keep" right→right with more tool calls,
    "miss" wrong→wrong unchanged, "unjudged" judged in A only, "same" right→right unchanged.
    Only in A: "old 1", "old 2". Only in B: "new 1", "new 2", "new 3"."""
    path = tmp_path / "runs.db"
    ids: dict = {"path": path}
    with Store.open(path) as store:
        a = store.create_run("eval", "base", "m-base", {})
        b = store.create_run("eval", "ckpt", "m-ckpt", {})
        ids["a"], ids["b"] = a, b
        ids["gain_a"] = _traj(store, a, "gain?", False, reward=0.0)
        ids["lose_a"] = _traj(store, a, "lose?", True, reward=1.0)
        _traj(store, a, "keep?", True, calls=1)
        _traj(store, a, "miss?", False, reward=0.0)
        _traj(store, a, "unjudged?", True)
        _traj(store, a, "same?", True)
        _traj(store, a, "old 1?", True)
        _traj(store, a, "old 2?", False)
        _traj(store, b, "same?", True)
        _traj(store, b, "miss?", False, reward=0.0)
        _traj(store, b, "unjudged?", None)
        _traj(store, b, "keep?", True, calls=3, errors=1)
        ids["lose_b"] = _traj(store, b, "lose?", False, reward=0.25)
        ids["gain_b"] = _traj(store, b, "gain?", True, reward=1.0)
        for i in range(3):
            _traj(store, b, f"new {i + 1}?", False)
    return ids


def _by_question(c: Comparison) -> dict[str, QuestionRow]:
    return {r.question: r for r in c.rows}


def test_counts_flips_and_means(db):
    with Store.open_readonly(db["path"]) as store:
        c = compare_runs(store, db["a"], db["b"])
    assert c.counts == {"both": 6, "only_a": 2, "only_b": 3, "changed": 4, "gained": 1, "lost": 1,
                        "still_right": 2, "still_wrong": 1, "not_judged": 1}
    rows = _by_question(c)
    assert {q: rows[q].change for q in ("gain?", "lose?", "keep?", "miss?", "unjudged?", "same?")} == {
        "gain?": "gained", "lose?": "lost", "keep?": "still_right", "miss?": "still_wrong",
        "unjudged?": "not_judged", "same?": "still_right"}
    assert rows["old 1?"].where == "a" and rows["new 2?"].where == "b" and rows["new 2?"].change is None
    assert rows["keep?"].changed and rows["keep?"].tool_calls_delta == 2 and rows["keep?"].tool_errors_delta == 1
    assert not rows["same?"].changed and not rows["miss?"].changed
    assert rows["unjudged?"].changed  # judged in A, not in B
    # Means over the 6 shared questions; accuracy over the 5 judged in both.
    assert c.means["accuracy"].questions == 5
    assert c.means["accuracy"].a == pytest.approx(3 / 5) and c.means["accuracy"].b == pytest.approx(3 / 5)
    assert c.means["reward"].a == pytest.approx(4 / 6) and c.means["reward"].b == pytest.approx(4.25 / 6)
    assert c.means["tool_calls"].delta == pytest.approx(2 / 6)
    assert c.run_a.trajectories == 8 and c.run_a.questions == 8 and c.run_b.questions == 9


def test_flips_come_first_then_largest_reward_change(db):
    with Store.open_readonly(db["path"]) as store:
        c = compare_runs(store, db["a"], db["b"])
    order = [r.question for r in c.rows]
    assert order[:2] == ["gain?", "lose?"]  # |Δreward| 1.0 before 0.75
    assert set(order[2:4]) == {"keep?", "unjudged?"}  # changed, no flip
    assert set(order[4:6]) == {"miss?", "same?"}  # unchanged shared
    assert order[6:] == ["old 1?", "old 2?", "new 1?", "new 2?", "new 3?"]
    rows = _by_question(c)
    assert (rows["gain?"].a.trajectory_id, rows["gain?"].b.trajectory_id) == (db["gain_a"], db["gain_b"])


def test_repeated_samples_strict_majority_and_null_correct(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        a = store.create_run("train", "grpo", "m", {})
        b = store.create_run("eval", "sampled", "m", {})
        for correct in (True, True, False):  # 2 of 3: right
            _traj(store, a, "two of three", correct)
        for correct in (True, False):  # a tie: wrong
            _traj(store, a, "tie", correct)
        for correct in (None, None, True):  # unjudged samples left out: 1 of 1 judged
            _traj(store, a, "mostly unjudged", correct, reward=None)
        for correct in (None, None):
            _traj(store, a, "never judged", correct)
        first_wrong = _traj(store, b, "two of three", False)
        _traj(store, b, "two of three", True)
        _traj(store, b, "two of three", False)
        right = _traj(store, b, "tie", True)
        for text in ("mostly unjudged", "never judged"):
            _traj(store, b, text, False)
        c = compare_runs(store, a, b)
    rows = _by_question(c)
    assert rows["two of three"].a.verdict == "right" and rows["two of three"].a.samples == 3
    assert rows["two of three"].change == "lost"
    assert rows["two of three"].b.trajectory_id == first_wrong  # a sample agreeing with the verdict
    assert rows["tie"].a.verdict == "wrong" and rows["tie"].change == "gained"
    assert rows["tie"].b.trajectory_id == right
    mostly = rows["mostly unjudged"].a
    assert (mostly.samples, mostly.judged, mostly.correct, mostly.verdict) == (3, 1, 1, "right")
    assert mostly.mean_reward is None and rows["mostly unjudged"].reward_delta is None
    assert rows["mostly unjudged"].change == "lost"
    assert rows["never judged"].a.verdict is None and rows["never judged"].change == "not_judged"
    assert c.counts["not_judged"] == 1 and c.counts["gained"] == 1 and c.counts["lost"] == 2
    # The reward mean leaves out "mostly unjudged" (no reward in A): 3 questions.
    assert c.means["reward"].questions == 3


def test_matched_by_text_not_by_qidx(tmp_path):
    with Store.open(tmp_path / "q.db") as store:
        a = store.create_run("eval", "a", "m", {})
        b = store.create_run("eval", "b", "m", {})
        _traj(store, a, "What is alpha?", True, qidx=0)
        _traj(store, b, "What is beta?", True, qidx=0)  # same qidx, another question
        _traj(store, a, "Where is  the\tport?\n", False, qidx=5)
        _traj(store, b, " Where is the port?", True, qidx=1)  # same question, other qidx and whitespace
        _traj(store, b, "where is the port?", True, qidx=2)  # case is not folded
        c = compare_runs(store, a, b)
    assert c.counts["both"] == 1 and c.counts["only_a"] == 1 and c.counts["only_b"] == 2
    shared = [r for r in c.rows if r.where == "both"]
    assert shared[0].change == "gained" and shared[0].question == "Where is  the\tport?\n"


def test_whitespace_variants_within_one_run_are_pooled(tmp_path):
    with Store.open(tmp_path / "w.db") as store:
        a = store.create_run("eval", "a", "m", {})
        first = _traj(store, a, "Who?", True)
        _traj(store, a, "Who? ", True)
        _traj(store, a, "  Who?", False)
        c = compare_runs(store, a, a)
    assert len(c.rows) == 1 and c.rows[0].a.samples == 3 and c.rows[0].a.first_id == first
    assert c.counts["changed"] == 0 and c.counts["still_right"] == 1


def test_only_finished_trajectories_count(tmp_path):
    with Store.open(tmp_path / "f.db") as store:
        a = store.create_run("eval", "a", "m", {})
        b = store.create_run("eval", "b", "m", {})
        _traj(store, a, "q1", True)
        _traj(store, b, "q1", False, status="failed")
        _traj(store, b, "q1", True)
        _traj(store, b, "q2", True, status="running")
        c = compare_runs(store, a, b)
    assert c.counts["both"] == 1 and c.counts["only_b"] == 0 and c.rows[0].b.samples == 1
    assert c.rows[0].change == "still_right"


def test_unknown_run_raises_store_error(db):
    with Store.open_readonly(db["path"]) as store, pytest.raises(StoreError, match="no run 99"):
        compare_runs(store, db["a"], 99)


def test_question_key_collapses_whitespace_only():
    assert question_key("  a\t b\n\u3000c ") == "a b c"
    assert question_key("A?") != question_key("a?")


# ---------------------------------------------------------------- the command line
def test_cli_prints_counts_and_changed_questions(db, capsys):
    assert main(["compare", str(db["path"]), str(db["a"]), str(db["b"])]) == EXIT_OK
    out = capsys.readouterr().out
    assert "6 in both, 2 only in A, 3 only in B" in out
    assert "gained 1  lost 1  (wrong→right, right→wrong)" in out
    assert "still right 2  still wrong 1  not judged 1" in out
    assert "4 of 6 shared questions changed" in out
    lines = out.splitlines()
    gained = next(i for i, line in enumerate(lines) if line.startswith("gained "))
    assert lines[gained].endswith(f"{db['gain_a']}/{db['gain_b']}")
    assert lines[gained + 1] == "  gain?"
    assert "only in A (2)" in out and "only in B (3)" in out
    assert all(cell_len(line) <= WIDTH for line in lines)


def test_cli_rows_limit_says_how_many_more(db, capsys):
    assert main(["compare", str(db["path"]), str(db["a"]), str(db["b"]), "--rows", "1"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "… 3 more" in out and "… 2 more" in out and "… 1 more" in out


def test_cli_json_holds_every_question(db, capsys):
    assert main(["compare", str(db["path"]), str(db["a"]), str(db["b"]), "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"db", "run_a", "run_b", "judges_differ", "rule", "counts", "means", "questions"}
    assert data["run_a"]["id"] == db["a"] and data["run_b"]["name"] == "ckpt"
    assert data["counts"]["both"] == 6 and len(data["questions"]) == 11
    assert set(data["means"]) == {"accuracy", "reward", "tool_calls", "tool_errors"}
    gain = data["questions"][0]
    assert gain["question"] == "gain?" and gain["in"] == "both" and gain["change"] == "gained"
    assert gain["a"]["trajectory_id"] == db["gain_a"] and gain["b"]["trajectory_id"] == db["gain_b"]
    assert gain["a"]["verdict"] == "wrong" and gain["b"]["correct_fraction"] == 1.0
    assert gain["reward_delta"] == 1.0
    only_b = [q for q in data["questions"] if q["in"] == "b"]
    assert len(only_b) == 3 and all(q["a"] is None and q["change"] is None for q in only_b)
    assert {q["change"] for q in data["questions"]} <= {*CHANGES, None}


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_cli_unknown_run_exits_2(db, capsys):
    assert main(["compare", str(db["path"]), str(db["a"]), "99"]) == EXIT_BAD_INPUT
    assert _one_error_line(capsys) == f"rl-inspect: {db['path']}: no run 99"


def test_cli_missing_db_exits_2(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "none.db"), "1", "2"]) == EXIT_BAD_INPUT
    assert "no such database" in _one_error_line(capsys)


def test_cli_not_a_database_exits_2(tmp_path, capsys):
    path = tmp_path / "junk.db"
    path.write_text("not sqlite at all\n" * 100)
    assert main(["compare", str(path), "1", "2", "--json"]) == EXIT_BAD_INPUT
    assert _one_error_line(capsys).startswith(f"rl-inspect: {path}:")


def test_cli_negative_rows_exits_2(db, capsys):
    assert main(["compare", str(db["path"]), str(db["a"]), str(db["b"]), "--rows", "-1"]) == EXIT_BAD_INPUT
    assert "--rows -1" in _one_error_line(capsys)


@pytest.mark.skipif(not SAMPLE_DB.exists(), reason="no sample database")
def test_sample_runs_compare(capsys):
    assert main(["compare", str(SAMPLE_DB), "1", "2", "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["both"] == 20 and data["counts"]["only_a"] == data["counts"]["only_b"] == 0
    assert main(["compare", str(SAMPLE_DB), "3", "4", "--json"]) == EXIT_OK  # 6 questions x 4 samples vs 4
    data = json.loads(capsys.readouterr().out)
    assert data["run_a"]["trajectories"] == 24 and data["run_a"]["questions"] == 6


# ---------------------------------------------------------------- untrusted text
_text = st.text(st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ["[bold red]x[/]", "\x1b[31mred\x1b[0m", "界" * 100, "a\u202eb\u2028c", "\t\n\r" * 5])


@settings(max_examples=200, deadline=None)
@given(question=_text, name=_text, model=_text, tid=st.integers(1, 999_999))
def test_every_line_is_literal_and_fits_80_cells(question, name, model, tid):
    stats = QuestionStats(samples=3, judged=3, correct=2, reward_sum=-30.5, rewarded=3, tool_calls=31,
                          tool_errors=4, first_id=tid, first_right_id=tid, first_wrong_id=tid)
    lost = QuestionStats(samples=16, judged=16, correct=0, reward_sum=160.0, rewarded=16, tool_calls=16,
                         first_id=tid, first_wrong_id=tid)
    side = RunSide(id=tid, name=name, model=model, kind="eval", status=name, trajectories=10**7, questions=10**6)
    rows = [QuestionRow(question, stats, lost), QuestionRow(question, stats, None), QuestionRow(question, None, lost)]
    counts = {"both": 10**6, "only_a": 10**6, "only_b": 10**6, "changed": 1, **{c: 10**6 for c in CHANGES}}
    means = {k: Mean(-12.345, 0.5, 1) for k in ("accuracy", "reward", "tool_calls", "tool_errors")}
    lines = comparison_lines(Comparison(side, side, rows, counts, means))
    for line in lines:
        assert cell_len(line) <= WIDTH, line
        assert not any(ch in line for ch in "\x1b\n\r\t\u202e\u2028")


def test_compare_module_imports_without_textual():
    script = textwrap.dedent("""
        import sys
        sys.modules["textual"] = None
        import core.store.compare
        assert not any(n == "textual" or n.startswith("textual.") for n in sys.modules if sys.modules[n])
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_runs_judged_differently_are_said_to_be_not_comparable(tmp_path):
    """Found by a fresh-user trial: f1 against llm:<model> was compared without a word."""
    path = tmp_path / "judges.db"
    with Store.open(path) as store:
        a = store.create_run("eval", "f1 run", "m", {"judge": "f1"})
        b = store.create_run("eval", "llm run", "m", {"judge": "llm", "judge_model": "big-judge"})
        c = store.create_run("eval", "f1 again", "m", {"judge": "f1"})
        for run in (a, b, c):
            _traj(store, run, "q?", True)
        different, same = compare_runs(store, a, b), compare_runs(store, a, c)
    assert (different.run_a.judge, different.run_b.judge) == ("f1", "llm:big-judge")
    assert different.judges_differ and not same.judges_differ
    assert any(line.startswith("warning: different judges (f1 vs llm:big-judge)") for line in comparison_lines(different))
    assert not any(line.startswith("warning") for line in comparison_lines(same))
    assert different.to_dict()["judges_differ"] is True
