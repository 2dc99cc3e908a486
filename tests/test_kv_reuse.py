"""KV-cache reuse in the hf backend (core/backends/kv_reuse.py): multi-turn chats, rows sharing a
prefix, GRPO-like duplicate prompts and prompts that cut a stored row short all give the same
greedy ids (and logprobs to 1e-4) as a fresh prefill of the whole prompt, while computing fewer
prompt tokens; the store stays bounded and forgets keys of changed weights."""

from __future__ import annotations

import random

import pytest
import torch

from core.backends.base import SamplingConfig
from core.backends.hf import HFBackend
from core.backends.kv_reuse import BatchLayout, PrefixKVStore, supports_kv_reuse
from tests.tiny_models import tiny_llama

GREEDY = SamplingConfig()


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_llama(hidden_size=64, layers=2, heads=2)
    return model.eval(), tok


def backends(model, tok, **kwargs):
    stops = frozenset([tok.eos_token_id])
    on = HFBackend(model=model, tokenizer=tok, device="cpu", stop_token_ids=stops, **kwargs)
    off = HFBackend(model=model, tokenizer=tok, device="cpu", stop_token_ids=stops, kv_reuse=False)
    return on, off


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.token_ids == y.token_ids
        assert x.finish_reason == y.finish_reason
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)


def ids(rng: random.Random, n: int, vocab: int) -> list[int]:
    return [rng.randrange(5, vocab) for _ in range(n)]


def test_the_tiny_llama_allows_reuse(tiny):
    assert supports_kv_reuse(tiny[0])


@pytest.mark.parametrize("by_row", [True, False], ids=["prefill-by-row", "prefill-batched"])
def test_multi_turn_rows_with_a_shared_prefix_match_fresh_prefill(tiny, by_row):
    model, tok = tiny
    on, off = backends(model, tok, prefill_by_row=by_row)
    rng = random.Random(0)
    vocab = len(tok)
    system = ids(rng, 60, vocab)
    prompts = [system + ids(rng, rng.randrange(5, 20), vocab) for _ in range(4)]
    for turn in range(4):
        limits = [8, 5, 8, 3, 6, 4, 7][: len(prompts)]
        got, want = on.generate(prompts, limits, GREEDY), off.generate(prompts, limits, GREEDY)
        assert_same(got, want)
        # the next turn: each chat plus the model's ids plus a "tool result" and scaffolding
        prompts = [p + g.token_ids + ids(rng, rng.randrange(3, 30), vocab) for p, g in zip(prompts, got)]
        if turn == 1:
            prompts.append(system + [7, 8, 9])  # a new question in the pool
            prompts.append(list(prompts[0]))  # a second sample of a running chat
            prompts.append(prompts[1][:-5])  # a chat cut short of what was computed
    st = on.stats
    assert st.calls == 4 and off.stats.cached_tokens == 0
    assert st.cached_tokens > 0.8 * st.prompt_tokens
    assert st.prefilled_tokens + st.cached_tokens >= st.prompt_tokens
    assert st.prefilled_tokens < 0.2 * off.stats.prefilled_tokens


@pytest.mark.parametrize("by_row", [True, False], ids=["prefill-by-row", "prefill-batched"])
def test_first_call_computes_a_shared_prefix_once(tiny, by_row):
    model, tok = tiny
    on, off = backends(model, tok, prefill_by_row=by_row)
    rng = random.Random(1)
    system = ids(rng, 80, len(tok))
    group = system + ids(rng, 10, len(tok))
    prompts = [list(group) for _ in range(4)] + [system + ids(rng, 12, len(tok)) for _ in range(2)]
    limits = [6] * len(prompts)
    assert_same(on.generate(prompts, limits, GREEDY), off.generate(prompts, limits, GREEDY))
    # the system prompt once, the group's question once, each row's last id, the others' questions
    assert on.stats.prefilled_tokens <= 80 + 10 + 6 + 2 * 12
    again = [p + [9] for p in prompts]  # an identical resend extended by one id
    assert_same(on.generate(again, limits, GREEDY), off.generate(again, limits, GREEDY))


def test_sampling_with_a_seed_matches(tiny):
    model, tok = tiny
    on, off = backends(model, tok)
    rng = random.Random(2)
    prompts = [ids(rng, 40, len(tok)) for _ in range(3)]
    sampling = SamplingConfig(temperature=1.0, seed=3)
    for _ in range(3):
        got, want = on.generate(prompts, [6, 6, 6], sampling), off.generate(prompts, [6, 6, 6], sampling)
        assert_same(got, want)
        prompts = [p + g.token_ids + [11, 12] for p, g in zip(prompts, got)]
    assert on.stats.cached_tokens > 0


def test_changed_weights_are_not_served_stale_keys(tiny):
    _, tok = tiny
    model, _ = tiny_llama(hidden_size=64, layers=2, heads=2, seed=5)
    model.eval()
    on, off = backends(model, tok)
    prompt = [ids(random.Random(3), 50, len(tok))]
    first = on.generate(prompt, [5], GREEDY)
    with torch.no_grad():  # an optimizer step, in place
        for p in model.parameters():
            p.mul_(1.5)
    cached = on.stats.cached_tokens
    nxt = [prompt[0] + first[0].token_ids + [20, 21]]
    assert_same(on.generate(nxt, [5], GREEDY), off.generate(nxt, [5], GREEDY))
    assert on.stats.cached_tokens == cached


