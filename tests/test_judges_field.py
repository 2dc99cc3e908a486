"""Issue 13, judges: the default judge is deterministic unless a judge model is named, a judge
reply with no yes/no (a thinking judge cut at its token limit) is counted as unparseable, not
wrong, and the summary, `rl-inspect runs` and the TUI say which judge decided.

The field cases: SmolLM2-135M grading itself passed 45% of its own answers ("To call the
function, y…" among them) on the sample database; a thinking judge cut at 8 tokens replied
"<think>\\nOkay, let me compare the" and was read as "no".
"""

from __future__ import annotations

import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.backends import Generation
from core.config import EvalConfig
from core.data.demo_data import generate_demo
from core.data.records import Message, Question, RewardResult
from core.evaluate import evaluate, resume
from core.scoring.judges import (DEFAULT_JUDGE, JUDGE_MAX_TOKENS, UNPARSEABLE, JudgeItem, LLMJudge,
                                 effective_judge, judge_label, read_yes_no, verdict_correct)
from core.scoring.rewards import RewardInput, RewardSuite
from core.store import Store
from core.store.queries import run_rows
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, RUNS_HEADER, _print_summary, main, run_row_line
from tests.local_tokenizers import chatml_tokenizer
from tests.scripted_backend import ScriptedBackend

CALL = '{"name": "search_corpus", "parameters": {"query": "%s"}}'
NONSENSE = "To call the function, you need to use the search_corpus tool with the query"
CUT_THINKING = "<think>\nOkay, let me compare the"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))


def _item(answer: str, gold: str = "Qoruna") -> JudgeItem:
    return JudgeItem("Where is the Veltran Observatory?", gold, answer)


# --------------------------------------------------------------------------- which judge decides
def test_the_default_judge_is_deterministic_without_a_judge_model():
    config = EvalConfig()
    assert config.judge == "auto"
    assert effective_judge(config.judge, config.judge_model) == DEFAULT_JUDGE == "f1"
    # A named judge model asks the LLM judge; an explicit choice is kept as it is.
    assert effective_judge("auto", "Qwen/Qwen3-0.6B") == "llm"
    assert effective_judge("llm", None) == "llm"
    assert effective_judge("exact", None) == "exact"
    with pytest.raises(ValueError, match="--judge must be one of auto, llm, exact, f1, contains"):
        effective_judge("gpt", None)


def test_the_default_judge_does_not_pass_nonsense():
    # The field case: the 135M policy, asked whether its own nonsense matched "Qoruna", said yes.
    yes_man = LLMJudge(lambda prompts: ["Yes." for _ in prompts])
    assert yes_man.judge([_item(NONSENSE)])[0].correct  # what the old default did
    from core.scoring.judges import build_judge

    verdict = build_judge(effective_judge(EvalConfig().judge, None)).judge([_item(NONSENSE)])[0]
    assert verdict.correct is False and verdict.score == 0.0
    assert build_judge(DEFAULT_JUDGE).judge([_item("On Qoruna.")])[0].correct


def _backend(judge_reply: str | None = None, questions: int = 40):
    """Policy: searches, then answers (right for even-numbered questions, NONSENSE for odd ones).
    Asked a judge prompt (this double is the policy judging itself) it replies `judge_reply`."""
    _, qs = generate_demo(questions, seed=0)
    gold = {q.question: (i, q.answer) for i, q in enumerate(qs)}

    def script(prompt: str, turn: int) -> str:
        if "Reference answer:" in prompt:
            assert judge_reply is not None, "the policy was asked to judge"
            return judge_reply
        question = re.search(r"Question: (.*)\n", prompt).group(1)
        index, answer = gold[question]
        if turn == 1:
            return f"{CALL % question}"
        return answer if index % 2 == 0 else NONSENSE

    return ScriptedBackend(chatml_tokenizer(), script)


def _config(**kw) -> EvalConfig:
    return EvalConfig(**{"demo_chunks": 40, "split": "all", "batch_size": 4, "max_new_tokens": 8192, "limit": 6,
                         **kw})


def test_an_eval_by_default_never_asks_the_policy_to_judge_and_stores_the_judge(tmp_path):
    db = tmp_path / "runs.db"
    summary = evaluate(_config(), db, backend=_backend(judge_reply=None))  # a judge prompt would fail
    assert summary["judge"] == "f1" and summary["judged"] == 6 and summary["judge_unparseable"] == 0
    assert summary["accuracy"] == 0.5  # the three even-numbered questions; the nonsense is wrong
    with Store.open_readonly(db) as store:
        run = store.run(summary["run_id"])
        assert run["config"]["judge"] == "f1"  # the effective judge is stored, never "auto"
        rewards = [{r.name: r for r in store.rewards(t["id"])}["correctness"] for t in store.trajectory_rows(run["id"])]
        assert {r.detail["judge"] for r in rewards} == {"f1"}
        assert run_rows(store)[0].judge == "f1"


