"""The loss and its gradient ignore tokens where env_mask is 0, through TRL's own loss code
(GRPOTrainer._compute_loss, trl 1.16) on a tiny random Llama built here (no download).

What holds, and what is checked:
- a token with mask 0 contributes no loss term of its own: changing the advantage it is
  trained with (TRL accepts per-token advantages of shape (B, T)) leaves the gradient as it is;
  a sample whose mask is all 0 contributes nothing, whatever its (per-sample) advantage;
- changing the ids of mask-0 tokens after the last generated token leaves the gradient as it is.
What does not hold, by design: changing a mask-0 token *before* a generated one (a tool result)
changes the gradient, because later generated tokens are conditioned on it (causal attention).
The mask removes a token's own loss term, not its role as context; the last test shows that.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from tests.tiny_models import tiny_llama

    model, tok = tiny_llama(max_positions=128)
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), use_cpu=True, bf16=False,
                      per_device_train_batch_size=2, num_generations=2, max_steps=1, report_to="none",
                      gradient_checkpointing=False, disable_tqdm=True, save_strategy="no")

    def constant(completions, **kwargs):
        return [0.0] * len(completions)

    t = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[constant], args=args,
                    train_dataset=Dataset.from_dict({"prompt": ["a", "b"]}))
    t.model.train()
    if not hasattr(t, "current_gradient_accumulation_steps"):
        t.current_gradient_accumulation_steps = 1
    return t


# Two samples: prompt 4 ids; completion 10 ids. Sample 0: generated, tool result, generated,
# trailing scaffolding. Sample 1: nothing generated (mask all 0).
MASK = torch.tensor([[1, 1, 1, 0, 0, 0, 1, 1, 0, 0],
                     [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])


def _inputs(completion_ids, advantages):
    prompt_ids = torch.tensor([[11, 12, 13, 14], [15, 16, 17, 18]])
    mask_total = MASK.sum()
    return {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids),
            "completion_ids": completion_ids, "completion_mask": torch.ones_like(completion_ids),
            "tool_mask": MASK.clone(), "advantages": advantages, "num_items_in_batch": mask_total}


COMPLETION = torch.tensor([[20, 21, 22, 30, 31, 32, 23, 24, 40, 41],
                           [25, 26, 27, 33, 34, 35, 28, 29, 42, 43]])


def _grad(trainer, completion_ids, advantages):
    model = trainer.model
    model.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(model, _inputs(completion_ids, advantages))
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def test_advantages_of_masked_tokens_do_not_move_the_gradient(trainer):
    adv = torch.tensor([[1.0] * 10, [-1.0] * 10])
    base = _grad(trainer, COMPLETION, adv)
    assert base.abs().sum() > 0
    changed = adv.clone()
    changed[MASK == 0] = torch.tensor([50.0, -80.0, 3.0, 7.0, 1e3] * 4)[: int((MASK == 0).sum())]
    assert torch.allclose(_grad(trainer, COMPLETION, changed), base, rtol=0, atol=1e-7)


def test_a_sample_with_no_generated_token_contributes_nothing(trainer):
    base = _grad(trainer, COMPLETION, torch.tensor([1.0, -1.0]))  # TRL's usual per-sample shape (B,)
    other = _grad(trainer, COMPLETION, torch.tensor([1.0, 123.0]))
    assert torch.allclose(other, base, rtol=0, atol=1e-7)


def test_ids_of_masked_tokens_after_the_last_generated_one_do_not_move_the_gradient(trainer):
    adv = torch.tensor([1.0, -1.0])
    base = _grad(trainer, COMPLETION, adv)
    changed = COMPLETION.clone()
    changed[0, 8:] = torch.tensor([50, 51])  # trailing scaffolding of sample 0
    changed[1, :] = torch.arange(60, 70)  # every token of the all-masked sample
    assert torch.allclose(_grad(trainer, changed, adv), base, rtol=0, atol=1e-6)


def test_a_masked_tool_result_still_conditions_later_generated_tokens(trainer):
    adv = torch.tensor([1.0, -1.0])
    base = _grad(trainer, COMPLETION, adv)
    changed = COMPLETION.clone()
    changed[0, 3:6] = torch.tensor([50, 51, 52])  # the tool result, before generated tokens 6-7
    assert not torch.allclose(_grad(trainer, changed, adv), base, rtol=0, atol=1e-6)
