"""OpenAI-compatible server backend: evaluate a model someone already serves.

`--backend openai --base-url URL` talks to `vllm serve`, SGLang, llama.cpp's `llama-server`,
`llama-cpp-python`'s server or a hosted endpoint. Token truth stays the product: the engine
renders the chat template with the LOCAL tokenizer (core.models.load_tokenizer; the served model's
own tokenizer, so a hub id or a folder) and sends the prompt as token ids to the completions
endpoint (`POST {base}/v1/completions`, `prompt` a list of ints: vLLM, SGLang and llama.cpp accept
it). The generated ids come back where the server offers them:

- vLLM >= 0.10.2: `return_token_ids: true` puts them in `choices[0].token_ids`;
- vLLM (older): `return_tokens_as_token_ids: true` writes each logprob token as "token_id:123";
- llama.cpp's server: `logprobs.content[i].id` (its OpenAI-style completions reply);
- logprobs (`logprobs: 1`) as `logprobs.token_logprobs` or `logprobs.content[i].logprob`.

A server that gives only text (llama-cpp-python, hosted endpoints) has its text re-tokenised
locally: the Generation is then marked `token_exact=False` (the ids are a guess of ours, not what
the model emitted), and its logprobs are the server's only where their count matches the guessed
ids, NaN elsewhere. A server that refuses a prompt of ids (HTTP 400/422 on the first request) gets
the prompt as text instead, and every generation of the session is marked not token-exact (the
server tokenised our prompt itself). Request fields only some servers know (`stop_token_ids`,
`top_k`, `return_token_ids`, ...) are dropped for the session when the first request is refused
with them (hosted OpenAI refuses unknown fields).

Logprobs are what the server reports: vLLM's are of the model's raw distribution unless it runs
with `--logprobs-mode processed_logprobs` (the hf backend's are under the sampling temperature;
identical at temperature 0 and 1).

Requests run in a pool of `max_concurrency` threads (the server batches them itself); transient
failures (connection errors, HTTP 408/429/5xx) are retried with exponential backoff, honouring
Retry-After; every request has a timeout. That HTTP side (requests, retries, errors, the
/v1/models probe) is ServerClient, shared with the LLM judge's chat-completions client
(core.backends.openai_chat). Failures raise ServerError (exit 1 at the CLI); what the user must
fix (a wrong model name, a refused key, a refused request) raises ServerRefused, also a
ValueError, so the CLI says it in one line with exit code 2.

The API key comes from the environment variable `api_key_env` names (default OPENAI_API_KEY when
set): never from the command line, never stored with the run (only the variable's name is).

The standard library's urllib does the HTTP: httpx is not installed here and the openai package is
not needed for four JSON fields (and does not accept a prompt of token ids with vLLM's extras in a
typed way); nothing to install.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Sequence

from loguru import logger

from core.backends.base import Generation, SamplingConfig
from core.models import ModelError

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
"""The variable the key is read from when --api-key-env is not given (only when it is set)."""

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses retried with backoff: timeouts, rate limits and server-side failures."""

_EXTRA_FIELDS = ("stop_token_ids", "return_tokens_as_token_ids", "return_token_ids", "top_k", "min_p",
                 "repetition_penalty", "repeat_penalty")
"""Request fields outside OpenAI's completions API (vLLM's, SGLang's and llama.cpp's sampling
extras); dropped for the session when a server refuses the first request carrying them."""

_TOKEN_ID = re.compile(r"token_id:(\d+)\Z")
"""vLLM's logprob token under return_tokens_as_token_ids."""

_MAX_RETRY_AFTER = 300.0
"""Longest Retry-After honoured, in seconds (a longer one is cut to this)."""


class ServerError(ModelError):
    """The server failed: unreachable, timed out, a malformed reply, HTTP 5xx after its retries.

    A ModelError, so the CLI prints it in one line and exits 1.
    """


