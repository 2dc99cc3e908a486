"""Token-exact chats for any chat template, grown one turn at a time.

The seed re-rendered the whole chat and re-tokenised it every turn, then found assistant tokens
by pattern-matching Llama 3 header ids. Here the model's own ids are kept as generated, and only
the text the template puts *between* generations (the rest of the assistant's closing, the tool
result, the next generation prompt) is rendered and tokenised. That text is found by rendering
the new messages after a tiny fixed conversation and taking the difference, so each turn costs
time in the size of the new messages, not of the whole chat, and no template is special-cased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

_SENTINEL = "RLINSPECT_ASSISTANT_SENTINEL"
_BASE = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """Ids that end an assistant turn: eos ids plus the template's end-of-turn tokens."""
    ids: set[int] = set()
    for source in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    # Added tokens flagged special (not only the named bos/eos/pad) count: Llama 3's <|eom_id|>.
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special = {tok.content for tok in added.values() if getattr(tok, "special", False)}
    special.update(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in _END_OF_TURN_TOKENS if t in vocab and t in special)
    return ids


@dataclass(frozen=True)
class Segment:
    """Scaffolding ids, split at message boundaries (None: template text of no message)."""

    ids: list[int]
    message_index: int | None


class ChatTokenizer:
    """Renders a chat template in pieces and tokenises only what is new."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        base_with_answer = _BASE + [{"role": "assistant", "content": _SENTINEL}]
        self._base_closed = self._render(base_with_answer, generation_prompt=False)
        at = self._base_closed.rfind(_SENTINEL)
        if at < 0:
            raise ValueError("the chat template drops assistant content; cannot build token-exact chats")
        self._closing = self._base_closed[at + len(_SENTINEL):]
        """What the template writes after an assistant message's content (e.g. '<|im_end|>\\n')."""

    def _render(self, messages: Sequence[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=generation_prompt
        )

    def encode(self, text: str) -> list[int]:
        # The template's text already holds BOS and special tokens: add none.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        """Ids of the opening messages followed by the generation prompt."""
        return self.encode(self._render(messages, generation_prompt=True))

    def continuation(
        self,
        last_generated: Sequence[int],
        finish_reason: str,
        new_messages: Sequence[dict],
        history: Sequence[dict],
        generation_prompt: bool = True,
    ) -> list[Segment]:
        """Scaffolding after an assistant turn: its closing, each new message, the next prompt.

        last_generated is what the model emitted this turn; when it ended on the stop token the
        template's closing starts with, only the remainder of the closing is added (the model
        already wrote the stop token). history is the whole chat so far, used only when a
        template is not prefix-stable (rendering after the fixed base conversation does not
        extend it); then the difference is taken against the real chat instead.
        """
        closing = self._closing
        if finish_reason == "stop" and last_generated:
            stop_text = self.tokenizer.decode([last_generated[-1]])
            if stop_text and closing.startswith(stop_text):
                closing = closing[len(stop_text):]
        pieces = self._message_texts(new_messages, generation_prompt, history)
        texts = [closing] + [text for text, _ in pieces]
        owners: list[int | None] = [None] + [owner for _, owner in pieces]
        return self._tokenise_pieces(texts, owners)

    def _message_texts(
        self, new_messages: Sequence[dict], generation_prompt: bool, history: Sequence[dict]
    ) -> list[tuple[str, int | None]]:
        """The template's text for each new message, then the generation prompt if asked.

        The renderings after the fixed base must extend the base's own rendering; when they do
        not (a template that renders a message differently depending on the rest of the chat),
        the difference is taken against the real chat instead, at O(chat) cost.
        """
        base_head = _BASE + [{"role": "assistant", "content": _SENTINEL}]
        texts = self._renderings(base_head, new_messages, generation_prompt)
        previous = self._base_closed
        if not all(t.startswith(self._base_closed) for t in texts):
            texts = self._renderings(list(history), new_messages, generation_prompt)
            previous = self._render(history, generation_prompt=False)
        out: list[tuple[str, int | None]] = []
        for i, text in enumerate(texts):
            out.append((text[len(previous):], i if i < len(new_messages) else None))
            previous = text
        return out

    def _renderings(self, head: list[dict], new_messages: Sequence[dict], generation_prompt: bool) -> list[str]:
        """head + each prefix of the new messages, then head + all of them with the prompt."""
        texts = [self._render(head + list(new_messages[: i + 1]), generation_prompt=False)
                 for i in range(len(new_messages))]
        if generation_prompt:
            texts.append(self._render(head + list(new_messages), generation_prompt=True))
        return texts

    def _tokenise_pieces(self, texts: list[str], owners: list[int | None]) -> list[Segment]:
        """Tokenise the joined text once, then cut it at the pieces' character boundaries.

        One call keeps the tokenisation the model will see; offsets say which piece each token
        starts in. A token spanning a boundary belongs to the piece it starts in.
        """
        joined = "".join(texts)
        if not joined:
            return []
        if not getattr(self.tokenizer, "is_fast", False):  # no offsets: tokenise piece by piece
            return [Segment(self.encode(t), o) for t, o in zip(texts, owners) if t]
        enc = self.tokenizer(joined, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        bounds, total = [], 0
        for text in texts:
            total += len(text)
            bounds.append(total)
        piece_of: list[int] = []
        piece = 0
        for start, _end in offsets:
            while piece < len(bounds) - 1 and start >= bounds[piece]:
                piece += 1
            piece_of.append(piece)
        segments: list[Segment] = []
        for i, tok in enumerate(ids):
            if i and piece_of[i] == piece_of[i - 1]:
                segments[-1].ids.append(tok)
            else:
                segments.append(Segment([tok], owners[piece_of[i]]))
        return segments

    def render_ids(self, messages: Sequence[dict]) -> list[int]:
        """Ids of the whole chat rendered and tokenised at once (for the drift check)."""
        return self.encode(self._render(messages, generation_prompt=False))


def first_difference(ours: Sequence[int], canonical: Sequence[int]) -> int | None:
    """Where `ours` stops being a prefix of `canonical` (None: it is one)."""
    for i, (a, b) in enumerate(zip(ours, canonical)):
        if a != b:
            return i
    if len(ours) > len(canonical):
        return len(canonical)
    return None
