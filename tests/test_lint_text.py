"""text_mismatch (core.lint.text): an assistant message's trained tokens must decode to its
stored text, checked with a real (locally trained, byte-level BPE) chat tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.records import Message, Question, RewardResult
from core.lint import lint_run, lint_trajectory
from core.lint.text import SpanDecoder
from core.rollout.tokens import TokenSequence
from core.store import Store, TrajectoryOutcome
from tests.local_tokenizers import chatml_tokenizer, mistral_like_tokenizer

CALL = '<tool_call>\n{"name": "search_corpus", "arguments": {"query": "Veltran Observatory"}}\n</tool_call>'
ANSWER = "The Veltran Observatory was founded in 1873 on Qoruna — 観測所."


def _trajectory(tok, *, content=None, shift_mask=False, end_token=True):
    """Prompt, a call turn, a tool result, an answer turn, as core.rollout.agent stores them: the
    message text is the decoding of the generated ids without the final stop token."""
    end = tok.convert_tokens_to_ids("<|im_end|>")
    t = TokenSequence()
    t.add_prompt(tok.encode("<|im_start|>user\nWhere?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False))
    msgs = [Message("user", "Where?", 0, token_start=0, token_end=len(t.ids))]
    for i, text in enumerate((CALL, ANSWER)):
        ids = tok.encode(text, add_special_tokens=False) + ([end] if end_token else [])
        start, stop = t.add_generated(ids, [-0.5] * len(ids))
        msgs.append(Message("assistant", text, i + 1, token_start=start, token_end=stop))
        if i == 0:
            start, stop = t.add_scaffold(tok.encode("\n<|im_start|>tool\nfound it<|im_end|>\n<|im_start|>assistant\n",
                                                    add_special_tokens=False))
            msgs.append(Message("tool", "found it", 1, token_start=start, token_end=stop))
    if content is not None:
        msgs[-1].content = content
    if shift_mask:  # the answer's mask moved one token left: it starts on the scaffold's last token
        a = msgs[-1]
        t.mask[a.token_start - 1], t.mask[a.token_end - 1] = 1, 0
    return t, msgs


def _store(tmp_path, cases: dict) -> tuple[Store, dict[str, int]]:
    store = Store.open(tmp_path / "text.db")
    run = store.create_run("eval", "text", "test:chatml", {})
    ids = {}
    for name, (t, msgs) in cases.items():
        tid = store.start_trajectory(run, 0, Question("q", "Where?", "Qoruna"))
        store.add_messages(tid, list(enumerate(msgs)))
        store.finish_trajectory(run, tid, TrajectoryOutcome(
            status="done", finish_reason="answered", final_answer=ANSWER, turns=2, tool_calls=1, tool_errors=0,
            tokens=t, rewards=[RewardResult("correctness", 1.0, 1.0)], reward=1.0, correct=True))
        ids[name] = tid
    return store, ids


def test_text_mismatch_finds_edited_text_and_a_shifted_mask_and_nothing_in_clean_turns(tmp_path):
    tok = chatml_tokenizer()
    store, ids = _store(tmp_path, {
        "clean": _trajectory(tok),
        "edited": _trajectory(tok, content=ANSWER.replace("1873", "1874")),
        "shifted": _trajectory(tok, shift_mask=True),
        "no_end_token": _trajectory(tok, end_token=False),
    })
    with store:
        report = lint_run(store, 1, tokenizer=tok)
        assert "text_mismatch" not in report.skipped
        assert report.of_trajectory(ids["clean"]) == []
        edited = report.of_trajectory(ids["edited"])
        assert [f.kind for f in edited] == ["text_mismatch"]
        answer = store.conn.execute("SELECT token_start, token_end FROM messages WHERE trajectory_id = ? AND"
                                    " position = 3", (ids["edited"],)).fetchone()
        assert edited[0].spans == (tuple(answer),)
        assert "turn 2" in edited[0].message and "1873" in edited[0].message and "1874" in edited[0].message
        shifted = {f.kind for f in report.of_trajectory(ids["shifted"])}
        assert "text_mismatch" in shifted and "trained_outside_assistant" in shifted
        # a cut turn has no end token: its text is the decoding of all its ids
        assert [f.kind for f in report.of_trajectory(ids["no_end_token"]) if f.kind == "text_mismatch"] == []
        assert lint_trajectory(store, ids["edited"], tokenizer=tok) == edited


def test_text_mismatch_is_skipped_and_said_so_without_a_tokenizer(tmp_path):
    tok = chatml_tokenizer()
    store, ids = _store(tmp_path, {"edited": _trajectory(tok, content="something else")})
    with store:
        report = lint_run(store, 1)  # "test:chatml" names no local tokenizer
    assert "no local tokenizer" in report.skipped["text_mismatch"]
    assert not any(f.kind == "text_mismatch" for f in report.findings)


@pytest.mark.parametrize("make", [chatml_tokenizer, mistral_like_tokenizer])
def test_the_byte_table_and_the_tokenizer_agree(make):
    """The fast byte-table path and the tokenizer's own decode give the same verdicts."""
    tok = make()
    fast, slow = SpanDecoder(tok), SpanDecoder(tok)
    assert fast.table is not None
    slow.table = None
    rng = np.random.default_rng(0)
    spans = [rng.integers(0, len(tok), rng.integers(1, 30)) for _ in range(300)]
    texts = tok.batch_decode([s.tolist() for s in spans])
    texts = [t if i % 3 else t + "." for i, t in enumerate(texts)]
    assert fast.mismatches(spans, texts) == slow.mismatches(spans, texts)
    assert sum(m is not None for m in fast.mismatches(spans, texts)) == 100


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
       extra=st.text(min_size=1, max_size=3), end=st.booleans())
def test_any_text_round_trips_and_any_edit_is_found(text, extra, end):
    tok = chatml_tokenizer()
    decoder = SpanDecoder(tok)
    ids = tok.encode(text, add_special_tokens=False) + ([tok.convert_tokens_to_ids("<|im_end|>")] if end else [])
    decoded = tok.decode(ids[:-1] if end else ids)
    span = np.array(ids)
    assert decoder.mismatches([span], [decoded]) == [None]
    assert decoder.mismatches([span], [decoded + extra]) != [None]


def test_text_findings_do_not_depend_on_chunking(tmp_path, monkeypatch):
    import core.lint.run as lint_module

    tok = chatml_tokenizer()
    store, _ = _store(tmp_path, {f"t{i}": _trajectory(tok, content="x" if i % 3 == 0 else None,
                                                      shift_mask=i % 4 == 1) for i in range(9)})
    with store:
        whole = lint_run(store, 1, tokenizer=tok).findings
        assert sum(f.kind == "text_mismatch" for f in whole) == 5
        monkeypatch.setattr(lint_module, "CHUNK", 2)
        assert lint_run(store, 1, tokenizer=tok).findings == whole


def test_the_tokenizer_is_looked_up_where_the_cache_points(tmp_path, monkeypatch):
    """The embedded tokenizer is found through RL_INSPECT_CACHE; a lookup made for one cache
    folder is not reused for another (the snapshots rely on having none)."""
    from core.lint.special import local_tokenizer
    from core.models import DEFAULT_MODEL

    local_tokenizer(DEFAULT_MODEL)  # found (and cached) when the main job ran on this machine
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "empty"))
    assert local_tokenizer(DEFAULT_MODEL) is None
