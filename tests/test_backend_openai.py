"""Contract tests of the OpenAI-compatible server backend against a fake server on loopback
(tests.fake_openai_server): token ids and logprobs, prompts sent as ids, stop and length, the
not-token-exact marking, retries and backoff, Retry-After, timeouts, the one-line errors, the key,
the concurrency limit, and malformed replies."""

from __future__ import annotations

import json
import math
import re
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core.backends import SamplingConfig, chat_complete, create_backend
from core.backends.openai_server import (OpenAIServerBackend, ServerError, ServerOptions, ServerRefused,
                                         normalise_base_url, parse_completion)
from core.config import EvalConfig
from core.models import ModelError
from tests.fake_openai_server import Canned, FakeOpenAIServer
from tests.local_tokenizers import chatml_tokenizer

GREEDY = SamplingConfig(temperature=0.0)


@pytest.fixture(autouse=True)
def _no_default_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _tok():
    return chatml_tokenizer()


def _stop(tok) -> int:
    return tok.convert_tokens_to_ids("<|im_end|>")


def _connect(fake: FakeOpenAIServer, sleeps: list | None = None, **kw) -> OpenAIServerBackend:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    opts = ServerOptions(base_url=fake.url, model="served-model", sleep=sleep, **kw)
    return OpenAIServerBackend.connect(fake.tokenizer, opts, "local-name", stop_ids=[_stop(fake.tokenizer)])


def _prompt(tok, text="What is the capital?") -> list[int]:
    return list(tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False))


def test_token_ids_and_logprobs_come_from_the_server_and_the_prompt_goes_as_ids():
    tok = _tok()
    with FakeOpenAIServer(tok, script=lambda p: "The answer is Paris.") as fake:
        backend = _connect(fake)
        prompts = [_prompt(tok), _prompt(tok, "Another question")]
        out = backend.generate(prompts, [64, 64], GREEDY)
    expected = list(tok("The answer is Paris.", add_special_tokens=False)["input_ids"]) + [_stop(tok)]
    for gen in out:
        assert gen.token_ids == expected and gen.token_exact
        assert gen.logprobs == [-0.5] * len(expected)
        assert gen.finish_reason == "stop" and gen.text == "The answer is Paris."
    sent = sorted((r["prompt"] for r in fake.requests), key=len)
    assert sent == sorted(prompts, key=len)  # ids, as rendered locally
    body = fake.requests[0]
    assert body["model"] == "served-model" and body["logprobs"] == 1 and body["max_tokens"] == 64
    assert body["stop_token_ids"] == [_stop(tok)] and body["return_tokens_as_token_ids"] is True
    assert body["temperature"] == 0.0 and "<|im_end|>" in body["stop"]
    assert backend.model.config.max_position_embeddings == 4096  # the server's max_model_len


def test_a_reply_cut_at_max_tokens_is_length_and_keeps_no_stop_token():
    tok = _tok()
    with FakeOpenAIServer(tok, script=lambda p: "The answer is Paris, 42, 1999.") as fake:
        gen, = _connect(fake).generate([_prompt(tok)], [3], GREEDY)
    assert gen.finish_reason == "length" and len(gen.token_ids) == 3 and _stop(tok) not in gen.token_ids
    assert gen.text == tok.decode(gen.token_ids) and gen.token_exact


def test_llama_cpp_logprob_content_ids_are_token_exact():
    tok = _tok()
    with FakeOpenAIServer(tok, ids="content", script=lambda p: "Maribel") as fake:
        gen, = _connect(fake).generate([_prompt(tok)], [32], GREEDY)
    assert gen.token_exact and gen.token_ids[-1] == _stop(tok) and gen.text == "Maribel"
    assert gen.logprobs == [-0.5] * len(gen.token_ids)


def test_a_text_only_server_is_retokenised_and_marked_not_token_exact():
    tok = _tok()
    with FakeOpenAIServer(tok, ids="text", script=lambda p: "The capital is Maribel.") as fake:
        backend = _connect(fake)
        gen, = backend.generate([_prompt(tok)], [32], GREEDY)
    assert not gen.token_exact and gen.finish_reason == "stop"
    assert gen.token_ids == list(tok("The capital is Maribel.", add_special_tokens=False)["input_ids"]) + [_stop(tok)]
    assert gen.text == "The capital is Maribel."
    assert gen.logprobs == [-0.5] * len(gen.token_ids)  # one string token per id: matched
    assert backend.stats.not_token_exact == 1


