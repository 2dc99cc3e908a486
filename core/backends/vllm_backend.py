"""vLLM backend: `vllm.LLM` generating from token ids, with the chosen token's logprob.

Written against vLLM's offline API as it stands from 0.10.2 (the V1 engine) on:

- `vllm.LLM(model=..., tensor_parallel_size=..., gpu_memory_utilization=..., max_model_len=...,
  enable_prefix_caching=True, enable_lora=..., max_lora_rank=..., dtype=..., seed=...,
  logprobs_mode="processed_logprobs")`; `llm.generate(prompts, sampling_params=[one per prompt],
  use_tqdm=False, lora_request=...)` returns one `RequestOutput` per prompt, in the prompts' order;
- prompts as `vllm.TokensPrompt(prompt_token_ids=[...])` (a TypedDict), so vLLM never re-tokenises:
  the ids the agent built are the ids the model sees;
- `vllm.SamplingParams(n=1, max_tokens=..., temperature=..., top_p=..., seed=..., logprobs=0,
  stop_token_ids=[...], skip_special_tokens=False)`: `logprobs=0` returns the sampled token's
  logprob alone at every position (`CompletionOutput.logprobs[i]` is a dict id -> `Logprob`
  holding at least the sampled id; TRL's vLLM path reads them the same way);
- `vllm.lora.request.LoRARequest(name, int_id, path)`.

Token ids: `CompletionOutput.token_ids` includes the stop id when generation stopped on the
eos or on one of `stop_token_ids` (finish_reason "stop"; V1's `check_stop` appends the sampled id
first and then tests it; only the *text* drops it, and only stop *strings*, which we never pass,
cut ids). That is this project's contract (core.backends.base.Generation), so the ids are kept
as vLLM returns them. Text is decoded here with the project's tokenizer, without the final stop
id, exactly as the hf backend does, instead of trusting vLLM's detokeniser settings.

Logprobs: vLLM's default `logprobs_mode` ("raw_logprobs") gives log-probabilities of the model's
raw distribution, before temperature; this project stores them under the sampling distribution
(what the hf backend records and what TRL's importance-sampling correction needs). So the
engine is built with `logprobs_mode="processed_logprobs"` (vLLM >= 0.10.2; TRL's colocated vLLM
sets the same): after temperature (greedy rows keep the raw distribution, temperature 1, as the
hf backend does). One difference remains with top_p < 1: vLLM's processed logprobs are
renormalised over the nucleus, the hf backend's are not (it records before the top-p warper).

Seeds: a per-request `seed` fixes that request's sampling. The same seed on every request would
give identical samples for identical prompts (a GRPO group), so each request gets its own,
derived from the sampling seed, the call count and the row: runs repeat, rows differ.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from core.backends.base import Generation, SamplingConfig
from core.backends.errors import missing_extra
from core.models import ModelError, ModelRef, load_tokenizer

MIN_VLLM = (0, 10, 2)
"""First vLLM with `logprobs_mode` (logprobs of the sampling distribution; see the module docstring)."""

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""Values vLLM accepts for `max_lora_rank` (vllm/config LoRAConfig's possible_max_ranks)."""

_SEED_MODULUS = 2**31 - 1


def import_vllm(option: str = "--backend vllm"):
    """The `vllm` module; MissingExtraError (exit 2) in one line when it is absent or older than
    MIN_VLLM, naming `option` (what asked for vLLM) and the install command."""
    try:
        vllm = importlib.import_module("vllm")
    except ImportError as exc:
        raise missing_extra(option, "vllm", "vllm") from exc
    version = _version_tuple(getattr(vllm, "__version__", "0"))
    if version < MIN_VLLM:
        raise missing_extra(option, "vllm>=0.10.2", "vllm",
                            f"but vllm {getattr(vllm, '__version__', '?')} is installed, older than 0.10.2 "
                            "(the first to return logprobs of the sampling distribution)")
    return vllm


def _version_tuple(text: str) -> tuple[int, ...]:
    """(0, 11, 0) from "0.11.0rc2.dev5+g1234"; non-numeric parts end the tuple."""
    out = []
    for part in str(text).split("+")[0].split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(out)


def lora_rank(adapter: str | Path) -> int:
    """The rank `r` of a peft LoRA adapter folder (its adapter_config.json); ValueError naming
    the folder when it is not one."""
    path = Path(adapter).expanduser() / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the LoRA adapter's configuration ({exc})") from None
    r = config.get("r")
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"{path}: field 'r' must be a positive integer, not {r!r}")
    return r


def max_lora_rank(r: int) -> int:
    """The smallest rank vLLM accepts (LORA_RANKS) that holds an adapter of rank r; ValueError above 512."""
    for allowed in LORA_RANKS:
        if allowed >= r:
            return allowed
    raise ValueError(f"a LoRA adapter of rank {r} is above vLLM's largest max_lora_rank, {LORA_RANKS[-1]}")


