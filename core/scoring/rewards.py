"""The seed's four rewards, plus rewards users write themselves, scored a batch at a time.

Formulas and values follow the seed so numbers stay comparable with runs trained on it:

- correctness: 1.0 if the judge says the final answer is right, else 0.0;
- formatting: 0.7 if no tool call in the trajectory failed, else 0.0;
- retry_behavior: a curve over the number n of attempted tool calls, peaking at n = 4
  (x = n - 4, r = 1 / (1 + exp(-x + |x|/2)); above 6 calls r = max(0.1, r - 0.2 (n - 6)));
- chunk_hit: 1.0 if the question's gold chunk appears in any search result, else 0.0 (its
  docstring gives the two rules: chunk_content, or the last supporting paragraph).

Where the seed read strings back out of the chat ("Error during" in any message, JSON objects
counted by a brace counter), these use what the agent recorded: parsed tool errors and the
same call finder the agent used. A user reward is `fn(messages, question) -> float` or
`(float, detail)`, loaded by "package.module:function".
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger

from core.scoring.judges import Judge, JudgeItem, Verdict
from core.data.records import Message, Question, RewardResult
from core.rollout.toolcalls import count_call_attempts, strip_reasoning

BUILTIN_REWARDS = ("correctness", "formatting", "retry_behavior", "chunk_hit")
TOOL_ROLES = ("tool", "ipython")
"""Roles of search results: ours, and the seed's Llama 3 name, so seed-era chats still score."""

UserRewardFn = Callable[[list[dict[str, Any]], dict[str, Any]], "float | tuple[float, dict[str, Any]]"]


@dataclass(frozen=True)
class RewardInput:
    """One finished trajectory to score."""

    question: Question
    messages: list[Message]
    final_answer: str


def final_answer(messages: Sequence[Message]) -> str:
    """The last assistant message without its reasoning, trimmed ("" if there is none)."""
    for message in reversed(messages):
        if message.role == "assistant":
            return strip_reasoning(message.content).strip()
    return ""


def formatting(messages: Sequence[Message]) -> tuple[float, dict[str, Any]]:
    """0.7 when no tool call failed; an error recorded on both the call and its result counts once."""
    seen: set[tuple[int, str, str]] = set()
    kinds: list[str] = []
    for m in messages:
        if m.tool_error is not None:
            key = (m.turn, m.tool_error.kind, m.tool_error.message)
            if key not in seen:
                seen.add(key)
                kinds.append(m.tool_error.kind)
    return (0.0 if kinds else 0.7), {"tool_errors": kinds}


def retry_value(n: int) -> float:
    """The seed's retry curve for n attempted tool calls."""
    x = float(n - 4)
    r = 1.0 / (1.0 + math.exp(-x + abs(x) / 2))
    if n > 6:
        r = max(0.1, r - 0.2 * (n - 6))
    return r


def retry_behavior(messages: Sequence[Message]) -> tuple[float, dict[str, Any]]:
    """The retry curve over every call attempted in the assistant messages (0.0 if none spoke)."""
    replies = [m.content for m in messages if m.role == "assistant" and m.content is not None]
    if not replies:
        return 0.0, {"tool_calls": 0}
    n = sum(count_call_attempts(text) for text in replies)
    return retry_value(n), {"tool_calls": n}


