"""Token ids back to text pieces: characters split over byte-level tokens are decoded together.

A byte-level BPE tokenizer (built on the spot, no download) spells emoji and CJK as several
byte tokens, each of which decodes alone to U+FFFD. The pieces must show each character once,
on the first token of its run, and say for every token of the run which part of what it is.
"""

from __future__ import annotations

import pytest

from core.models import embedded_model_folder
from inspector.tui.tokenizers import REPLACEMENT, TokenizerCache, join_split_characters
from tests.local_tokenizers import chatml_tokenizer

TEXT = "Hi 😀 東京 ok 👍🏽!"


def decoder(tokenizer):
    return lambda ids: tokenizer.decode(ids, clean_up_tokenization_spaces=False)


def check_pieces(ids: list[int], pieces: list[str], parts: dict, decode) -> None:
    assert "".join(pieces) == decode(ids)  # nothing lost, nothing doubled
    assert not any(REPLACEMENT in piece for piece in pieces)
    for i, (k, n, text) in parts.items():
        first = i - (k - 1)
        assert pieces[first] == text and decode(ids[first:first + n]) == text
        assert (pieces[i] == "") == (k > 1)
        assert all(parts[first + m] == (m + 1, n, text) for m in range(n))


def test_split_characters_are_decoded_together_by_a_local_byte_level_tokenizer():
    tokenizer = chatml_tokenizer()
    decode = decoder(tokenizer)
    ids = tokenizer.encode(TEXT)
    alone = [decode([i]) for i in ids]
    assert sum(REPLACEMENT in piece for piece in alone) >= 8  # the premise: bytes decode to U+FFFD
    pieces, parts = join_split_characters(ids, alone, decode)
    check_pieces(ids, pieces, parts, decode)
    assert {text for _, _, text in parts.values()} >= {"😀", "東", "京"}
    emoji = next(i for i, (k, n, text) in parts.items() if text == "😀" and k == 1)
    assert parts[emoji + 3] == (4, 4, "😀") and pieces[emoji + 1:emoji + 4] == ["", "", ""]


def test_undecodable_bytes_keep_their_replacement_character():
    """A lone continuation byte never forms a character: it stays U+FFFD, after a bounded search."""
    tokenizer = chatml_tokenizer()
    decode = decoder(tokenizer)
    ids = tokenizer.encode("a😀b")
    emoji = [i for i in ids if REPLACEMENT in decode([i])]
    broken = [ids[0]] + emoji[1:] * 4 + [ids[-1]]  # continuation bytes with no lead byte
    calls = []

    def counted(run):
        calls.append(run)
        return decode(run)

    pieces, parts = join_split_characters(broken, [decode([i]) for i in broken], counted, limit=8)
    assert parts == {} and pieces[1] == REPLACEMENT and all(len(run) <= 8 for run in calls)


def test_token_pieces_from_a_local_tokenizer_folder_carry_the_parts(tmp_path):
    tokenizer = chatml_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    ids = tokenizer.encode(TEXT)
    result = TokenizerCache().pieces(str(tmp_path), ids)
    check_pieces(ids, result.pieces, result.parts, decoder(tokenizer))
    assert result.parts and tokenizer.convert_tokens_to_ids("<|im_end|>") in result.special


@pytest.mark.skipif(not (embedded_model_folder() / "tokenizer.json").exists(), reason="no embedded SmolLM2 tokenizer")
def test_the_embedded_smollm2_tokenizer_joins_emoji_and_cjk():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_folder()), local_files_only=True)
    decode = decoder(tokenizer)
    ids = tokenizer.encode(TEXT + " 👨\u200d👩\u200d👧")
    pieces, parts = join_split_characters(ids, [decode([i]) for i in ids], decode)
    check_pieces(ids, pieces, parts, decode)
    assert any(text.strip() == "😀" for _, _, text in parts.values())
