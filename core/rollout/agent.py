"""The multi-turn search agent: generate, parse the tool call, search, repeat.

Every unfinished trajectory of a batch generates in the same backend call each turn. A
trajectory ends when the model answers without calling a tool, when a tool call fails (unless
errors are fed back to the model), when its token budget is spent, after `max_generations`
turns, when its prompt reaches the model's context length, or when the chat template renders
the chat so far differently from what the model was given (it is never fed a cut prompt); the
reason is recorded as its finish_reason, with a one-line finish_detail for the last two.

A generation stopped by a token limit (the backend's finish_reason "length": the per-turn limit,
the trajectory's budget or the context) ends the trajectory as max_tokens, or context_length when
the context is full, whatever the cut text holds: a call in it is never run, even one that looks
complete (its turn never ended), and no tool error is recorded, so a cut tagged call and a cut
bare call score the same. The reply keeps its text, and is always the trajectory's last message
(TRUNCATED names these finish reasons).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Callable, Sequence

from loguru import logger

from core.backends import Backend, SamplingConfig
from core.rollout.chat import ChatState, ChatTokenizer, TemplateMismatch
from core.rollout.prompts import DEFAULT_USER_NATIVE, SEARCH_TOOL_NAME, PromptTemplate
from core.rollout.templates import ChatFormat, context_window
from core.data.records import Message, Question, ToolCall, ToolError
from core.rollout.toolcalls import count_call_attempts, parse_tool_call
from core.rollout.tokens import TokenSequence

FINISH_ANSWERED = "answered"
FINISH_MAX_TURNS = "max_turns"
FINISH_MAX_TOKENS = "max_tokens"
FINISH_TOOL_ERROR = "tool_error"
FINISH_CONTEXT_LENGTH = "context_length"
"""The prompt reached the model's context length: no room left to generate."""
FINISH_TEMPLATE_MISMATCH = "template_mismatch"
"""The template's rendering of the chat does not extend what the model was given (see core.rollout.chat)."""
TRUNCATED = (FINISH_MAX_TOKENS, FINISH_CONTEXT_LENGTH)
"""Finish reasons of a trajectory stopped by a token limit; when its last message is an assistant
reply, that reply was cut mid-generation (see the module docstring)."""

TOOL_ROLE = "tool"
"""Role of tool results in stored chats (the seed's Llama 3 code called it "ipython")."""


@dataclass(frozen=True)
class AgentConfig:
    max_generations: int = 5
    """Generation turns per trajectory."""
    max_new_tokens: int = 1024
    """Budget for everything after the prompt (generated and tool-result tokens), as the seed."""
    max_tokens_per_turn: int = 256
    top_k: int = 2
    """Search results per tool call."""
    on_tool_error: str = "stop"
    """'stop' ends the trajectory on a tool error (the seed); 'continue' shows the error to the model."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    check_drift: bool = True
    context_length: int | None = None
    """Tokens the model attends to (prompt and generation); None: from the backend's model config
    and tokenizer (core.rollout.templates.context_window), unbounded when neither says."""


SearchFn = Callable[[str, int], str]
"""(query, k) -> formatted results; raises on failure."""


@dataclass
class Trajectory:
    """One question's chat while it runs, and what it ended as."""

    question: Question
    messages: list[Message]
    tokens: TokenSequence
    finish_reason: str | None = None
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    drift_at: int | None = None
    drift_kind: str | None = None
    """What the drift at drift_at is (core.rollout.chat.DRIFT_KINDS), None without drift."""
    finish_detail: str | None = None
    """One line on why it ended, for template_mismatch and context_length."""
    token_exact: bool = True
    """False once a reply's ids came back as text only and were re-tokenised locally
    (Generation.token_exact): its mask and logprobs are then not the model's."""
    chat_state: ChatState | None = None
    generation_seconds: float = 0.0
    store_id: int | None = None
    qidx: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def chat(self) -> list[dict]:
        """The chat as dicts for the template; an assistant's parsed call rides along under
        "tool_call" (native tool calling renders it as structured tool_calls)."""
        return [_chat_dict(m) for m in self.messages]


def _chat_dict(m: Message) -> dict:
    d: dict = m.chat_dict()
    if m.role == "assistant" and isinstance(m.tool_call, ToolCall):
        d["tool_call"] = m.tool_call
    return d


def drift_input(traj: Trajectory) -> tuple:
    """(chat state, tokens, messages the model saw) of a finished trajectory: what
    ChatTokenizer.drift_many needs. Only the messages the model saw are rendered: a trailing
    message that ended the chat (a tool error, a result the template could not continue with)
    was never tokenised. A caller may check drift elsewhere (core.evaluate does it in its store
    writer thread) with AgentConfig(check_drift=False)."""
    return traj.chat_state, traj.tokens, [_chat_dict(m) for m in traj.messages if m.token_start is not None]


