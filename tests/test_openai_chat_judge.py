"""The LLM judge over OpenAI's chat-completions API (core.backends.openai_chat), against
FakeChatServer: a fake hosted chat model on loopback (no tokenizer, no /v1/completions), defined
here. Verdicts from its replies, a cut reply, the request body, retries, the one-line refusals,
the key, concurrency, malformed replies, and `rl-inspect eval` on the embedded model with a
judge model that has no local tokenizer."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest
from loguru import logger

from core.backends.openai_chat import ChatReply, OpenAIChatClient, parse_chat_reply
from core.backends.openai_server import ServerError, ServerOptions, ServerRefused
from core.config import EvalConfig
from core.evaluate import evaluate
from core.scoring.judge_model import judge_complete
from core.scoring.judges import JudgeItem, LLMJudge
from core.store import Store
from inspector.cli import main
from tests.fake_openai_server import Canned, _send
from tests.local_tokenizers import chatml_tokenizer
from tests.scripted_backend import ScriptedBackend

KEY = "sk-judge-never-stored-0123456789"
HOSTED = "some-hosted-name"
"""A judge model name with no local tokenizer (no folder, no hub id in the cache)."""


@dataclass
class FakeChatServer:
    """A fake hosted chat model: `GET /v1/models` and `POST /v1/chat/completions` only.

    script: the user message's text -> the reply text, or a whole `message`+`finish_reason`
    choice (a dict) to send instead. canned: replies sent first, one per chat request.
    key: the key demanded (401 without one, 403 with another). requests/headers: what came in.
    """

    script: Callable[[str], Any] = lambda text: "Yes"
    models: list[str] = field(default_factory=lambda: [HOSTED, "gpt-4o-mini"])
    key: str | None = None
    canned: list[Canned] = field(default_factory=list)
    delay: Callable[[str], float] = lambda text: 0.0
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    reasoning: bool = False
    """Answer as hosted OpenAI does for a reasoning model: 400 for max_tokens or a temperature but 1."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeChatServer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
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

    def _handle(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        auth = handler.headers.get("Authorization")
        with self._lock:
            self.headers.append(dict(handler.headers))
        if self.key is not None and auth != f"Bearer {self.key}":
            return _send(handler, 401 if auth is None else 403,
                         {"error": {"message": f"Incorrect API key provided: {auth}", "code": "invalid_api_key"}})
        if handler.command == "GET" and handler.path == "/v1/models":
            return _send(handler, 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})
        if handler.command != "POST" or handler.path != "/v1/chat/completions":
            return _send(handler, 404, {"error": {"message": "Invalid URL", "type": "invalid_request_error"}})
        with self._lock:
            self.requests.append(body)
            canned = self.canned.pop(0) if self.canned else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if canned is not None:
                return _send(handler, canned.status, canned.body, canned.headers)
            if self.reasoning and ("max_tokens" in body or body.get("temperature", 1) != 1):
                return _send(handler, REASONING_REFUSAL.status, REASONING_REFUSAL.body)
            if body.get("model") not in self.models:
                return _send(handler, 404, {"error": {"message": f"The model `{body.get('model')}` does not exist",
                                                      "code": "model_not_found"}})
            text = body["messages"][-1]["content"]
            time.sleep(self.delay(text))
            out = self.script(text)
            choice = out if isinstance(out, dict) else {"message": {"role": "assistant", "content": out},
                                                       "finish_reason": "stop"}
            return _send(handler, 200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                                        "choices": [{"index": 0, **choice}]})
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _options(fake: FakeChatServer, sleeps: list | None = None, **kw) -> ServerOptions:
    return ServerOptions(base_url=fake.url, sleep=sleeps.append if sleeps is not None else (lambda s: None), **kw)


def _no_local_model():
    pytest.fail("the openai judge must not load a local model or tokenizer")


def _judge(fake: FakeChatServer, max_tokens: int = 64, **kw) -> LLMJudge:
    complete = judge_complete("openai", HOSTED, max_tokens, _no_local_model, server=_options(fake, **kw))
    return LLMJudge(complete, max_tokens)


def _given(text: str) -> str:
    return re.search(r"Given answer: (.*)\n", text).group(1)


