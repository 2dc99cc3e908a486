"""The chat layer through `evaluate`: drift kinds stored and counted, --chat-template, refusals
before the model loads, context length."""

from __future__ import annotations

import copy

import pytest

import core.evaluate
from core.rollout.agent import Agent, AgentConfig
from core.config import EvalConfig
from core.evaluate import evaluate
from core.models import ModelRef
from core.data.records import InputError, Question
from core.store import Store
from core.rollout.templates import TemplateError, load_chat_template
from tests.local_tokenizers import family_tokenizer, trl_template
from tests.scripted_backend import ScriptedBackend

CALL = '{"name": "search_corpus", "parameters": {"query": "%s"}}'


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))


def _config(**kw):
    return EvalConfig(demo_chunks=20, split="all", judge="exact", batch_size=4, max_new_tokens=8192, limit=4, **kw)


def test_drift_kinds_are_stored_and_counted_in_the_summary(tmp_path):
    tok = family_tokenizer("qwen2_5")
    backend = ScriptedBackend(tok, lambda p, t: CALL % "x" if t == 1 else "Qoruna",
                              stop_id=tok.convert_tokens_to_ids("<|endoftext|>"))
    summary = evaluate(_config(tool_format="seed"), tmp_path / "runs.db", backend=backend)
    assert summary["drifted_trajectories"] == 4 and summary["drift_kinds"] == {"stop_token": 4}
    with Store.open_readonly(tmp_path / "runs.db") as store:
        rows = store.trajectory_rows(summary["run_id"])
        assert {r["drift_kind"] for r in rows} == {"stop_token"}


def test_chat_template_file_overrides_the_models_template(tmp_path):
    template = tmp_path / "qwen3.jinja"
    template.write_text(trl_template("qwen3"), encoding="utf-8")
    tok = copy.deepcopy(family_tokenizer("qwen2_5"))  # a ChatML tokenizer whose own template is Qwen2.5's
    prompts = []

    def script(prompt, turn):
        prompts.append(prompt)
        return CALL % "x" if turn == 1 else "Qoruna"

    summary = evaluate(_config(chat_template=str(template)), tmp_path / "runs.db",
                       backend=ScriptedBackend(tok, script))
    assert summary["finish_reasons"] == {"answered": 4}
    assert tok.chat_template == trl_template("qwen3")
    # The tool results reached the model whole, in Qwen3's format.
    later = [p for p in prompts if p.count("<|im_start|>") > 3]
    assert len(later) == 4, prompts[-1]
    assert all("<|im_end|>\n<|im_start|>user\n<tool_response>\nNo results found.\n</tool_response><|im_end|>\n"
               "<|im_start|>assistant\n" in p for p in later), later[0][-300:]


@pytest.mark.parametrize("content, message", [
    (None, "no such chat template file"),
    ("", "the chat template file is empty"),
    ("just text", "not a Jinja chat template"),
    ("{% for m in messages %}{{ m.content }", "Jinja syntax error"),
])
def test_bad_chat_template_file_is_an_input_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "t.jinja"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=f"^{path}.*{message}"):
        load_chat_template(path)


def test_refused_template_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(core.evaluate, "resolve_model", lambda name: ModelRef(name, "/nowhere"))
    monkeypatch.setattr(core.evaluate, "load_tokenizer", lambda ref: family_tokenizer("phi3_5"))

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(core.evaluate, "create_backend", no_model)
    with pytest.raises(TemplateError, match="^chat template of microsoft/Phi-3.5-mini-instruct: renders 'tool'"):
        evaluate(_config(model="microsoft/Phi-3.5-mini-instruct"), tmp_path / "runs.db")
    assert not (tmp_path / "runs.db").exists()


def test_prompt_over_the_context_ends_as_context_length_not_a_degenerate_answer():
    tok = family_tokenizer("qwen2_5")
    backend = ScriptedBackend(tok, lambda p, t: "Qoruna")
    agent = Agent(backend, lambda q, k: "", AgentConfig(context_length=50))
    traj = agent.start(Question("q", "Where?", "Qoruna"))
    assert traj.finished and traj.finish_reason == "context_length"
    assert "the model's context is 50 tokens" in traj.finish_detail
    agent.step([traj])
    assert backend.calls == []  # never generated from


def test_generation_cut_by_the_context_ends_as_context_length():
    tok = family_tokenizer("qwen2_5")
    agent0 = Agent(ScriptedBackend(tok, lambda p, t: "x"), lambda q, k: "", AgentConfig())
    prompt_len = len(agent0.start(Question("q", "Where?", "Qoruna")).tokens.ids)
    backend = ScriptedBackend(tok, lambda p, t: "word " * 100)
    agent = Agent(backend, lambda q, k: "", AgentConfig(context_length=prompt_len + 10))
    traj = agent.start(Question("q", "Where?", "Qoruna"))
    agent.step([traj])
    assert traj.finish_reason == "context_length" and len(traj.tokens.ids) == prompt_len + 10


def test_context_window_reads_the_model_config_then_the_tokenizer():
    from types import SimpleNamespace

    from core.rollout.templates import context_window

    tok = SimpleNamespace(model_max_length=int(1e30))
    assert context_window(tok) is None
    assert context_window(SimpleNamespace(model_max_length=2048)) == 2048
    assert context_window(tok, SimpleNamespace(max_position_embeddings=8192)) == 8192


def test_native_tool_format_through_evaluate_stores_structured_calls(tmp_path):
    tok = family_tokenizer("qwen2_5")
    call = '<tool_call>\n{"name": "search_corpus", "arguments": {"query": "census"}}\n</tool_call>'
    backend = ScriptedBackend(tok, lambda p, t: call if t == 1 else "Qoruna")
    summary = evaluate(_config(tool_format="native"), tmp_path / "runs.db", backend=backend)
    assert summary["finish_reasons"] == {"answered": 4}
    with Store.open_readonly(tmp_path / "runs.db") as store:
        run = store.run(summary["run_id"])
        assert run["config"]["tool_format"] == "native"
        assert any("native tool calling" in note for note in run["config"]["chat_format"])
        row = store.trajectory_rows(run["id"])[0]
        reply = store.messages(row["id"])[2]
        assert reply.tool_call.name == "search_corpus" and reply.tool_call.arguments == {"query": "census"}


def test_tool_format_is_validated():
    with pytest.raises(ValueError, match="--tool-format must be seed, native or auto"):
        _config(tool_format="json").validate()


def test_auto_tool_format_is_native_where_supported_and_old_runs_resume_as_seed(tmp_path):
    from core.rollout.templates import check_template

    assert EvalConfig().tool_format == "auto"
    assert check_template(family_tokenizer("qwen2_5"), "", "auto").native_tools
    assert not check_template(family_tokenizer("gemma3"), "", "auto").native_tools
    assert EvalConfig.from_dict({"model": "m"}).tool_format == "seed"  # a run stored before the option
    assert EvalConfig.from_dict({"tool_format": "auto"}).tool_format == "auto"
