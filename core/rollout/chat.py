"""Token-exact chats for any chat template, grown one turn at a time and checked every turn.

The seed re-rendered the whole chat and re-tokenised it every turn, then found assistant tokens
by pattern-matching Llama 3 header ids. Here the model's own ids are kept as generated, and only
the text the template puts *between* generations (the rest of the reply's closing, the tool
result, the next generation prompt) is tokenised and appended.

That text is taken from the template's rendering of the real chat so far, anchored on the last
assistant reply: the reply is rendered once more with a sentinel at the end of its content, and
everything the template writes after the sentinel is the new scaffolding. Before it is used, the
new rendering is checked against what the model was given: every earlier piece of scaffolding
(the opening prompt, each tool result with its headers) must appear again, in order, with only
the model's replies (and the generation prompts just before them) allowed to render differently.
Templates that rewrite a reply in history (Qwen3 strips or adds think blocks) pass, and the
rewrite is noted; a template that renders earlier scaffolding differently (one that numbers
messages from the end, say) raises `TemplateMismatch`, and the agent ends that trajectory with
its own finish reason instead of feeding the model a prompt that is not the template's.

A full rendering per turn costs time in the size of the chat, so for a template proven
content-linear (core.rollout.scaffold: contents are only written out verbatim) the rendering is
taken from a placeholder rendering of the chat's structure, made once per structure and shared by
every trajectory at that turn: the new rendering is the previous one, the reply, and the
placeholder rendering's tail with this trajectory's contents put in. The first use of each
structure is checked against a real rendering; any doubt (a template not proven linear, more
than one new message, a reply not rendered verbatim) takes the full rendering path, whose
result is the same by construction. New text of many trajectories is tokenised in one batched
call of the tokenizer (`prepare_continue` then `tokenise`); no template is special-cased.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import date as _date
from itertools import accumulate
from operator import itemgetter
from typing import Any, Sequence

from loguru import logger

from core.rollout.fast_encode import BackendEncoder
from core.rollout.scaffold import Structure, cached_content_linear, placeholder_chat, split_rendering, structure_key
from core.rollout.templates import ChatFormat, check_template
from core.rollout.tokens import TokenSequence

_SENTINEL = "RLINSPECT_ASSISTANT_SENTINEL"
_BASE = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")

DRIFT_TEMPLATE_REWRITE = "template_rewrite"
"""The template renders the chat differently from what the model was given (reasoning stripped
from a reply, an empty think block added, whitespace trimmed): harmless, the stored ids are what
the model saw and generated."""
DRIFT_RETOKENIZATION = "retokenization"
"""Same text, other ids: the model's ids are not the tokenizer's canonical encoding of its text,
or text tokenised in pieces merges differently when tokenised whole."""
DRIFT_STOP_TOKEN = "stop_token"
"""The model ended a reply on another stop token than the end-of-turn token the template writes
(`<|endoftext|>` instead of `<|im_end|>`, `<|eom_id|>` instead of `<|eot_id|>`)."""
DRIFT_KINDS = (DRIFT_TEMPLATE_REWRITE, DRIFT_RETOKENIZATION, DRIFT_STOP_TOKEN)


class TemplateMismatch(Exception):
    """The template's rendering of the chat does not extend what the model was given; str() says where."""


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


_STRUCTURES_KEPT = 1024
"""Placeholder renderings kept per ChatTokenizer (a run needs about two per turn)."""


@dataclass(frozen=True)
class Segment:
    """Scaffolding ids, split at message boundaries (None: template text of no message)."""

    ids: list[int]
    message_index: int | None


@dataclass
class ChatState:
    """What one trajectory's token sequence is made of, as text, to check the next rendering.

    The model was given bodies[0] + gen_prompts[0] + reply 1 + bodies[1] + gen_prompts[1] + ...
    (the replies as its own ids). bodies are the template's scaffolding text (the end-of-turn
    token after a reply included, even where the model's own stop id stands for it).
    """

    fmt: ChatFormat
    bodies: list[str] = field(default_factory=list)
    gen_prompts: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    rewritten: list[bool] = field(default_factory=list)
    """Per reply: the template rendered it (or the generation prompt before it) differently."""
    stop_texts: list[str | None] = field(default_factory=list)
    """Per reply: the text of the stop token the model ended it with (None: cut by length)."""
    end_texts: list[str] = field(default_factory=list)
    """Per reply: the template text its stop id stood for (its end-of-turn token, "" when none)."""
    rendered: str = ""
    """The template's last full rendering (the fast path: a new one usually extends it)."""
    structure: tuple | None = None
    """What `rendered` is a rendering of, as a placeholder-rendering key (None: not reusable)."""
    contents: list[str] | None = None
    """The contents of the chat `rendered` renders, in order (to reuse its structure)."""


