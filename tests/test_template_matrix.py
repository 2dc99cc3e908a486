"""Every chat template TRL ships, driven through the agent loop with a scripted model.

Templates are read from the installed trl package (not copied here) onto small local tokenizers
carrying each family's special tokens. For each template the engine accepts, and each reply
shape (a tool call with reasoning, without, with an empty think block, a final answer at once):
- the ids handed to the model at every turn are the template's rendering of the chat so far,
  except the model's own replies (a template may render a reply differently from what the
  model wrote, e.g. Qwen3 strips or adds think blocks: those spans may differ, nothing else);
- each mask-1 span is exactly the ids the model generated, and every tool result was seen whole;
- the drift recorded at the end has an explained kind.
Each refused template is refused with its reason, before any model would load.
"""

from __future__ import annotations

from datetime import date

import pytest

from core.rollout.agent import Agent, AgentConfig
from core.rollout.chat import DRIFT_STOP_TOKEN, DRIFT_TEMPLATE_REWRITE
from core.rollout.prompts import SEARCH_TOOL_NAME
from core.data.records import Question
from core.rollout.templates import TemplateError, check_template, native_tool_support
from tests.local_tokenizers import (TRL_TEMPLATES, family_tokenizer, hermes_like_tokenizer,
                                    mistral_like_tokenizer)
from tests.scripted_backend import ScriptedBackend

CALL = '{"name": "search_corpus", "parameters": {"query": "%s"}}'
SHAPES = {
    "call_with_reasoning": "<think>I should search the corpus first.</think>\n" + CALL % "Veltran Observatory",
    "call_without_reasoning": CALL % "Veltran Observatory",
    "call_with_empty_think": "<think>\n\n</think>\n\n" + CALL % "Veltran Observatory",
    "final_answer": "<think>I know this.</think> Qoruna",
}
RESULT = "Result 1:\nThe Veltran Observatory was founded in 1873 on the island of Qoruna.\n------\n"

STEMS = sorted(p.stem for p in TRL_TEMPLATES.glob("*.jinja") if not p.stem.endswith("_training"))

REFUSED = {
    "phi3": "renders 'tool' messages without their content",
    "phi3_5": "renders 'tool' messages without their content",
    "gemma4": "renders 'tool' messages without their content",
    "gemma4_v3": "renders 'tool' messages without their content",
    "gemma4_v4": "renders 'tool' messages without their content",
    "gemma4_v5": "renders 'tool' messages without their content",
    "diffusion_gemma": "renders 'tool' messages without their content",
    "gptoss": "renders 'ipython' messages without their content and rejects a tool message",
    "idefics3": "drops the assistant's reply text",
    "smolvlm": "drops the assistant's reply text",
    "llava_next": "cannot render a user message and a reply",
}
"""Templates the engine refuses, with the reason it gives (a substring of the one-line error)."""

ADAPTED = {
    "gemma": (True, "user"),      # no system role; roles must alternate
    "gemma3": (False, "user"),    # its template folds the system prompt itself; roles must alternate
    "cohere": (False, "user"),    # roles must alternate
    "cohere2": (False, "user"),   # drops a tool message's content... after rejecting the tool role
}
"""(fold_system, tool_role) for templates run with an adaptation; all others: (False, "tool")."""

STOP_TOKEN_DRIFT = {"cohere2"}
"""Families whose closing holds text before the model's stop token ('<|END_RESPONSE|>')."""


def _run(tok, replies, chat_format=None, backend_options=None, **config):
    backend = ScriptedBackend(tok, lambda prompt, turn: replies.get(turn, "Qoruna"), **(backend_options or {}))
    agent = Agent(backend, lambda q, k: RESULT, AgentConfig(**config), chat_format=chat_format)
    traj = agent.start(Question("q1", "Where is the Veltran Observatory?", "Qoruna"))
    while not traj.finished:
        agent.step([traj])
    return agent, traj, backend


def _runs(values, mask, bit):
    """Consecutive runs of `values` where mask == bit, in order."""
    out, current = [], None
    for v, m in zip(values, mask):
        if m == bit:
            if current is None:
                current = []
                out.append(current)
            current.append(v)
        else:
            current = None
    return out


