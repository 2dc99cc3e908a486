"""The configuration of an evaluation, stored whole with its run so it can be resumed or repeated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.models import DEFAULT_MODEL
from core.scoring.judges import JUDGE_CHOICES, JUDGE_MAX_TOKENS


@dataclass
class EvalConfig:
    model: str = DEFAULT_MODEL
    backend: str = "hf"
    device: str = "auto"
    dtype: str = "auto"
    corpus: str | None = None
    """A corpus file or folder; None means the built-in demo corpus."""
    demo_chunks: int = 200
    """Size of the built-in demo corpus (one question per chunk)."""
    questions: str | None = None
    """A question file; None means the demo corpus's questions."""
    split: str = "test"
    limit: int | None = None
    chunk_size: int = 1000
    chunk_overlap: int = 100
    retriever: str = "bm25"
    top_k: int = 2
    max_generations: int = 5
    max_new_tokens: int = 1024
    max_tokens_per_turn: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8
    judge: str = "auto"
    """exact, f1, contains, llm, or auto: the LLM judge when judge_model names a model, else f1
    (core.scoring.judges.effective_judge; evaluate stores the judge it resolved, never "auto").
    Before issue 13 the default was llm on the policy itself, which passed its own nonsense."""
    judge_model: str | None = None
    """Model for the LLM judge; None with --judge llm asks the policy model, as the seed did."""
    judge_max_tokens: int = JUDGE_MAX_TOKENS
    """Reply budget of the LLM judge: room for a thinking model to reason before its yes or no."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    extra_rewards: list[str] = field(default_factory=list)
    on_tool_error: str = "stop"
    prompt_template: str | None = None
    chat_template: str | None = None
    """A Jinja chat template file replacing the model's own (`--chat-template FILE`, as vLLM and TRL)."""
    tool_format: str = "auto"
    """auto (native where the chat template supports tools, else the seed's), seed (the tool in the
    user prompt, calls as JSON text: the embedded SmolLM2's format) or native (the template's tools
    and tool_calls; refused for a template without them). Runs stored before this option existed
    read back as seed."""
    check_drift: bool = True
    name: str | None = None
    base_url: str | None = None
    """--backend openai: the server's address (core.backends.openai_server)."""
    api_key_env: str | None = None
    """The environment variable holding the server's API key (None: OPENAI_API_KEY when set). Only
    the variable's name is stored with the run, never the key."""
    server_model: str | None = None
    """The model's name at the server; None: --model (which always names the local tokenizer)."""
    max_concurrency: int = 8
    """Requests in flight at once to a server backend."""
    request_timeout: float = 600.0
    """Seconds one server request may take."""
    judge_backend: str | None = None
    """The LLM judge's backend; None: the policy's (--backend)."""
    judge_base_url: str | None = None
    """The judge's server when judge_backend is openai; None: --base-url."""
    tensor_parallel_size: int = 1
    """--backend vllm: GPUs one engine spans (vLLM's tensor parallelism)."""
    gpu_memory_utilization: float = 0.9
    """--backend vllm: fraction of each GPU's memory the engine may take (weights and KV cache)."""
    max_model_len: int | None = None
    """--backend vllm: context length of the engine; None: the model's."""
    lora: str | None = None
    """--backend vllm: a peft LoRA adapter folder applied to every request."""
    kv_reuse: bool = True
    """--backend hf: keep each trajectory's keys and values between turns and compute a prefix
    rows share once (core.backends.kv_reuse); greedy ids as without, up to float rounding."""
    shard: list[int] | None = None
    """--shard I/N as [I, N]: this process evaluates question i of the run only where i % N == I
    (0 <= I < N), so N processes (one per GPU or host) split one evaluation; each stores the whole
    question list and its own run, and `rl-inspect merge` combines the N runs into one
    (core.store.merge). None: every question."""
    job: str | None = None
    """The evaluation the shards belong to, the same in all N (--job NAME); None with --shard:
    core.evaluate.job_id, a digest of the configuration without shard and job, so the N processes
    of one command agree without being told."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def vllm_options(self):
        """core.backends.vllm_backend.VLLMOptions of this run (checked when the engine is built)."""
        from core.backends.vllm_backend import VLLMOptions

        return VLLMOptions(tensor_parallel_size=self.tensor_parallel_size,
                           gpu_memory_utilization=self.gpu_memory_utilization, max_model_len=self.max_model_len,
                           lora=self.lora, seed=self.seed)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalConfig":
        """Rebuild from a stored configuration, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        data = {"tool_format": "seed"} | dict(data)  # stored before --tool-format: the seed's format
        # Stored before --judge-max-tokens: the 8-token budget those runs were judged with, so a
        # resumed run judges its remaining answers as it judged the first ones.
        data = {"judge_max_tokens": 8} | data
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        """Range checks that need no files; raises ValueError naming the option."""
        positive = ("max_generations", "max_new_tokens", "max_tokens_per_turn", "top_k", "batch_size",
                    "chunk_size", "demo_chunks", "judge_max_tokens")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1, not {self.limit}")
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], not {self.top_p}")
        if self.split not in ("train", "test", "all"):
            raise ValueError(f"--split must be train, test or all, not {self.split!r}")
        if self.on_tool_error not in ("stop", "continue"):
            raise ValueError(f"--on-tool-error must be stop or continue, not {self.on_tool_error!r}")
        if self.tool_format not in ("seed", "native", "auto"):
            raise ValueError(f"--tool-format must be seed, native or auto, not {self.tool_format!r}")
        if self.judge not in JUDGE_CHOICES:
            raise ValueError(f"--judge must be one of {', '.join(JUDGE_CHOICES)}, not {self.judge!r}")
        if self.judge_model and self.judge not in ("llm", "auto"):
            raise ValueError(f"--judge-model is only asked by the LLM judge, not --judge {self.judge}")
        if self.shard is not None:
            index, count = self.shard
            if not (count >= 1 and 0 <= index < count):
                raise ValueError(f"--shard I/N needs 0 <= I < N, not {index}/{count}")
        if self.job is not None and self.shard is None:
            raise ValueError("--job names the evaluation that --shard splits; it needs --shard")
        if self.retriever not in ("bm25", "dense"):
            raise ValueError(f"--retriever must be bm25 or dense, not {self.retriever!r}")
        self._validate_servers()

    def _validate_servers(self) -> None:
        """The server backends' options (core.backends.openai_server): a base URL where one is
        needed, well formed and without credentials; positive limits."""
        from core.backends.openai_server import normalise_base_url

        if self.max_concurrency < 1:
            raise ValueError(f"--max-concurrency must be at least 1, not {self.max_concurrency}")
        if not self.request_timeout > 0:
            raise ValueError(f"--request-timeout must be > 0 seconds, not {self.request_timeout}")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("--backend openai needs --base-url (the server's address)")
        if self.judge_backend and not self.judge_model:
            raise ValueError("--judge-backend needs --judge-model (without it the policy judges)")
        if self.judge_backend == "openai" and not (self.judge_base_url or self.base_url):
            raise ValueError("--judge-backend openai needs --judge-base-url (or --base-url)")
        for option, url in (("--base-url", self.base_url), ("--judge-base-url", self.judge_base_url)):
            if url:
                try:
                    normalise_base_url(url)
                except ValueError as exc:
                    raise ValueError(str(exc).replace("--base-url", option, 1)) from None