@dataclass
class PendingScaffold:
    """Scaffolding text of one continue_chat, cut into pieces, waiting to be tokenised.

    texts[i] is owned by new message owners[i] (None: template text of no message)."""

    texts: list[str]
    owners: list[int | None]


class ChatTokenizer:
    """Renders a chat template for token-exact, checked chats (see the module docstring)."""

    def __init__(self, tokenizer: Any, fmt: ChatFormat | None = None, name: str = "",
                 stop_ids: Sequence[int] = (), reuse_renderings: bool = True):
        """fmt: how stored messages map onto the template; checked with check_template when None
        (raises core.rollout.templates.TemplateError for a template that cannot run the agent).
        stop_ids: the backend's stop ids (its model's generation config may list more than the
        tokenizer's eos and end-of-turn tokens); any of them ends a reply.
        reuse_renderings: take renderings from shared placeholder renderings where the template
        is proven content-linear (see the module docstring); False renders every chat in full
        (the reference path the tests compare it with)."""
        self.tokenizer = tokenizer
        self._backend = BackendEncoder.of(tokenizer)
        """The Rust backend called directly (core.rollout.fast_encode), None: transformers' call."""
        self.fmt = fmt if fmt is not None else check_template(tokenizer, name)
        self.linear_reason = "disabled" if not reuse_renderings else self._linearity(tokenizer, self.fmt)
        """None when renderings are reused (the template is content-linear); else why not."""
        self._structures: dict[tuple, Structure | None] = {}
        closed = self._render(_BASE + [{"role": "assistant", "content": _SENTINEL}], False, self.fmt)
        at = closed.rfind(_SENTINEL)
        if at < 0:
            raise ValueError("the chat template drops assistant content; cannot build token-exact chats")
        self._closing = closed[at + len(_SENTINEL):]
        """What the template writes after an assistant message's content (e.g. '<|im_end|>\\n')."""
        plain, prompted = self._render(_BASE, False, self.fmt), self._render(_BASE, True, self.fmt)
        self._gen_prompt = prompted[len(plain):] if prompted.startswith(plain) else ""
        """The generation prompt (e.g. '<|im_start|>assistant\\n'); '' when it cannot be isolated."""
        self.stop_ids = frozenset(stop_token_ids(tokenizer)) | frozenset(int(i) for i in stop_ids)
        self._stop_texts = sorted({t for t in (tokenizer.decode([i]) for i in self.stop_ids) if t}, key=len,
                                  reverse=True)
        self._end_token = next((t for t in self._stop_texts if t in self._closing), "") or self._leading_special(
            self._closing)
        """The end-of-turn token the template writes after a reply ('<|im_end|>'), '' when none."""

    @staticmethod
    def _linearity(tokenizer: Any, fmt: ChatFormat) -> str | None:
        if fmt.native_tools:
            return "native tool calling renders structured calls"
        try:
            template = tokenizer.get_chat_template()
        except Exception as exc:  # noqa: BLE001  (no single template: render in full)
            return f"no single chat template ({exc.__class__.__name__})"
        if not isinstance(template, str):
            return "no single chat template"
        return cached_content_linear(template)

    def _structure(self, chat: Sequence[dict], generation_prompt: bool, fmt: ChatFormat) -> tuple | None:
        """The placeholder-rendering key of `chat`, or None when it is not reusable."""
        if self.linear_reason is not None:
            return None
        key = structure_key(chat)
        return None if key is None else (fmt, generation_prompt, key)

    def _placeholder_rendering(self, key: tuple, chat: Sequence[dict]) -> Structure | None:
        """The placeholder rendering for `key` (chat has that structure), made and checked once.

        Its first use is compared with a real rendering of `chat`; a difference (the proof of
        content-linearity missed something) turns reuse off for this tokenizer, with a warning.
        """
        if key in self._structures:
            return self._structures[key]
        fmt, generation_prompt, _ = key
        try:
            found = split_rendering(self._render(placeholder_chat(chat), generation_prompt, fmt), len(chat))
            real = self._render(chat, generation_prompt, fmt) if found is not None else None
        except Exception:  # noqa: BLE001  (the template cannot render it: the full path says why)
            found = real = None
        if found is not None and found.fill([m["content"] for m in chat]) != real:
            self.linear_reason = "a placeholder rendering differed from the real one"
            logger.warning("chat template: placeholder rendering differs from the real one; rendering in full")
            self._structures.clear()
            return None
        if len(self._structures) >= _STRUCTURES_KEPT:
            self._structures.clear()
        self._structures[key] = found
        return found

    def _leading_special(self, text: str) -> str:
        if not text:
            return ""
        ids = self.encode(text)
        if not ids:
            return ""
        added = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        token = added.get(ids[0])
        if token is None or not getattr(token, "special", False) or not text.startswith(token.content):
            return ""
        return token.content

    def _render(self, messages: Sequence[dict], generation_prompt: bool, fmt: ChatFormat | None = None) -> str:
        fmt = fmt or self.fmt
        return self.tokenizer.apply_chat_template(
            fmt.adapt(messages), tokenize=False, add_generation_prompt=generation_prompt, **fmt.template_kwargs()
        )

    def render(self, messages: Sequence[dict], generation_prompt: bool = False, fmt: ChatFormat | None = None) -> str:
        """The template's text for stored chat dicts, with this tokenizer's ChatFormat applied."""
        return self._render(messages, generation_prompt, fmt)

    def encode(self, text: str) -> list[int]:
        # The template's text already holds BOS and special tokens: add none.
        if self._backend is not None:
            return self._backend.encode_many([text])[0]
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        """Ids of the opening messages followed by the generation prompt."""
        return self.encode(self._render(messages, True))

    def start(self, opening: Sequence[dict], today: _date | None = None) -> tuple[list[int], ChatState]:
        """Ids of the opening prompt and the state that checks every later turn against it.

        today fixes the date a date-printing template writes for this whole trajectory.
        """
        fmt = self.fmt.with_date(today or _date.today())
        text = self._render(opening, True, fmt)
        plain = self._render(opening, False, fmt)
        gp = text[len(plain):] if text.startswith(plain) else ""
        state = ChatState(fmt=fmt, bodies=[text[: len(text) - len(gp)]], gen_prompts=[gp], rendered=text,
                          structure=self._structure(opening, True, fmt), contents=[m["content"] for m in opening])
        return self.encode(text), state

    def continue_chat(
        self,
        state: ChatState,
        history: Sequence[dict],
        generated: Sequence[int],
        finish_reason: str,
        new_messages: Sequence[dict],
        generation_prompt: bool = True,
    ) -> list[Segment]:
        """Scaffolding after the reply history[-1]: its closing, each new message, the next prompt.

        history is the chat so far ending with the reply whose ids are `generated` (its content
        is the reply's text). When the model ended on a stop id, that id stands for the
        template's end-of-turn token: only what the template writes after it is added (whichever
        stop token the model chose). Raises TemplateMismatch when the template's rendering of
        the chat does not extend what the model was given; state is then unchanged.
        """
        return self.tokenise([self.prepare_continue(state, history, generated, finish_reason, new_messages,
                                                    generation_prompt)])[0]

    def prepare_continue(
        self,
        state: ChatState,
        history: Sequence[dict],
        generated: Sequence[int],
        finish_reason: str,
        new_messages: Sequence[dict],
        generation_prompt: bool = True,
    ) -> PendingScaffold:
        """continue_chat up to tokenising: checks the rendering, updates state, returns the text.

        Same arguments, checks and TemplateMismatch as continue_chat; `tokenise` turns the
        results of many trajectories into Segments in one batched tokenizer call.
        """
        fmt = state.fmt
        reply = history[-1]["content"]
        chat = list(history) + list(new_messages)
        key = self._structure(chat, generation_prompt, fmt)
        fast = self._reused_scaffold(state, chat, key, len(history) - 1) if len(new_messages) == 1 else None
        if fast is not None:
            # The template is content-linear and its placeholder renderings show the new rendering
            # extends the previous one with the reply verbatim: what the full path below would
            # find (anchor after the reply, nothing rewritten), without rendering the whole chat.
            scaffold = fast
            rendering = state.rendered + reply + scaffold
            anchor = len(rendering) - len(scaffold)
            rewritten = False
        else:
            try:
                rendering = self._render(chat, generation_prompt, fmt)
            except Exception as exc:  # jinja2's TemplateError (raise_exception), UndefinedError, TypeError...
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise TemplateMismatch(f"the template cannot render the chat so far ({exc.__class__.__name__}: "
                                       f"{first})") from exc
            anchor = self._verbatim_reply_end(state, rendering, reply)
            if anchor is None and fmt.native_tools and history[-1].get("tool_call") is not None and new_messages:
                anchor = self._end_before(state, history, new_messages, generation_prompt, fmt, rendering)
            elif anchor is None:
                anchor = self._reply_end(history, new_messages, generation_prompt, fmt, rendering, reply)
            pos = self._aligned_start(state, rendering, anchor)
            region = rendering[pos:anchor]
            rewritten = region != state.gen_prompts[-1] + reply
            scaffold = rendering[anchor:]
        gp = (self._gen_prompt if generation_prompt and self._gen_prompt and scaffold.endswith(self._gen_prompt)
              else "")
        body = scaffold[: len(scaffold) - len(gp)]
        closing_len = len(self._closing) if body.startswith(self._closing) else 0
        # The template's text before the first new message's content: where a stop id may stand for
        # an end-of-turn token (ChatML's closing, or Gemma 4's inline `<|tool_response>`).
        content = str(new_messages[0].get("content", ""))[:40] if new_messages else ""
        before = scaffold.find(content) if content else -1
        skip, stop_text = self._stop_skip(generated, finish_reason, scaffold, max(closing_len, before))
        # Pieces in scaffold coordinates: closing (after the model's stop), messages, prompt.
        cuts = [skip, max(skip, closing_len)]
        owners: list[int | None] = [None]
        cuts += self._message_cuts(history, new_messages, fmt, anchor, rendering, len(body), skip)
        owners += list(range(len(new_messages)))
        cuts.append(len(scaffold))
        owners.append(None)
        texts = [scaffold[a:b] for a, b in zip(cuts, cuts[1:])]
        state.replies.append(reply)
        state.rewritten.append(rewritten)
        state.stop_texts.append(stop_text)
        state.end_texts.append(scaffold[:skip] if stop_text is not None else self._end_token)
        state.bodies.append(body)
        state.gen_prompts.append(gp)
        state.rendered = rendering
        state.structure = key
        state.contents = [m["content"] for m in chat]
        return PendingScaffold(texts, owners)

    def _reused_scaffold(self, state: ChatState, chat: Sequence[dict], key: tuple | None, reply_at: int) -> str | None:
        """The scaffolding after the reply chat[reply_at], from placeholder renderings, or None.

        Given content-linearity, rendering(chat) = fill(P_new) and state.rendered = fill(P_old).
        When P_new starts with P_old followed by the reply's placeholder, the real rendering
        starts with state.rendered then the reply (the checks of _verbatim_reply_end and
        _aligned_start hold), so only the tail after the reply is filled in. None whenever any
        premise is not shown (then the full path runs).
        """
        old = state.structure
        if key is None or old is None or state.contents is None or len(state.contents) != reply_at:
            return None
        contents = [m["content"] for m in chat]
        if contents[:reply_at] != state.contents or "\x00" in state.gen_prompts[-1] or old[0] != key[0] \
                or old[2] != key[2][:reply_at]:
            return None
        new_p = self._placeholder_rendering(key, chat)
        old_p = self._placeholder_rendering(old, chat[:reply_at]) if new_p is not None else None
        if old_p is None:
            return None
        at = self._extension(old, key, old_p, new_p, reply_at)
        if at is None:
            return None
        scaffold = new_p.fill(contents, at)
        return scaffold if self._closing and scaffold.startswith(self._closing) else None

    def _extension(self, old: tuple, new: tuple, old_p: Structure, new_p: Structure, reply_at: int) -> int | None:
        """Index in new_p.parts of the literal right after the reply's placeholder, when new_p's
        text is old_p's text followed by that placeholder; else None. Cached per pair."""
        pair = ("pair", old, new)
        if pair not in self._structures:
            parts, n = new_p.parts, len(old_p.parts)
            # old_p's parts, with its last literal a prefix of new_p's literal there, then nothing
            # between it and the reply's placeholder.
            ok = (len(parts) > n + 1 and parts[:n - 1] == old_p.parts[:n - 1] and parts[n - 1] == old_p.parts[n - 1]
                  and parts[n] == reply_at)
            self._structures[pair] = n + 1 if ok else None
        return self._structures[pair]

    def _verbatim_reply_end(self, state: ChatState, rendering: str, reply: str) -> int | None:
        """The anchor without a second rendering, in the common case: the rendering extends the
        previous one, then holds the generation prompt and the reply verbatim, then the template's
        closing. None when any of that does not hold (then _reply_end finds it)."""
        previous = state.rendered
        if not self._closing or not rendering.startswith(previous):
            return None
        pos = len(previous) - len(state.gen_prompts[-1])
        end = pos + len(state.gen_prompts[-1]) + len(reply)
        if rendering.startswith(state.gen_prompts[-1] + reply, pos) and rendering.startswith(self._closing, end):
            return end
        return None

    def _end_before(self, state: ChatState, history: Sequence[dict], new_messages: Sequence[dict],
                    generation_prompt: bool, fmt: ChatFormat, rendering: str) -> int:
        """The anchor when the template writes the reply's tool call itself (native tool calling).

        Usually the start of the closing before the first new message, found by rendering that
        message with a sentinel as its content. A template that writes the result inside the
        assistant's own turn (Gemma 4: `<tool_call|><|tool_response>...`) has no closing there:
        then the anchor is where the chat ending on the reply stops being a prefix of the
        rendering. Raises TemplateMismatch when neither places it after the reply's start.
        """
        start = self._region_start(state, rendering)
        verbatim = state.gen_prompts[-1] + history[-1]["content"]
        if rendering.startswith(verbatim, start):  # the model wrote the call as the template does
            return start + len(verbatim)
        marked = list(history) + [dict(new_messages[0], content=_SENTINEL)] + list(new_messages[1:])
        with_mark = self._render(marked, generation_prompt, fmt)
        at = with_mark.find(_SENTINEL)
        if self._closing and at >= 0:
            anchor = with_mark.rfind(self._closing, start, at)
            if anchor >= 0 and rendering[:anchor] == with_mark[:anchor]:
                return anchor
        alone = self._render(history, False, fmt)
        common = next((i for i, (a, b) in enumerate(zip(alone, rendering)) if a != b), min(len(alone), len(rendering)))
        if self._closing and alone[:common].endswith(self._closing):
            common -= len(self._closing)
        if common > start:
            return common
        raise TemplateMismatch("cannot find where the reply's tool call ends in the template's rendering")

    def _region_start(self, state: ChatState, rendering: str) -> int:
        """Where the last reply's region starts (after the last body), checked like _aligned_start."""
        if rendering.startswith(state.rendered):
            return len(state.rendered) - len(state.gen_prompts[-1])
        return self._aligned_start(state, rendering, len(rendering))

    def _reply_end(self, history: Sequence[dict], new_messages: Sequence[dict], generation_prompt: bool,
                   fmt: ChatFormat, rendering: str, reply: str) -> int:
        """Where the last reply's rendered text ends in `rendering` (the anchor of the scaffolding).

        Found by rendering the reply with a sentinel appended to its content: what follows the
        sentinel is what the template writes after the reply, so the anchor is where that suffix
        starts. A template that trims content (Llama 3's `| trim`) still ends with the same suffix.
        """
        marked = list(history[:-1]) + [dict(history[-1], content=reply + _SENTINEL)] + list(new_messages)
        with_mark = self._render(marked, generation_prompt, fmt)
        at = with_mark.rfind(_SENTINEL)
        if at < 0:
            raise TemplateMismatch("the template drops the text of the last reply from the chat")
        suffix = with_mark[at + len(_SENTINEL):]
        if rendering.endswith(suffix):
            return len(rendering) - len(suffix)
        if reply and rendering.rfind(reply) >= 0:
            return rendering.rfind(reply) + len(reply)
        raise TemplateMismatch("cannot find where the last reply ends in the template's rendering of the chat")

    def _aligned_start(self, state: ChatState, rendering: str, anchor: int) -> int:
        """Start of the last reply's region in `rendering`, after checking it extends what the model saw.

        Fast path: the new rendering starts with the previous one. Otherwise each earlier body
        of scaffolding must appear in order; the text between two bodies (a reply and the
        generation prompt before it) may differ. Raises TemplateMismatch naming the difference.
        """
        previous = state.rendered
        cut = len(previous) - len(state.gen_prompts[-1])
        if rendering.startswith(previous) and len(previous) <= anchor:
            return cut
        try:
            return self._align(state, rendering, anchor)[0]
        except TemplateMismatch:
            pass
        at = next((i for i, (a, b) in enumerate(zip(previous, rendering)) if a != b), min(len(previous), len(rendering)))
        raise TemplateMismatch(
            f"the template renders the earlier chat differently at character {at}: the model was given "
            f"{previous[at:at + 40]!r}, the template now writes {rendering[at:at + 40]!r}")

    def _align(self, state: ChatState, rendering: str, end: int) -> tuple[int, list[str]]:
        """(end of the last body, the text between consecutive bodies) of `rendering`, or TemplateMismatch."""
        if not rendering.startswith(state.bodies[0]):
            raise TemplateMismatch("the template renders the opening prompt differently")
        pos, regions = len(state.bodies[0]), []
        for body in state.bodies[1:]:
            j = rendering.find(body, pos, end) if body else pos
            if j < 0:
                raise TemplateMismatch("the template renders an earlier tool result or header differently")
            regions.append(rendering[pos:j])
            pos = j + len(body)
        return pos, regions

    def _stop_skip(self, generated: Sequence[int], finish_reason: str, scaffold: str,
                   closing_len: int) -> tuple[int, str | None]:
        """(characters of the scaffold the model's stop id stands for, that stop token's text).

        Any stop id ends the assistant message: what the template writes after a reply up to and
        including its end-of-turn token is skipped, only the rest is appended. The end-of-turn
        token is the model's own stop token where the closing holds it (Cohere 2 writes
        '<|END_RESPONSE|><|END_OF_TURN_TOKEN|>'), else the first stop token in the closing (the
        model stopped on '<|endoftext|>' where the template writes '<|im_end|>'), else a stop
        token that opens the next message (GLM stops on '<|observation|>', the tool's header).
        """
        if finish_reason != "stop" or not generated or generated[-1] not in self.stop_ids:
            return 0, None
        stop_text = self.tokenizer.decode([generated[-1]])
        closing = scaffold[:closing_len]
        if stop_text and stop_text in closing:
            return closing.index(stop_text) + len(stop_text), stop_text
        found = [closing.index(t) + len(t) for t in self._stop_texts if t in closing]
        if found:
            return min(found), stop_text
        if stop_text and scaffold.startswith(stop_text):  # GLM stops on the next message's header
            return len(stop_text), stop_text
        return 0, stop_text

    def _message_cuts(self, history: Sequence[dict], new_messages: Sequence[dict], fmt: ChatFormat, anchor: int,
                      rendering: str, body_len: int, skip: int) -> list[int]:
        """Scaffold offsets where each new message after the first starts, then where the last one ends."""
        cuts = []
        for i in range(1, len(new_messages)):
            partial = self._render(list(history) + list(new_messages[:i]), False, fmt)
            end = len(partial) - anchor if rendering.startswith(partial) else body_len
            cuts.append(max(skip, min(end, body_len)))
        cuts.append(max(skip, body_len))
        return cuts

    def tokenise(self, pending: Sequence[PendingScaffold]) -> list[list[Segment]]:
        """Segments of each PendingScaffold, all tokenised in one batched tokenizer call.

        Each one's pieces are joined and tokenised together, which keeps the tokenisation the
        model will see; offsets say which piece each token starts in (a token spanning a
        boundary belongs to the piece it starts in). A batch gives each text the ids a call of
        its own gives (the tokenizer encodes texts independently; its Rust side in parallel).
        """
        joined = ["".join(p.texts) for p in pending]
        out: list[list[Segment]] = [[] for _ in pending]
        todo = [i for i, text in enumerate(joined) if text]
        if not todo:
            return out
        if self._backend is not None:
            cut = self._backend.encode_pieces([pending[i].texts for i in todo])
            for k, i in enumerate(todo):
                out[i] = [Segment(ids, owner) for ids, owner in zip(cut[k], pending[i].owners) if ids]
            return out
        if not getattr(self.tokenizer, "is_fast", False):  # no offsets: tokenise piece by piece
            for i in todo:
                out[i] = [Segment(self.encode(t), o) for t, o in zip(pending[i].texts, pending[i].owners) if t]
            return out
        enc = self.tokenizer([joined[i] for i in todo], add_special_tokens=False, return_offsets_mapping=True)
        for k, i in enumerate(todo):
            out[i] = _cut(enc["input_ids"][k], enc["offset_mapping"][k], pending[i].texts, pending[i].owners)
        return out

    def _tokenise_pieces(self, texts: list[str], owners: list[int | None]) -> list[Segment]:
        """Tokenise the joined text once, then cut it at the pieces' character boundaries."""
        return self.tokenise([PendingScaffold(list(texts), list(owners))])[0]

    def render_ids(self, messages: Sequence[dict], fmt: ChatFormat | None = None) -> list[int]:
        """Ids of the whole chat rendered and tokenised at once (for the drift check)."""
        return self.encode(self._render(messages, False, fmt))

    def drift(self, state: ChatState, tokens: TokenSequence, messages: Sequence[dict]) -> tuple[int | None, str | None]:
        """(first position where the ids differ from re-rendering `messages` whole, its kind).

        messages are the chat the model saw. The kind is one of DRIFT_KINDS, judged at the turn
        holding the first difference: template_rewrite when the template renders that reply (or
        the generation prompt before it, or any earlier scaffolding) differently now; stop_token
        when the difference is the model's stop id and it is not the template's end-of-turn
        token; retokenization otherwise (same text, other ids).

        A chat that does not end on a reply may end on the next generation prompt (the budget ran
        out right after it was appended): ids equal to the rendering with the generation prompt
        are no drift either, and a difference is judged against whichever of the two renderings
        agrees with the ids for longer.
        """
        return self.drift_many([(state, tokens, messages)])[0]

    def drift_many(self, items: Sequence[tuple[ChatState, TokenSequence, Sequence[dict]]]
                   ) -> list[tuple[int | None, str | None]]:
        """drift() of each (state, tokens, messages), the renderings tokenised in one batched call."""
        # Full renderings, never the placeholder ones the turns used: the drift check is the
        # independent witness that the ids the turns built are the template's.
        texts: list[str | None] = []
        for state, _, messages in items:
            try:
                texts.append(self._render(messages, False, state.fmt))
            except Exception:  # the template cannot render the final chat: no canonical ids to compare
                texts.append(None)
        todo = [i for i, t in enumerate(texts) if t is not None]
        encoded = self.encode_many([texts[i] for i in todo])
        canonical: dict[int, list[int]] = dict(zip(todo, encoded))
        return [(None, None) if texts[i] is None else self._judge_drift(state, tokens, messages, texts[i], canonical[i])
                for i, (state, tokens, messages) in enumerate(items)]

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """encode() of each text, in one batched tokenizer call (the same ids as one call each)."""
        if not texts:
            return []
        if self._backend is not None:
            return self._backend.encode_many(texts)
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def _judge_drift(self, state: ChatState, tokens: TokenSequence, messages: Sequence[dict], text: str,
                     canonical: list[int]) -> tuple[int | None, str | None]:
        at = first_difference(tokens.ids, canonical)
        if at is not None and messages and messages[-1].get("role") != "assistant":
            try:
                prompted = self._render(messages, True, state.fmt)
            except Exception:  # noqa: BLE001  (a template that cannot add the prompt: judge without it)
                prompted = text
            if prompted != text:
                at_prompted = first_difference(tokens.ids, self.encode(prompted))
                if at_prompted is None:
                    return None, None
                if at_prompted > at:
                    text, at = prompted, at_prompted
        if at is None:
            return None, None
        turn, in_reply, last_of_reply = _turn_at(tokens, at)
        try:
            end, regions = self._align(state, text, len(text))
        except TemplateMismatch:
            return at, DRIFT_TEMPLATE_REWRITE
        replies, stops, ends = list(state.replies), list(state.stop_texts), list(state.end_texts)
        if sum(1 for m in messages if m["role"] == "assistant") > len(replies):
            # The chat ended on a reply, which no continuation has seen: take it from the chat and ids.
            replies.append(messages[-1]["content"])
            last = max((i for i, m in enumerate(tokens.mask) if m), default=None)
            stop = tokens.ids[last] if last is not None else None
            stop_text = self.tokenizer.decode([stop]) if stop in self.stop_ids else None
            skip, _ = self._stop_skip([stop], "stop", self._closing, len(self._closing)) if stop_text else (0, None)
            ends.append(self._closing[:skip] if skip else self._end_token)
            stops.append(stop_text)
        # Region i (0-based) holds gen_prompts[i] + replies[i]; the text after the last body holds
        # the last reply when the chat ended on one.
        if len(replies) > len(regions):
            tail = text[end:]
            expected = state.gen_prompts[len(regions)] + replies[len(regions)]
            regions.append(expected if tail.startswith(expected) else tail)
        rewritten = [r != state.gen_prompts[i] + replies[i] for i, r in enumerate(regions)]
        # The difference sits in reply `turn` (1-based) or in the scaffolding after it; scaffolding
        # right before reply turn+1 is that reply's generation prompt.
        candidates = [turn] if in_reply else [turn, turn + 1]
        if any(1 <= t <= len(rewritten) and rewritten[t - 1] for t in candidates):
            return at, DRIFT_TEMPLATE_REWRITE
        if in_reply and last_of_reply and 1 <= turn <= len(stops):
            stop, end_text = stops[turn - 1], ends[turn - 1]
            if stop is not None and stop != end_text:
                return at, DRIFT_STOP_TOKEN
        return at, DRIFT_RETOKENIZATION