def _assert_prompt_is_the_templates_rendering(agent, traj, backend, turn):
    """The prompt of generation `turn` (1-based) against the template's rendering of the chat so far."""
    tok = agent.chat.tokenizer
    prompt = backend.prompts[turn - 1]
    seen = [d for m, d in zip(traj.messages, traj.chat()) if m.turn < turn and m.token_start is not None]
    rendering = agent.chat.render(seen, generation_prompt=True, fmt=traj.chat_state.fmt)
    if tok.decode(prompt) == rendering:
        assert prompt == agent.chat.encode(rendering), "same text, other ids"
        return
    # The template renders some reply differently from what the model wrote: every piece of
    # scaffolding the model was given must still be the template's text, in order, up to the end.
    # The generation prompt that opened a reply counts as part of that reply (Qwen3 and DeepSeek-R1
    # open with '<think>\n' and drop it when they re-render the reply).
    opening = seen[:2]
    with_prompt = agent.chat.render(opening, generation_prompt=True, fmt=traj.chat_state.fmt)
    gen_prompt = with_prompt[len(agent.chat.render(opening, fmt=traj.chat_state.fmt)):]
    pieces = [tok.decode(run) for run in _runs(prompt, traj.tokens.mask[: len(prompt)], 0)]
    for i, piece in enumerate(pieces[:-1]):
        if gen_prompt and piece.endswith(gen_prompt):
            pieces[i] = piece[: -len(gen_prompt)]
    assert rendering.startswith(pieces[0])
    pos = len(pieces[0])
    for piece in pieces[1:]:
        found = rendering.find(piece, pos)
        assert found >= 0, f"scaffold piece {piece[:60]!r} is not the template's text"
        pos = found + len(piece)
    assert pos == len(rendering), f"the rendering goes on after the last scaffold: {rendering[pos:][:60]!r}"


ACCEPTED = [s for s in STEMS if s not in REFUSED]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("stem", ACCEPTED)
def test_every_turn_is_the_templates_rendering_and_the_mask_is_exact(stem, shape):
    tok = family_tokenizer(stem)
    replies = ({1: SHAPES[shape]} if shape == "final_answer"
               else {1: SHAPES[shape], 2: CALL % "Qoruna island", 3: SHAPES["final_answer"]})
    agent, traj, backend = _run(tok, replies)
    assert traj.finish_reason == "answered", traj.finish_detail
    assert traj.turns == len(replies)
    fold, role = ADAPTED.get(stem, (False, "tool"))
    assert (agent.chat.fmt.fold_system, agent.chat.fmt.tool_role) == (fold, role)
    for turn in range(1, traj.turns + 1):
        _assert_prompt_is_the_templates_rendering(agent, traj, backend, turn)
    # Each mask-1 span is exactly what the model generated, turn by turn.
    assert _runs(traj.tokens.ids, traj.tokens.mask, 1) == backend.generated
    for m in traj.messages:
        if m.role == "tool":
            assert RESULT.strip() in tok.decode(traj.tokens.ids[m.token_start:m.token_end]) or \
                RESULT.strip().replace("\n", "\\n") in tok.decode(traj.tokens.ids[m.token_start:m.token_end])
    expected = {None, DRIFT_TEMPLATE_REWRITE} | ({DRIFT_STOP_TOKEN} if stem in STOP_TOKEN_DRIFT else set())
    assert traj.drift_kind in expected, (traj.drift_at, traj.drift_kind)


@pytest.mark.parametrize("stem", sorted(REFUSED))
def test_refused_templates_name_their_reason(stem):
    with pytest.raises(TemplateError, match="^chat template of " + stem + ": .*" + REFUSED[stem].replace("(", r"\(")):
        check_template(family_tokenizer(stem), stem)
    with pytest.raises(TemplateError):  # the agent refuses it too, before generating anything
        Agent(ScriptedBackend(family_tokenizer(stem), lambda p, t: "x"), lambda q, k: "", AgentConfig())


