"""The LLM judge over OpenAI's chat-completions API: text in, text out, no local tokenizer.

`--judge-backend openai` asks a model someone serves, most often a hosted chat model
(gpt-4o-mini and the like) that has no local tokenizer and that hosted OpenAI does not serve at
`/v1/completions`. A judge needs a reply's text, not token truth, so each judge prompt goes as one
user message to `POST {base}/v1/chat/completions` (model, messages, max_tokens, temperature 0,
n 1, seed when set) and the reply's text comes back with how it ended (core.scoring.judges.Reply).

Reasoning models (hosted o1, o3, gpt-5 and their like) refuse `max_tokens` and any temperature but
1 with HTTP 400. When a request is refused (400/422) before any has succeeded, it is asked once more
the way those models take it: `max_completion_tokens` (which also bounds their hidden reasoning),
no temperature, no seed. The first way that works is kept for the session, with a warning that the
judge's replies are then sampled at the model's own temperature, not greedy. A refusal the second
way does not cure is raised as the first one was.

The HTTP side is core.backends.openai_server.ServerClient, as for the completions backend: the
key from the environment variable --api-key-env names (never from the command line, never
stored), retries of transient failures with backoff and Retry-After, a timeout per request, the
`/v1/models` probe of the model name, and ServerError / ServerRefused for failures.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from loguru import logger

from core.backends.openai_server import ServerClient, ServerError, ServerOptions, ServerRefused, ServerStats, _preview

CHAT_PATH = "/v1/chat/completions"
"""The endpoint under the server's root."""


@dataclass(frozen=True)
class ChatReply:
    """One chat reply (satisfies core.scoring.judges.Reply).

    text: the assistant message's content as the server sent it (reasoning is not stripped
        here: LLMJudge does that); "" when the message had no content (a refusal, tool calls).
    finish_reason: "length" when the server cut the reply at max_tokens, else "stop" (every other
        way a reply ends: "stop", "eos", "content_filter", "tool_calls", or none given).
    """

    text: str
    finish_reason: str


@dataclass
class OpenAIChatClient:
    """Asks a chat model at an OpenAI-compatible server, one user message per text.

    Build it with connect(), which reads the key and checks the server and the model name first.
    http: the shared HTTP client (its options give the concurrency, timeout and retries).
    seed: sent with every request when not None (hosted OpenAI's best-effort determinism).
    """

    http: ServerClient
    seed: int | None = None
    reasoning_form: bool | None = None
    """None until a request has succeeded; then whether the server wanted the reasoning models'
    form (max_completion_tokens, no temperature, no seed), kept for the session."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def connect(cls, options: ServerOptions, model: str, probe: bool = True,
                seed: int | None = None) -> "OpenAIChatClient":
        """A client for `model` (the name the server knows; ServerOptions.model, when given, wins)
        at options.base_url.

        probe: ask GET /v1/models first: ServerError when the server cannot be reached,
            ServerRefused for a refused key (401/403) or a model it does not list (404); a server
            without the route is not checked (the first request will tell).
        Raises ValueError for a base URL that cannot work or an unset --api-key-env variable.
        """
        served = options.model or model
        http = ServerClient.open(options, served, model_option="--judge-model",
                                 url_option="--judge-base-url (or --base-url)")
        if probe:
            http.probe()
        logger.info("LLM judge: {} over chat completions at {}", served, options.root())
        return cls(http, seed)

    @property
    def stats(self) -> ServerStats:
        """Requests and retries so far."""
        return self.http.stats

    def complete(self, texts: Sequence[str], max_tokens: int) -> list[ChatReply]:
        """One chat request per text, each text the only (user) message, greedy (temperature 0),
        at most `max_tokens` tokens per reply; up to options.max_concurrency requests in flight.
        Returns one ChatReply per text, in the texts' order. Raises ServerError / ServerRefused
        (the first failure met; the requests not yet sent are cancelled), ValueError for
        max_tokens < 1."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
        if not texts:
            return []
        workers = max(1, min(self.http.options.max_concurrency, len(texts)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-chat-judge")
        try:
            futures = [pool.submit(self._ask, str(text), int(max_tokens)) for text in texts]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def body(self, text: str, max_tokens: int, reasoning: bool = False) -> dict[str, Any]:
        """The request body for one text (JSON-ready); `reasoning`: the form reasoning models take
        (max_completion_tokens, no temperature, no seed)."""
        body: dict[str, Any] = {
            "model": self.http.served_model,
            "messages": [{"role": "user", "content": text}],
            "n": 1,
            "stream": False,
        }
        if reasoning:
            body["max_completion_tokens"] = max_tokens
            return body
        body |= {"max_tokens": max_tokens, "temperature": 0}
        if self.seed is not None:
            body["seed"] = int(self.seed)
        return body

    def _ask(self, text: str, max_tokens: int) -> ChatReply:
        with self._lock:
            forms = [self.reasoning_form] if self.reasoning_form is not None else [False, True]
        first: ServerRefused | None = None
        for reasoning in forms:
            try:
                reply = self.http.request("POST", CHAT_PATH, self.body(text, max_tokens, reasoning))
            except ServerRefused as exc:
                if exc.status not in (400, 422) or len(forms) == 1:
                    raise
                first = first or exc
                continue
            self._settle(reasoning, first)
            return parse_chat_reply(reply, self.http.options.root() + CHAT_PATH)
        assert first is not None
        raise first

    def _settle(self, reasoning: bool, refusal: ServerRefused | None) -> None:
        with self._lock:
            if self.reasoning_form is not None:
                return
            self.reasoning_form = reasoning
        if reasoning:
            # The server's own words name what it refused (max_tokens, temperature or seed): quoted as is.
            logger.warning("the judge server refused the request ({}); asked again as reasoning models are asked "
                           "(max_completion_tokens, no temperature, no seed), which it took: its verdicts are sampled, "
                           "not greedy, and its hidden reasoning counts against --judge-max-tokens", refusal)


def parse_chat_reply(reply: Any, url: str) -> ChatReply:
    """The ChatReply of a chat-completions reply's first choice.

    reply: the decoded JSON. url: the endpoint it came from, named in errors.
    The text is `choices[0].message.content`: a string, or a list of content parts whose "text"
    pieces are joined. Null or absent content (a refusal, tool calls) is "" with a log warning
    saying why. finish_reason "length" stays "length"; anything else reads "stop".
    Raises ServerError (naming `url`) for a reply that is not an object with a non-empty
    `choices` list whose first entry has a `message` object with string, parts or null content.
    """
    if not isinstance(reply, dict):
        raise ServerError(f"{url}: malformed chat reply, not a JSON object ({_preview(reply)})")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ServerError(f"{url}: malformed chat reply, no choices ({_preview(reply)})")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ServerError(f"{url}: malformed chat reply, no message ({_preview(choice)})")
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    content = message.get("content")
    if isinstance(content, str):
        return ChatReply(content, finish)
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return ChatReply("".join(p["text"] for p in content if isinstance(p.get("text"), str)), finish)
    if content is not None:
        raise ServerError(f"{url}: malformed chat reply, its content reads {_preview(content)}")
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        why = f"the model refused: {_preview(message['refusal'])}"
    elif message.get("tool_calls") or message.get("function_call"):
        why = "the model answered with a tool call"
    else:
        why = f"finish_reason {_preview(choice.get('finish_reason'))}"
    logger.warning("{}: a chat reply without text ({}); judged as an empty reply", url, why)
    return ChatReply("", finish)