class Agent:
    """Runs turns of the search agent over batches of trajectories."""

    def __init__(self, backend: Backend, search: SearchFn, config: AgentConfig,
                 prompts: PromptTemplate | None = None, chat_format: ChatFormat | None = None):
        """chat_format: how messages map onto the backend's chat template; checked from the
        template when None (raises core.rollout.templates.TemplateError for one that cannot work)."""
        self.backend = backend
        self.search = search
        self.config = config
        self.chat = ChatTokenizer(backend.tokenizer, chat_format,
                                  stop_ids=sorted(getattr(backend, "stop_token_ids", ()) or ()))
        native = self.chat.fmt.native_tools
        self.prompts = prompts or (PromptTemplate(user=DEFAULT_USER_NATIVE) if native else PromptTemplate())
        model = getattr(backend, "model", None)
        self.context_length = config.context_length or context_window(backend.tokenizer,
                                                                      getattr(model, "config", None))
        if config.on_tool_error not in ("stop", "continue"):
            raise ValueError(f"on_tool_error must be 'stop' or 'continue', not {config.on_tool_error!r}")

    def start(self, question: Question, qidx: int = 0) -> Trajectory:
        """A new trajectory holding the opening prompt; its date is fixed for all its turns.

        A prompt that already fills the model's context ends at once as context_length.
        """
        today = date.today()
        opening = self.prompts.messages(question.question, today, tool_definition=not self.chat.fmt.native_tools)
        tokens = TokenSequence()
        ids, state = self.chat.start(opening, today)
        start, end = tokens.add_prompt(ids)
        messages = [Message(m["role"], m["content"], turn=0) for m in opening]
        # The opening prompt is one template rendering; both messages share its span.
        for m in messages:
            m.token_start, m.token_end = start, end
        traj = Trajectory(question=question, messages=messages, tokens=tokens, qidx=qidx, chat_state=state)
        if self._context_left(traj) < 1:
            self._finish(traj, FINISH_CONTEXT_LENGTH, self._context_detail(traj))
            self._check_drift([traj])
        return traj

    def step(self, batch: Sequence[Trajectory]) -> list[list[Message]]:
        """One generation turn for every unfinished trajectory; returns each one's new messages.

        The new text of every trajectory (the reply's closing, the tool result, the next
        generation prompt) is tokenised in one batched tokenizer call, and the drift check of
        every trajectory that ends this turn in another.
        """
        active = [t for t in batch if not t.finished]
        new: dict[int, list[Message]] = {id(t): [] for t in batch}
        if not active:
            return [new[id(t)] for t in batch]
        limits = [self._turn_limit(t) for t in active]
        began = time.perf_counter()
        outputs = self.backend.generate([t.tokens.ids for t in active], limits, self.config.sampling)
        elapsed = time.perf_counter() - began
        total_generated = sum(len(o.token_ids) for o in outputs) or 1
        waiting: list[tuple[Trajectory, Message, bool]] = []
        pending = []
        for traj, out in zip(active, outputs):
            traj.generation_seconds += elapsed * len(out.token_ids) / total_generated
            new[id(traj)], scaffold = self._after_generation(traj, out)
            if scaffold is not None:
                waiting.append(scaffold[:3])
                pending.append(scaffold[3])
        for (traj, tool_msg, last_turn), segments in zip(waiting, self.chat.tokenise(pending)):
            self._append_segments(traj, tool_msg, segments)
            self._after_tool_tokens(traj, last_turn)
        self._check_drift([t for t in active if t.finished])
        return [new[id(t)] for t in batch]

    def _turn_limit(self, traj: Trajectory) -> int:
        left = self.config.max_new_tokens - traj.tokens.completion_len
        return max(1, min(self.config.max_tokens_per_turn, left, self._context_left(traj)))

    def _context_left(self, traj: Trajectory) -> int:
        """Tokens the model can still attend to after this trajectory's ids (huge when unknown)."""
        if self.context_length is None:
            return 1 << 62
        return self.context_length - len(traj.tokens.ids)

    def _context_detail(self, traj: Trajectory) -> str:
        return (f"the chat is {len(traj.tokens.ids):,} tokens; the model's context is "
                f"{self.context_length:,} tokens")

    def _after_generation(self, traj: Trajectory, out) -> tuple[list[Message], tuple | None]:
        """(the turn's new messages, None or (traj, tool message, last turn, PendingScaffold) whose
        tokens step() appends after tokenising every trajectory's new text at once)."""
        traj.turns += 1
        turn = traj.turns
        if not getattr(out, "token_exact", True):
            traj.token_exact = False
        start, end = traj.tokens.add_generated(out.token_ids, out.logprobs)
        reply = Message("assistant", out.text, turn=turn, token_start=start, token_end=end)
        traj.messages.append(reply)
        added = [reply]
        traj.tool_calls += count_call_attempts(out.text)
        if out.finish_reason == "length":
            # A truncation is a truncation, whatever the cut text holds (a call cut inside
            # <tool_call>, a bare call, an answer, even a call that looks complete but whose turn
            # never ended): one finish reason, no call run, no tool error, so the rewards do not
            # depend on the shape of the cut text. TRL and verl likewise mark truncated
            # completions as such (and can mask them) instead of acting on them.
            if self._context_left(traj) < 1:
                self._finish(traj, FINISH_CONTEXT_LENGTH, self._context_detail(traj))
            else:
                self._finish(traj, FINISH_MAX_TOKENS)
            return added, None
        parsed = parse_tool_call(out.text, tools=(SEARCH_TOOL_NAME,))
        if parsed is None:
            self._finish(traj, FINISH_ANSWERED)
            return added, None
        result, error = self._run_tool(parsed)
        if isinstance(parsed, ToolCall):
            reply.tool_call = parsed
        if error is not None:
            traj.tool_errors += 1
            reply.tool_error = error
            result = f"Error: {error.kind}: {error.message}"
        tool_msg = Message(TOOL_ROLE, result, turn=turn, tool_error=error)
        traj.messages.append(tool_msg)
        added.append(tool_msg)
        if error is not None and self.config.on_tool_error == "stop":
            # The model never sees this message, so it gets no tokens.
            self._finish(traj, FINISH_TOOL_ERROR)
            return added, None
        last_turn = turn >= self.config.max_generations
        try:
            history = traj.chat()[:-1]
            pending = self.chat.prepare_continue(traj.chat_state, history, out.token_ids, out.finish_reason,
                                                 [tool_msg.chat_dict()], generation_prompt=not last_turn)
        except TemplateMismatch as exc:
            # The model never sees this tool result: no prompt we could give it is the template's.
            self._finish(traj, FINISH_TEMPLATE_MISMATCH, str(exc))
            return added, None
        return added, (traj, tool_msg, last_turn, pending)

    def _after_tool_tokens(self, traj: Trajectory, last_turn: bool) -> None:
        if traj.tokens.completion_len >= self.config.max_new_tokens:
            self._finish(traj, FINISH_MAX_TOKENS)
        elif last_turn:
            self._finish(traj, FINISH_MAX_TURNS)
        elif self._context_left(traj) < 1:
            self._finish(traj, FINISH_CONTEXT_LENGTH, self._context_detail(traj))

    def _run_tool(self, parsed: ToolCall | ToolError) -> tuple[str, ToolError | None]:
        if isinstance(parsed, ToolError):
            return "", parsed
        try:
            return self.search(parsed.arguments["query"], self.config.top_k), None
        except Exception as exc:  # a failing search is the model's tool error, not a crash
            logger.warning("search failed for {!r}: {}", parsed.arguments.get("query"), exc)
            return "", ToolError("search_failed", f"{exc.__class__.__name__}: {exc}")

    @staticmethod
    def _append_segments(traj: Trajectory, tool_msg: Message, segments) -> None:
        for seg in segments:
            start, end = traj.tokens.add_scaffold(seg.ids)
            if seg.message_index == 0:
                tool_msg.token_start, tool_msg.token_end = start, end

    def _finish(self, traj: Trajectory, reason: str, detail: str | None = None) -> None:
        """Ends the trajectory; its drift is checked by the caller (_check_drift), after the turn."""
        traj.finish_reason = reason
        traj.finish_detail = detail

    def _check_drift(self, finished: Sequence[Trajectory]) -> None:
        """Sets drift_at and drift_kind of each finished trajectory (when config.check_drift): the
        first position where our ids differ from rendering the whole chat and tokenising it, and
        the kind of difference (core.rollout.chat.DRIFT_KINDS); the renderings of all of them are
        tokenised in one batched call.

        Only the messages the model saw are rendered: a trailing message that ended the chat
        (a tool error, a result the template could not continue with) was never tokenised.
        """
        if not self.config.check_drift or not finished:
            return
        items = [drift_input(t) for t in finished]
        for traj, (at, kind) in zip(finished, self.chat.drift_many(items)):
            traj.drift_at, traj.drift_kind = at, kind
