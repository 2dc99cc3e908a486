"""Mask lint (core.lint): one database written through the store API with one trajectory per fault
kind, injected on purpose, beside clean ones; lint must name each fault's kind and position, and
find nothing in the clean ones or in the sample database."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from core.data.records import Message, Question, RewardResult
from core.lint import ERROR, KINDS, lint_run, lint_store, lint_trajectory
from core.lint.checks import StepTotals, _covered, _sums, check_chunk
from core.rollout.tokens import TokenSequence
from core.store import Store, TrajectoryOutcome

END, THINK_CLOSE = 2, 3
SPECIAL = {1, END, THINK_CLOSE}
"""A made-up tokenizer's special ids: 1 opens a turn, 2 ends it, 3 closes a think block."""
SAMPLE = Path(__file__).resolve().parent.parent / "sample_runs" / "smollm2-demo.db"


def clean_tokens() -> TokenSequence:
    """Prompt [0, 40), turn 1 [40, 50) ending in END, a tool result [50, 55), turn 2 [55, 59)."""
    t = TokenSequence()
    t.add_prompt(list(range(10, 50)))
    t.add_generated(list(range(100, 109)) + [END], [-0.1] * 10)
    t.add_scaffold([1, 60, 61, 62, END])
    t.add_generated([200, 201, 202, END], [-0.2] * 4)
    return t


def clean_messages(t: TokenSequence) -> list[Message]:
    return [Message("system", "sys", 0, token_start=0, token_end=40),
            Message("user", "q?", 0, token_start=0, token_end=40),
            Message("assistant", "call", 1, token_start=40, token_end=50),
            Message("tool", "result", 1, token_start=50, token_end=55),
            Message("assistant", "answer", 2, token_start=55, token_end=len(t.ids))]


def _write(store: Store, run: int, t: TokenSequence | None, msgs: list[Message] | None = None, *,
           finish: str = "answered", step=None, group=None, sample=0, reward=1.0) -> int:
    q = Question(f"q{sample}", "where?", "here")
    tid = store.start_trajectory(run, 0, q, step=step, group_id=group, sample=sample)
    store.add_messages(tid, list(enumerate(msgs if msgs is not None else clean_messages(t))))
    store.finish_trajectory(run, tid, TrajectoryOutcome(
        status="done", finish_reason=finish, final_answer="here", turns=2, tool_calls=1, tool_errors=0,
        tokens=t, rewards=[RewardResult("correctness", reward, 1.0)], reward=reward, correct=reward >= 1))
    return tid


def _faulty(fault: str) -> tuple[TokenSequence, list[Message], str]:
    """A trajectory with exactly one fault injected; returns (tokens, messages, finish reason)."""
    t = clean_tokens()
    msgs, finish = clean_messages(t), "answered"
    if fault == "prompt_trained":
        t.mask[5], t.logprobs[5] = 1, -0.5
    elif fault == "trained_outside_assistant":
        t.mask[52], t.logprobs[52] = 1, -0.3
    elif fault == "length_mismatch":
        t.logprobs.pop()
    elif fault == "logprob_missing":
        t.logprobs[45] = math.nan
    elif fault == "logprob_on_untrained":
        t.logprobs[52] = -1.0
    elif fault == "truncated_trained":
        t.ids[-1] = 203  # the limit cut turn 2: no end token
        finish = "max_tokens"
    elif fault == "special_trained":
        t.ids[45] = THINK_CLOSE
    elif fault == "end_token_masked":
        t.mask[58] = 0
    elif fault == "generated_untrained":
        t.mask[44] = 0
    elif fault == "span_out_of_range":
        msgs[-1].token_end = 70
    elif fault == "mask_not_binary":
        t.mask[45] = 2
    elif fault == "nothing_trained":
        t.mask = [0] * len(t.mask)
    elif fault == "no_message_spans":  # a writer that kept tokens but no message boundaries
        msgs = [Message(m.role, m.content, m.turn) for m in msgs]
    return t, msgs, finish


