"""The configuration of an evaluation, stored whole with its run so it can be resumed or repeated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.models import DEFAULT_MODEL


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
    judge: str = "llm"
    judge_model: str | None = None
    """Model for the LLM judge; None uses the policy model, as the seed did."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    extra_rewards: list[str] = field(default_factory=list)
    on_tool_error: str = "stop"
    prompt_template: str | None = None
    chat_template: str | None = None
    tool_format: str = "auto"
    """auto (native where the chat template supports tools, else the seed's), seed (the tool in the
    user prompt, calls as JSON text: the embedded SmolLM2's format) or native (the template's tools
    and tool_calls; refused for a template without them). Runs stored before this option existed
    read back as seed."""
    """A Jinja chat template file replacing the model's own (`--chat-template FILE`, as vLLM and TRL)."""
    check_drift: bool = True
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalConfig":
        """Rebuild from a stored configuration, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        data = {"tool_format": "seed"} | dict(data)  # stored before --tool-format: the seed's format
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        """Range checks that need no files; raises ValueError naming the option."""
        positive = ("max_generations", "max_new_tokens", "max_tokens_per_turn", "top_k", "batch_size",
                    "chunk_size", "demo_chunks")
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
        if self.retriever not in ("bm25", "dense"):
            raise ValueError(f"--retriever must be bm25 or dense, not {self.retriever!r}")