class ServerRefused(ServerError, ValueError):
    """The server refused what the user gave: a model it does not serve (404), the API key
    (401/403), a request it will not take (400/422). Also a ValueError: the CLI exits 2 (bad input).

    status: the HTTP status (None when the refusal was found without one).
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServerOptions:
    """How to reach an OpenAI-compatible server; the key itself is never a field.

    base_url: the server's root, with or without a trailing /v1 ("http://127.0.0.1:8000").
    api_key_env: the environment variable holding the key; None: OPENAI_API_KEY when set, else
        no key. A named variable that is not set raises ValueError at connect().
    model: the model name the server knows; None: the --model name.
    max_concurrency: requests in flight at once (>= 1).
    timeout: seconds one request may take, reply included (> 0).
    retries: further attempts after a transient failure (>= 0).
    backoff: seconds before the first retry; doubled each time, at most max_backoff.
    sleep: how to wait between attempts (tests pass a recorder).
    """

    base_url: str
    api_key_env: str | None = None
    model: str | None = None
    max_concurrency: int = 8
    timeout: float = 600.0
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def root(self) -> str:
        """base_url without a trailing slash or /v1; raises ValueError for one that cannot work."""
        return normalise_base_url(self.base_url)

    def api_key(self) -> str | None:
        """The key from the environment (never logged or stored); ValueError when the variable
        --api-key-env names is not set."""
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ValueError(f"--api-key-env {self.api_key_env}: the environment variable is not set")
            return value
        return os.environ.get(DEFAULT_KEY_ENV) or None


def normalise_base_url(url: str) -> str:
    """'http://host:8000/v1/' -> 'http://host:8000'. Raises ValueError for a URL that is not
    http(s) with a host, or that carries credentials (keys belong in the environment)."""
    parsed = urllib.parse.urlsplit((url or "").strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"--base-url {url!r}: give the server's http(s) address, e.g. http://127.0.0.1:8000")
    if parsed.username or parsed.password:
        raise ValueError("--base-url must not hold credentials; put the key in an environment variable "
                         "and name it with --api-key-env")
    if parsed.query or parsed.fragment:
        raise ValueError(f"--base-url {url!r}: no query or fragment, only the server's address")
    path = parsed.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def _is_loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


@dataclass
class ServerStats:
    """Running totals of one backend's requests (for logs and benchmarks)."""

    requests: int = 0
    retries: int = 0
    generated_tokens: int = 0
    not_token_exact: int = 0
    """Generations whose ids were re-tokenised from text (see Generation.token_exact)."""


