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
same call finder the agent used. A user reward is `fn(messages, question) -> number` or
`(number, detail)`, loaded by "package.module:function" or "path/to/file.py:function"; a number is
any finite real (as_reward_value). One that raises or returns something else scores 0.0 and says
so in its detail (REWARD_FAILURE), which the run summary counts and the TUI shows.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import importlib.util
import math
import numbers
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from loguru import logger

from core.scoring.judges import UNPARSEABLE, Judge, JudgeItem, Verdict
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
    """0.7 when no tool call failed; an error recorded on both the call and its result counts once.

    A reply cut by a token limit is a truncation, not a failed call: the agent records no tool
    error on it (core.rollout.agent), so a call cut inside <tool_call> tags and the same call cut
    as bare JSON score the same. Detail: {"tool_errors": [kind, ...]} in order of appearance.
    """
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


REWARD_FAILURE = "reward_failure"
"""Key of a reward's detail saying that the user reward failed, and how: "raised" (the function
raised; "error" holds "Type: message" and "at" the file:line it raised from) or "unusable_value"
(it returned something that is not a finite real number; "error" says what, "returned" holds its
repr and "detail" the detail it gave, if any). The value stored is then 0.0. Reserved: a user
reward's own detail may not use it."""

_REPR_CHARS = 200


class UnusableReward(ValueError):
    """A user reward returned something that is not a reward; the message is one line."""


def as_reward_value(value: object) -> float:
    """`value` as a float if it is one finite real number; UnusableReward saying why otherwise.

    Accepted: int, float, bool (True is 1.0: a predicate is the commonest user reward, and Python
    counts bool as an integer), fractions, decimals, numpy scalars of bool/int/float dtype, 0-d
    arrays of those (numpy, torch, or anything with `ndim == 0` and `__float__`). Refused, so that
    a broken reward is never trained on as if it meant something: NaN and ±inf, complex numbers,
    strings and bytes, None, arrays with any dimension (even one element: which axis was meant is
    a guess), and anything whose float() fails or overflows.
    """
    shown = _short_repr(value)
    kind = type(value).__name__
    if value is None:
        raise UnusableReward("returned None, expected a number or (number, dict)")
    if isinstance(value, (str, bytes, bytearray, Mapping, list, tuple, set)):
        raise UnusableReward(f"returned {kind} {shown}, expected a number or (number, dict)")
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        raise UnusableReward(f"returned {kind} {shown}: not a real number")
    ndim = getattr(value, "ndim", 0)
    if ndim != 0:
        raise UnusableReward(f"returned {kind} of shape {tuple(getattr(value, 'shape', ()))}, "
                             f"expected a single number")
    dtype_kind = getattr(getattr(value, "dtype", None), "kind", None)
    if dtype_kind is not None and dtype_kind not in "biuf":
        what = "not a real number" if dtype_kind == "c" else "expected a number"
        raise UnusableReward(f"returned {kind} of dtype {value.dtype.str}: {what}")  # type: ignore[attr-defined]
    if not hasattr(type(value), "__float__"):
        raise UnusableReward(f"returned {kind} {shown}, expected a number or (number, dict)")
    try:
        out = float(value)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001  (any float() failure means: not usable)
        raise UnusableReward(f"returned {kind} {shown}: float() failed with "
                             f"{exc.__class__.__name__}: {_one_line(str(exc))}") from None
    if not math.isfinite(out):
        raise UnusableReward(f"returned {kind} {shown}: not a finite number")
    return out


def is_failure(detail: object) -> bool:
    """Whether a stored reward detail records a failed user reward (REWARD_FAILURE)."""
    return isinstance(detail, dict) and isinstance(detail.get(REWARD_FAILURE), str)