def test_text_only_logprobs_that_cannot_be_matched_are_nan():
    tok = _tok()
    reply = {"choices": [{"text": "Paris is big", "finish_reason": "length",
                          "logprobs": {"tokens": ["Paris is big"], "token_logprobs": [-1.0]}}]}
    gen = parse_completion(reply, tok, {_stop(tok)}, 100)
    assert not gen.token_exact and len(gen.token_ids) > 1 and all(math.isnan(v) for v in gen.logprobs)


def test_vllm_return_token_ids_field_is_used():
    tok = _tok()
    ids = list(tok("Paris", add_special_tokens=False)["input_ids"]) + [_stop(tok)]
    reply = {"choices": [{"text": "Paris", "finish_reason": "stop", "token_ids": ids,
                          "logprobs": {"tokens": ["P"] * len(ids), "token_logprobs": [-0.1] * len(ids)}}]}
    gen = parse_completion(reply, tok, {_stop(tok)}, 100)
    assert gen.token_ids == ids and gen.token_exact and gen.text == "Paris" and gen.logprobs == [-0.1] * len(ids)


def test_ids_outside_the_local_vocabulary_are_refused():
    tok = _tok()
    reply = {"choices": [{"text": "x", "finish_reason": "stop", "token_ids": [len(tok) + 5]}]}
    with pytest.raises(ServerError, match="another model"):
        parse_completion(reply, tok, {_stop(tok)}, 100)


def test_a_server_refusing_extra_fields_gets_requests_without_them():
    tok = _tok()
    with FakeOpenAIServer(tok, refuse_extras=True, ids="text") as fake:
        backend = _connect(fake)
        backend.generate([_prompt(tok)], [16], GREEDY)
        backend.generate([_prompt(tok)], [16], GREEDY)
    assert "stop_token_ids" in fake.requests[0] and "stop_token_ids" not in fake.requests[1]
    assert len(fake.requests) == 3 and "stop_token_ids" not in fake.requests[2]  # settled for the session


def test_a_server_refusing_id_prompts_gets_text_and_generations_are_not_token_exact():
    tok = _tok()
    with FakeOpenAIServer(tok, refuse_id_prompts=True) as fake:
        gen, = _connect(fake).generate([_prompt(tok)], [16], GREEDY)
    assert isinstance(fake.requests[-1]["prompt"], str) and fake.requests[-1]["prompt"].endswith("assistant\n")
    assert not gen.token_exact and gen.token_ids[-1] == _stop(tok)


def test_a_refusal_after_the_first_success_is_not_worked_around():
    tok = _tok()
    with FakeOpenAIServer(tok) as fake:
        backend = _connect(fake)
        backend.generate([_prompt(tok)], [16], GREEDY)
        fake.canned.append(Canned(400, {"error": {"message": "This model's maximum context length is 4096"}}))
        with pytest.raises(ServerRefused, match="maximum context length"):
            backend.generate([_prompt(tok)], [16], GREEDY)
    assert len(fake.requests) == 2


def test_503_is_retried_with_exponential_backoff_then_succeeds():
    tok = _tok()
    sleeps: list[float] = []
    with FakeOpenAIServer(tok, canned=[Canned(503, {"error": {"message": "busy"}})] * 2) as fake:
        backend = _connect(fake, sleeps, backoff=0.25)
        gen, = backend.generate([_prompt(tok)], [16], GREEDY)
    assert gen.finish_reason == "stop" and sleeps == [0.25, 0.5] and backend.stats.retries == 2