def test_a_thinking_judge_cut_at_its_limit_is_unparseable_not_wrong():
    replies = [Generation([1, 2, 3], [0.0] * 3, CUT_THINKING, "length"),
               Generation([4], [0.0], "<think>They match.</think>\n\nYes", "stop"), "No."]
    asked: list[list[str]] = []

    def complete(prompts):
        asked.append(prompts)
        return replies[: len(prompts)]

    cut, yes, no = LLMJudge(complete).judge([_item("Qoruna"), _item("On Qoruna"), _item("Istel")])
    assert cut.correct is None and cut.score == 0.0
    assert cut.detail == {"reply": CUT_THINKING, "verdict": UNPARSEABLE, "max_tokens": JUDGE_MAX_TOKENS,
                          "cut": True}
    assert yes.correct is True and no.correct is False and "cut" not in yes.detail
    assert JUDGE_MAX_TOKENS >= 512  # room to think (it was 8)
    # Through the reward suite: scored 0.0, stored as not judged.
    suite = RewardSuite(LLMJudge(lambda prompts: [CUT_THINKING] * len(prompts)))
    q = Question("q1", "Where?", "Qoruna")
    results = suite.score([RewardInput(q, [Message("assistant", "Qoruna", 1)], "Qoruna")])[0]
    correctness = next(r for r in results if r.name == "correctness")
    assert correctness.value == 0.0 and correctness.detail["verdict"] == UNPARSEABLE
    assert verdict_correct(correctness) is None


def test_verdict_correct_reads_stored_rewards():
    assert verdict_correct(None) is None
    assert verdict_correct(RewardResult("correctness", 1.0, 1.0, {"judge": "exact"})) is True
    assert verdict_correct(RewardResult("correctness", 0.0, 1.0, {"judge": "f1", "f1": 0.2})) is False
    assert verdict_correct(RewardResult("correctness", 0.0, 1.0, {"judge": "llm", "verdict": "no"})) is False
    assert verdict_correct(RewardResult("correctness", 0.0, 1.0, {"judge": "llm", "verdict": UNPARSEABLE})) is None


def test_an_eval_counts_unparseable_verdicts_apart_from_wrong_ones(tmp_path):
    db = tmp_path / "runs.db"
    backend = _backend(judge_reply=CUT_THINKING)
    summary = evaluate(_config(judge="llm", judge_max_tokens=3), db, backend=backend)
    # Every reply was the cut-off thinking: nothing judged, nothing called wrong.
    assert summary["judged"] == 0 and summary["judge_unparseable"] == 6 and summary["accuracy"] is None
    assert summary["judge"] == "llm:embedded:smollm2-135m"  # the policy judged itself: --judge llm
    with Store.open_readonly(db) as store:
        rows = store.trajectory_rows(summary["run_id"])
        assert [r["correct"] for r in rows] == [None] * 6
        detail = {r.name: r for r in store.rewards(rows[0]["id"])}["correctness"].detail
        assert detail["verdict"] == UNPARSEABLE and detail["max_tokens"] == 3 and detail["cut"] is True
        row = run_rows(store)[0]
        assert (row.judge, row.n_judged, row.n_done, row.accuracy) == ("llm:embedded:smollm2-135m", 0, 6, None)
    # The judge got the configured budget, not 8 tokens.
    judge_prompts = [i for i, p in enumerate(backend.prompts)
                     if "Reference answer:" in backend.tokenizer.decode(p)]
    assert judge_prompts and all(len(backend.generated[i]) == 3 for i in judge_prompts)
    out = io.StringIO()
    _print_summary(summary, out, str(db))
    text = out.getvalue()
    assert "judge llm:embedded:smollm2-135m   judged 0   unparseable 6" in text
    assert "accuracy –" in text


def test_a_named_judge_model_is_asked_and_named(tmp_path, monkeypatch):
    judge = ScriptedBackend(chatml_tokenizer(), lambda prompt, turn: "<think>Compare.</think>Yes")
    made = []

    def create_backend(kind, ref, **kw):
        made.append(ref)
        return judge

    monkeypatch.setattr("core.evaluate.create_backend", create_backend)
    monkeypatch.setattr("core.evaluate.resolve_model", lambda name: f"resolved:{name}")
    db = tmp_path / "runs.db"
    summary = evaluate(_config(judge_model="judge-folder"), db, backend=_backend(judge_reply=None))
    assert made == ["resolved:judge-folder"] and judge.calls
    assert summary["judge"] == "llm:judge-folder" and summary["accuracy"] == 1.0
    with Store.open_readonly(db) as store:
        assert store.run(summary["run_id"])["config"]["judge"] == "llm"


