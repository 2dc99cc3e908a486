"""The engine's direct calls to the Rust tokenizer give the ids and cuts transformers' call gives."""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.rollout.chat import ChatTokenizer, PendingScaffold, _cut
from core.rollout.fast_encode import BackendEncoder
from tests import local_tokenizers


@lru_cache(maxsize=None)
def _tokenizers():
    from core.models import load_tokenizer, resolve_model

    return {"smollm2": load_tokenizer(resolve_model("default")),
            "chatml-local": local_tokenizers.chatml_tokenizer(),
            "mistral-like": local_tokenizers.mistral_like_tokenizer()}


def _reference(tokenizer, pieces: list[str]) -> list[list[int]]:
    """transformers' call with offsets, cut by core.rollout.chat._cut (the path before the encoder)."""
    enc = tokenizer(["".join(pieces)], add_special_tokens=False, return_offsets_mapping=True)
    out: list[list[int]] = [[] for _ in pieces]
    for seg in _cut(enc["input_ids"][0], enc["offset_mapping"][0], pieces, list(range(len(pieces)))):
        out[seg.message_index] = list(seg.ids)
    return out


_ATOMS = ["<|im_start|>", "<|im_end|>", "[INST]", "[/INST]", "</s>", "<s>", "\n", "\n\n", " ", "  ", "\t",
          "assistant", "user", "tool", "<tool_response>", "</tool_response>", '{"name": "search_corpus"}',
          "café", "東京", "😀", "naïve", "Veltran", "1873", ".", "'s", "ﬁ", "\u200b", "a", "ab", "x" * 40]
_PIECE = st.lists(st.one_of(st.sampled_from(_ATOMS), st.text(max_size=6)), max_size=8).map("".join)


@pytest.mark.parametrize("name", ["smollm2", "chatml-local", "mistral-like"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_PIECE, min_size=1, max_size=4))
def test_pieces_are_cut_as_the_offsets_scan_cuts_them(name, pieces):
    tokenizer = _tokenizers()[name]
    encoder = BackendEncoder.of(tokenizer)
    assert encoder is not None
    assert encoder.encode_pieces([pieces])[0] == _reference(tokenizer, pieces)
    assert encoder.encode_many(["".join(pieces)])[0] == list(tokenizer("".join(pieces), add_special_tokens=False)
                                                             ["input_ids"])


def test_a_batch_cuts_each_item_as_it_alone_is_cut():
    tokenizer = _tokenizers()["smollm2"]
    encoder = BackendEncoder.of(tokenizer)
    items = [["<|im_end|>\n", "<|im_start|>user\n<tool_response>\nThe café is in 東京.\n</tool_response><|im_end|>\n",
              "<|im_start|>assistant\n"], ["", "x"], ["a b", " c", ""], ["😀", "😀"]]
    assert encoder.encode_pieces(items) == [_reference(tokenizer, p) for p in items]


def test_a_tokenizer_with_its_own_encoding_path_keeps_transformers_call():
    tokenizer = _tokenizers()["chatml-local"]

    class OwnPath(type(tokenizer)):
        def _encode_plus(self, *args, **kwargs):  # e.g. a family that rewrites text before encoding
            return super()._encode_plus(*args, **kwargs)

    own = OwnPath(tokenizer_object=tokenizer.backend_tokenizer)
    assert BackendEncoder.of(own) is None
    assert BackendEncoder.of(object()) is None  # no backend at all (a slow tokenizer)


def test_the_engine_tokenises_a_turn_the_same_with_and_without_the_direct_call():
    tokenizer = _tokenizers()["smollm2"]
    direct, plain = ChatTokenizer(tokenizer), ChatTokenizer(tokenizer)
    plain._backend = None
    assert direct._backend is not None
    pending = [PendingScaffold(["<|im_end|>\n", f"<|im_start|>user\nresult {i} café\n<|im_end|>\n",
                                "<|im_start|>assistant\n"], [None, 2, None]) for i in range(5)]
    assert direct.tokenise(pending) == plain.tokenise(pending)
    assert direct.encode_many(["a b", "<|im_start|>c"]) == plain.encode_many(["a b", "<|im_start|>c"])