def test_hermes_style_template_needing_a_tools_list_is_refused():
    with pytest.raises(TemplateError, match="needs a tools list"):
        check_template(hermes_like_tokenizer())


def test_mistral_tool_call_ids_are_supplied_with_nine_alphanumerics():
    agent, traj, backend = _run(mistral_like_tokenizer(), {1: CALL % "a", 2: CALL % "b", 3: "Qoruna"})
    assert agent.chat.fmt.tool_call_ids
    assert traj.finish_reason == "answered" and traj.drift_at is None
    text = agent.chat.tokenizer.decode(traj.tokens.ids)
    assert '"call_id": "call00001"' in text and '"call_id": "call00002"' in text


def test_qwen3_cut_prompt_case_is_whole():
    """The issue's case: no think block in the first reply. Before the fix the next prompt lost
    `<|im_start|>user\\n<t` and went on with 'ool_response>'."""
    agent, traj, backend = _run(family_tokenizer("qwen3"), {1: CALL % "x", 2: "Qoruna"})
    second = agent.chat.tokenizer.decode(backend.prompts[1])
    assert "<|im_end|>\n<|im_start|>user\n<tool_response>\n" + RESULT + "\n</tool_response>" in second


@pytest.mark.parametrize("stem, stop", [("qwen2_5", "<|endoftext|>"), ("llama3_1", "<|eom_id|>")])
def test_another_stop_token_ends_the_reply_and_only_the_rest_of_the_closing_follows(stem, stop):
    tok = family_tokenizer(stem)
    stop_id = tok.convert_tokens_to_ids(stop)
    backend = ScriptedBackend(tok, lambda p, t: {1: CALL % "x"}.get(t, "Qoruna"), stop_id=stop_id)
    agent = Agent(backend, lambda q, k: RESULT, AgentConfig())
    traj = agent.start(Question("q1", "Where?", "Qoruna"))
    while not traj.finished:
        agent.step([traj])
    reply = traj.messages[2]
    assert traj.tokens.ids[reply.token_end - 1] == stop_id
    after = tok.decode(traj.tokens.ids[reply.token_end: reply.token_end + 3])
    end_of_turn = "<|im_end|>" if stem == "qwen2_5" else "<|eot_id|>"
    assert not after.startswith(end_of_turn), after  # the template's closing is not appended whole
    assert traj.drift_kind == DRIFT_STOP_TOKEN and traj.drift_at == reply.token_end - 1


def test_date_printing_template_keeps_the_start_date_for_the_whole_trajectory(monkeypatch):
    import core.rollout.agent

    days = iter([date(2024, 7, 26), date(2024, 7, 27), date(2024, 7, 28)])

    class Clock(date):
        @classmethod
        def today(cls):
            return next(days)

    monkeypatch.setattr(core.rollout.agent, "date", Clock)
    tok = family_tokenizer("llama3_1")
    agent, traj, backend = _run(tok, {1: CALL % "a", 2: "Qoruna"})
    assert traj.finish_reason == "answered" and traj.drift_at is None
    for prompt in backend.prompts:
        assert "Today Date: 26 Jul 2024" in tok.decode(prompt)


@pytest.mark.slow  # imports trl.chat_template_utils (~10 s)
@pytest.mark.parametrize("stem", STEMS)
def test_refusals_name_native_tool_calling_where_trl_finds_tool_support(stem):
    from trl.chat_template_utils import supports_tool_calling

    tok = family_tokenizer(stem)
    if stem not in REFUSED:
        check_template(tok, stem)
        return
    with pytest.raises(TemplateError) as refused:
        check_template(tok, stem)
    assert ("native tool calling" in str(refused.value)) == supports_tool_calling(tok)


# --- Native tool calling (--tool-format native): the tool schema and calls go through the template ---
NATIVE = ["diffusion_gemma", "gemma4", "gemma4_v2", "gemma4_v3", "gemma4_v4", "gemma4_v5", "glm4moe", "lfm2_2_5",
          "lfm2_2_5_v2", "lfm2_2_5_vl", "lfm2_v2", "llama3_1", "llama3_2", "nemotron_3_5_lightning",
          "nemotron_3_nano", "nemotron_3_super", "nemotron_3_ultra", "qwen2_5", "qwen3", "qwen3_5_nothink",
          "qwen3_5_think", "qwen3_6", "qwen3_8", "qwen3_instruct_2507", "qwen3_vl"]
