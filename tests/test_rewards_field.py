"""User rewards from the field: every real number is a reward; a failure is shown, not only logged.

Issue 13: a reward returning np.float32(0.5) was rejected and scored 0.0, with the warning only
in the log file.
"""

from __future__ import annotations

import io
import math
import sys
import textwrap
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from core.data.records import Message, Question, RewardResult
from core.evaluate import evaluate
from core.scoring.judges import ExactMatchJudge
from core.scoring.rewards import (REWARD_FAILURE, RewardInput, RewardSuite, UnusableReward, as_reward_value,
                                  is_failure, load_reward_function, reward_failure_lines)
from core.store import Store
from inspector.tui.widgets.rewards_panel import RewardsPanel, rewards_text

QUESTION = Question("q1", "Where is the Veltran Observatory?", "Qoruna")


def _item(answer: str = "Qoruna") -> RewardInput:
    messages = [Message(role="user", content=QUESTION.question, turn=0),
                Message(role="assistant", content=answer, turn=1)]
    return RewardInput(QUESTION, messages, answer)


def _suite_with(tmp_path, monkeypatch, body: str, *names: str) -> RewardSuite:
    module = f"fieldrewards_{abs(hash(body)) % 10**8}"
    (tmp_path / f"{module}.py").write_text("import numpy as np\nimport math\n" + textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return RewardSuite(ExactMatchJudge(), extra=[f"{module}:{n}" for n in names])


def _by_name(results: list[RewardResult]) -> dict[str, RewardResult]:
    return {r.name: r for r in results}


# --- what a user reward may return -----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (np.float32(0.5), 0.5), (np.float64(0.25), 0.25), (np.float16(1.5), 1.5), (np.int64(2), 2.0),
    (np.uint8(3), 3.0), (np.array(0.75), 0.75), (np.array(1, dtype=np.int32), 1.0), (Fraction(1, 4), 0.25),
    (Decimal("0.5"), 0.5), (3, 3.0), (-1.25, -1.25), (True, 1.0), (False, 0.0), (np.bool_(True), 1.0),
])
def test_every_real_number_is_a_reward(value, expected):
    assert as_reward_value(value) == expected and type(as_reward_value(value)) is float


@pytest.mark.parametrize("value, says", [
    (float("nan"), "not a finite number"), (float("inf"), "not a finite number"),
    (np.float32("-inf"), "not a finite number"), (np.array(np.nan), "not a finite number"),
    (Decimal("NaN"), "not a finite number"), (10**400, "OverflowError"),
    (None, "returned None"), ("0.5", "returned str '0.5'"), (b"1", "returned bytes"),
    (1 + 2j, "not a real number"), (np.complex64(1), "not a real number"),
    (np.array([0.5, 0.2]), "shape (2,)"), (np.array([0.5]), "shape (1,)"), ([0.5], "returned list"),
    (np.array("x"), "dtype <U1"), ({"value": 1.0}, "returned dict"),
])
def test_anything_else_is_unusable_and_says_why(value, says):
    with pytest.raises(UnusableReward) as info:
        as_reward_value(value)
    assert says in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(), st.none(),
                 st.text(max_size=5), st.complex_numbers(), st.fractions(), st.decimals(),
                 st.lists(st.floats(), max_size=2)))
def test_a_reward_value_is_a_finite_float_or_refused(value):
    try:
        out = as_reward_value(value)
    except UnusableReward:
        return
    assert type(out) is float and math.isfinite(out)


def test_numpy_scalar_reward_is_scored(tmp_path, monkeypatch):
    """The field report: np.float32(0.5) scored 0.0 with the warning only in the log."""
    suite = _suite_with(tmp_path, monkeypatch, """
        def half(messages, question):
            return np.float32(0.5)

        def with_detail(messages, question):
            return np.float64(0.25), {"why": "numpy"}
    """, "half", "with_detail")
    by = _by_name(suite.score([_item()])[0])
    assert by["half"].value == 0.5 and by["half"].detail == {} and not is_failure(by["half"].detail)
    assert by["with_detail"].value == 0.25 and by["with_detail"].detail == {"why": "numpy"}


