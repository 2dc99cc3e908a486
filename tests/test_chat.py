"""Token-exact chats: masks on ChatML and Llama 3 templates, message spans, drift detection."""

from __future__ import annotations

import pytest

from core.chat import ChatTokenizer, first_difference, stop_token_ids
from core.tokens import TokenSequence
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
    seq.add_prompt(ct.prompt_ids(OPENING))
    gen1 = tok(CALL, add_special_tokens=False)["input_ids"]
    if finish_first == "stop":
        gen1 = gen1 + [tok.eos_token_id]
    span1 = seq.add_generated(gen1, [-0.5] * len(gen1))
    chat = OPENING + [{"role": "assistant", "content": CALL}]
    tool = {"role": "tool", "content": RESULT}
    tool_spans = []
    for seg in ct.continuation(gen1, finish_first, [tool], chat):
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
    gen = tok("hi", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    segs = ct.continuation(gen, "stop", [{"role": "tool", "content": "x"}], OPENING)
    assert tok.decode(segs[0].ids) == "\n" and segs[0].message_index is None


def test_truncated_turn_gets_the_whole_closing():
    tok = chatml_tokenizer()
    ct, seq, chat, (span1, _, _) = _grow(tok, finish_first="length")
    assert tok.decode(seq.ids[span1[1]: span1[1] + 2]).startswith("<|im_end|>")
    assert first_difference(seq.ids, ct.render_ids(chat)) is None


def test_template_that_is_not_prefix_stable_falls_back_and_drift_is_found():
    tok = countdown_tokenizer()
    ct, seq, chat, _ = _grow(tok)
    # The countdown template renumbers earlier messages when the chat grows, so the prompt the
    # model saw differs from rendering the final chat: that is drift, and it is located.
    at = first_difference(seq.ids, ct.render_ids(chat))
    assert at is not None and at < seq.prompt_len


def test_stop_ids_include_end_of_turn_tokens():
    tok = llama3_tokenizer()
    ids = stop_token_ids(tok)
    assert tok.convert_tokens_to_ids("<|eot_id|>") in ids
    assert tok.convert_tokens_to_ids("<|eom_id|>") in ids


def test_first_difference():
    assert first_difference([1, 2], [1, 2, 3]) is None
    assert first_difference([1, 5], [1, 2, 3]) == 1
    assert first_difference([1, 2, 3, 4], [1, 2, 3]) == 3