def test_the_store_is_bounded_and_forgets_rows_no_call_extends(tiny):
    model, tok = tiny
    on, off = backends(model, tok)
    rng = random.Random(4)
    a = [ids(rng, 30, len(tok)) for _ in range(2)]
    on.generate(a, [4, 4], GREEDY)
    assert on._store.tokens > 0
    for _ in range(2):  # two calls with nothing in common with `a`
        on.generate([[3] + ids(rng, 20, len(tok))], [4], GREEDY)
    assert all(e.ids[0] == 3 for e in on._store.entries)
    tight, _ = backends(model, tok, kv_cache_mb=0.001)
    prompts = [ids(rng, 40, len(tok)) for _ in range(2)]
    got = tight.generate(prompts, [4, 4], GREEDY)
    assert tight._store.bytes <= 0.001 * 2**20
    nxt = [p + g.token_ids + [7] for p, g in zip(prompts, got)]
    assert_same(tight.generate(nxt, [4, 4], GREEDY), off.generate(nxt, [4, 4], GREEDY))


def test_switched_off_keeps_nothing(tiny):
    model, tok = tiny
    _, off = backends(model, tok)
    off.generate([[5, 6, 7]], [3], GREEDY)
    assert off._store is None and off.stats.cached_tokens == 0
    with pytest.raises(ValueError):
        off.generate([[]], [3], GREEDY)


def test_layout_puts_each_row_at_its_columns():
    layout = BatchLayout(cached=[3, 0, 1], new=[1, 2, 4])
    ids, mask = layout.inputs([[1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11]], pad=0)
    assert ids.tolist() == [[1, 2, 3, 0, 0, 0, 4], [0, 0, 0, 0, 0, 5, 6], [0, 0, 7, 8, 9, 10, 11]]
    assert mask.tolist() == [[1, 1, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1, 1]]
    assert layout.columns(0, 2).tolist() == [0, 1, 2, 6, 7, 8]
    assert layout.columns(1, 0).tolist() == [5, 6]


def test_store_match_finds_the_longest_common_prefix():
    import numpy as np

    store = PrefixKVStore()
    store.add(np.array([1, 2, 3, 4]), torch.zeros(1, 2, 1, 4, 2))
    store.add(np.array([1, 2, 9]), torch.zeros(1, 2, 1, 3, 2))
    store.add(np.array([1, 2, 3, 4, 5]), torch.zeros(1, 2, 1, 5, 2))  # drops [1, 2, 3, 4]
    assert len(store.entries) == 2
    entry, n = store.match(np.array([1, 2, 3, 7]), limit=3)
    assert n == 3 and entry.ids.tolist() == [1, 2, 3, 4, 5]
    assert store.match(np.array([8]), limit=1) == (None, 0)


@pytest.mark.slow
def test_embedded_model_multi_turn_chats_match_fresh_prefill():
    """The embedded SmolLM2-135M (float32, CPU), chats of the agent's shape: a shared system
    prompt, three turns, each model reply followed by a ~300-token tool result and scaffolding."""
    from core.models import load_causal_lm, load_tokenizer, resolve_model
    from core.rollout.chat import stop_token_ids

    ref = resolve_model("default")
    tok = load_tokenizer(ref)
    model = load_causal_lm(ref, device="cpu")
    stops = frozenset(stop_token_ids(tok, model.generation_config))
    on = HFBackend(model=model, tokenizer=tok, device="cpu", stop_token_ids=stops)
    off = HFBackend(model=model, tokenizer=tok, device="cpu", stop_token_ids=stops, kv_reuse=False)
    system = "You answer questions about a corpus by searching it. " * 20
    questions = ["Where is the Veltran Observatory?", "Who founded Qoruna?", "When was the census of Fanonos?"]
    prompts = [list(tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": q}],
                                            add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
               for q in questions]
    result = ("The observatory was founded in 1873 on the island of Qoruna, where the census counted "
              "four thousand people. ") * 15
    tool = tok(f"<|im_end|>\n<|im_start|>user\n<tool_response>\n{result}\n</tool_response><|im_end|>\n"
               "<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for _ in range(3):
        got, want = on.generate(prompts, [24] * 3, GREEDY), off.generate(prompts, [24] * 3, GREEDY)
        assert_same(got, want)
        prompts = [p + g.token_ids + tool for p, g in zip(prompts, got)]
    assert on.stats.prefilled_tokens < 0.5 * off.stats.prefilled_tokens


def test_decoding_in_waves_gives_one_calls_ids_and_lets_finished_rows_go(tiny):
    """With reuse, generate runs in waves of `decode_wave` tokens and rows that stopped leave
    the batch; the ids, logprobs and finish reasons are those of one fresh call."""
    model, tok = tiny
    rng = random.Random(4)
    prompts = [ids(rng, 30, len(tok)) for _ in range(4)]
    probe = HFBackend(model=model, tokenizer=tok, device="cpu", stop_token_ids=frozenset(), kv_reuse=False)
    free = probe.generate(prompts, [40] * 4, GREEDY)
    # Stop ids the random model emits early in some rows and never in others.
    stops = frozenset({free[0].token_ids[3], free[1].token_ids[9]})
    on = HFBackend(model=model, tokenizer=tok, device="cpu", stop_token_ids=stops, decode_wave=4)
    off = HFBackend(model=model, tokenizer=tok, device="cpu", stop_token_ids=stops, kv_reuse=False)
    limits = [40, 40, 23, 40]
    got, want = on.generate(prompts, limits, GREEDY), off.generate(prompts, limits, GREEDY)
    assert_same(got, want)
    assert [g.text for g in got] == [w.text for w in want]
    assert {g.finish_reason for g in got} == {"stop", "length"}, [(g.finish_reason, len(g.token_ids)) for g in got]
    assert on.stats.calls > 3  # several waves; the last ones only for the rows still going
    assert len(got[2].token_ids) <= 23