FAULTS = {
    # fault -> (kinds lint must report for that trajectory, their token spans)
    "prompt_trained": ({"prompt_trained"}, ((5, 6),)),
    "trained_outside_assistant": ({"trained_outside_assistant"}, ((52, 53),)),
    "length_mismatch": ({"length_mismatch"}, ()),
    "logprob_missing": ({"logprob_missing"}, ((45, 46),)),
    "logprob_on_untrained": ({"logprob_on_untrained"}, ((52, 53),)),
    "truncated_trained": ({"truncated_trained"}, ((55, 59),)),
    "special_trained": ({"special_trained"}, ((45, 46),)),
    "end_token_masked": ({"end_token_masked"}, ((58, 59),)),
    "generated_untrained": ({"generated_untrained"}, ((44, 45),)),
    "span_out_of_range": ({"span_out_of_range", "trained_outside_assistant"}, ()),
    # generated_tokens is stored as sum(mask) = one more than the tokens trained
    "mask_not_binary": ({"mask_not_binary", "count_mismatch"}, ((45, 46),)),
    "nothing_trained": ({"nothing_trained"}, ((40, 50), (55, 59))),
    # without spans nothing is "outside every assistant message": said once, not 14 false errors
    "no_message_spans": ({"no_message_spans"}, ()),
}


@pytest.fixture(scope="module")
def faults_db(tmp_path_factory) -> dict:
    return build_faults_db(tmp_path_factory.mktemp("lint") / "faults.db")


def build_faults_db(path: Path) -> dict:
    """Eval run 1: a trajectory per fault of FAULTS, count_mismatch, and clean ones; train run 2:
    two steps of two groups of three, one group without reward spread, step 2's logged
    completions/mean_length wrong, one trajectory missing a trainer logprob. Returns
    {"path": path, "ids": name -> trajectory id (and "train": the train run's id)}."""
    ids: dict[str, int] = {}
    with Store.open(path) as store:
        run = store.create_run("eval", "faults", "test:no-tokenizer", {})
        ids["clean_before"] = _write(store, run, clean_tokens())
        for fault in FAULTS:
            t, msgs, finish = _faulty(fault)
            ids[fault] = _write(store, run, t, msgs, finish=finish)
        ids["count_mismatch"] = _write(store, run, clean_tokens())
        store.conn.execute("UPDATE trajectories SET generated_tokens = 13 WHERE id = ?", (ids["count_mismatch"],))
        ids["clean_after"] = _write(store, run, clean_tokens())
        ids["without_tokens"] = _write(store, run, None, clean_messages(clean_tokens())[:2])
        empty = TokenSequence()  # the prompt filled the context: nothing generated, nothing to train
        empty.add_prompt(list(range(10, 50)))
        ids["empty_completion"] = _write(store, run, empty, clean_messages(empty)[:2], finish="context_length")
        cut_clean = clean_tokens()  # a turn cut by the limit and masked (overlong filtering): no error
        ids["truncated_clean"] = _write(store, run, cut_clean, finish="max_tokens")
        store.conn.execute("UPDATE tokens SET mask = ? WHERE trajectory_id = ?",
                           (bytes(cut_clean.mask[:55] + [0] * 4), ids["truncated_clean"]))
        store.conn.execute("UPDATE trajectories SET generated_tokens = 10 WHERE id = ?", (ids["truncated_clean"],))

        train = store.create_run("train", "grpo", "test:no-tokenizer", {})
        ids["train"] = train
        ids["steps"] = {}
        for step in (1, 2):
            for group in range(2):
                same = step == 2 and group == 1  # no reward spread
                for sample in range(3):
                    tid = _write(store, train, clean_tokens(), step=step, group=step * 10 + group, sample=sample,
                                 reward=0.5 if same else float(sample))
                    ids["steps"].setdefault(step, []).append(tid)
                    t = clean_tokens()
                    trainer = [math.nan] * 40 + [-0.3] * (len(t.ids) - 40)
                    if step == 1 and group == 0 and sample == 0:
                        trainer[57] = math.nan  # the trainer never scored trained token 57
                        ids["trainer_logprob_missing"] = tid
                    store.set_trainer_logprobs(tid, trainer)
        # 14 trained completion tokens per trajectory; step 1 logged it right, step 2 wrongly
        store.add_train_step(train, 1, {"loss": 0.1, "completions/mean_length": 14.0})
        store.add_train_step(train, 2, {"loss": 0.1, "completions/mean_length": 17.5})
        ids["zero_spread_first"] = ids["steps"][2][3]
    return {"path": path, "ids": ids}