@dataclass
class ServerClient:
    """The HTTP side of one OpenAI-compatible server, shared by OpenAIServerBackend (completions)
    and core.backends.openai_chat (chat completions): JSON requests with the key as a Bearer
    header, retries of transient failures with exponential backoff (Retry-After honoured), a
    timeout per request, and one-line errors. Safe to use from many threads at once.

    options: where the server is and how to treat it (base URL, timeout, retries, backoff).
    served_model: the model name sent to the server (named in errors about the model).
    key: the API key (ServerOptions.api_key(); None: no Authorization header). Never logged; a
        server message that echoes it has it replaced by ***.
    model_option: the command-line option that names served_model, said in errors about it.
    url_option: the command-line option that names the server's address, said in errors.
    stats: request and retry counts are added to it (a backend passes its own).
    """

    options: ServerOptions
    served_model: str
    key: str | None = field(default=None, repr=False)
    model_option: str = "--server-model"
    url_option: str = "--base-url"
    stats: ServerStats = field(default_factory=ServerStats)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, options: ServerOptions, served_model: str, model_option: str = "--server-model",
             url_option: str = "--base-url") -> "ServerClient":
        """A client with the key read from the environment now. ValueError for a base URL that
        cannot work or a --api-key-env variable that is not set; nothing is sent yet."""
        options.root()
        return cls(options, served_model, key=options.api_key(), model_option=model_option, url_option=url_option)

    def probe(self, note: str = "") -> dict | None:
        """Reachability, key and model name, through GET /v1/models (one quick retry).

        Returns the served model's entry of the list (a dict: "id", perhaps "max_model_len"), or
        None when the server has no model list (404/405) or answers in another shape: then the
        first request will tell. Raises ServerError when the server cannot be reached, and
        ServerRefused for a refused key (401/403) or a model the list does not name (status 404;
        the message names self.model_option, followed by `note`).
        """
        try:
            reply = self.request("GET", "/v1/models", None, retries=min(1, self.options.retries))
        except ServerRefused as exc:
            if exc.status in (404, 405):
                return None  # the server has no model list: the first completion will tell
            raise
        served = _served_models(reply)
        if served is None:
            return None
        names = [m.get("id") for m in served]
        if self.served_model not in names:
            listed = ", ".join(str(n) for n in names[:8]) or "none"
            raise ServerRefused(f"{self.options.root()} does not serve the model {self.served_model!r} "
                                f"(it serves: {listed}); name it with {self.model_option}{note}",
                                404)
        return served[names.index(self.served_model)]

    def request(self, method: str, path: str, body: dict | None, retries: int | None = None) -> Any:
        """The decoded JSON reply of `method` `path` (e.g. "POST", "/v1/completions") under the
        server's root, `body` sent as JSON (None: no body).

        retries: further attempts after a transient failure (None: options.retries). HTTP
        408/429/5xx and connection errors are retried after options.backoff seconds, doubled each
        time up to options.max_backoff, or what Retry-After asks (at most 300 s); a request that
        gets no reply within options.timeout seconds is not retried.
        Raises ServerRefused (also a ValueError) for a refused key (401/403), a model or route the
        server does not have (404) or a refused request (other 4xx); ServerError when the server
        cannot be reached, times out, fails after its retries or replies with something not JSON.
        """
        root = self.options.root()
        url = root + path
        retries = self.options.retries if retries is None else retries
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json", "User-Agent": "rl-inspect"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        # A proxy from the environment must not capture a server on this machine.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(urllib.parse.urlsplit(url).hostname) else []
        opener = urllib.request.build_opener(*handlers)
        attempt = 0
        while True:
            with self._lock:
                self.stats.requests += 1
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method=method)
                with opener.open(request, timeout=self.options.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                status, message = exc.code, self._scrub(_error_message(exc))
                if status in TRANSIENT_STATUS and attempt < retries:
                    self._wait(attempt, _retry_after(exc.headers))
                    attempt += 1
                    continue
                raise self._http_error(url, path, status, message, attempt) from None
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                if isinstance(exc, TimeoutError):
                    # No reply in time after the request went out: the same generation would
                    # take as long again, so it is not retried.
                    raise ServerError(f"{url}: no reply within {self.options.timeout:g} s "
                                      f"(--request-timeout)") from None
                if attempt < retries:
                    self._wait(attempt, None)
                    attempt += 1
                    continue
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise ServerError(f"cannot reach the server at {root}{tries} ({_reason(reason)}); is it running "
                                  f"and is {self.url_option} right?") from None
            try:
                return json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                raise ServerError(f"{url}: the reply is not JSON ({_preview(raw)})") from None

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        with self._lock:
            self.stats.retries += 1
        delay = retry_after if retry_after is not None else min(self.options.max_backoff,
                                                                self.options.backoff * 2 ** attempt)
        self.options.sleep(delay)

    def _http_error(self, url: str, path: str, status: int, message: str, attempt: int) -> ServerError:
        said = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        if status in (401, 403):
            if self.key:
                where = self.options.api_key_env or DEFAULT_KEY_ENV
                return ServerRefused(f"{url}: the server refused the API key from ${where} ({said})", status)
            return ServerRefused(f"{url}: the server wants an API key ({said}); put it in an environment "
                                 f"variable and name it with --api-key-env (default {DEFAULT_KEY_ENV})", status)
        if status == 404:
            if "model" in message.lower():
                return ServerRefused(f"{url}: the server does not serve the model {self.served_model!r} ({said}); "
                                     f"name it with {self.model_option}", status)
            return ServerRefused(f"{url}: not found ({said}); is {self.url_option} the server's address "
                                 f"(an OpenAI-compatible server with {path})?", status)
        if 400 <= status < 500 and status not in TRANSIENT_STATUS:
            return ServerRefused(f"{url}: the server refused the request ({said})", status)
        tries = f" after {attempt + 1} attempts" if attempt else ""
        return ServerError(f"{url}: the server failed{tries} ({said})")

    def _scrub(self, text: str) -> str:
        """A server message without the key in it (some echo what they were sent)."""
        return text.replace(self.key, "***") if self.key else text


@dataclass
class OpenAIServerBackend:
    """The Backend protocol (core.backends.base) over an OpenAI-compatible completions endpoint.

    Build it with connect(), which checks the server, the key and the model name first.
    """

    tokenizer: Any
    options: ServerOptions
    served_model: str
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)
    name: str = "openai"
    model: Any = None
    """SimpleNamespace(config=SimpleNamespace(max_position_embeddings=N)) when the server says
    its context (vLLM's max_model_len at /v1/models), for the agent's context check; else None."""
    stats: ServerStats = field(default_factory=ServerStats)
    _key: str | None = field(default=None, repr=False)
    _extras: bool = field(default=True, repr=False)
    _prompt_as_text: bool = field(default=False, repr=False)
    _settled: bool = field(default=False, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _http: "ServerClient | None" = field(default=None, repr=False)

    @classmethod
    def connect(cls, tokenizer: Any, options: ServerOptions, model_name: str,
                stop_ids: Sequence[int] = (), probe: bool = True) -> "OpenAIServerBackend":
        """A backend for `model_name` (options.model when given) at options.base_url.

        tokenizer: the served model's tokenizer, loaded locally (core.models.load_tokenizer).
        stop_ids: ids that end a turn (core.rollout.chat.stop_token_ids); sent to the server.
        probe: ask GET /v1/models first: raises ServerError when the server cannot be reached,
            ServerRefused for a refused key or a model it does not list (a server without the
            route is not checked). ValueError for a bad URL or an unset --api-key-env variable.
        """
        root = options.root()
        key = options.api_key()
        served = options.model or model_name
        backend = cls(tokenizer=tokenizer, options=options, served_model=served,
                      stop_token_ids=frozenset(int(i) for i in stop_ids), _key=key)
        if probe:
            backend._probe()
        logger.info("openai backend: {} at {} (stop ids {})", served, root, sorted(backend.stop_token_ids))
        return backend

    # -- the Backend protocol -------------------------------------------------------------------

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int],
                 sampling: SamplingConfig) -> list[Generation]:
        """One completion request per prompt, at most options.max_concurrency in flight; results
        in the prompts' order. Raises ServerError / ServerRefused (the first failure met)."""
        if not prompts:
            return []
        if len(max_tokens) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(max_tokens)} token limits")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token id")
        pool = self._executor()
        futures = [pool.submit(self._complete, [int(i) for i in p], int(m), sampling)
                   for p, m in zip(prompts, max_tokens)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        """Stop the request threads (the backend can still be used: they start again)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- requests ---------------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.options.max_concurrency,
                                                thread_name_prefix="openai-backend")
            return self._pool

    def _complete(self, prompt: list[int], limit: int, sampling: SamplingConfig) -> Generation:
        """One prompt's generation. Until a request has succeeded, a refused request (400/422)
        is tried again without the extra fields, then with the prompt as text; the first way
        that works is kept for the session. Raises the first refusal when none works."""
        with self._lock:
            modes = ([(self._extras, self._prompt_as_text)] if self._settled
                     else [(True, False), (False, False), (False, True)])
        first: ServerRefused | None = None
        for extras, as_text in modes:
            try:
                reply = self._request("POST", "/v1/completions", self._body(prompt, limit, sampling, extras, as_text))
            except ServerRefused as exc:
                if exc.status not in (400, 422):
                    raise
                first = first or exc
                continue
            self._settle(extras, as_text, first)
            gen = parse_completion(reply, self.tokenizer, self.stop_token_ids, limit)
            if as_text:
                gen.token_exact = False  # the server tokenised our prompt itself
            with self._lock:
                self.stats.generated_tokens += len(gen.token_ids)
                self.stats.not_token_exact += not gen.token_exact
            return gen
        assert first is not None
        raise first

    def _settle(self, extras: bool, as_text: bool, refusal: ServerRefused | None) -> None:
        """Keep the first way of asking that worked, for every later request."""
        with self._lock:
            if self._settled:
                return
            self._settled, self._extras, self._prompt_as_text = True, extras, as_text
        if not extras:
            logger.warning("the server refused the extra request fields ({}); sent without them", refusal)
        if as_text:
            logger.warning("the server refused a prompt of token ids; prompts go as text and generations are "
                           "marked not token-exact")

    def _body(self, prompt: list[int], limit: int, sampling: SamplingConfig, extras: bool,
              as_text: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": self.tokenizer.decode(prompt) if as_text else prompt,
            "max_tokens": limit,
            "temperature": sampling.temperature,
            "logprobs": 1,  # llama.cpp returns none for 0
            "n": 1,
            "stream": False,
        }
        if sampling.temperature > 0:
            body["top_p"] = sampling.top_p
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        stops = self._stop_texts()
        if stops:
            body["stop"] = stops
        if extras:
            body.update({
                "stop_token_ids": sorted(self.stop_token_ids),
                "return_tokens_as_token_ids": True,
                "return_token_ids": True,
                # The full distribution, as the hf backend samples: servers otherwise apply the
                # model's generation_config (vLLM) or their own defaults (llama.cpp: top_k 40,
                # min_p 0.05, repeat penalty).
                "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "repeat_penalty": 1.0,
            })
        return body

    def _stop_texts(self) -> list[str]:
        # For servers that know no stop ids: the stop tokens' texts (OpenAI allows four).
        texts = {self.tokenizer.decode([i]) for i in sorted(self.stop_token_ids)}
        return sorted(t for t in texts if t)[:4]

    def _probe(self) -> None:
        """Reachability, key and model name, through GET /v1/models (ServerClient.probe)."""
        entry = self._client().probe(note=" (--model is the local tokenizer)")
        context = entry.get("max_model_len") if entry is not None else None
        if isinstance(context, int) and not isinstance(context, bool) and context > 0:
            self.model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=context))

    def _request(self, method: str, path: str, body: dict | None, retries: int | None = None) -> Any:
        """The reply's JSON (ServerClient.request). Retries transient failures; raises ServerError /
        ServerRefused."""
        return self._client().request(method, path, body, retries=retries)

    def _client(self) -> "ServerClient":
        with self._lock:
            if self._http is None:
                self._http = ServerClient(self.options, self.served_model, key=self._key, stats=self.stats)
            return self._http


# -- parsing replies ------------------------------------------------------------------------------


def parse_completion(reply: Any, tokenizer: Any, stop_ids: frozenset[int] | Sequence[int],
                     limit: int) -> Generation:
    """The Generation in a completions reply (its first choice).

    reply: the decoded JSON. tokenizer: the local one (decodes ids, re-tokenises text-only replies).
    stop_ids: ids that end a turn. limit: the max_tokens sent; a longer reply is cut to it, as
    "length". Token ids are taken from `token_ids`, "token_id:N" logprob tokens or
    `logprobs.content[].id` (token_exact); else re-tokenised from `text` (token_exact False).
    finish_reason is the server's "stop" or "length" ("eos" reads as "stop").
    Raises ServerError for anything malformed (never another exception on any JSON value).
    """
    try:
        return _parse(reply, tokenizer, frozenset(stop_ids), limit)
    except ServerError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
        # The checks below should leave nothing for these; a reply shaped in some way they missed
        # is still the server's fault, said in one line.
        raise ServerError(f"malformed completions reply ({exc.__class__.__name__}: {exc})") from None


def _parse(reply: Any, tokenizer: Any, stops: frozenset[int], limit: int) -> Generation:
    if not isinstance(reply, dict):
        raise ServerError(f"malformed completions reply: not a JSON object ({_preview(reply)})")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ServerError(f"malformed completions reply: no choices ({_preview(reply)})")
    choice = choices[0]
    finish = choice.get("finish_reason")
    if finish == "eos":
        finish = "stop"
    if finish not in ("stop", "length"):
        raise ServerError(f"the server ended a completion with finish_reason {_preview(finish)}, "
                          f"not stop or length")
    vocab = len(tokenizer)
    logprobs = choice.get("logprobs")
    ids, values = _reported_ids(choice, logprobs, vocab)
    if ids is not None:
        if values is None:
            values = [math.nan] * len(ids)
        if len(values) != len(ids):
            raise ServerError(f"malformed completions reply: {len(ids)} token ids but {len(values)} logprobs")
        exact = True
    else:
        text = choice.get("text")
        if not isinstance(text, str):
            raise ServerError(f"malformed completions reply: no text and no token ids ({_preview(choice)})")
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if finish == "stop" and stops and not (ids and ids[-1] in stops):
            ids.append(_stop_id(choice.get("stop_reason"), tokenizer, stops))
        reported = _reported_logprobs(logprobs)
        values = reported if reported is not None and len(reported) == len(ids) else [math.nan] * len(ids)
        exact = False
    if len(ids) > limit:
        ids, values, finish = ids[:limit], values[:limit], "length"
    body = ids[:-1] if finish == "stop" and ids and ids[-1] in stops else ids
    return Generation(ids, values, tokenizer.decode(body), finish, token_exact=exact)


def _reported_ids(choice: dict, logprobs: Any, vocab: int) -> tuple[list[int] | None, list[float] | None]:
    """(ids, logprobs) the server reported, or (None, None) when it gave no ids."""
    values = _reported_logprobs(logprobs)
    ids = choice.get("token_ids")
    if ids is not None:
        return _checked_ids(ids, vocab), values
    if isinstance(logprobs, dict):
        tokens = logprobs.get("tokens")
        if isinstance(tokens, list) and tokens and all(isinstance(t, str) and _TOKEN_ID.match(t) for t in tokens):
            return _checked_ids([int(_TOKEN_ID.match(t).group(1)) for t in tokens], vocab), values
        content = logprobs.get("content")
        if isinstance(content, list) and content and all(isinstance(c, dict) and "id" in c for c in content):
            return _checked_ids([c["id"] for c in content], vocab), values
    return None, None


def _reported_logprobs(logprobs: Any) -> list[float] | None:
    """The chosen tokens' logprobs (NaN where the server wrote null), or None when absent."""
    if not isinstance(logprobs, dict):
        return None
    raw = logprobs.get("token_logprobs")
    if raw is None and isinstance(logprobs.get("content"), list):
        raw = [c.get("logprob") if isinstance(c, dict) else "?" for c in logprobs["content"]]
    if not isinstance(raw, list):
        return None
    out = []
    for v in raw:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise ServerError(f"malformed completions reply: a logprob reads {_preview(v)}")
    return out


def _checked_ids(ids: Any, vocab: int) -> list[int]:
    if not isinstance(ids, list):
        raise ServerError(f"malformed completions reply: token ids are {_preview(ids)}")
    for i in ids:
        if not isinstance(i, int) or isinstance(i, bool):
            raise ServerError(f"malformed completions reply: a token id reads {_preview(i)}")
        if not 0 <= i < vocab:
            raise ServerError(f"the server returned token id {i}, outside the local tokenizer's {vocab} ids: "
                              f"does it serve another model than --model?")
    return list(ids)


def _stop_id(stop_reason: Any, tokenizer: Any, stops: frozenset[int]) -> int:
    """The stop id a text-only reply ended on: vLLM's stop_reason when it is one, else eos when
    it is a stop id, else the smallest stop id (the reply is marked not token-exact anyway)."""
    if isinstance(stop_reason, int) and not isinstance(stop_reason, bool) and stop_reason in stops:
        return stop_reason
    eos = getattr(tokenizer, "eos_token_id", None)
    return eos if isinstance(eos, int) and eos in stops else min(stops)


def _served_models(reply: Any) -> list[dict] | None:
    """The model entries of a /v1/models reply; None when it is not that shape."""
    data = reply.get("data") if isinstance(reply, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        return None
    return data


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The message in an error reply: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or
    the start of the body."""
    try:
        raw = exc.read()
    except (OSError, http.client.HTTPException):
        return ""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return _preview(raw)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return _one_line(error["message"])
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return _one_line(data[key])
    return _preview(data)


def _retry_after(headers: Any) -> float | None:
    """Seconds a Retry-After header asks for (a number or an HTTP date), at most _MAX_RETRY_AFTER."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, _MAX_RETRY_AFTER))


def _reason(reason: Any) -> str:
    if isinstance(reason, BaseException):
        return _one_line(f"{reason.__class__.__name__}: {reason}" if str(reason) else reason.__class__.__name__)
    return _one_line(str(reason))


def _one_line(text: str, width: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _preview(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _one_line(repr(value) if not isinstance(value, str) else value, 120)


def connect_model(ref: Any, options: ServerOptions, tokenizer: Any = None, probe: bool = True) -> OpenAIServerBackend:
    """OpenAIServerBackend.connect for a resolved model (core.models.ModelRef): its tokenizer
    loaded locally when not given, its stop ids from the tokenizer and the local generation
    config where there is one. Raises ModelError (no local tokenizer), ServerError, ServerRefused
    or ValueError as connect() does."""
    from core.models import load_tokenizer
    from core.rollout.chat import stop_token_ids

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(ref)
    return OpenAIServerBackend.connect(tokenizer, options, ref.name,
                                       stop_ids=sorted(stop_token_ids(tokenizer, _generation_config(ref))),
                                       probe=probe)


def _generation_config(ref: Any) -> Any:
    """The model's generation config (its eos ids) from local files; None when there is none."""
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(ref.location, local_files_only=True)
    except Exception:  # noqa: BLE001 - transformers raises many kinds for a missing file; the tokenizer's eos remains
        return None


def server_options(config: Any, judge: bool = False) -> ServerOptions | None:
    """ServerOptions from an EvalConfig (core.config) for the policy, or for the LLM judge when
    `judge` (its --judge-backend and --judge-base-url, falling back on the policy's); None when
    that backend is not "openai". The judge's server model is --judge-model itself."""
    kind = (config.judge_backend or config.backend) if judge else config.backend
    if kind != "openai":
        return None
    url = (config.judge_base_url or config.base_url) if judge else config.base_url
    return ServerOptions(base_url=url, api_key_env=config.api_key_env,
                         model=None if judge else config.server_model,
                         max_concurrency=config.max_concurrency, timeout=config.request_timeout)