@dataclass(frozen=True)
class UserReward:
    """A reward function loaded from user code."""

    name: str
    spec: str
    fn: UserRewardFn

    def __call__(self, item: RewardInput) -> tuple[float, dict[str, Any]]:
        """The reward's value and detail. Raises UnusableReward for a return value that is not a
        number or (number, dict|None) (as_reward_value), and whatever the function itself raises."""
        out = self.fn([_message_dict(m) for m in item.messages], _question_dict(item.question))
        detail: dict[str, Any] = {}
        if isinstance(out, tuple):
            if len(out) != 2 or not (out[1] is None or isinstance(out[1], Mapping)):
                raise UnusableReward(f"returned a tuple that is not (number, dict): {_short_repr(out)}")
            out, given = out
            detail = dict(given or {})
            if REWARD_FAILURE in detail:
                raise UnusableReward(f"its detail uses the reserved key {REWARD_FAILURE!r}")
        try:
            return as_reward_value(out), detail
        except UnusableReward as exc:
            exc.detail = detail  # type: ignore[attr-defined]  (kept with the failure, for the user)
            raise

    def score(self, item: RewardInput) -> tuple[float, dict[str, Any]]:
        """Like calling it, but never raises: a failure is 0.0 with a REWARD_FAILURE detail (and a
        warning in the log)."""
        try:
            return self(item)
        except UnusableReward as exc:
            detail: dict[str, Any] = {REWARD_FAILURE: "unusable_value", "error": str(exc)}
            if getattr(exc, "detail", None):
                detail["detail"] = exc.detail  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001  (user code: any failure scores 0.0, not the run)
            detail = {REWARD_FAILURE: "raised", "error": f"{exc.__class__.__name__}: {_one_line(str(exc))}"}
            where = _raised_at(exc)
            if where:
                detail["at"] = where
        logger.warning("reward {} failed on question {}: {}", self.spec, item.question.id, detail["error"])
        return 0.0, detail


def load_reward_function(spec: str) -> UserReward:
    """Import `fn` from "package.module:function" or "path/to/file.py:function"; ValueError naming
    the spec if that fails.

    A module name is looked up on sys.path and then in the working directory: `rl-inspect` is a
    console script, so unlike `python -m` the working directory is not on sys.path, and a reward
    file next to the user's data was not found. The directory is appended (never ahead of the
    installed packages) only when the module is not found otherwise. A file path (ending in .py,
    relative to the working directory or absolute) is loaded as its own module, named after the
    file and its path so two files of the same name do not clash.
    """
    module_name, sep, attr = spec.rpartition(":") if spec.count(":") > 1 else spec.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        raise ValueError(f"reward {spec!r}: expected 'package.module:function' or 'file.py:function'")
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        module = _import_file(spec, Path(module_name))
    else:
        module = _import_module(spec, module_name)
    fn: Any = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"reward {spec!r}: module {module_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):  # ValueError, as every other failure of this loader
        raise ValueError(f"reward {spec!r}: {attr!r} is a {type(fn).__name__}, not a function")  # noqa: TRY004
    try:  # refused now, not after the model ran: it is called as fn(messages, question)
        signature = inspect.signature(fn)
        signature.bind([], {})
    except TypeError as exc:
        raise ValueError(f"reward {spec!r}: {attr}{signature} cannot be called as fn(messages, question) "
                         f"({exc})") from None
    except ValueError:  # no signature to read (some builtins): left to the call
        pass
    return UserReward(name=getattr(fn, "__name__", attr.split(".")[-1]), spec=spec, fn=fn)


def _import_module(spec: str, module_name: str) -> Any:
    try:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            cwd = os.getcwd()
            top = module_name.split(".")[0]
            if exc.name != top or cwd in sys.path or "" in sys.path or "." in sys.path:
                raise
            if not (Path(cwd) / top).is_dir() and not (Path(cwd) / f"{top}.py").is_file():
                raise
            sys.path.append(cwd)
            return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"reward {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    except Exception as exc:
        raise ValueError(f"reward {spec!r}: importing {module_name!r} failed: "
                         f"{exc.__class__.__name__}: {_one_line(str(exc))}") from exc


def _import_file(spec: str, path: Path) -> Any:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"reward {spec!r}: no such file {str(path)!r}")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"rl_inspect_reward_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(f"reward {spec!r}: cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # before running it, as importlib does (dataclasses, pickling need it)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ValueError(f"reward {spec!r}: importing {str(path)!r} failed: "
                         f"{exc.__class__.__name__}: {_one_line(str(exc))}") from exc
    return module


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short_repr(value: object) -> str:
    try:
        text = _one_line(repr(value))
    except Exception:  # noqa: BLE001  (a broken __repr__ in user code)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _REPR_CHARS else text[:_REPR_CHARS - 1] + "…"