ITEMS = [JudgeItem("Capital of France?", "Paris", "Paris"), JudgeItem("Capital of France?", "Paris", "Lyon"),
         JudgeItem("Capital of France?", "Paris", "maybe"), JudgeItem("Capital of France?", "Paris", "   "),
         JudgeItem("Capital of France?", "Paris", "It is Paris")]


def _verdict_script(text: str) -> str:
    return {"Paris": "Yes", "Lyon": "No.", "maybe": "I cannot tell",
            "It is Paris": "<think>It says Paris.</think>**Yes**"}[_given(text)]


def test_verdicts_come_from_the_servers_yes_and_no_replies():
    with FakeChatServer(script=_verdict_script) as fake:
        verdicts = _judge(fake).judge(ITEMS)
    assert [v.correct for v in verdicts] == [True, False, None, False, True]
    assert [v.detail["verdict"] for v in verdicts] == ["yes", "no", "unparseable", "empty_answer", "yes"]
    # The reply is stored as the server sent it: the judge, not the client, strips the reasoning.
    assert verdicts[4].detail["reply"] == "<think>It says Paris.</think>**Yes**"
    assert all("cut" not in v.detail for v in verdicts)
    assert len(fake.requests) == 4  # the empty answer is never asked


def test_a_reply_cut_at_the_token_limit_is_marked_cut():
    def script(text: str) -> dict:
        if _given(text) == "Paris":
            return {"message": {"role": "assistant", "content": "<think>Let me compare the"}, "finish_reason": "length"}
        return {"message": {"role": "assistant", "content": "No"}, "finish_reason": "content_filter"}

    with FakeChatServer(script=script) as fake:
        verdicts = _judge(fake, max_tokens=16).judge(ITEMS[:2])
    assert verdicts[0].correct is None and verdicts[0].detail["cut"] is True
    assert verdicts[0].detail["max_tokens"] == 16 and verdicts[0].detail["verdict"] == "unparseable"
    assert verdicts[1].correct is False and "cut" not in verdicts[1].detail


def test_the_request_is_one_user_message_at_temperature_0_within_the_judge_budget():
    with FakeChatServer() as fake:
        complete = judge_complete("openai", HOSTED, 48, _no_local_model, server=_options(fake), seed=7)
        replies = complete(["Is 2 + 2 = 4?"])
        unseeded = judge_complete("openai", HOSTED, 48, _no_local_model, server=_options(fake))(["again"])
    assert replies == [ChatReply("Yes", "stop")] and unseeded == [ChatReply("Yes", "stop")]
    body = fake.requests[0]
    assert body["model"] == HOSTED and body["messages"] == [{"role": "user", "content": "Is 2 + 2 = 4?"}]
    assert body["temperature"] == 0 and body["max_tokens"] == 48 and body["n"] == 1 and body["seed"] == 7
    assert body.get("stream") in (None, False)
    assert "seed" not in fake.requests[1]


def test_a_503_is_retried_then_the_reply_is_used():
    sleeps: list[float] = []
    with FakeChatServer(canned=[Canned(503, {"error": {"message": "overloaded"}}),
                                Canned(429, {"error": {"message": "slow down"}}, {"Retry-After": "2"})]) as fake:
        client = OpenAIChatClient.connect(_options(fake, sleeps, backoff=0.25), HOSTED)
        assert client.complete(["Is it?"], 32) == [ChatReply("Yes", "stop")]
    assert sleeps == [0.25, 2.0] and client.stats.retries == 2 and len(fake.requests) == 3