def test_failures_are_stored_with_their_error(tmp_path, monkeypatch):
    suite = _suite_with(tmp_path, monkeypatch, """
        def broken(messages, question):
            raise ValueError("no answer\\nin the chat")

        def not_a_number(messages, question):
            return float("nan"), {"seen": 2}

        def reserved(messages, question):
            return 1.0, {"reward_failure": "mine"}
    """, "broken", "not_a_number", "reserved")
    by = _by_name(suite.score([_item()])[0])
    broken = by["broken"]
    assert broken.value == 0.0 and is_failure(broken.detail)
    assert broken.detail[REWARD_FAILURE] == "raised" and broken.detail["error"] == "ValueError: no answer in the chat"
    assert broken.detail["at"].startswith("fieldrewards_") and broken.detail["at"].endswith(" in broken")
    nan = by["not_a_number"]
    assert nan.value == 0.0 and nan.detail[REWARD_FAILURE] == "unusable_value"
    assert "not a finite number" in nan.detail["error"] and nan.detail["detail"] == {"seen": 2}
    assert by["reserved"].detail[REWARD_FAILURE] == "unusable_value"
    assert "reserved" in by["reserved"].detail["error"]
    assert by["correctness"].value == 1.0 and not is_failure(by["correctness"].detail)


# --- loading ----------------------------------------------------------------------------------------

def test_reward_from_a_file_path_and_from_the_working_directory(tmp_path, monkeypatch):
    """`rl-inspect` is a console script: the working directory is not on sys.path, so
    `--reward my_rewards:fn` next to the user's files failed to import."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "path_rewards.py").write_text("def score(messages, question):\n    return 0.5\n")
    (tmp_path / "cwd_rewards_field.py").write_text("def score(messages, question):\n    return 0.25\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_rewards_field", raising=False)
    by_path = load_reward_function(str(tmp_path / "sub" / "path_rewards.py") + ":score")
    assert by_path.name == "score" and by_path(_item()) == (0.5, {})
    assert load_reward_function("sub/path_rewards.py:score")(_item()) == (0.5, {})
    assert load_reward_function("cwd_rewards_field:score")(_item()) == (0.25, {})
    with pytest.raises(ValueError, match="no such file"):
        load_reward_function("sub/missing.py:score")


def test_eval_refuses_a_bad_reward_before_loading_a_model(tmp_path, monkeypatch, capsys):
    import core.evaluate
    from inspector.cli import EXIT_BAD_INPUT, main

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the reward was checked")

    monkeypatch.setattr(core.evaluate._Session, "build", no_model)
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    db = tmp_path / "r.db"
    for args in (["--reward", "no_such_reward_module:fn"],
                 ["--reward", str(tmp_path / "missing.py") + ":fn"],
                 ["--reward-weights", "mine=2"]):
        assert main(["eval", "--db", str(db), "--demo-chunks", "5", *args]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err and "reward" in err, err
    assert not db.exists()


# --- where the user looks: the summary and the rewards panel --------------------------------------

def test_eval_summary_counts_failed_rewards_per_function(tmp_path, monkeypatch):
    from tests.test_evaluate import _answering_backend, _config
    from inspector.cli import _print_summary

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "flaky_field.py").write_text(textwrap.dedent("""
        import numpy as np

        calls = []

        def flaky(messages, question):
            calls.append(question["id"])
            if len(calls) % 2:
                raise KeyError("gold")
            return np.float32(1.0)

        def fine(messages, question):
            return np.float32(0.5)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "flaky_field", raising=False)
    db = tmp_path / "runs.db"
    summary = evaluate(_config(limit=6, extra_rewards=["flaky_field:flaky", "flaky_field:fine"]), db,
                       backend=_answering_backend())
    failures = summary["reward_failures"]
    assert set(failures) == {"flaky"}
    assert failures["flaky"]["scored"] == 6 and failures["flaky"]["failed"] == 3
    assert failures["flaky"]["error"] == "KeyError: 'gold'"
    assert summary["reward_means"]["fine"] == 0.5
    out = io.StringIO()
    _print_summary(summary, out, str(db))
    n = failures["flaky"]["failed"]
    assert f"reward flaky failed on {n} of 6 trajectories: KeyError: 'gold'" in out.getvalue()
    with Store.open_readonly(db) as store:
        rows = store.trajectory_rows(summary["run_id"])
        stored = [r for row in rows for r in store.rewards(row["id"]) if r.name == "flaky"]
        assert sum(is_failure(r.detail) for r in stored) == n


