"""End to end on the real embedded model (SmolLM2-135M on the CPU): eval, kill -9, resume.

These load the model, so they take tens of seconds; the converted model folder is cached under
the user cache (RL_INSPECT_CACHE) like any user run, so only the first run pays the conversion.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from core.store import Store
from inspector.cli import EXIT_OK, main

pytestmark = pytest.mark.slow

SMALL = ["--max-tokens-per-turn", "24", "--max-generations", "2", "--demo-chunks", "60"]


def test_eval_on_the_embedded_model_stores_a_real_run(tmp_path, capsys):
    db = tmp_path / "runs.db"
    code = main(["eval", "--db", str(db), "--split", "all", "--limit", "3", "--batch-size", "3", "--json", *SMALL])
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    summary = json.loads(captured.out)
    assert summary["trajectories"] == 3 and summary["generated_tokens"] > 0
    assert "accuracy" in captured.err and "Loading weights" not in captured.err
    assert summary["judge"] == "f1" and "judge f1   judged 3" in captured.err
    with Store.open_readonly(db) as store:
        run = store.run(summary["run_id"])
        assert run["status"] == "done" and run["model"] == "embedded:smollm2-135m"
        for row in store.trajectory_rows(run["id"]):
            tokens = store.tokens(row["id"])
            assert sum(tokens.mask) == row["generated_tokens"] > 0
            for bit, lp in zip(tokens.mask, tokens.logprobs):
                assert (bit == 1) == (not math.isnan(lp)) and (bit == 0 or lp <= 0.0)
            assert row["drift_at"] is None  # ChatML and SmolLM2's tokenizer round-trip exactly
            judge = {r.name: r for r in store.rewards(row["id"])}["correctness"].detail
            # The default judge without --judge-model is deterministic, not the policy (issue 13).
            assert judge["judge"] == "f1" and "f1" in judge
            assistant = [m for m in store.messages(row["id"]) if m.role == "assistant"]
            decoded = [store_text for store_text in (m.content for m in assistant)]
            assert all(isinstance(t, str) for t in decoded) and assistant[0].token_start == tokens.prompt_len


def _done(db) -> int:
    try:
        with Store.open_readonly(db) as store:
            runs = store.runs()
            return runs[0]["n_done"] if runs else 0
    except Exception:
        return 0


def test_killed_eval_keeps_finished_trajectories_and_resumes(tmp_path):
    db = tmp_path / "runs.db"
    cmd = [sys.executable, "-m", "inspector.cli", "eval", "--db", str(db), "--split", "all", "--limit", "6",
           "--batch-size", "2", "--judge", "exact", *SMALL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.time() + 240
    while _done(db) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store.open_readonly(db) as store:
        run = store.runs()[0]
        assert run["status"] == "interrupted"  # the writer is gone
        kept = store.trajectory_rows(run["id"], status="done")
        assert len(kept) >= 2 and all(store.tokens(r["id"]) is not None for r in kept)
    result = subprocess.run([sys.executable, "-m", "inspector.cli", "eval", "--db", str(db), "--resume", "1", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["trajectories"] == 6
    with Store.open_readonly(db) as store:
        done = store.trajectory_rows(1, status="done")
        assert sorted(r["qidx"] for r in done) == list(range(6))
        assert {r["id"] for r in kept} <= {r["id"] for r in done}  # finished work was not redone


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_backend_logprobs_match_teacher_forcing(temperature):
    import torch

    from core.backends import SamplingConfig, create_backend
    from core.models import resolve_model

    backend = create_backend("hf", resolve_model("default"), device="cpu")
    prompts = [backend.tokenizer(t, add_special_tokens=False)["input_ids"]
               for t in ("The capital of France is", "Search the corpus for")]
    outs = backend.generate(prompts, [10, 6], SamplingConfig(temperature=temperature, seed=7))
    for prompt, out, limit in zip(prompts, outs, [10, 6]):
        assert 0 < len(out.token_ids) <= limit and len(out.logprobs) == len(out.token_ids)
        with torch.no_grad():
            logits = backend.model(torch.tensor([prompt + out.token_ids])).logits[0].float()
        scale = temperature if temperature > 0 else 1.0
        expected = torch.log_softmax(logits / scale, dim=-1)
        for i, (tok, lp) in enumerate(zip(out.token_ids, out.logprobs)):
            assert abs(expected[len(prompt) - 1 + i, tok].item() - lp) < 1e-3