def _raised_at(exc: BaseException) -> str | None:
    """"file.py:LINE in function" of the innermost frame of the exception, or None."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def reward_failures(conn: sqlite3.Connection, run_id: int) -> dict[str, dict[str, Any]]:
    """The rewards of run `run_id` that failed at least once (REWARD_FAILURE in their detail).

    Returns {name: {"failed": trajectories where it failed, "scored": trajectories it was
    scored on, "error": the error of its first failure (lowest trajectory id), "errors": how
    many different errors}}, names in order. Details that are not valid JSON count as scored,
    not failed. Runs stored before failures were marked show none.
    """
    failed_expr = (f"CASE WHEN r.detail LIKE '%\"{REWARD_FAILURE}\"%' AND json_valid(r.detail)"
                   f" THEN json_extract(r.detail, '$.{REWARD_FAILURE}') END")
    error_expr = f"CASE WHEN ({failed_expr}) IS NOT NULL THEN json_extract(r.detail, '$.error') END"
    rows = conn.execute(
        f"SELECT r.name, COUNT(*), COUNT({failed_expr}), COUNT(DISTINCT {error_expr}),"
        f" MIN(CASE WHEN ({failed_expr}) IS NOT NULL THEN r.trajectory_id END)"
        " FROM rewards r JOIN trajectories t ON t.id = r.trajectory_id WHERE t.run_id = ?"
        f" GROUP BY r.name HAVING COUNT({failed_expr}) > 0 ORDER BY r.name", (run_id,)).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for name, scored, failed, errors, first in rows:
        error = conn.execute(f"SELECT {error_expr} FROM rewards r WHERE r.trajectory_id = ? AND r.name = ?",
                             (first, name)).fetchone()
        out[name] = {"failed": failed, "scored": scored, "error": str(error[0]) if error and error[0] else "",
                     "errors": errors}
    return out


def reward_failure_lines(failures: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per failed reward of reward_failures: "reward f failed on 3 of 24 trajectories:
    ValueError: x" (and how many other errors there were)."""
    lines = []
    for name, f in failures.items():
        others = int(f.get("errors") or 1) - 1
        more = f" (and {others} other error{'s' if others > 1 else ''})" if others > 0 else ""
        lines.append(f"reward {name} failed on {f['failed']} of {f['scored']} trajectories: {f['error']}{more}")
    return lines


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


def load_user_rewards(extra: Sequence[str], weights: Mapping[str, float] | None = None) -> list[UserReward]:
    """The user rewards named by `extra` (load_reward_function specs), checked against each other,
    the built-in names and the names in `weights`; ValueError on the first problem. Cheap (imports
    only), so a command can call it before it loads a model."""
    user = [load_reward_function(spec) for spec in extra]
    names: list[str] = list(BUILTIN_REWARDS)
    for reward in user:
        if reward.name in names:
            raise ValueError(f"reward {reward.spec!r}: the name {reward.name!r} is already taken")
        names.append(reward.name)
    unknown = [name for name in (weights or {}) if name not in names]
    if unknown:
        raise ValueError(f"unknown reward {unknown[0]!r} in weights (rewards: {', '.join(names)})")
    return user


class RewardSuite:
    """The rewards of a run, their weights, and the judge behind correctness."""

    def __init__(self, judge: Judge, weights: dict[str, float] | None = None, extra: Sequence[str] = ()):
        self.judge = judge
        self.user = load_user_rewards(extra, weights)
        self.names: list[str] = [*BUILTIN_REWARDS, *(r.name for r in self.user)]
        self.weights = dict(weights or {})

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
        if verdict.correct is None:  # no verdict: scored 0.0, stored as not judged (judges.verdict_correct)
            judged.setdefault("verdict", UNPARSEABLE)
        out = [self._result("correctness", 1.0 if verdict.correct else 0.0, judged),
               self._result("formatting", *formatting(item.messages)),
               self._result("retry_behavior", *retry_behavior(item.messages))]
        hit = chunk_hit(item.question, item.messages)
        if hit is not None:
            out.append(self._result("chunk_hit", *hit))
        for reward in self.user:
            out.append(self._result(reward.name, *reward.score(item)))
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