"""Families whose template renders tools, structured calls and results, in a call syntax we parse."""


_CALL_MARKS = (("<tool_call>", "</tool_call>"), ("<|tool_call>", "<tool_call|>"),
               ("<|tool_call_start|>", "<|tool_call_end|>"), ('{"name"', "}}"))


def _native_call(tok, query, whole=False):
    """The call as the template writes it for a structured tool call: what a model trained on
    that template generates (from its call marker to the marker's end; whole: the rendering)."""
    from core.rollout.prompts import SEARCH_TOOL

    call = {"id": "call00001", "type": "function", "function": {"name": "search_corpus", "arguments": {"query": query}}}
    chat = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    full = tok.apply_chat_template(chat, tokenize=False, tools=[SEARCH_TOOL])
    if whole:
        return full
    start, end_mark = max((full.rfind(a), b) for a, b in _CALL_MARKS)
    return full[start: full.index(end_mark, start) + len(end_mark)]


def test_native_families_are_the_ones_listed():
    assert [s for s in STEMS if native_tool_support(family_tokenizer(s)) is None] == NATIVE


@pytest.mark.parametrize("stem", NATIVE)
def test_native_tool_calling_every_turn_is_the_templates_rendering(stem):
    tok = family_tokenizer(stem)
    fmt = check_template(tok, stem, "native")
    replies = {1: _native_call(tok, "Veltran Observatory"), 2: _native_call(tok, "Qoruna island"),
               3: SHAPES["final_answer"]}
    options = None
    if "<tool_call|><|tool_response>" in _native_call(tok, "x", whole=True):
        # Gemma 4 (but v2) writes the result inside the model's turn, right after the call: the
        # model ends a call on `<|tool_response>` (listed as a stop id), an answer on `<turn|>`.
        call_stop = tok.convert_tokens_to_ids("<|tool_response>")
        options = {"stop_id": call_stop,
                   "stop_for": lambda reply: call_stop if "<|tool_call>" in reply else tok.eos_token_id}
    agent, traj, backend = _run(tok, replies, chat_format=fmt, backend_options=options)
    assert traj.finish_reason == "answered" and traj.turns == 3, traj.finish_detail
    assert [m.tool_call.arguments["query"] for m in traj.messages if m.tool_call] == ["Veltran Observatory",
                                                                                        "Qoruna island"]
    first = tok.decode(backend.prompts[0])
    assert "Look up passages of the knowledge corpus" in first  # the schema, shown by the template
    assert '"required": [' not in first.split("Question:")[-1]  # not the seed's definition in the prompt
    for turn in range(1, 4):
        _assert_prompt_is_the_templates_rendering(agent, traj, backend, turn)
    assert _runs(traj.tokens.ids, traj.tokens.mask, 1) == backend.generated
    for m in traj.messages:
        if m.role == "tool":
            assert "founded in 1873" in tok.decode(traj.tokens.ids[m.token_start:m.token_end])
    assert traj.drift_kind in (None, DRIFT_TEMPLATE_REWRITE), (traj.drift_at, traj.drift_kind)
    # The reply's own call text is not left in the content the template re-renders it from.
    rendered = traj.chat_state.fmt.adapt(traj.chat())
    calls = [d for d in rendered if d.get("tool_calls")]
    assert len(calls) == 2 and all(SEARCH_TOOL_NAME not in d["content"] for d in calls)


@pytest.mark.parametrize("stem", ["gptoss", "muse_glimmer", "lfm2", "deepseekv3", "phi3_5", "llama3"])
def test_native_is_refused_with_the_reason_and_auto_falls_back_to_the_seed_format(stem):
    tok = family_tokenizer(stem)
    with pytest.raises(TemplateError, match="no native tool calling: it "):
        check_template(tok, stem, "native")
    if stem not in REFUSED:
        assert not check_template(tok, stem, "auto").native_tools