def test_resume_keeps_the_stored_judge(tmp_path):
    db = tmp_path / "runs.db"
    with pytest.raises(KeyboardInterrupt):
        def stop(progress):
            if progress.done >= 2:
                raise KeyboardInterrupt
        evaluate(_config(batch_size=2), db, progress=stop, backend=_backend())
    summary = resume(db, 1, backend=_backend())
    assert summary["trajectories"] == 6 and summary["judge"] == "f1"


# --------------------------------------------------------------------------- labels and old runs
@pytest.mark.parametrize("config, label", [
    ({"judge": "f1"}, "f1"),
    ({"judge": "exact", "model": "m"}, "exact"),
    ({"judge": "llm", "judge_model": None, "model": "embedded:smollm2-135m"}, "llm:embedded:smollm2-135m"),
    ({"judge": "llm", "judge_model": "Qwen/Qwen3-0.6B", "model": "m"}, "llm:Qwen/Qwen3-0.6B"),
    ({"judge": "llm"}, "llm"),
    ({"judge": "auto", "model": "m"}, "f1"),
    ({"judge": "auto", "judge_model": "j", "model": "m"}, "llm:j"),
    ({"group_size": 4}, None), ({}, None), (None, None), ([1, 2], None), ({"judge": 3}, None),
])
def test_judge_label_from_a_stored_configuration(config, label):
    assert judge_label(config) == label


