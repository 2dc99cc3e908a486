"""Generations cut by a token limit (issue 13, "cut-off generations").

A reply stopped by --max-tokens-per-turn, the trajectory's token budget or the context length is a
truncation whatever it holds: it ends as max_tokens (context_length when the context is full), its
call is never run, the rewards are the same for a tagged and a bare call, and the transcript says
the turn was cut. A trajectory that ends on its budget right after the next generation prompt was
appended holds exactly the rendered chat plus that prompt: no drift.
"""

from __future__ import annotations

import pytest

from core.data.records import Question
from core.rollout.agent import Agent, AgentConfig
from core.scoring.rewards import formatting, retry_behavior
from tests.local_tokenizers import chatml_tokenizer, llama3_tokenizer
from tests.scripted_backend import ScriptedBackend

Q = Question("q1", "Where is the Veltran Observatory?", "Qoruna", chunk_content="founded in 1873 on Qoruna")
JSON_CALL = '{"name": "search_corpus", "arguments": {"query": "Veltran Observatory founding"}}'
TAGGED_CALL = f"<tool_call>\n{JSON_CALL}\n</tool_call>"


def _run(script, tok=None, **config):
    tok = tok or chatml_tokenizer()
    backend = ScriptedBackend(tok, script)
    queries: list[str] = []

    def search(query: str, k: int) -> str:
        queries.append(query)
        return f"Result 1:\nThe Veltran Observatory was founded in 1873 on Qoruna ({query}).\n------\n"

    agent = Agent(backend, search, AgentConfig(**config))
    traj = agent.start(Q)
    while not traj.finished:
        agent.step([traj])
    return agent, traj, queries