REASONING_REFUSAL = Canned(400, {"error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' "
               "instead.", "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})
"""What hosted OpenAI answers a reasoning model (o1, o3, gpt-5) asked with max_tokens."""


def test_a_reasoning_model_that_refuses_max_tokens_is_asked_its_own_way_for_the_session():
    with FakeChatServer(script=lambda text: "Yes", reasoning=True) as fake:
        judge = _judge(fake, max_tokens=512)
        assert [v.correct for v in judge.judge([JudgeItem("q?", "a", "a")] * 3)] == [True] * 3
        assert fake.requests[0]["max_tokens"] == 512 and fake.requests[0]["temperature"] == 0
        asked = len(fake.requests)
        # Settled: every later request of the session goes the reasoning model's way at once.
        assert [v.correct for v in judge.judge([JudgeItem("q?", "a", "a")] * 2)] == [True] * 2
    later = fake.requests[asked:]
    assert len(later) == 2
    for body in later:
        assert body["max_completion_tokens"] == 512
        assert "max_tokens" not in body and "temperature" not in body and "seed" not in body


def test_a_refusal_that_the_other_form_does_not_fix_is_reported():
    bad = Canned(400, {"error": {"message": "messages: too long", "type": "invalid_request_error"}})
    with FakeChatServer(canned=[bad, bad]) as fake:
        with pytest.raises(ServerRefused, match="too long"):
            _judge(fake).judge([JudgeItem("q?", "a", "a")])
    assert len(fake.requests) == 2


def test_a_refused_key_and_a_wrong_model_name_are_one_line_refusals(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-wrong")
    with FakeChatServer(key=KEY) as fake:
        with pytest.raises(ServerRefused) as refused:
            OpenAIChatClient.connect(_options(fake, api_key_env="JUDGE_KEY"), HOSTED)
        with pytest.raises(ServerRefused) as no_key:
            OpenAIChatClient.connect(_options(fake), HOSTED)
    assert refused.value.status == 403 and "refused the API key from $JUDGE_KEY" in str(refused.value)
    assert "sk-wrong" not in str(refused.value) and "\n" not in str(refused.value)
    assert no_key.value.status == 401 and "--api-key-env" in str(no_key.value)
    with FakeChatServer() as fake:
        with pytest.raises(ServerRefused) as wrong:
            OpenAIChatClient.connect(_options(fake), "gpt-4o-mni")
        # Without the probe, the chat request's own 404 says it.
        with pytest.raises(ServerRefused) as unprobed:
            OpenAIChatClient.connect(_options(fake), "gpt-4o-mni", probe=False).complete(["Q"], 8)
    assert isinstance(wrong.value, ValueError) and wrong.value.status == 404
    message = str(wrong.value)
    assert "'gpt-4o-mni'" in message and "gpt-4o-mini" in message and "--judge-model" in message
    assert "\n" not in message and "tokenizer" not in message
    assert unprobed.value.status == 404 and "--judge-model" in str(unprobed.value)


def test_an_unreachable_server_is_a_server_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerError, match="cannot reach the server") as unreachable:
        OpenAIChatClient.connect(ServerOptions(base_url=f"http://127.0.0.1:{port}", sleep=lambda s: None), HOSTED)
    assert not isinstance(unreachable.value, ServerRefused) and "--judge-base-url" in str(unreachable.value)


def test_the_key_comes_from_the_named_variable_as_a_bearer_header(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", KEY)
    with FakeChatServer(key=KEY) as fake:
        client = OpenAIChatClient.connect(_options(fake, api_key_env="JUDGE_KEY"), HOSTED)
        assert client.complete(["Q"], 8)[0].text == "Yes"
    assert {h.get("Authorization") for h in fake.headers} == {f"Bearer {KEY}"}
    assert KEY not in repr(client)


def test_a_reply_without_text_is_empty_and_logged_and_one_without_choices_is_a_server_error():
    def script(text: str) -> dict:
        if "refuse" in text:
            return {"message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                    "finish_reason": "stop"}
        return {"message": {"role": "assistant", "content": None,
                            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                "finish_reason": "tool_calls"}

    said: list[str] = []
    sink = logger.add(lambda m: said.append(str(m)), level="WARNING")
    try:
        with FakeChatServer(script=script) as fake:
            replies = OpenAIChatClient.connect(_options(fake), HOSTED).complete(["please refuse", "call"], 8)
    finally:
        logger.remove(sink)
    assert replies == [ChatReply("", "stop"), ChatReply("", "stop")]
    said = [m for m in said if "chat reply without text" in m]  # in either order: the requests run at once
    assert len(said) == 2 and any("I can't help with that." in m for m in said)
    assert any("tool call" in m for m in said)
    with FakeChatServer(canned=[Canned(200, {"object": "chat.completion", "error": "no"})]) as fake:
        with pytest.raises(ServerError, match="no choices") as malformed:
            OpenAIChatClient.connect(_options(fake), HOSTED).complete(["Q"], 8)
    assert f"{fake.url}/v1/chat/completions" in str(malformed.value)
    for bad in (None, [], {"choices": []}, {"choices": [{"finish_reason": "stop"}]},
                {"choices": [{"message": {"content": 3}}]}):
        with pytest.raises(ServerError, match="http://h/v1/chat/completions"):
            parse_chat_reply(bad, "http://h/v1/chat/completions")
    parts = {"choices": [{"message": {"content": [{"type": "text", "text": "Ye"}, {"type": "text", "text": "s"}]},
                          "finish_reason": "stop"}]}
    assert parse_chat_reply(parts, "u") == ChatReply("Yes", "stop")


def test_a_batch_runs_concurrently_within_the_limit_and_comes_back_in_order():
    texts = [f"question {i}" for i in range(6)]
    with FakeChatServer(script=lambda t: f"Yes {t}", delay=lambda t: 0.05 * (6 - int(t.split()[-1]))) as fake:
        replies = OpenAIChatClient.connect(_options(fake, max_concurrency=3), HOSTED).complete(texts, 8)
    assert [r.text for r in replies] == [f"Yes {t}" for t in texts]
    assert 1 < fake.max_in_flight <= 3


def test_other_judge_backends_load_their_model():
    loaded = []

    class Model:
        tokenizer = None

    def load():
        loaded.append(True)
        return Model()

    judge_complete("hf", "local/judge", 16, load)
    assert loaded == [True]
    with pytest.raises(ValueError, match="--judge-base-url"):
        judge_complete("openai", HOSTED, 16, _no_local_model, server=None)


def test_without_a_judge_model_an_openai_policy_judges_itself_through_its_own_backend(tmp_path):
    """No --judge-model: the policy (here on --backend openai) judges through its own backend and
    local chat template, never the chat client (the base URL below answers nothing)."""
    def script(prompt: str, turn: int) -> str:
        return "No" if "Reply with exactly one word" in prompt else "An answer"

    policy = ScriptedBackend(chatml_tokenizer(), script)
    summary = evaluate(EvalConfig(backend="openai", base_url="http://127.0.0.1:9", demo_chunks=40, split="all",
                                  limit=2, judge="llm", check_drift=False), tmp_path / "runs.db", backend=policy)
    assert summary["judge"].startswith("llm") and summary["judged"] == 2 and summary["accuracy"] == 0.0
    assert policy.calls == [2, 2]  # one turn for both questions, then one judge batch


def test_cli_eval_on_the_embedded_model_with_a_hosted_judge(tmp_path, monkeypatch, capsys):
    """The policy is the embedded model (hf, local); the judge is a hosted name with no local
    tokenizer, asked over chat completions. Every stored verdict is the fake's reply."""
    monkeypatch.setenv("JUDGE_KEY", KEY)
    answered: dict[str, str] = {}

    def script(text: str) -> str:
        reply = f"{'Yes' if len(answered) % 2 == 0 else 'No'}, fake judge reply #{len(answered)}"
        answered[_given(text)] = reply
        return reply

    db = tmp_path / "runs.db"
    with FakeChatServer(script=script, key=KEY, models=[HOSTED]) as fake:
        code = main(["eval", "--db", str(db), "--demo-chunks", "40", "--split", "all", "--limit", "2",
                     "--batch-size", "2", "--max-generations", "1", "--max-tokens-per-turn", "4", "--device", "cpu",
                     "--no-drift-check",
                     "--judge-model", HOSTED, "--judge-backend", "openai", "--judge-base-url", fake.url,
                     "--api-key-env", "JUDGE_KEY", "--max-concurrency", "1", "--no-open", "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["judge"] == f"llm:{HOSTED}" and summary["trajectories"] == 2
    assert all(r["model"] == HOSTED and r["max_tokens"] == 1024 for r in fake.requests)
    with Store.open_readonly(db) as store:
        run = store.run(summary["run_id"])
        verdicts = [next(r for r in store.rewards(row["id"]) if r.name == "correctness")
                    for row in store.trajectory_rows(run["id"])]
    asked = [v for v in verdicts if v.detail.get("verdict") != "empty_answer"]
    assert asked and len(asked) == len(fake.requests) == len(answered)
    assert sorted(v.detail["reply"] for v in asked) == sorted(answered.values())
    assert all(v.value == (1.0 if v.detail["reply"].startswith("Yes") else 0.0) for v in asked)
    assert run["config"]["judge_backend"] == "openai" and run["config"]["api_key_env"] == "JUDGE_KEY"
    assert KEY not in json.dumps(run["config"]) and KEY.encode() not in db.read_bytes()
