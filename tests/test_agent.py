"""The agent loop's stop rules, tool errors, token budget and masks, with a scripted backend."""

from __future__ import annotations

import math

import pytest

from core.rollout.agent import Agent, AgentConfig
from core.rollout.chat import first_difference
from core.data.records import Question
from tests.local_tokenizers import chatml_tokenizer, llama3_tokenizer
from tests.scripted_backend import ScriptedBackend

Q = Question("q1", "Where is the Veltran Observatory?", "Qoruna", chunk_content="founded in 1873 on Qoruna")
CALL = '{"name": "search_corpus", "parameters": {"query": "%s"}}'


def _search_log():
    queries = []

    def search(query: str, k: int) -> str:
        queries.append((query, k))
        return f"Result 1:\nThe Veltran Observatory was founded in 1873 on Qoruna ({query}).\n------\n"

    return search, queries


def _run(script, tok=None, **config):
    tok = tok or chatml_tokenizer()
    backend = ScriptedBackend(tok, script)
    search, queries = _search_log()
    agent = Agent(backend, search, AgentConfig(**config))
    traj = agent.start(Q)
    while not traj.finished:
        agent.step([traj])
    return agent, traj, queries, backend


def test_answer_after_one_search():
    replies = {1: CALL % "Veltran Observatory", 2: "<think>It says Qoruna.</think> Qoruna"}
    agent, traj, queries, _ = _run(lambda prompt, turn: replies[turn])
    assert traj.finish_reason == "answered"
    assert [m.role for m in traj.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert [m.turn for m in traj.messages] == [0, 0, 1, 1, 2]
    assert queries == [("Veltran Observatory", 2)]
    assert traj.messages[2].tool_call.arguments == {"query": "Veltran Observatory"}
    assert (traj.turns, traj.tool_calls, traj.tool_errors, traj.drift_at) == (2, 1, 0, None)
    # The tool result the model saw is inside the sequence at the message's span, unmasked.
    tool = traj.messages[3]
    assert "founded in 1873" in agent.chat.tokenizer.decode(traj.tokens.ids[tool.token_start:tool.token_end])
    assert set(traj.tokens.mask[tool.token_start:tool.token_end]) == {0}
    # Logprobs exist exactly where the mask is 1.
    assert all((m == 1) == (not math.isnan(lp)) for m, lp in zip(traj.tokens.mask, traj.tokens.logprobs))


@pytest.mark.parametrize("reply, kind", [
    (CALL % "a" + " and " + CALL % "b", "multiple_calls"),
    ('{"name": "web_search", "parameters": {"query": "x"}}', "unknown_tool"),
    ('{"name": "search_corpus", "parameters": {}}', "missing_query"),
    ("<tool_call>{not json}</tool_call>", "invalid_json"),
])
def test_tool_errors_end_the_trajectory_by_default(reply, kind):
    _, traj, queries, _ = _run(lambda prompt, turn: reply)
    assert traj.finish_reason == "tool_error" and traj.tool_errors == 1 and queries == []
    assert traj.messages[-2].tool_error.kind == kind  # on the assistant message that made the call
    last = traj.messages[-1]
    assert last.role == "tool" and last.tool_error.kind == kind and kind in last.content
    assert last.token_start is None  # the model never saw it, so it has no tokens


def test_tool_error_can_be_shown_to_the_model():
    replies = {1: '{"name": "web_search", "parameters": {"query": "x"}}', 2: "Qoruna"}
    _, traj, _, _ = _run(lambda prompt, turn: replies[turn], on_tool_error="continue")
    assert traj.finish_reason == "answered" and traj.tool_errors == 1
    assert traj.messages[3].token_start is not None  # this time the error was tokenised


def test_failing_search_is_a_tool_error_not_a_crash():
    tok = chatml_tokenizer()

    def broken(query, k):
        raise OSError("index file vanished")

    agent = Agent(ScriptedBackend(tok, lambda p, t: CALL % "x"), broken, AgentConfig())
    traj = agent.start(Q)
    agent.step([traj])
    assert traj.finish_reason == "tool_error"
    assert traj.messages[-1].tool_error.kind == "search_failed"
    assert "index file vanished" in traj.messages[-1].tool_error.message


def test_max_generations_ends_with_the_last_tool_result_and_no_generation_prompt():
    agent, traj, queries, _ = _run(lambda prompt, turn: CALL % f"try {turn}", max_generations=3)
    assert traj.finish_reason == "max_turns" and traj.turns == 3 and len(queries) == 3
    assert traj.messages[-1].role == "tool"
    assert not agent.chat.tokenizer.decode(traj.tokens.ids).endswith("<|im_start|>assistant\n")
    assert traj.drift_at is None


def test_token_budget_covers_the_whole_trajectory():
    # Each turn's call plus its search result is well over 30 tokens: the budget of 60 is spent
    # after the second turn, and the second generation was cut to what was left.
    _, traj, _, _ = _run(lambda prompt, turn: CALL % "Veltran", max_new_tokens=60, max_tokens_per_turn=50)
    second = traj.messages[4]
    used_before_second = second.token_start - traj.tokens.prompt_len  # turn 1 and the next prompt
    assert 30 < used_before_second < 60
    assert traj.finish_reason == "max_tokens" and traj.turns == 2
    assert second.token_end - second.token_start == 60 - used_before_second
    assert traj.tokens.completion_len == 60


def test_truncated_answer_is_max_tokens_not_answered():
    _, traj, _, _ = _run(lambda prompt, turn: "word " * 100, max_tokens_per_turn=10)
    assert traj.finish_reason == "max_tokens" and traj.tokens.generated_count == 10


def test_batch_generates_every_unfinished_trajectory_in_one_call():
    tok = chatml_tokenizer()
    # Question 1 answers at once, question 2 searches first: turn 2 generates for one chat only.
    def script(prompt, turn):
        return "Qoruna" if "first" in prompt or turn == 2 else CALL % "x"

    backend = ScriptedBackend(tok, script)
    search, _ = _search_log()
    agent = Agent(backend, search, AgentConfig())
    batch = [agent.start(Question("a", "first question?", "x")), agent.start(Question("b", "second?", "y"))]
    while not all(t.finished for t in batch):
        agent.step(batch)
    assert backend.calls == [2, 1]


@pytest.mark.parametrize("make", [chatml_tokenizer, llama3_tokenizer], ids=["chatml", "llama3"])
def test_mask_is_exact_and_no_drift_on_both_templates(make):
    tok = make()
    replies = {1: CALL % "Veltran", 2: CALL % "Qoruna island", 3: "Qoruna"}
    agent, traj, _, _ = _run(lambda prompt, turn: replies[turn], tok=tok)
    generated = [i for i, m in zip(traj.tokens.ids, traj.tokens.mask) if m]
    expected = []
    for turn in (1, 2, 3):
        expected += list(tok(replies[turn], add_special_tokens=False)["input_ids"]) + [tok.eos_token_id]
    assert generated == expected
    seen = [m.chat_dict() for m in traj.messages]
    assert first_difference(traj.tokens.ids, agent.chat.render_ids(seen)) is None


def test_template_that_rewrites_earlier_scaffolding_ends_the_trajectory_as_template_mismatch():
    from tests.local_tokenizers import countdown_tokenizer

    _, traj, queries, backend = _run(lambda prompt, turn: CALL % "Veltran", tok=countdown_tokenizer())
    assert traj.finish_reason == "template_mismatch" and traj.turns == 1
    assert traj.finish_detail.startswith("the template renders the earlier chat differently at character")
    assert backend.calls == [1]  # never generated from a prompt that is not the template's
    assert traj.messages[-1].role == "tool" and traj.messages[-1].token_start is None


def test_template_that_raises_mid_chat_ends_the_trajectory_instead_of_crashing_the_run():
    import copy

    tok = copy.deepcopy(chatml_tokenizer())
    # Accepts the probes, then refuses a chat of more than six messages (the third tool result).
    tok.chat_template = ("{% if messages|length > 6 %}{{ raise_exception('too long') }}{% endif %}"
                         + tok.chat_template)
    _, traj, _, _ = _run(lambda prompt, turn: CALL % f"q{turn}", tok=tok)
    assert traj.finish_reason == "template_mismatch" and traj.turns == 3
    assert "the template cannot render the chat so far" in traj.finish_detail and "too long" in traj.finish_detail
