"""Generation backends: token ids in, token ids with their logprobs out.

One small protocol so the agent loop does not care what produces tokens: transformers on CPU or
CUDA now, vLLM and OpenAI-compatible servers later, a scripted double in the tests.
"""

from core.backends.base import Backend, Generation, SamplingConfig, chat_complete, chat_generate

__all__ = ["Backend", "Generation", "SamplingConfig", "chat_complete", "chat_generate", "create_backend"]


def create_backend(kind: str, model_ref, *, device: str = "auto", dtype: str = "auto", tokenizer=None,
                   server=None, vllm=None, kv_reuse: bool = True) -> Backend:
    """Build the backend named by `--backend` for a resolved model.

    tokenizer: one already loaded (and checked, its chat template perhaps overridden); None loads it.
    server: core.backends.openai_server.ServerOptions, needed by "openai" (its base URL, key
    variable, concurrency, timeout); the model's tokenizer is still loaded locally.
    vllm: core.backends.vllm_backend.VLLMOptions for "vllm" (tensor parallel size, GPU memory
    fraction, max model length, LoRA adapter, seed); None: vLLM's defaults.
    kv_reuse: "hf" keeps keys and values between calls (core.backends.kv_reuse).
    """
    if kind == "hf":
        from core.backends.hf import HFBackend

        return HFBackend.load(model_ref, device=device, dtype=dtype, tokenizer=tokenizer, kv_reuse=kv_reuse)
    if kind == "openai":
        from core.backends.openai_server import connect_model

        if server is None:
            raise ValueError("--backend openai needs --base-url (the server's address)")
        return connect_model(model_ref, server, tokenizer=tokenizer)
    if kind == "vllm":
        from core.backends.vllm_backend import VLLMBackend, VLLMOptions

        return VLLMBackend.load(model_ref, device=device, dtype=dtype, tokenizer=tokenizer,
                                **(vllm or VLLMOptions()).as_kwargs())
    raise ValueError(f"unknown backend {kind!r} (available: hf, openai, vllm)")
