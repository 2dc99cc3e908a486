"""Which model an LLM judge asks, and how: the one decision eval and train share.

A judge on `--judge-backend openai` is asked over the chat-completions API
(core.backends.openai_chat): text in, text out, no local tokenizer loaded for its model, so a
hosted chat model (gpt-4o-mini) can judge. Any other judge backend (hf, vllm), and the policy
judging itself, is a core.backends Backend asked through its local chat template
(core.backends.chat_generate), as before.
"""

from __future__ import annotations

from typing import Any, Callable

from core.scoring.judges import Complete


def judge_complete(backend: str | None, model: str | None, max_tokens: int, load_backend: Callable[[], Any],
                   server: Any = None, seed: int | None = None) -> Complete:
    """The `complete` function of an LLM judge (core.scoring.judges.LLMJudge): judge prompts
    (plain user-message texts) -> replies with text and finish_reason, greedy, each at most
    `max_tokens` tokens.

    backend: the judge's backend ("hf", "openai", "vllm"; --judge-backend, else --backend).
    model: the judge model's name (--judge-model); None: the judge is whatever `load_backend`
        returns (the policy judging itself), never the chat client.
    load_backend: () -> a Backend for the judge; called once, now, unless the judge goes over
        chat completions (backend "openai" with a model), in which case nothing local is loaded.
    server: core.backends.openai_server.ServerOptions of the judge's server (server_options(config,
        judge=True)); needed by "openai".
    seed: sent with every chat request when not None.

    Raises ValueError when "openai" has no server (no --judge-base-url or --base-url), an unset
    --api-key-env variable or a bad URL; ServerError / ServerRefused when the judge's server cannot
    be reached, refuses the key or does not serve `model` (checked now, before any run starts);
    whatever `load_backend` raises.
    """
    if backend == "openai" and model:
        from core.backends.openai_chat import OpenAIChatClient

        if server is None:
            raise ValueError("--judge-backend openai needs --judge-base-url (or --base-url)")
        client = OpenAIChatClient.connect(server, model, seed=seed)
        return lambda texts: client.complete(texts, max_tokens)
    from core.backends import chat_generate

    judge_backend = load_backend()
    return lambda texts: chat_generate(judge_backend, texts, max_tokens=max_tokens)