def chunk_hit(question: Question, messages: Sequence[Message]) -> tuple[float, dict[str, Any]] | None:
    """1.0 if a search result holds the question's gold text, else 0.0; None when it has none.

    The gold text is `question.gold_text`, matched by one of two rules, named in the detail:

    - "chunk_content": the seed's reward_exact_match_chunk_query. The chunk's text must be a plain
      substring of a search result, exactly (whitespace included).
    - "last_supporting_paragraph": no chunk_content, but supporting paragraphs (question files
      that give only `supporting_paragraphs`). The seed's later versions reward a search result
      that contains the last supporting paragraph. Compared with whitespace normalised on both
      sides: every run of whitespace (str.isspace: spaces, tabs, newlines, no-break spaces ...)
      becomes one space and the ends are stripped, so a chunker's re-wrapping is still a hit.

    Search results are the messages whose role is in TOOL_ROLES; the answer never counts.
    Detail: {"rule": "chunk_content" | "last_supporting_paragraph", "hit_turn": the turn of the
    first result that holds the gold text, or None, "tool_results": how many results there were}.
    The seed raised an error for a batch without chunk_content; returning None lets question
    files without any gold still be scored on the other rewards.
    """
    gold = _gold(question)
    if gold is None:
        return None
    rule, text = gold
    results = [m for m in messages if m.role in TOOL_ROLES]
    needle = text if rule == "chunk_content" else _collapse(text)
    for m in results:
        if needle in (m.content if rule == "chunk_content" else _collapse(m.content)):
            return 1.0, {"rule": rule, "hit_turn": m.turn, "tool_results": len(results)}
    return 0.0, {"rule": rule, "hit_turn": None, "tool_results": len(results)}


def gold_spans(question: Question, text: str) -> list[tuple[int, int]]:
    """Where `text` holds the question's gold text, by chunk_hit's rule: half-open character
    offsets into `text`, left to right, not overlapping; [] when it does not (or there is no gold).

    For the whitespace-normalised rule a span runs from the paragraph's first non-space
    character to its last, as written in `text` (its whitespace may differ from the paragraph's).
    chunk_hit scores a result 1.0 exactly when this is not empty; a viewer highlights these spans.
    """
    gold = _gold(question)
    if gold is None:
        return []
    rule, needle = gold
    where: list[int] | None = None
    if rule != "chunk_content":
        needle = _collapse(needle)
        text, where = _collapse_with_offsets(text)
    spans: list[tuple[int, int]] = []
    pos = 0
    while (found := text.find(needle, pos)) >= 0:
        pos = found + len(needle)
        spans.append((found, pos) if where is None else (where[found], where[pos - 1] + 1))
    return spans


def _gold(question: Question) -> tuple[str, str] | None:
    """(rule, gold text) for chunk_hit, or None when the question has no gold."""
    text = question.gold_text
    if text is None:
        return None
    return ("chunk_content" if question.chunk_content else "last_supporting_paragraph"), text


def _collapse(text: str) -> str:
    """Runs of whitespace made one space, ends stripped."""
    return " ".join(text.split())


def _collapse_with_offsets(text: str) -> tuple[str, list[int]]:
    """_collapse(text), with the offset in `text` of each of its characters (a collapsed run's
    space maps to the run's first character)."""
    chars: list[str] = []
    where: list[int] = []
    gap: int | None = None
    for i, c in enumerate(text):
        if c.isspace():
            if gap is None:
                gap = i
            continue
        if gap is not None and chars:
            chars.append(" ")
            where.append(gap)
        gap = None
        chars.append(c)
        where.append(i)
    return "".join(chars), where


@dataclass(frozen=True)
class UserReward:
    """A reward function loaded from user code."""

    name: str
    spec: str
    fn: UserRewardFn

    def __call__(self, item: RewardInput) -> tuple[float, dict[str, Any]]:
        """The reward's value and detail; raises if the function fails or returns a bad value."""
        out = self.fn([_message_dict(m) for m in item.messages], _question_dict(item.question))
        detail: dict[str, Any] = {}
        if isinstance(out, tuple):
            if len(out) != 2 or not isinstance(out[1], dict):
                raise TypeError("returned a tuple that is not (float, dict)")
            out, detail = out
        if isinstance(out, bool) or not isinstance(out, (int, float)):
            raise TypeError(f"returned {type(out).__name__}, expected a float or (float, dict)")
        if not math.isfinite(out):
            raise ValueError(f"returned {out}, expected a finite number")
        return float(out), detail


