"""The engine's per-turn fast path (issue 9) gives exactly what the full path gives.

Reused placeholder renderings (core.rollout.scaffold) and batched tokenisation must leave ids,
masks, logprobs, message spans, drift and finish reasons unchanged: each case runs the agent
with reuse on and off (ChatTokenizer(reuse_renderings=False) renders every chat in full, the
pre-issue-9 path) and compares everything stored.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from core.data.records import Question
from core.rollout.agent import Agent, AgentConfig
from core.rollout.chat import ChatTokenizer, PendingScaffold, Segment, _cut
from core.rollout.scaffold import content_linear
from core.rollout.tokens import TokenSequence
from tests.local_tokenizers import (CHATML_TEMPLATE, LLAMA3_TEMPLATE, chatml_tokenizer, countdown_tokenizer,
                                    family_tokenizer, llama3_tokenizer)
from tests.scripted_backend import ScriptedBackend

CALL = '<think>turn {t}</think>{{"name": "search_corpus", "parameters": {{"query": "Veltran {t}"}}}}'
RESULT = "Result 1:\nThe Veltran Observatory was founded in 1873 on Qoruna.\n------\nResult 2:\n<|im_end|> x\n"


def _qwen3():
    return family_tokenizer("qwen3")


TOKENIZERS = {"chatml": chatml_tokenizer, "llama3": llama3_tokenizer, "countdown": countdown_tokenizer,
              "qwen3": _qwen3}


@pytest.mark.parametrize("template, reason", [
    (CHATML_TEMPLATE, None),
    (LLAMA3_TEMPLATE, "Filter"),  # | trim
    ("{% for m in messages %}{% if '</think>' in m['content'] %}x{% endif %}{{ m['content'] }}{% endfor %}",
     "Operand"),
    ("{% for m in messages %}{{ m | tojson }}{% endfor %}", "Filter"),
    ("{% for m in messages %}{{ m.content | e }}{% endfor %}", "Filter"),
    ("{% for m in messages %}{% set c = m.content %}{{ c }}{% endfor %}", "Assign"),
    ("{% for m in messages %}{{ m.get('content') }}{% endfor %}", "get"),
    ("{% for m in messages %}{{ loop.previtem }}{% endfor %}", "previtem"),
    ("{% macro f(x) %}{{ x }}{% endmacro %}{% for m in messages %}{{ f(m.content) }}{% endfor %}", "macro"),
    ("{% for m in messages|selectattr('role') %}{{ m.content }}{% endfor %}", "Filter"),
    ("{% set ms = messages[1:] %}{% for m in ms %}{{ m.content[0] }}{% endfor %}", "Getitem"),
    ("{% for m in messages %}{% if m.content %}{{ m.content }}{% endif %}{% endfor %}", "If"),
])
def test_content_linearity_is_proven_or_refused(template, reason):
    got = content_linear(template)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got, got


def test_qwen3_template_is_not_reused():
    assert ChatTokenizer(_qwen3()).linear_reason is not None
    assert ChatTokenizer(chatml_tokenizer()).linear_reason is None


def _run(tok, reuse: bool, replies: dict[int, str], n: int = 3, **config):
    backend = ScriptedBackend(tok, lambda prompt, turn: replies.get(turn, "Qoruna"))
    agent = Agent(backend, lambda q, k: RESULT, AgentConfig(**config))
    if not reuse:
        agent.chat = ChatTokenizer(tok, agent.chat.fmt, stop_ids=sorted(backend.stop_token_ids),
                                   reuse_renderings=False)
    batch = [agent.start(Question(f"q{i}", f"Where is observatory {i}?", "Qoruna")) for i in range(n)]
    while not all(t.finished for t in batch):
        agent.step(batch)
    return agent, batch


def _record(traj):
    return (traj.tokens.ids, traj.tokens.mask, traj.tokens.logprobs, traj.tokens.prompt_len, traj.finish_reason,
            traj.finish_detail, traj.drift_at, traj.drift_kind,
            [(m.role, m.content, m.turn, m.token_start, m.token_end) for m in traj.messages])


@pytest.mark.parametrize("name", list(TOKENIZERS))
@pytest.mark.parametrize("config", [dict(max_generations=5), dict(max_generations=3),
                                    dict(max_generations=6, max_new_tokens=300)], ids=["answer", "turns", "budget"])
def test_fast_path_stores_exactly_what_the_full_path_stores(name, config):
    tok = TOKENIZERS[name]()
    replies = {t: CALL.format(t=t) for t in range(1, 5)}
    agent, fast = _run(tok, True, replies, **config)
    _, full = _run(tok, False, replies, **config)
    assert [_record(t) for t in fast] == [_record(t) for t in full]
    if name in ("chatml", "countdown"):  # proven content-linear: the fast path was taken
        assert agent.chat.linear_reason is None and agent.chat._structures


def test_reply_with_trailing_text_after_the_stop_and_tool_errors_match():
    tok = chatml_tokenizer()
    replies = {1: CALL.format(t=1), 2: '{"name": "search_corpus", "parameters": {}}', 3: CALL.format(t=3) + "\n\n"}
    for on_error in ("continue", "stop"):
        _, fast = _run(tok, True, replies, max_generations=5, on_tool_error=on_error)
        _, full = _run(tok, False, replies, max_generations=5, on_tool_error=on_error)
        assert [_record(t) for t in fast] == [_record(t) for t in full]


_texts = st.lists(st.sampled_from(list("ab <>|\n\t{}\"'/\\é字") + ["<|im_end|>", "<|im_start|>", "\x00",
                                                                      "\x00RLINSPECT0\x00", "</think>"]),
                  max_size=20).map("".join)


@settings(max_examples=200, deadline=None)
@given(system=_texts, user=_texts, replies=st.lists(_texts, min_size=1, max_size=3),
       results=st.lists(_texts, min_size=3, max_size=3), cut=st.booleans())
def test_reused_rendering_and_batched_tokens_equal_the_full_path_for_any_text(system, user, replies, results, cut):
    tok = chatml_tokenizer()
    sides = [ChatTokenizer(tok), ChatTokenizer(tok, reuse_renderings=False)]
    outcomes = []
    for ct in sides:
        opening = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        ids, state = ct.start(opening)
        seq = TokenSequence()
        seq.add_prompt(ids)
        chat = list(opening)
        log = []
        for turn, (reply, result) in enumerate(zip(replies, results)):
            gen = list(tok(reply, add_special_tokens=False)["input_ids"])
            finish = "length" if cut and turn == 0 else "stop"
            if finish == "stop":
                gen.append(tok.eos_token_id)
            seq.add_generated(gen, [-0.5] * len(gen))
            chat.append({"role": "assistant", "content": reply})
            try:
                segments = ct.continue_chat(state, chat, gen, finish, [{"role": "tool", "content": result}],
                                            generation_prompt=turn < len(replies) - 1)
            except Exception as exc:  # noqa: BLE001  (both sides must raise the same)
                log.append(repr(exc))
                break
            for seg in segments:
                seq.add_scaffold(seg.ids)
            chat.append({"role": "tool", "content": result})
            log.append((segments, state.rewritten[-1], state.bodies[-1], state.gen_prompts[-1], state.rendered))
        outcomes.append((log, seq.ids, seq.mask, ct.drift(state, seq, chat)))
    assert outcomes[0] == outcomes[1]


def _old_cut(ids, offsets, texts, owners):
    """The per-token scan _cut replaced (core.rollout.chat before issue 9), kept as the reference."""
    bounds, total = [], 0
    for text in texts:
        total += len(text)
        bounds.append(total)
    piece_of, piece = [], 0
    for start, _end in offsets:
        while piece < len(bounds) - 1 and start >= bounds[piece]:
            piece += 1
        piece_of.append(piece)
    segments = []
    for i, tok in enumerate(ids):
        if i and piece_of[i] == piece_of[i - 1]:
            segments[-1].ids.append(tok)
        else:
            segments.append(Segment([tok], owners[piece_of[i]]))
    return segments


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=5),
       starts=st.lists(st.integers(0, 40), min_size=1, max_size=30))
def test_cut_by_bisection_equals_the_per_token_scan(lengths, starts):
    texts = ["x" * n for n in lengths]
    offsets = [(s, s + 1) for s in starts]  # any order: the scan's piece never goes back
    ids = list(range(len(offsets)))
    owners = list(range(len(texts)))
    assert _cut(ids, offsets, texts, owners) == _old_cut(ids, offsets, texts, owners)


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(st.lists(_texts, min_size=1, max_size=3), min_size=1, max_size=6))
def test_one_batched_call_gives_each_scaffold_the_ids_of_its_own_call(texts):
    ct = ChatTokenizer(chatml_tokenizer())
    pending = [PendingScaffold(list(t), [None] + list(range(len(t) - 1))) for t in texts]
    assert ct.tokenise(pending) == [ct.tokenise([p])[0] for p in pending]
    for p, segments in zip(pending, ct.tokenise(pending)):
        assert [i for s in segments for i in s.ids] == ct.encode("".join(p.texts))


def test_drift_many_equals_drift_one_by_one():
    tok = chatml_tokenizer()
    replies = {1: CALL.format(t=1), 2: CALL.format(t=2)}
    agent, batch = _run(tok, True, replies, max_generations=4)
    items = [(t.chat_state, t.tokens, [m.chat_dict() for m in t.messages if m.token_start is not None])
             for t in batch]
    # A retokenised reply: the model's ids are not the canonical encoding of its text.
    items[0][1].ids[items[0][1].prompt_len] += 1
    assert agent.chat.drift_many(items) == [agent.chat.drift(*item) for item in items]
    assert agent.chat.drift_many(items)[0][0] == items[0][1].prompt_len


def test_the_embedded_models_tokenizer_is_reused_and_exact():
    from core.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("default"))  # SmolLM2's ChatML template, its real BPE
    replies = {t: CALL.format(t=t) for t in range(1, 4)}
    agent, fast = _run(tok, True, replies, max_generations=4)
    _, full = _run(tok, False, replies, max_generations=4)
    assert [_record(t) for t in fast] == [_record(t) for t in full]
    assert agent.chat.linear_reason is None


def test_the_drift_check_witnesses_a_wrong_reused_rendering(monkeypatch):
    """The drift check renders in full, never through the placeholder renderings the turns used:
    a fault in the fast path (here a character dropped from every reused scaffold, after the
    first-use check passed) shows up as drift instead of being confirmed by itself."""
    from core.rollout import scaffold

    fill = scaffold.Structure.fill

    def faulty(self, contents, start=0):
        text = fill(self, contents, start)
        return text[:-2] + text[-1:] if start and len(text) > 2 else text

    monkeypatch.setattr(scaffold.Structure, "fill", faulty)
    _, batch = _run(chatml_tokenizer(), True, {1: CALL.format(t=1), 2: CALL.format(t=2)}, max_generations=4)
    assert all(t.drift_at is not None for t in batch)
    monkeypatch.setattr(scaffold.Structure, "fill", fill)
    _, clean = _run(chatml_tokenizer(), True, {1: CALL.format(t=1), 2: CALL.format(t=2)}, max_generations=4)
    assert all(t.drift_at is None for t in clean)