def _cut(ids: Sequence[int], offsets: Sequence[tuple[int, int]], texts: Sequence[str],
         owners: Sequence[int | None]) -> list[Segment]:
    """ids of "".join(texts) cut into Segments at the texts' boundaries (owners[i] owns texts[i]).

    Token i goes to the piece holding max(start of tokens 0..i): the piece index never goes
    back, as in a scan over the offsets; with the running maximum (sorted) a bisection per
    boundary finds the cuts.
    """
    starts = list(accumulate(map(itemgetter(0), offsets), max))
    segments: list[Segment] = []
    total, begin = 0, 0
    for piece, text in enumerate(texts):
        total += len(text)
        end = len(ids) if piece == len(texts) - 1 else bisect_left(starts, total, begin)
        if end > begin:
            segments.append(Segment(list(ids[begin:end]), owners[piece]))
        begin = end
    return segments


def _turn_at(tokens: TokenSequence, at: int) -> tuple[int, bool, bool]:
    """(turn, inside a generated reply, on that reply's last id) of position `at`.

    Turn 0 is the opening prompt; turn k is the k-th run of generated ids (mask 1) and the
    scaffolding after it. A position past the end belongs to the last turn's scaffolding.
    """
    turn, mask = 0, tokens.mask
    for i in range(min(at, len(mask) - 1) + 1):
        if mask[i] and (i == 0 or not mask[i - 1]):
            turn += 1
    inside = at < len(mask) and mask[at] == 1
    last = inside and (at + 1 == len(mask) or mask[at + 1] == 0)
    return turn, inside, last


def first_difference(ours: Sequence[int], canonical: Sequence[int]) -> int | None:
    """Where `ours` stops being a prefix of `canonical` (None: it is one)."""
    n = min(len(ours), len(canonical))
    if list(ours[:n]) == list(canonical[:n]):  # the common case, compared in C
        return None if len(ours) <= len(canonical) else len(canonical)
    for i, (a, b) in enumerate(zip(ours, canonical)):
        if a != b:
            return i
    if len(ours) > len(canonical):
        return len(canonical)
    return None