def test_429_honours_retry_after():
    tok = _tok()
    sleeps: list[float] = []
    with FakeOpenAIServer(tok, canned=[Canned(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"})]) as fake:
        _connect(fake, sleeps).generate([_prompt(tok)], [16], GREEDY)
    assert sleeps == [7.0]


def test_5xx_past_its_retries_is_a_failure_not_bad_input():
    tok = _tok()
    sleeps: list[float] = []
    with FakeOpenAIServer(tok, canned=[Canned(500, b"Internal Server Error")] * 5) as fake:
        backend = _connect(fake, sleeps, retries=2)
        with pytest.raises(ServerError, match="after 3 attempts") as err:
            backend.generate([_prompt(tok)], [16], GREEDY)
    assert not isinstance(err.value, ValueError) and "\n" not in str(err.value)
    assert len(sleeps) == 2


def test_a_request_past_its_timeout_fails_at_once_in_one_line():
    tok = _tok()
    sleeps: list[float] = []
    with FakeOpenAIServer(tok, canned=[Canned(200, {}, delay=2.0)]) as fake:
        backend = _connect(fake, sleeps, timeout=0.3)
        with pytest.raises(ServerError, match=r"no reply within 0.3 s") as err:
            backend.generate([_prompt(tok)], [16], GREEDY)
    assert sleeps == [] and "\n" not in str(err.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_one_clear_line():
    sleeps: list[float] = []
    opts = ServerOptions(base_url=f"http://127.0.0.1:{_free_port()}/v1", sleep=sleeps.append)
    with pytest.raises(ServerError, match="cannot reach the server at http://127.0.0.1:") as err:
        OpenAIServerBackend.connect(_tok(), opts, "m")
    assert isinstance(err.value, ModelError) and not isinstance(err.value, ValueError)
    assert "\n" not in str(err.value) and len(sleeps) == 1  # the probe retries once, quickly


def test_a_wrong_model_name_is_refused_at_connect_naming_the_served_ones():
    tok = _tok()
    with FakeOpenAIServer(tok, models=["Qwen/Qwen3-0.6B"]) as fake:
        with pytest.raises(ServerRefused, match=r"does not serve the model 'local-name'.*Qwen/Qwen3-0.6B") as err:
            OpenAIServerBackend.connect(tok, ServerOptions(base_url=fake.url), "local-name")
    assert isinstance(err.value, ValueError) and err.value.status == 404


def test_a_404_model_at_completion_time_is_bad_input():
    tok = _tok()
    with FakeOpenAIServer(tok) as fake:
        backend = OpenAIServerBackend.connect(tok, ServerOptions(base_url=fake.url), "nope", probe=False)
        with pytest.raises(ServerRefused, match="does not serve the model 'nope'"):
            backend.generate([_prompt(tok)], [8], GREEDY)


def test_the_key_comes_from_the_environment_and_a_refused_one_is_bad_input(monkeypatch):
    tok = _tok()
    with FakeOpenAIServer(tok, key="sk-right-one") as fake:
        with pytest.raises(ServerRefused, match="wants an API key.*--api-key-env") as err:
            _connect(fake)
        assert err.value.status == 401
        monkeypatch.setenv("MY_KEY", "sk-wrong-one")
        with pytest.raises(ServerRefused, match=r"refused the API key from \$MY_KEY") as err:
            _connect(fake, api_key_env="MY_KEY")
        assert err.value.status == 403 and "sk-wrong-one" not in str(err.value)  # the echo is scrubbed
        monkeypatch.setenv("OPENAI_API_KEY", "sk-right-one")  # the default variable
        gen, = _connect(fake).generate([_prompt(tok)], [8], GREEDY)
    assert gen.finish_reason in ("stop", "length")
    assert fake.headers[-1]["Authorization"] == "Bearer sk-right-one"


def test_an_unset_key_variable_is_bad_input(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    opts = ServerOptions(base_url="http://127.0.0.1:9", api_key_env="NOT_SET_ANYWHERE")
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE: the environment variable is not set"):
        OpenAIServerBackend.connect(_tok(), opts, "m", probe=False)


@pytest.mark.parametrize("url", ["ftp://host", "host:8000", "http://user:sk-123@host:8000", "http://h/?key=1"])
def test_bad_base_urls_are_refused(url):
    with pytest.raises(ValueError, match="--base-url"):
        normalise_base_url(url)
    with pytest.raises(ValueError, match="--base-url"):
        EvalConfig(backend="openai", base_url=url).validate()


def test_base_url_with_or_without_v1():
    assert normalise_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"
    assert normalise_base_url("https://api.example.com/proxy/v1") == "https://api.example.com/proxy"


def test_server_options_are_checked_by_the_config():
    with pytest.raises(ValueError, match="needs --base-url"):
        EvalConfig(backend="openai").validate()
    with pytest.raises(ValueError, match="--max-concurrency"):
        EvalConfig(max_concurrency=0).validate()
    with pytest.raises(ValueError, match="--judge-backend needs --judge-model"):
        EvalConfig(judge_backend="openai", base_url="http://x").validate()
    with pytest.raises(ValueError, match="--judge-base-url"):
        EvalConfig(judge_backend="openai", judge_model="m", judge="llm", judge_base_url="nope").validate()
    EvalConfig(backend="openai", base_url="http://127.0.0.1:8000").validate()


def test_the_concurrency_limit_is_respected():
    tok = _tok()
    with FakeOpenAIServer(tok, delay=0.15) as fake:
        backend = _connect(fake, max_concurrency=3)
        out = backend.generate([_prompt(tok, f"q{i}") for i in range(9)], [8] * 9, GREEDY)
        backend.close()
    assert len(out) == 9 and fake.max_in_flight == 3


def test_results_keep_the_prompts_order():
    tok = _tok()

    def script(prompt: str) -> str:  # later questions answer first
        n = int(re.search(r"question (\d)", prompt).group(1))
        time.sleep((6 - n) * 0.03)
        return f"answer {n}"

    with FakeOpenAIServer(tok, script=script) as fake:
        out = _connect(fake, max_concurrency=6).generate([_prompt(tok, f"question {i}") for i in range(6)],
                                                         [32] * 6, GREEDY)
    assert [g.text for g in out] == [f"answer {i}" for i in range(6)]


def test_create_backend_and_chat_complete_work_for_a_judge():
    tok = _tok()
    with FakeOpenAIServer(tok, models=["judge"], script=lambda p: "yes") as fake:
        from core.models import ModelRef

        backend = create_backend("openai", ModelRef("judge", "unused"), tokenizer=tok,
                                 server=ServerOptions(base_url=fake.url))
        assert chat_complete(backend, ["Is Paris right?"], max_tokens=4) == ["yes"]
    with pytest.raises(ValueError, match="needs --base-url"):
        create_backend("openai", ModelRef("judge", "unused"), tokenizer=tok)


def test_a_reply_that_is_not_json_is_a_server_error():
    tok = _tok()
    with FakeOpenAIServer(tok, canned=[Canned(200, b"<html>gateway</html>")]) as fake:
        with pytest.raises(ServerError, match="not JSON"):
            _connect(fake).generate([_prompt(tok)], [8], GREEDY)


# -- malformed replies ------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_ids = st.lists(st.integers(-3, 500) | st.booleans() | st.text(max_size=3) | st.none(), max_size=6)
_lp = st.lists(st.floats(allow_nan=True) | st.none() | st.text(max_size=2) | st.booleans(), max_size=6)
_choice = st.fixed_dictionaries({}, optional={
    "text": st.text(max_size=20) | _json,
    "finish_reason": st.sampled_from(["stop", "length", "eos", "abort", None, 3]),
    "token_ids": _ids | _json,
    "stop_reason": st.integers(-1, 500) | st.none() | st.text(max_size=3),
    "logprobs": st.none() | _json | st.fixed_dictionaries({}, optional={
        "tokens": st.lists(st.sampled_from(["token_id:2", "token_id:99999", "token_id:", "a", ""])
                           | st.integers(0, 5), max_size=6) | _json,
        "token_logprobs": _lp | _json,
        "content": st.lists(st.fixed_dictionaries({}, optional={"id": st.integers(-2, 600) | _json,
                                                                 "logprob": st.floats() | _json}), max_size=5) | _json,
    }),
})
_reply = _json | st.fixed_dictionaries({}, optional={"choices": st.lists(_choice | _json, max_size=2) | _json})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=_reply, limit=st.integers(1, 8))
def test_malformed_replies_raise_only_the_backends_error(reply, limit):
    tok = _tok()
    try:
        gen = parse_completion(reply, tok, {_stop(tok)}, limit)
    except ServerError as exc:
        assert "\n" not in str(exc)
        return
    assert gen.finish_reason in ("stop", "length") and len(gen.token_ids) == len(gen.logprobs) <= limit
    assert all(isinstance(i, int) and 0 <= i < len(tok) for i in gen.token_ids)
    json.dumps(gen.text)


def test_retry_after_reads_seconds_and_http_dates_within_bounds():
    from email.utils import formatdate

    from core.backends.openai_server import _retry_after

    assert _retry_after({"Retry-After": "2.5"}) == 2.5
    assert 8 <= _retry_after({"Retry-After": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert _retry_after({"Retry-After": "999999"}) == 300.0
    assert _retry_after({"Retry-After": "soon"}) is None and _retry_after({}) is None