def test_failure_lines():
    assert reward_failure_lines({}) == []
    lines = reward_failure_lines({"f": {"failed": 3, "scored": 24, "error": "ValueError: x", "errors": 2}})
    assert lines == ["reward f failed on 3 of 24 trajectories: ValueError: x (and 1 other error)"]


async def test_rewards_panel_marks_a_failed_reward_with_its_error_as_text():
    from tests.test_trajectory_widgets import SIZE, Host

    rewards = [RewardResult("correctness", 1.0, 1.0, {"judge": "exact"}),
               RewardResult("mine", 0.0, 1.0, {"error": "ValueError: [bold red]boom[/]", REWARD_FAILURE: "raised"}),
               RewardResult("other", 0.0, 1.0, {"error": "my own field, not a failure"})]
    panel = RewardsPanel()
    async with Host(panel).run_test(size=SIZE) as pilot:
        panel.show(rewards, None)
        await pilot.pause()
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(panel.content)
    out = console.file.getvalue()
    assert "error: ValueError: [bold red]boom[/]" in out
    mine = next(line for line in out.splitlines() if line.startswith("mine"))
    other = next(line for line in out.splitlines() if line.startswith("other"))
    assert "failed" in mine and "0.000" not in mine
    assert "failed" not in other and "0.000" in other
    assert panel.failed == [False, True, False]
    # the plain function still works without the failure flags (older callers)
    assert "mine" in rewards_text(panel.rows, [r.value for r in rewards], 1.0).plain


def test_reward_failures_reads_only_marked_details():
    """Hostile or odd details (not JSON, the key's name inside a string) are scored, not failed."""
    import json
    import sqlite3

    from core.scoring.rewards import reward_failures

    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE trajectories (id INTEGER PRIMARY KEY, run_id INTEGER);"
                       "CREATE TABLE rewards (trajectory_id INTEGER, name TEXT, value REAL, detail TEXT);")
    conn.executemany("INSERT INTO trajectories VALUES (?, ?)", [(1, 1), (2, 1), (3, 1), (4, 2)])
    fail = {REWARD_FAILURE: "raised", "error": "ValueError: first"}
    rows = [(1, "mine", json.dumps({"note": '"reward_failure"'})), (2, "mine", json.dumps(fail)),
            (3, "mine", json.dumps(fail | {"error": "KeyError: 'x'"})), (1, "other", "{not json \"reward_failure\""),
            (4, "mine", json.dumps(fail))]
    conn.executemany("INSERT INTO rewards VALUES (?, ?, 0.0, ?)", rows)
    assert reward_failures(conn, 1) == {"mine": {"failed": 2, "scored": 3, "error": "ValueError: first", "errors": 2}}
    assert reward_failures(conn, 2) == {"mine": {"failed": 1, "scored": 1, "error": "ValueError: first", "errors": 1}}
    assert reward_failures(conn, 3) == {}


@pytest.mark.parametrize("source, says", [
    ("def fn():\n    return 1.0\n", r"fn\(\) cannot be called"),
    ("def fn(messages):\n    return 1.0\n", r"fn\(messages\) cannot be called"),
    ("def fn(a, b, c):\n    return 1.0\n", r"fn\(a, b, c\) cannot be called"),
])
def test_a_reward_that_cannot_take_messages_and_question_is_refused_at_load(tmp_path, source, says):
    """Found by a new user: a reward without the (messages, question) parameters was accepted and
    failed on every trajectory after the model had run."""
    from core.scoring.rewards import load_reward_function

    path = tmp_path / "sig_rewards.py"
    path.write_text(source, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"reward .*: {says} as fn\(messages, question\)"):
        load_reward_function(f"{path}:fn")


def test_rewards_with_defaults_or_varargs_are_accepted(tmp_path):
    from core.scoring.rewards import load_reward_function

    path = tmp_path / "ok_rewards.py"
    path.write_text("def a(messages, question, scale=1.0):\n    return scale\n"
                    "def b(*args, **kw):\n    return 0.5\n"
                    "class C:\n    def __call__(self, messages, question):\n        return 1.0\n"
                    "c = C()\n", encoding="utf-8")
    for name in ("a", "b", "c"):
        assert load_reward_function(f"{path}:{name}").fn is not None
