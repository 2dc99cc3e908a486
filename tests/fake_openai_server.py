"""FakeOpenAIServer: a test double of an OpenAI-compatible completions server, on loopback.

It speaks the parts of vLLM's API the openai backend uses (`GET /v1/models`, `POST /v1/completions`
with a prompt of token ids, `logprobs`, `return_tokens_as_token_ids`, `stop_token_ids`; `POST
/v1/chat/completions` for the LLM judge), "generating" replies a test scripts, encoded with a real
tokenizer and ended with a stop id. Variants: `ids="text"` answers with text and string tokens only
(llama-cpp-python, hosted endpoints), `ids="content"` with llama.cpp's `logprobs.content[].id`.
Failures to replay, a key to demand, a delay per request and a concurrency counter let the contract
tests reach every path. It lives in tests only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Script = Callable[[str], str]
"""prompt text -> the reply text."""


@dataclass
class Canned:
    """One reply to send instead of a completion: a status, headers and a body (bytes or JSON)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class FakeOpenAIServer:
    tokenizer: Any
    script: Script = lambda prompt: "Paris"
    ids: str = "token_id"
    """token_id (vLLM's "token_id:N" logprob tokens), content (llama.cpp), text (no ids)."""
    models: list[str] = field(default_factory=lambda: ["served-model"])
    max_model_len: int | None = 4096
    key: str | None = None
    """The key the server demands (401 without it, 403 with another one)."""
    stop_id: int | None = None
    logprob: float = -0.5
    delay: float = 0.0
    """Seconds each completion takes."""
    canned: list[Canned] = field(default_factory=list)
    """Replies sent, in order, before any completion (popped one per completion request)."""
    refuse_extras: bool = False
    """Answer 400 to a request with fields OpenAI does not know (as api.openai.com does)."""
    refuse_id_prompts: bool = False
    """Answer 422 to a prompt of ids (as llama-cpp-python's typed request does)."""
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        if self.stop_id is None:
            self.stop_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeOpenAIServer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                fake._handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, json.loads(self.rfile.read(length) or b"null"))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- behaviour --------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        auth = handler.headers.get("Authorization")
        with self._lock:
            self.headers.append(dict(handler.headers))
        if self.key is not None and auth != f"Bearer {self.key}":
            status = 401 if auth is None else 403
            return _send(handler, status, {"error": {"message": f"Incorrect API key provided: {auth}",
                                                     "type": "invalid_request_error"}})
        if handler.command == "GET" and handler.path == "/v1/models":
            data = [{"id": m, "object": "model", **({"max_model_len": self.max_model_len}
                                                      if self.max_model_len else {})} for m in self.models]
            return _send(handler, 200, {"object": "list", "data": data})
        if handler.command != "POST" or handler.path not in ("/v1/completions", "/v1/chat/completions"):
            return _send(handler, 404, {"detail": "Not Found"})
        with self._lock:
            self.requests.append(body)
            canned = self.canned.pop(0) if self.canned else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if canned is not None:
                time.sleep(canned.delay)
                return _send(handler, canned.status, canned.body, canned.headers)
            time.sleep(self.delay)
            status, reply = self._chat(body) if handler.path == "/v1/chat/completions" else self._complete(body)
            return _send(handler, status, reply)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _chat(self, body: dict) -> tuple[int, dict]:
        """The LLM judge's route (core.backends.openai_chat): the script's reply to the last message."""
        if body.get("model") not in self.models:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}}
        message = {"role": "assistant", "content": self.script(body["messages"][-1]["content"])}
        return 200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                     "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}

    def _complete(self, body: dict) -> tuple[int, dict]:
        if body.get("model") not in self.models:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                   "type": "NotFoundError", "code": 404}}
        extras = set(body) - {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "logprobs", "n",
                              "stream", "stop"}
        if self.refuse_extras and extras:
            return 400, {"error": {"message": f"Unrecognized request argument supplied: {sorted(extras)[0]}"}}
        prompt = body["prompt"]
        if isinstance(prompt, list):
            if self.refuse_id_prompts:
                return 422, {"detail": [{"loc": ["body", "prompt"], "msg": "Input should be a valid string"}]}
            prompt = self.tokenizer.decode(prompt)
        reply = self.script(prompt)
        ids = list(self.tokenizer(reply, add_special_tokens=False)["input_ids"]) + [self.stop_id]
        finish, limit = "stop", body["max_tokens"]
        if len(ids) > limit:
            ids, finish = ids[:limit], "length"
        text = self.tokenizer.decode(ids[:-1] if finish == "stop" else ids)
        logprobs = [self.logprob] * len(ids)
        if self.ids == "token_id":
            lp = {"tokens": [f"token_id:{i}" for i in ids], "token_logprobs": logprobs,
                  "top_logprobs": None, "text_offset": [0] * len(ids)}
        elif self.ids == "content":
            lp = {"content": [{"id": i, "token": self.tokenizer.decode([i]), "logprob": v}
                              for i, v in zip(ids, logprobs)]}
        else:  # text only: string tokens, no ids
            lp = {"tokens": [self.tokenizer.decode([i]) for i in ids], "token_logprobs": logprobs}
        choice = {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish,
                  "stop_reason": self.stop_id if finish == "stop" and self.ids != "text" else None}
        return 200, {"id": "cmpl-1", "object": "text_completion", "model": body["model"], "choices": [choice]}


def _send(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(raw)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    try:
        handler.wfile.write(raw)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
        pass