def test_old_runs_show_the_judge_their_config_names(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        # What rl-inspect stored before issue 13: the default judge was the policy itself.
        store.create_run("eval", "old-default", "embedded:smollm2-135m",
                         {"judge": "llm", "judge_model": None, "model": "embedded:smollm2-135m"}, n_planned=2)
        store.create_run("eval", "no-judge", "m", {}, n_planned=1)
        store.conn.execute("UPDATE runs SET config='not json' WHERE name='no-judge'")
    assert main(["runs", str(db)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == RUNS_HEADER and "judge" in lines[0]
    judge_at = lines[0].index("judge")
    assert lines[1][judge_at:].startswith("–")  # newest first: the unreadable configuration
    assert lines[2][judge_at:].startswith("llm:embed…")
    assert main(["runs", str(db), "--json"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert [r["judge"] for r in shown] == [None, "llm:embedded:smollm2-135m"]


_HOSTILE = st.lists(st.sampled_from(["\x1b[31m", "[bold]", "[/]", "\n", "\t", "観", "🔭", "\u202e", "llm:", "a"]),
                    max_size=10).map("".join)


@settings(max_examples=200, deadline=None)
@given(judge=_HOSTILE)
def test_a_hostile_judge_name_keeps_the_runs_table_columns(judge):
    from dataclasses import replace

    from rich.cells import cell_len

    from core.store.queries import RunRow

    row = RunRow(id=7, kind="eval", name="plain", model="m", status="done", n_done=3, n_planned=4, accuracy=0.5,
                 mean_reward=1.25, tool_error_rate=0.0, generated_tokens=10, created_at=0.0, duration=1.0,
                 parent_run_id=None, train_step=None)
    line = run_row_line(replace(row, judge=judge), name_cells=None)
    assert "\n" not in line and "\x1b" not in line
    assert cell_len(line) == cell_len(run_row_line(row, name_cells=None)) and line.endswith("  plain")


# --------------------------------------------------------------------------- reading replies
_NO_TAGS = st.text(max_size=60).filter(lambda t: "<think>" not in t and "</think>" not in t)


@settings(max_examples=200, deadline=None)
@given(thought=_NO_TAGS)
def test_a_reply_cut_while_thinking_is_unparseable(thought):
    assert read_yes_no("<think>" + thought) == UNPARSEABLE
    assert read_yes_no("\n<think>\n" + thought) == UNPARSEABLE


@settings(max_examples=200, deadline=None)
@given(thought=_NO_TAGS, verdict=st.sampled_from(["Yes", "No", "yes.", "**No**"]), tail=st.text(max_size=30))
def test_a_verdict_after_reasoning_is_read(thought, verdict, tail):
    expected = verdict.strip("*.").lower()
    assert read_yes_no(f"<think>{thought}</think>\n\n{verdict} {tail}") == expected
    assert read_yes_no(f"{thought}</think>{verdict}\n{tail}") == expected  # the template opened the block


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_read_yes_no_takes_any_text(reply):
    assert read_yes_no(reply) in ("yes", "no", UNPARSEABLE)


# --------------------------------------------------------------------------- options
def test_judge_options_are_checked_before_anything_runs(tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["eval", "--db", str(db), "--judge-max-tokens", "0"]) == EXIT_BAD_INPUT
    assert "--judge-max-tokens" in capsys.readouterr().err
    assert main(["eval", "--db", str(db), "--judge", "exact", "--judge-model", "x"]) == EXIT_BAD_INPUT
    assert "--judge-model" in capsys.readouterr().err
    assert not db.exists()
    with pytest.raises(ValueError, match="--judge must be"):
        EvalConfig(judge="gpt").validate()


def test_stored_configurations_from_before_the_budget_keep_theirs():
    assert EvalConfig.from_dict({"judge": "llm"}).judge_max_tokens == 8
    assert EvalConfig.from_dict(EvalConfig(judge_max_tokens=300).to_dict()).judge_max_tokens == 300
    from core.train.config import TrainConfig

    assert TrainConfig.from_dict({"judge": "contains"}).judge_max_tokens == 8
    c = TrainConfig(judge="llm", judge_model="j", judge_max_tokens=700)
    assert c.held_out_config().judge_max_tokens == 700 and c.held_out_config().judge == "llm"


def test_training_gives_its_llm_judge_the_budget():
    from core.train.config import TrainConfig
    from core.train.trainer import reward_suite

    judge = ScriptedBackend(chatml_tokenizer(), lambda prompt, turn: CUT_THINKING)
    suite = reward_suite(TrainConfig(judge="llm", judge_model="j", judge_max_tokens=4), lambda: judge)
    q = Question("q1", "Where?", "Qoruna")
    results = suite.score([RewardInput(q, [Message("assistant", "Qoruna", 1)], "Qoruna")])[0]
    correctness = next(r for r in results if r.name == "correctness")
    assert verdict_correct(correctness) is None and correctness.detail["max_tokens"] == 4
    assert len(judge.generated[0]) == 4


# --------------------------------------------------------------------------- the TUI
def test_the_rewards_panel_says_an_unparseable_reply_was_not_judged():
    from inspector.tui.render import reward_rows

    rows = reward_rows([
        RewardResult("correctness", 0.0, 1.0, {"judge": "llm", "reply": CUT_THINKING, "verdict": UNPARSEABLE,
                                               "max_tokens": 8, "cut": True}),
        RewardResult("correctness", 0.0, 1.0, {"judge": "llm", "reply": "", "verdict": UNPARSEABLE}),
    ])
    assert rows[0][3] == "llm: no verdict (unparseable reply, cut at 8 tokens), not judged: <think> Okay, let me " \
                         "compare the"
    assert rows[1][3] == "llm: no verdict (empty reply), not judged"


async def test_the_tui_names_the_judge_and_counts_unparseable_replies(tmp_path):
    from inspector.tui.app import create_app
    from inspector.tui.screens.runs import RunsScreen
    from inspector.tui.screens.trajectories import TrajectoriesScreen
    from tests import tui_fixtures

    db = tmp_path / "runs.db"
    evaluate(_config(judge="llm"), db, backend=_backend(judge_reply=CUT_THINKING))
    evaluate(_config(), db, backend=_backend())
    app = create_app(db, refresh_seconds=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await tui_fixtures.settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        table = app.screen.query_one("#runs-table")
        judges = [str(table.get_cell(key, "judge")) for key in ("2", "1")]
        assert judges == ["f1", "llm:embedded…"]
        # At 80 columns the judge column is on screen, beside the figures it qualifies.
        await pilot.pause(0.1)
        rows = [strip.text for strip in app.screen._compositor.render_strips()]
        assert any("lint  judge" in row for row in rows) and any("llm:embedded…" in row for row in rows), rows
        await pilot.press("down", "enter")
        await tui_fixtures.settle(pilot)
        assert isinstance(app.screen, TrajectoriesScreen)
        line = str(app.screen.query_one("#run-line").render())
        assert "accuracy – · 6 unparseable · judge llm:embedded:smollm2-135m" in line, line


def test_judge_label_reads_the_stored_json_text_too():
    from core.scoring.judges import judge_label

    assert judge_label('{"judge": "llm", "judge_model": "big"}') == "llm:big"
    assert judge_label('{"judge": "f1"}') == judge_label({"judge": "f1"}) == "f1"
    assert judge_label("not json") is None and judge_label("[1, 2]") is None and judge_label("") is None
