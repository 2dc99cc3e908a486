"""End to end on the embedded weights (SmolLM2-135M, CPU) driven through TRL's Qwen3 template with
`--chat-template`: every tool result the model was given is intact in its stored tokens."""

from __future__ import annotations

import pytest

from core.config import EvalConfig
from core.evaluate import evaluate
from core.store import Store
from tests.local_tokenizers import trl_template

pytestmark = pytest.mark.slow


def test_embedded_model_with_the_qwen3_template_sees_every_tool_result_whole(tmp_path):
    template = tmp_path / "qwen3.jinja"
    template.write_text(trl_template("qwen3"), encoding="utf-8")
    config = EvalConfig(chat_template=str(template), split="all", limit=4, batch_size=4, demo_chunks=60,
                        max_generations=3, max_tokens_per_turn=64, judge="exact")
    summary = evaluate(config, tmp_path / "runs.db")
    assert summary["trajectories"] == 4
    assert "template_mismatch" not in summary["finish_reasons"]
    with Store.open_readonly(tmp_path / "runs.db") as store:
        from core.models import load_tokenizer, resolve_model

        tok = load_tokenizer(resolve_model("default"))
        for row in store.trajectory_rows(summary["run_id"]):
            tokens = store.tokens(row["id"])
            text = tok.decode(tokens.ids)
            assert text.startswith("<|im_start|>system\n")
            for m in store.messages(row["id"]):
                if m.role == "tool" and m.token_start is not None:
                    span = tok.decode(tokens.ids[m.token_start:m.token_end])
                    assert "<|im_start|>user\n<tool_response>\n" + m.content + "\n</tool_response>" in span
            assert row["drift_kind"] in (None, "template_rewrite", "retokenization", "stop_token")