def _report(faults_db, run: str = "eval"):
    with Store.open_readonly(faults_db["path"]) as store:
        run_id = faults_db["ids"]["train"] if run == "train" else 1
        return lint_run(store, run_id, special_ids=SPECIAL)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_found_with_its_kind_and_position(faults_db, fault):
    kinds, spans = FAULTS[fault]
    found = _report(faults_db).of_trajectory(faults_db["ids"][fault])
    assert {f.kind for f in found} == kinds, [f.message for f in found]
    if spans:
        assert next(f for f in found if f.kind == fault).spans == spans


def test_count_mismatch_is_found(faults_db):
    found = _report(faults_db).of_trajectory(faults_db["ids"]["count_mismatch"])
    assert [f.kind for f in found] == ["count_mismatch"]
    assert "generated_tokens 13 (tokens say 14)" in found[0].message


def test_clean_trajectories_have_no_finding(faults_db):
    report = _report(faults_db)
    ids = faults_db["ids"]
    for name in ("clean_before", "clean_after", "without_tokens", "empty_completion"):
        assert report.of_trajectory(ids[name]) == [], name
    assert report.without_tokens == 1
    assert report.checked == len(FAULTS) + 5
    # A cut turn that is masked is no end_token_masked: the limit, not the model, ended it.
    assert [f.kind for f in report.of_trajectory(ids["truncated_clean"])] == ["generated_untrained"]


def test_special_trained_counts_per_token_and_skips_the_turn_end(faults_db):
    found = [f for f in _report(faults_db).findings if f.kind == "special_trained"]
    assert [f.trajectory_id for f in found] == [faults_db["ids"]["special_trained"]]
    assert found[0].token_counts == ((THINK_CLOSE, 1),)


def test_special_trained_is_skipped_without_a_tokenizer(faults_db):
    with Store.open_readonly(faults_db["path"]) as store:
        report = lint_run(store, 1)  # "test:no-tokenizer" has no local tokenizer
    assert "special_trained" in report.skipped and "no local tokenizer" in report.skipped["special_trained"]
    assert not any(f.kind == "special_trained" for f in report.findings)


def test_train_run_step_findings(faults_db):
    report = _report(faults_db, "train")
    ids = faults_db["ids"]
    mismatch = [f for f in report.findings if f.kind == "trainer_count_mismatch"]
    assert [(f.step, f.trajectory_id) for f in mismatch] == [(2, None)]
    assert "14.000" in mismatch[0].message and "17.5" in mismatch[0].message
    spread = [f for f in report.findings if f.kind == "zero_spread_groups"]
    assert [(f.step, f.trajectory_id) for f in spread] == [(2, ids["zero_spread_first"])]
    missing = [f for f in report.findings if f.kind == "trainer_logprob_missing"]
    assert [(f.trajectory_id, f.spans) for f in missing] == [(ids["trainer_logprob_missing"], ((57, 58),))]
    assert report.counts() == {"trainer_logprob_missing": 1, "trainer_count_mismatch": 1, "zero_spread_groups": 1}
    assert report.errors == 1


def test_lint_trajectory_agrees_with_lint_run(faults_db):
    report = _report(faults_db)
    with Store.open_readonly(faults_db["path"]) as store:
        for fault in FAULTS:
            tid = faults_db["ids"][fault]
            assert lint_trajectory(store, tid, special_ids=SPECIAL) == report.of_trajectory(tid)
        group = lint_trajectory(store, faults_db["ids"]["zero_spread_first"], special_ids=SPECIAL)
        assert [f.kind for f in group] == ["zero_spread_groups"]