@dataclass(frozen=True)
class VLLMOptions:
    """The engine options `--backend vllm` takes (eval's --tensor-parallel-size,
    --gpu-memory-utilization, --max-model-len, --lora; the run's --seed), as VLLMBackend.load
    takes them. Defaults are vLLM's own (0.9 of GPU memory, the model's context length)."""

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    lora: str | None = None
    seed: int = 0

    def as_kwargs(self) -> dict[str, Any]:
        return {"tensor_parallel_size": self.tensor_parallel_size,
                "gpu_memory_utilization": self.gpu_memory_utilization, "max_model_len": self.max_model_len,
                "lora": self.lora, "seed": self.seed}


@dataclass
class VLLMStats:
    """Running totals of a VLLMBackend's calls (for benchmarks and logs): prompt and generated
    tokens, and prompt tokens vLLM served from its prefix cache (RequestOutput.num_cached_tokens,
    where the version reports it)."""

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0


@dataclass
class VLLMBackend:
    """Generation with a `vllm.LLM` (core.backends.base.Backend).

    llm: the engine (built by `load`, or TRL's colocated one through `from_llm`).
    model: what the agent reads the context length from: an object whose `config` has
    `max_position_embeddings` = the engine's max_model_len (None: unknown; the tokenizer's
    model_max_length then bounds prompts, core.rollout.templates.context_window).
    """

    llm: Any
    tokenizer: Any
    stop_token_ids: frozenset[int]
    name: str = "vllm"
    lora_request: Any = None
    model: Any = None
    stats: VLLMStats = field(default_factory=VLLMStats)
    _vllm: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, ref: ModelRef, *, device: str = "auto", dtype: str = "auto", tokenizer: Any = None,
             tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
             lora: str | None = None, seed: int = 0, enable_prefix_caching: bool = True,
             **engine_kwargs: Any) -> "VLLMBackend":
        """Build the engine for a resolved model (its folder or hub id, as vLLM loads it).

        dtype: auto, float32, bfloat16 or float16 (vLLM's names). lora: a peft adapter folder,
        applied to every request (max_lora_rank sized from its rank). engine_kwargs go to
        `vllm.LLM` as they are. Raises MissingExtraError without vLLM, ValueError for options
        vLLM cannot take (--device cpu, a bad adapter folder, sizes out of range), ModelError
        when the engine fails to start (the message says why in one line).
        """
        if device not in ("auto", "cuda") and not str(device).startswith("cuda"):
            raise ValueError(f"--backend vllm runs on CUDA GPUs, not --device {device} (use --backend hf)")
        if tensor_parallel_size < 1:
            raise ValueError(f"--tensor-parallel-size must be at least 1, not {tensor_parallel_size}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"--gpu-memory-utilization must be in (0, 1], not {gpu_memory_utilization}")
        if max_model_len is not None and max_model_len < 1:
            raise ValueError(f"--max-model-len must be at least 1, not {max_model_len}")
        lora_kwargs: dict[str, Any] = {}
        if lora:
            lora_kwargs = {"enable_lora": True, "max_lora_rank": max_lora_rank(lora_rank(lora)), "max_loras": 1}
        vllm = import_vllm()
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(ref)
        from core.rollout.chat import stop_token_ids

        kwargs = dict(model=ref.location, dtype=dtype, seed=seed, tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                      enable_prefix_caching=enable_prefix_caching, logprobs_mode="processed_logprobs",
                      **lora_kwargs, **engine_kwargs)
        try:
            llm = vllm.LLM(**kwargs)
        except Exception as exc:  # vLLM raises many kinds (CUDA OOM, config, engine start): one line
            raise ModelError(f"{ref.name}: vLLM could not start ({exc.__class__.__name__}: {exc})") from exc
        lora_request = None
        if lora:
            from vllm.lora.request import LoRARequest

            lora_request = LoRARequest("rl-inspect-lora", 1, str(Path(lora).expanduser().resolve()))
        generation_config = _generation_config(ref)
        stops = frozenset(stop_token_ids(tokenizer, generation_config))
        return cls.from_llm(llm, tokenizer, stops, lora_request=lora_request, max_model_len=max_model_len,
                            _vllm=vllm)

    @classmethod
    def from_llm(cls, llm: Any, tokenizer: Any, stop_token_ids: Sequence[int], *, lora_request: Any = None,
                 max_model_len: int | None = None, _vllm: Any = None) -> "VLLMBackend":
        """Wrap an engine built elsewhere (TRL's colocated `trainer.vllm_generation.llm`, whose
        weights TRL syncs from the policy every step). The engine should have been built with
        `logprobs_mode="processed_logprobs"` (TRL does) for logprobs of the sampling distribution."""
        length = max_model_len or _engine_max_model_len(llm)
        model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=length)) if length else None
        return cls(llm=llm, tokenizer=tokenizer, stop_token_ids=frozenset(int(i) for i in stop_token_ids),
                   lora_request=lora_request, model=model, _vllm=_vllm or import_vllm())

    def generate(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[Generation]:
        """One vLLM call for every prompt (core.backends.base.Backend.generate): prompt i as token
        ids, at most max_tokens[i] new tokens (its own SamplingParams). ValueError for an empty
        prompt, a limit below 1 or mismatched lengths; ModelError when vLLM aborts a request or
        returns no logprob for a generated id."""
        if len(prompts) != len(max_tokens):
            raise ValueError(f"{len(prompts)} prompts but {len(max_tokens)} token limits")
        if not prompts:
            return []
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token id")
        if any(int(m) < 1 for m in max_tokens):
            raise ValueError(f"every token limit must be at least 1, not {min(max_tokens)}")
        vllm = self._vllm
        call = self.stats.calls
        params = [self.sampling_params(int(limit), sampling, call, row) for row, limit in enumerate(max_tokens)]
        requests = [vllm.TokensPrompt(prompt_token_ids=[int(i) for i in p]) for p in prompts]
        kwargs: dict[str, Any] = {"sampling_params": params, "use_tqdm": False}
        if self.lora_request is not None:
            kwargs["lora_request"] = self.lora_request
        outputs = self.llm.generate(requests, **kwargs)
        if len(outputs) != len(prompts):
            raise ModelError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        generations = [self._one(out, int(limit)) for out, limit in zip(outputs, max_tokens)]
        st = self.stats
        st.calls += 1
        st.prompt_tokens += sum(len(p) for p in prompts)
        st.cached_tokens += sum(int(getattr(o, "num_cached_tokens", 0) or 0) for o in outputs)
        st.generated_tokens += sum(len(g.token_ids) for g in generations)
        return generations

    def sampling_params(self, limit: int, sampling: SamplingConfig, call: int = 0, row: int = 0):
        """The `vllm.SamplingParams` of one request: greedy at temperature 0 (top_p 1, no seed),
        else temperature, top_p and a seed of its own (module docstring); the chosen token's
        logprob (logprobs=0), this backend's stop ids, special tokens kept in vLLM's text."""
        greedy = sampling.temperature <= 0
        seed = None
        if not greedy and sampling.seed is not None:
            seed = (sampling.seed * 1_000_003 + call * 65_537 + row) % _SEED_MODULUS
        return self._vllm.SamplingParams(
            n=1, max_tokens=limit, temperature=0.0 if greedy else float(sampling.temperature),
            top_p=1.0 if greedy else float(sampling.top_p), seed=seed, logprobs=0,
            stop_token_ids=sorted(self.stop_token_ids), skip_special_tokens=False)

    def _one(self, request_output: Any, limit: int) -> Generation:
        if not request_output.outputs:
            raise ModelError("vLLM returned a request with no completion")
        out = request_output.outputs[0]
        ids = [int(i) for i in out.token_ids]
        reason = out.finish_reason
        if reason not in ("stop", "length"):
            raise ModelError(f"vLLM ended a request with finish_reason {reason!r} (expected stop or length)")
        if len(ids) > limit:
            raise ModelError(f"vLLM generated {len(ids)} tokens past the limit of {limit}")
        if out.logprobs is None:
            raise ModelError("vLLM returned no logprobs (SamplingParams.logprobs was not honoured)")
        logprobs = []
        for pos, tok in enumerate(ids):
            entry = out.logprobs[pos].get(tok) if pos < len(out.logprobs) else None
            if entry is None:
                raise ModelError(f"vLLM returned no logprob for generated token {tok} at position {pos}")
            logprobs.append(float(entry.logprob))
        stopped = reason == "stop" and bool(ids)
        text = self.tokenizer.decode(ids[:-1] if stopped else ids)
        return Generation(ids, logprobs, text, "stop" if stopped else "length")


def _engine_max_model_len(llm: Any) -> int | None:
    """The engine's max_model_len (vLLM: llm.llm_engine.model_config.max_model_len), None if unreadable."""
    config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    value = getattr(config, "max_model_len", None)
    return value if isinstance(value, int) and value > 0 else None


def _generation_config(ref: ModelRef):
    """The model's generation_config (its eos ids are stop ids too), None when it has none."""
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(ref.location)
    except Exception:  # no generation_config.json: the tokenizer's eos and the template's end tokens
        return None


def trl_vllm_backend(trainer: Any, tokenizer: Any, stop_token_ids: Sequence[int]):
    """The backend a `rollout_func` generates with when TRL runs vLLM (`GRPOConfig(use_vllm=True)`):
    TRL (trl 1.16, GRPOTrainer._generate) syncs the policy's weights into vLLM before it calls
    `rollout_func`, every step, so generating through its engine samples the policy being trained.

    colocate (`vllm_mode="colocate"`): a VLLMBackend over `trainer.vllm_generation.llm` (built by
    TRL with logprobs_mode="processed_logprobs"). server (`vllm_mode="server"`, `trl vllm-serve`):
    a TRLServerBackend over `trainer.vllm_generation.vllm_client` (its HTTP client; processes other
    than the main one, which TRL gives no client, open their own, without the weight-sync
    communicator). ValueError for what this agent loop cannot share with TRL: sleep mode (TRL
    discards the weights between its own calls) and colocated tensor parallelism (every rank of
    a group must send identical prompts, TRL gathers them; the agent's turns differ per rank).
    """
    vg = trainer.vllm_generation
    mode = getattr(vg, "mode", "colocate")
    if mode == "colocate":
        if getattr(vg, "enable_sleep_mode", False):
            raise ValueError("vLLM sleep mode is not supported with this project's rollout_func")
        if getattr(vg, "tensor_parallel_size", 1) > 1:
            raise ValueError("colocated vLLM with tensor parallelism is not supported with this project's "
                             "rollout_func; use --vllm-mode server")
        return VLLMBackend.from_llm(vg.llm, tokenizer, stop_token_ids)
    client = getattr(vg, "vllm_client", None)
    if client is None:
        from trl.generation.vllm_client import VLLMClient

        base = vg.server_base_url or f"http://{vg.server_host}:{vg.server_port}"
        client = VLLMClient(base_url=base, connection_timeout=vg.server_timeout)
    return TRLServerBackend(client, tokenizer, frozenset(int(i) for i in stop_token_ids))


@dataclass
class TRLServerBackend:
    """Generation through TRL's `VLLMClient` (a `trl vllm-serve` server; core.backends.base.Backend).

    `client.generate(prompts=[ids...], n=1, temperature, top_p, max_tokens, logprobs=0,
    generation_kwargs=...)` (trl 1.16, trl/generation/vllm_client.py) returns completion ids and,
    per position, the sampled token's logprob first (sorted by rank, one entry with logprobs=0).
    One request per distinct token limit. The client reports no finish reason, so it is derived:
    "stop" when the last id is a stop id, else "length" (a limit or the server's context). Start
    the server with `--logprobs-mode processed_logprobs` (TRL warns otherwise) for logprobs of
    the sampling distribution.
    """

    client: Any
    tokenizer: Any
    stop_token_ids: frozenset[int]
    name: str = "vllm-server"
    model: Any = None
    calls: int = 0

    def generate(
        self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int], sampling: SamplingConfig
    ) -> list[Generation]:
        """See core.backends.base.Backend.generate; ModelError when the server's answer does not
        line up with the prompts or lacks logprobs."""
        if len(prompts) != len(max_tokens):
            raise ValueError(f"{len(prompts)} prompts but {len(max_tokens)} token limits")
        out: list[Generation | None] = [None] * len(prompts)
        by_limit: dict[int, list[int]] = {}
        for row, limit in enumerate(max_tokens):
            by_limit.setdefault(int(limit), []).append(row)
        greedy = sampling.temperature <= 0
        for limit, rows in sorted(by_limit.items()):
            extra: dict[str, Any] = {"stop_token_ids": sorted(self.stop_token_ids), "skip_special_tokens": False}
            if not greedy and sampling.seed is not None:
                extra["seed"] = (sampling.seed * 1_000_003 + self.calls * 65_537 + limit) % _SEED_MODULUS
            answer = self.client.generate(prompts=[[int(i) for i in prompts[r]] for r in rows], n=1,
                                          temperature=0.0 if greedy else float(sampling.temperature),
                                          top_p=1.0 if greedy else float(sampling.top_p), max_tokens=limit,
                                          logprobs=0, generation_kwargs=extra)
            completions, logprobs = answer["completion_ids"], answer.get("logprobs")
            if len(completions) != len(rows) or logprobs is None or len(logprobs) != len(rows):
                raise ModelError(f"the vLLM server answered {len(completions)} completions "
                                 f"({'no' if logprobs is None else len(logprobs)} with logprobs) for {len(rows)} prompts")
            for row, ids, lps in zip(rows, completions, logprobs):
                ids = [int(i) for i in ids]
                if len(lps) != len(ids) or any(not p or p[0] is None for p in lps):
                    raise ModelError(f"the vLLM server returned {len(lps)} logprobs for {len(ids)} tokens")
                stopped = bool(ids) and ids[-1] in self.stop_token_ids
                text = self.tokenizer.decode(ids[:-1] if stopped else ids)
                out[row] = Generation(ids, [float(p[0]) for p in lps], text, "stop" if stopped else "length")
        self.calls += 1
        return [g for g in out if g is not None]
