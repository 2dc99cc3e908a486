"""End to end on the embedded weights (SmolLM2-135M, CPU) driven through TRL's Qwen3 template with
`--chat-template`: every tool result the model was given is intact in its stored tokens.

The 135M model does not call the tool on its own under Qwen3's template, so the first turn of each
chat is a scripted call (tests.scripted_backend.FirstCallScripted); the turn after the tool result
is the real model generating from the ids the engine built.
"""

from __future__ import annotations

import pytest

from core.backends import create_backend
from core.config import EvalConfig
from core.evaluate import evaluate
from core.models import load_tokenizer, resolve_model
from core.store import Store
from tests.local_tokenizers import trl_template
from tests.scripted_backend import FirstCallScripted

pytestmark = pytest.mark.slow

CALL = '{"name": "search_corpus", "parameters": {"query": "census of Fanonos"}}'


def test_embedded_model_with_the_qwen3_template_sees_every_tool_result_whole(tmp_path):
    template = tmp_path / "qwen3.jinja"
    template.write_text(trl_template("qwen3"), encoding="utf-8")
    ref = resolve_model("default")
    tokenizer = load_tokenizer(ref)
    backend = FirstCallScripted(create_backend("hf", ref, device="cpu", tokenizer=tokenizer), CALL)
    config = EvalConfig(chat_template=str(template), split="all", limit=2, batch_size=2, demo_chunks=60,
                        max_generations=2, max_tokens_per_turn=24, judge="exact")
    summary = evaluate(config, tmp_path / "runs.db", backend=backend)
    assert summary["trajectories"] == 2
    assert "template_mismatch" not in summary["finish_reasons"]
    with Store.open_readonly(tmp_path / "runs.db") as store:
        seen = 0
        for row in store.trajectory_rows(summary["run_id"]):
            tokens = store.tokens(row["id"])
            assert tokenizer.decode(tokens.ids).startswith("<|im_start|>system\n")
            messages = store.messages(row["id"])
            for m in messages:
                if m.role == "tool" and m.token_start is not None:
                    span = tokenizer.decode(tokens.ids[m.token_start:m.token_end])
                    assert "<|im_start|>user\n<tool_response>\n" + m.content + "\n</tool_response>" in span
                    seen += 1
            assert [m.role for m in messages][:4] == ["system", "user", "assistant", "tool"]
            assert row["turns"] == 2 and row["drift_kind"] in (None, "template_rewrite")
        assert seen >= 2  # the scripted calls; under native tools the model may call again itself


def test_kv_reuse_and_decode_waves_store_the_same_ids_mask_and_logprobs(tmp_path):
    """Issue 9: an eval of the embedded model with KV reuse (and decoding in waves) stores, for
    every trajectory, the ids, mask and logprobs of the same eval without reuse (float32, CPU)."""
    ref = resolve_model("default")
    tokenizer = load_tokenizer(ref)
    stored = {}
    for reuse in (False, True):
        backend = FirstCallScripted(create_backend("hf", ref, device="cpu", tokenizer=tokenizer, kv_reuse=reuse),
                                    CALL)
        config = EvalConfig(split="all", limit=3, batch_size=3, demo_chunks=60, max_generations=3,
                            max_tokens_per_turn=40, judge="exact")
        summary = evaluate(config, tmp_path / f"runs-{reuse}.db", backend=backend)
        with Store.open_readonly(tmp_path / f"runs-{reuse}.db") as store:
            stored[reuse] = [(row["qidx"], store.tokens(row["id"])) for row in store.trajectory_rows(summary["run_id"])]
    assert backend.inner.stats.cached_tokens > 0  # reuse really happened
    for (q_off, off), (q_on, on) in zip(stored[False], stored[True], strict=True):
        assert q_off == q_on and off.ids == on.ids and off.mask == on.mask
        assert [x for x in on.logprobs if x == x] == pytest.approx([x for x in off.logprobs if x == x], abs=1e-4)