def test_report_summary_and_filters(faults_db):
    report = _report(faults_db)
    summary = report.summary(examples=2)
    assert summary["errors"] == report.errors > 0
    assert list(summary["findings"]) == [k for k in KINDS if k in summary["findings"]]
    entry = summary["findings"]["trained_outside_assistant"]
    assert entry["severity"] == ERROR and entry["count"] == 2
    assert entry["examples"] == report.trajectory_ids("trained_outside_assistant")
    assert set(report.trajectory_ids()) >= {faults_db["ids"][f] for f in FAULTS}


def test_a_run_read_in_many_chunks_gives_the_same_findings(faults_db, monkeypatch):
    import core.lint.run as lint_module

    whole = _report(faults_db).findings
    monkeypatch.setattr(lint_module, "CHUNK", 2)
    assert _report(faults_db).findings == whole


def test_sample_database_has_no_error_finding():
    with Store.open_readonly(SAMPLE) as store:
        reports = lint_store(store)
    assert reports and all(r.checked for r in reports)
    errors = [f for r in reports for f in r.findings if f.severity == ERROR]
    assert errors == []


# ---------------------------------------------------------------- properties of the checks alone

@st.composite
def trajectories(draw):
    """A clean trajectory of random shape: prompt, then turns of generated ids (ending in END)
    each followed by scaffolding; returns (TokenSequence, assistant spans)."""
    t = TokenSequence()
    t.add_prompt([10] * draw(st.integers(1, 8)))
    spans = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 6))
        spans.append(t.add_generated([100] * (n - 1) + [END], [-0.5] * n))
        t.add_scaffold([60] * draw(st.integers(0, 4)))
    return t, spans


def _check(t: TokenSequence, spans, finish="answered"):
    ids, mask, lp = t.to_blobs()
    row = (1, finish, t.prompt_len, t.completion_len, sum(1 for m in t.mask if m), None, t.prompt_len,
           ids, mask, lp, None)
    arr = np.array(spans, dtype=np.int64).reshape(-1, 2)
    findings = []
    check_chunk([row], np.ones(len(arr), dtype=np.int64), arr[:, 0], arr[:, 1],
                np.isin(np.arange(4), list(SPECIAL)), findings, StepTotals())
    return findings


@settings(max_examples=150, deadline=None)
@given(trajectories())
def test_clean_trajectories_of_any_shape_pass(case):
    assert _check(*case) == []


@settings(max_examples=200, deadline=None)
@given(trajectories(), st.data())
def test_any_flipped_mask_bit_is_found_at_its_position(case, data):
    t, spans = case
    q = data.draw(st.integers(0, len(t.ids) - 1))
    t.mask[q] = 1 - t.mask[q]
    found = _check(t, spans)
    assert any(q in f.positions for f in found), (q, [f.message for f in found])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=6), st.data())
def test_per_trajectory_sums_and_span_cover_match_a_plain_loop(shapes, data):
    lens = np.array([p + c for p, c in shapes], dtype=np.int64)
    plen = np.array([p for p, _ in shapes], dtype=np.int64)
    offsets = np.cumsum(lens) - lens
    total = int(lens.sum())
    flag = np.array(data.draw(st.lists(st.booleans(), min_size=total, max_size=total)), dtype=bool)
    prompt, completion = _sums(flag, offsets, plen, lens)
    assert prompt.tolist() == [int(flag[o:o + p].sum()) for o, p in zip(offsets, plen)]
    assert completion.tolist() == [int(flag[o + p:o + n].sum()) for o, p, n in zip(offsets, plen, lens)]
    ranges = data.draw(st.lists(st.tuples(st.integers(0, total), st.integers(0, total)), max_size=5))
    start = np.array([a for a, _ in ranges], dtype=np.int64)
    end = np.array([b for _, b in ranges], dtype=np.int64)
    expected = np.zeros(total, dtype=bool)
    for a, b in ranges:
        expected[a:b] = True
    assert _covered(start, end, total).tolist() == expected.tolist()
    order = np.argsort(start, kind="stable")
    assert _covered(start[order], end[order], total).tolist() == expected.tolist()
