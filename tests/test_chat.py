"""Token-exact chats: masks on ChatML and Llama 3 templates, message spans, drift detection."""

from __future__ import annotations

import pytest

from core.rollout.chat import (DRIFT_RETOKENIZATION, DRIFT_TEMPLATE_REWRITE, ChatTokenizer, TemplateMismatch,
                       first_difference, stop_token_ids)
from core.rollout.tokens import TokenSequence
from tests.local_tokenizers import chatml_tokenizer, countdown_tokenizer, llama3_tokenizer

OPENING = [{"role": "system", "content": "You are helpful."},
           {"role": "user", "content": "Question: where is the Veltran Observatory?"}]
CALL = '{"name": "search_corpus", "parameters": {"query": "Veltran Observatory"}}'
RESULT = "Result 1:\nThe Veltran Observatory was founded in 1873 on the island of Qoruna.\n------\n"
ANSWER = "<think> The result says Qoruna. </think> Qoruna"


def _grow(tok, finish_first="stop"):
    """Build a two-turn chat the way the agent does; return the sequence, the chat and spans."""
    ct = ChatTokenizer(tok)
    seq = TokenSequence()
    ids, state = ct.start(OPENING)
    seq.add_prompt(ids)
    gen1 = tok(CALL, add_special_tokens=False)["input_ids"]
    if finish_first == "stop":
        gen1 = gen1 + [tok.eos_token_id]
    span1 = seq.add_generated(gen1, [-0.5] * len(gen1))
    chat = OPENING + [{"role": "assistant", "content": CALL}]
    tool = {"role": "tool", "content": RESULT}
    tool_spans = []
    for seg in ct.continue_chat(state, chat, gen1, finish_first, [tool]):
        span = seq.add_scaffold(seg.ids)
        if seg.message_index == 0:
            tool_spans.append(span)
    chat.append(tool)
    gen2 = tok(ANSWER, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    span2 = seq.add_generated(gen2, [-0.1] * len(gen2))
    chat.append({"role": "assistant", "content": ANSWER})
    return ct, seq, chat, (span1, tool_spans, span2)


@pytest.mark.parametrize("make", [chatml_tokenizer, llama3_tokenizer], ids=["chatml", "llama3"])
def test_mask_covers_exactly_the_generated_tokens(make):
    tok = make()
    ct, seq, chat, (span1, _, span2) = _grow(tok)
    trained = [i for i, m in zip(seq.ids, seq.mask) if m]
    expected = (tok(CALL, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                + tok(ANSWER, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    assert trained == expected
    assert seq.mask[: seq.prompt_len] == [0] * seq.prompt_len
    assert sum(seq.mask) == (span1[1] - span1[0]) + (span2[1] - span2[0])
    # Rendering the whole chat and tokenising it agrees with the grown sequence: no drift.
    assert first_difference(seq.ids, ct.render_ids(chat)) is None


@pytest.mark.parametrize("make", [chatml_tokenizer, llama3_tokenizer], ids=["chatml", "llama3"])
def test_tool_message_span_holds_its_content_and_scaffolding_is_unmasked(make):
    tok = make()
    _, seq, _, (_, tool_spans, _) = _grow(tok)
    (start, end), = tool_spans
    text = tok.decode(seq.ids[start:end])
    assert "Veltran Observatory was founded in 1873" in text and "tool" in text
    assert seq.mask[start:end] == [0] * (end - start)
    header = "<|im_start|>assistant\n" if make is chatml_tokenizer else "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert tok.decode(seq.ids[end:]).startswith(header)


def test_chatml_adds_only_the_newline_the_model_did_not_write():
    tok = chatml_tokenizer()
    ct = ChatTokenizer(tok)
    _, state = ct.start(OPENING)
    gen = tok("hi", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    chat = OPENING + [{"role": "assistant", "content": "hi"}]
    segs = ct.continue_chat(state, chat, gen, "stop", [{"role": "tool", "content": "x"}])
    assert tok.decode(segs[0].ids) == "\n" and segs[0].message_index is None


def test_truncated_turn_gets_the_whole_closing():
    tok = chatml_tokenizer()
    ct, seq, chat, (span1, _, _) = _grow(tok, finish_first="length")
    assert tok.decode(seq.ids[span1[1]: span1[1] + 2]).startswith("<|im_end|>")
    assert first_difference(seq.ids, ct.render_ids(chat)) is None


def test_template_that_rewrites_earlier_scaffolding_is_a_mismatch_not_a_cut_prompt():
    tok = countdown_tokenizer()
    # The countdown template renumbers earlier messages when the chat grows: no prompt for the
    # next turn is both the template's rendering and an extension of what the model was given.
    with pytest.raises(TemplateMismatch, match="renders the earlier chat differently at character"):
        _grow(tok)


def test_stop_ids_include_end_of_turn_tokens():
    tok = llama3_tokenizer()
    ids = stop_token_ids(tok)
    assert tok.convert_tokens_to_ids("<|eot_id|>") in ids
    assert tok.convert_tokens_to_ids("<|eom_id|>") in ids


def test_first_difference():
    assert first_difference([1, 2], [1, 2, 3]) is None
    assert first_difference([1, 5], [1, 2, 3]) == 1
    assert first_difference([1, 2, 3, 4], [1, 2, 3]) == 3


def test_qwen3_reply_without_think_block_gets_the_whole_tool_result_in_the_next_prompt():
    """Qwen3's template renders an assistant reply without reasoning differently once a tool result
    follows it; the old fallback then cut `<|im_start|>user\\n<t` off the next prompt."""
    from tests.local_tokenizers import family_tokenizer
    from tests.scripted_backend import ScriptedBackend
    from core.rollout.agent import Agent, AgentConfig
    from core.data.records import Question

    tok = family_tokenizer("qwen3")
    prompts = []

    def script(prompt, turn):
        prompts.append(prompt)
        return CALL if turn == 1 else "Qoruna"

    agent = Agent(ScriptedBackend(tok, script), lambda q, k: RESULT, AgentConfig())
    traj = agent.start(Question("q", "Where is the Veltran Observatory?", "Qoruna"))
    while not traj.finished:
        agent.step([traj])
    assert "<|im_end|>\n<|im_start|>user\n<tool_response>\n" + RESULT in prompts[1]
    # The prompt of turn 2 is the template's own rendering of the chat so far.
    chat = [m.chat_dict() for m in traj.messages[:4]]
    assert prompts[1] == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


def _finish_with(tok, reply_ids, finish="stop"):
    """One-turn chat whose reply is `reply_ids` (the model's own ids), then its drift."""
    ct = ChatTokenizer(tok)
    seq = TokenSequence()
    ids, state = ct.start(OPENING)
    seq.add_prompt(ids)
    seq.add_generated(reply_ids, [-0.1] * len(reply_ids))
    text = tok.decode(reply_ids[:-1] if finish == "stop" else reply_ids)
    return ct.drift(state, seq, OPENING + [{"role": "assistant", "content": text}])


def test_drift_kind_retokenization_when_the_models_ids_are_not_the_canonical_encoding():
    tok = chatml_tokenizer()
    canonical = tok("Qoruna", add_special_tokens=False)["input_ids"]
    spelled = [i for ch in "Qoruna" for i in tok(ch, add_special_tokens=False)["input_ids"]]
    assert spelled != canonical  # same text, other ids: what a sampling model may produce
    at, kind = _finish_with(tok, spelled + [tok.eos_token_id])
    assert kind == DRIFT_RETOKENIZATION and at is not None


def test_drift_kind_template_rewrite_when_qwen3_adds_an_empty_think_block_to_the_final_answer():
    from tests.local_tokenizers import family_tokenizer

    tok = family_tokenizer("qwen3")
    reply = tok("Qoruna", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ct = ChatTokenizer(tok)
    prompt_len = len(ct.start(OPENING)[0])
    at, kind = _finish_with(tok, reply)
    # Re-rendered, the final answer gets '<think>\n\n</think>\n\n' before it: harmless.
    assert (at, kind) == (prompt_len, DRIFT_TEMPLATE_REWRITE)


def test_no_drift_kind_without_drift():
    tok = chatml_tokenizer()
    reply = tok("Qoruna", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert _finish_with(tok, reply) == (None, None)
