"""Generation backends: token ids in, token ids with their logprobs out.

One small protocol so the agent loop does not care what produces tokens: transformers on CPU or
CUDA now, vLLM and OpenAI-compatible servers later, a scripted double in the tests.
"""

from core.backends.base import Backend, Generation, SamplingConfig, chat_complete, chat_generate

__all__ = ["Backend", "Generation", "SamplingConfig", "chat_complete", "chat_generate", "create_backend"]


def create_backend(kind: str, model_ref, *, device: str = "auto", dtype: str = "auto", tokenizer=None) -> Backend:
    """Build the backend named by `--backend` for a resolved model.

    tokenizer: one already loaded (and checked, its chat template perhaps overridden); None loads it.
    """
    if kind == "hf":
        from core.backends.hf import HFBackend

        return HFBackend.load(model_ref, device=device, dtype=dtype, tokenizer=tokenizer)
    raise ValueError(f"unknown backend {kind!r} (available: hf)")