def _ntok(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


# --- one finish reason, the same rewards, whatever the cut reply holds --------------------------

def test_a_call_cut_inside_tool_call_tags_ends_like_a_cut_bare_call():
    tok = chatml_tokenizer()
    # Each reply is cut 10 tokens into its JSON.
    tagged = _run(lambda p, t: TAGGED_CALL, max_tokens_per_turn=_ntok(tok, "<tool_call>\n") + 10)
    bare = _run(lambda p, t: JSON_CALL, max_tokens_per_turn=10)
    for agent, traj, queries in (tagged, bare):
        reply = traj.messages[-1]
        assert traj.finish_reason == "max_tokens", reply.content
        assert traj.tool_errors == 0 and queries == []
        assert reply.role == "assistant" and reply.tool_error is None and reply.tool_call is None
        assert reply.content and JSON_CALL.startswith(reply.content.removeprefix("<tool_call>\n"))
        assert traj.drift_at is None
    (_, t1, _), (_, t2, _) = tagged, bare
    assert formatting(t1.messages) == formatting(t2.messages) == (0.7, {"tool_errors": []})
    assert retry_behavior(t1.messages) == retry_behavior(t2.messages)
    assert t1.tool_calls == t2.tool_calls == 1


def test_a_complete_looking_call_cut_before_its_stop_token_is_not_run():
    # The limit falls exactly on the stop token: the text is a whole call, but the model never
    # ended its turn. A truncation is a truncation: the call is not run (see Agent._after_generation).
    tok = chatml_tokenizer()
    for reply in (JSON_CALL, TAGGED_CALL):
        _, traj, queries = _run(lambda p, t: reply, max_tokens_per_turn=_ntok(tok, reply))
        assert traj.finish_reason == "max_tokens" and queries == []
        assert traj.messages[-1].content == reply and traj.messages[-1].tool_call is None
        assert traj.tool_calls == 1 and traj.tool_errors == 0


def test_a_cut_answer_is_still_max_tokens():
    _, traj, _ = _run(lambda p, t: "The observatory is on Qoruna, " * 20, max_tokens_per_turn=8)
    assert traj.finish_reason == "max_tokens" and traj.tokens.generated_count == 8


def test_a_call_cut_by_the_context_length_ends_as_context_length():
    tok = chatml_tokenizer()
    probe = Agent(ScriptedBackend(tok, lambda p, t: ""), lambda q, k: "", AgentConfig())
    prompt_len = len(probe.start(Q).tokens.ids)
    agent, traj, queries = _run(lambda p, t: TAGGED_CALL, context_length=prompt_len + 25)
    assert traj.finish_reason == "context_length" and queries == [] and traj.tool_errors == 0
    assert traj.messages[-1].tool_error is None and traj.drift_at is None


def test_a_cut_on_a_later_turn_keeps_the_earlier_calls():
    tok = chatml_tokenizer()
    replies = {1: JSON_CALL, 2: TAGGED_CALL}
    _, traj, queries = _run(lambda p, t: replies[t], max_tokens_per_turn=_ntok(tok, JSON_CALL) + 1,
                            max_new_tokens=10_000)
    assert queries == ["Veltran Observatory founding"]
    assert traj.finish_reason == "max_tokens" and traj.turns == 2 and traj.tool_errors == 0
    assert traj.messages[2].tool_call is not None and traj.messages[-1].tool_call is None


# --- drift: a trailing generation prompt is not drift ---------------------------------------------

@pytest.mark.parametrize("make", [chatml_tokenizer, llama3_tokenizer], ids=["chatml", "llama3"])
def test_budget_spent_right_after_the_next_generation_prompt_is_not_drift(make):
    tok = make()
    agent, traj, queries = _run(lambda p, t: JSON_CALL, tok=tok, max_new_tokens=_ntok(tok, JSON_CALL) + 2)
    assert queries == ["Veltran Observatory founding"]
    assert traj.finish_reason == "max_tokens" and traj.turns == 1
    gp = agent.chat.render([{"role": "user", "content": "x"}], True)[len(agent.chat.render(
        [{"role": "user", "content": "x"}], False)):]
    assert gp and tok.decode(traj.tokens.ids).endswith(gp)  # the next generation prompt was appended
    seen = [m.chat_dict() for m in traj.messages]
    with_prompt = tok(agent.chat.render(seen, True), add_special_tokens=False)["input_ids"]
    assert traj.tokens.ids == with_prompt  # exactly the rendered chat plus the generation prompt
    assert (traj.drift_at, traj.drift_kind) == (None, None)


def test_opening_prompt_that_fills_the_context_is_not_drift():
    tok = chatml_tokenizer()
    probe = Agent(ScriptedBackend(tok, lambda p, t: ""), lambda q, k: "", AgentConfig())
    prompt_len = len(probe.start(Q).tokens.ids)
    _, traj, _ = _run(lambda p, t: "x", context_length=prompt_len)
    assert traj.finish_reason == "context_length" and traj.turns == 0
    assert (traj.drift_at, traj.drift_kind) == (None, None)


def test_real_drift_after_a_generation_prompt_is_still_reported():
    # A reply whose ids are not the tokenizer's encoding of its text drifts, generation prompt or not.
    tok = chatml_tokenizer()
    text = "Qoruna"
    chars = [tok.convert_tokens_to_ids(c) for c in text]
    assert None not in chars and chars != tok(text, add_special_tokens=False)["input_ids"]  # one character a token

    class CharBackend(ScriptedBackend):
        def generate(self, prompts, max_tokens, sampling):
            outs = super().generate(prompts, max_tokens, sampling)
            for out in outs:
                if out.text == text:
                    out.token_ids[:] = chars + [tok.eos_token_id]
                    out.logprobs[:] = [-0.1] * len(out.token_ids)
            return outs

    replies = {1: JSON_CALL, 2: text}
    backend = CharBackend(tok, lambda p, t: replies[t])
    agent = Agent(backend, lambda q, k: "Result 1: Qoruna", AgentConfig())
    traj = agent.start(Q)
    while not traj.finished:
        agent.step([traj])
    assert traj.finish_reason == "answered"
    assert traj.drift_at is not None and traj.drift_kind == "retokenization"


# --- the transcript says the turn was cut ---------------------------------------------------------

def test_cut_line_names_the_limit():
    from inspector.tui.render import cut_line

    assert "cut" in cut_line("max_tokens").plain.lower() and "max_tokens" in cut_line("max_tokens").plain
    assert "context_length" in cut_line("context_length").plain
    assert cut_line("answered") is None


async def test_transcript_marks_the_cut_reply():
    from textual.app import App

    from inspector.tui.widgets.transcript import Transcript

    _, traj, _ = _run(lambda p, t: TAGGED_CALL, max_tokens_per_turn=20)
    assert traj.finish_reason == "max_tokens"

    class Host(App):
        def compose(self):
            yield Transcript()

    app = Host()
    async with app.run_test(size=(100, 40)) as pilot:
        transcript = app.query_one(Transcript)
        transcript.show(traj.messages, Q, None, "Qoruna", False, finish_reason=traj.finish_reason)
        await pilot.pause()
        cut = [w.content.plain for w in transcript.query(".cut")]
        assert len(cut) == 1 and "max_tokens" in cut[0]
        # An answered trajectory shows no cut mark.
        transcript.show(traj.messages[:-1], Q, None, "Qoruna", False, finish_reason="answered")
        await pilot.pause()
        assert not transcript.query(".cut")