def load_reward_function(spec: str) -> UserReward:
    """Import `fn` from "package.module:function"; ValueError naming the spec if that fails."""
    module_name, sep, attr = spec.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        raise ValueError(f"reward {spec!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"reward {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    except Exception as exc:
        raise ValueError(f"reward {spec!r}: importing {module_name!r} failed: "
                         f"{exc.__class__.__name__}: {exc}") from exc
    fn: Any = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"reward {spec!r}: module {module_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):  # ValueError, as every other failure of this loader
        raise ValueError(f"reward {spec!r}: {attr!r} is a {type(fn).__name__}, not a function")  # noqa: TRY004
    return UserReward(name=getattr(fn, "__name__", attr.split(".")[-1]), spec=spec, fn=fn)


def parse_weights(text: str) -> dict[str, float]:
    """Read "correctness=2,formatting=0.5" into a dict; ValueError names the bad part."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = (p.strip() for p in part.partition("="))
        if not sep or not name or not value:
            raise ValueError(f"bad reward weight {part!r}: expected NAME=NUMBER")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"bad reward weight {part!r}: {value!r} is not a number") from None
        if not math.isfinite(weight):
            raise ValueError(f"bad reward weight {part!r}: weight must be finite")
        if name in weights:
            raise ValueError(f"bad reward weights: {name!r} given twice")
        weights[name] = weight
    return weights


class RewardSuite:
    """The rewards of a run, their weights, and the judge behind correctness."""

    def __init__(self, judge: Judge, weights: dict[str, float] | None = None, extra: Sequence[str] = ()):
        self.judge = judge
        self.user = [load_reward_function(spec) for spec in extra]
        self.names: list[str] = list(BUILTIN_REWARDS)
        for reward in self.user:
            if reward.name in self.names:
                raise ValueError(f"reward {reward.spec!r}: the name {reward.name!r} is already taken")
            self.names.append(reward.name)
        self.weights = dict(weights or {})
        unknown = [name for name in self.weights if name not in self.names]
        if unknown:
            raise ValueError(f"unknown reward {unknown[0]!r} in weights (rewards: {', '.join(self.names)})")

    def weight(self, name: str) -> float:
        return self.weights.get(name, 1.0)

    def score(self, batch: list[RewardInput]) -> list[list[RewardResult]]:
        """Every reward of every trajectory; the judge sees the whole batch in one call."""
        verdicts = self.judge.judge([JudgeItem(i.question.question, i.question.answer, i.final_answer)
                                     for i in batch]) if batch else []
        if len(verdicts) != len(batch):
            raise ValueError(f"judge {self.judge.name!r} returned {len(verdicts)} verdicts for {len(batch)} answers")
        return [self._score_one(item, verdict) for item, verdict in zip(batch, verdicts)]

    def total(self, results: Sequence[RewardResult]) -> float:
        """Weighted sum of a trajectory's rewards (with the weights `score` recorded on them)."""
        return sum(r.value * r.weight for r in results)

    def _score_one(self, item: RewardInput, verdict: Verdict) -> list[RewardResult]:
        judged = {"judge": self.judge.name, **verdict.detail}
        out = [self._result("correctness", 1.0 if verdict.correct else 0.0, judged),
               self._result("formatting", *formatting(item.messages)),
               self._result("retry_behavior", *retry_behavior(item.messages))]
        hit = chunk_hit(item.question, item.messages)
        if hit is not None:
            out.append(self._result("chunk_hit", *hit))
        for reward in self.user:
            try:
                value, detail = reward(item)
            except Exception as exc:  # noqa: BLE001  (user code: any failure scores 0.0, not the run)
                logger.warning("reward {} failed on question {}: {}: {}", reward.spec, item.question.id,
                               exc.__class__.__name__, exc)
                value, detail = 0.0, {"error": f"{exc.__class__.__name__}: {exc}"}
            out.append(self._result(reward.name, value, detail))
        return out

    def _result(self, name: str, value: float, detail: dict[str, Any]) -> RewardResult:
        return RewardResult(name=name, value=value, weight=self.weight(name), detail=detail)


def _message_dict(m: Message) -> dict[str, Any]:
    return {"role": m.role, "content": m.content, "turn": m.turn,
            "tool_call": m.tool_call.to_dict() if m.tool_call else None,
            "tool_error": m.tool_error.to_dict() if m.tool_error else None}


def _question_dict(q: Question) -> dict[str, Any]:
    return {"id": q.id, "question": q.question, "answer": q.answer,
            "chunk_content": q.chunk_content, "supporting": list(q.supporting)}
