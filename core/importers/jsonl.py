"""The documented JSONL format: what `rl-inspect export --format jsonl` writes, and what anyone can
write from their own trainer in a few lines.

One JSON object per line, one line per trajectory (lines end at "\\n"; blank lines are skipped).
The record shape is core/store/export.py's (rl-inspect schema version 4); every field but
`messages` is optional.

Required
    messages   [{role, content}, ...] in chat order. `role` a string; `content` a string, null
               (read as "") or a list of OpenAI content parts (the `text` of text parts, joined).
Optional, per message
    turn       int: 0 for the opening prompt, k for the k-th assistant message and the tool
               results and user messages after it (default: counted that way).
    tool_call  {name, arguments, raw}: arguments as JSON text (the export) or an object.
    tool_calls OpenAI style [{function: {name, arguments}}]: the first becomes the tool call.
    tool_error {kind, message}.
    token_span [start, end): the message's tokens in `tokens.ids`.
Optional, per trajectory
    tokens     {ids, mask, logprobs, prompt_len, trainer_logprobs}: ids int32, mask 0/1, both the
               same length; logprobs (nats) the same length with null where nothing was sampled
               (default: all null); prompt_len default: the count of leading mask zeros;
               trainer_logprobs like logprobs. Absent or null: the trajectory is stored without
               tokens (text only; `rl-inspect lint` counts it "without tokens").
    rewards    [{name, value, weight, detail}] (detail: JSON text or an object; weight default 1),
               or {name: value}. A reward whose value is null is left out (the store needs a number).
    reward     total reward (default: the sum of value x weight over `rewards`; with `reward` and
               no `rewards`, one reward named "reward" is stored so the reward panel shows it).
    correct    true/false/1/0/null.   advantage  number.   step, group_id, sample, qidx  ints.
    question   (default: the first user message), gold_answer (or `answer`), final_answer
               (default: the last assistant message), status (done | interrupted | failed;
               default done), finish_reason, finish_detail, drift_at, drift_kind, token_exact,
               turns, tool_calls, tool_errors, started_at, finished_at (Unix seconds).
    run_name, run_kind (eval | train), model: one run is made per distinct triple. Defaults: the
               --name given, else the file's name without extension; "train" when the record has a
               step, else "eval"; "unknown".
Fields not listed are ignored. Numbers that are NaN or infinite read as null.

Re-importing: each run made from a file stores {"imported_from": path, "source_sha256": sha256
of the file's bytes, "format": "jsonl"} as its configuration; a file whose sha256 is already in
the database (same content, any path) is skipped and the existing runs are named.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.importers.common import (Line, RunWriter, absolute, already_imported, as_float, finish, get_bool,
                                   get_float, get_int, get_str, new_run, read_records, sha256_file)
from core.rollout.tokens import TokenSequence
from core.store.bulk import FinishedTrajectory
from core.store.store import Store, TrajectoryOutcome

FORMAT = "jsonl"
STATUSES = ("done", "interrupted", "failed")
KINDS = ("eval", "train")


@dataclass
class SourceResult:
    """What importing one file (or folder) did."""

    source: str
    runs: list[tuple[int, str, int]] = field(default_factory=list)
    """(run id, run name, trajectories added) of each run written."""
    skipped: str | None = None
    """Why nothing was written (already imported), or None."""
    notes: list[str] = field(default_factory=list)
    """Lines worth telling the user (files skipped, conventions applied)."""


def looks_like(record: dict[str, Any]) -> bool:
    """True when a first record is of this format: it has a `messages` list."""
    return isinstance(record.get("messages"), list)


# ------------------------------------------------------------------------------------ messages
def _content(value: Any, line: Line, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and isinstance(part.get("type"), str):
                parts.append(f"[{part['type']}]")
            else:
                raise line.error("a content part must be a string or an object with text or type", where)
        return "".join(parts)
    raise line.error(f"must be a string, a list of content parts or null, not {type(value).__name__}", where)


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value  # a model's broken JSON stays as the text it wrote
    return value


def _tool_call(m: dict, line: Line, where: str) -> ToolCall | None:
    call = m.get("tool_call")
    if call is not None:
        if not isinstance(call, dict):
            raise line.error("must be an object {name, arguments, raw} or null", f"{where}.tool_call")
        name = get_str(call, "name", line, "")
        raw = get_str(call, "raw", line, "")
        return ToolCall(name, _arguments(call.get("arguments")), raw)
    calls = m.get("tool_calls")
    if calls is None or calls == []:
        return None
    if not isinstance(calls, list) or not isinstance(calls[0], dict):
        raise line.error("must be a list of OpenAI tool calls", f"{where}.tool_calls")
    fn = calls[0].get("function", calls[0])
    if not isinstance(fn, dict):
        raise line.error("must be an object {name, arguments}", f"{where}.tool_calls[0].function")
    args = fn.get("arguments")
    return ToolCall(get_str(fn, "name", line, ""), _arguments(args), args if isinstance(args, str) else "")


def parse_messages(value: Any, line: Line) -> list[Message]:
    """The `messages` of a record as Messages (module docstring). InputError naming the field
    (messages[i].role, ...) when one is malformed."""
    if not isinstance(value, list):
        raise line.error("must be a list of {role, content} objects", "messages")
    out: list[Message] = []
    turn = 0
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise line.error("must be an object {role, content}", where)
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise line.error("missing or not a string", f"{where}.role")
        content = _content(m.get("content"), line, f"{where}.content")
        if role == "assistant":
            turn += 1
        given = get_int(m, "turn", line)
        if given is not None:
            if given < 0:
                raise line.error("must be 0 or more", f"{where}.turn")
            turn = given
        error = m.get("tool_error")
        if error is not None:
            if not isinstance(error, dict):
                raise line.error("must be an object {kind, message} or null", f"{where}.tool_error")
            error = ToolError(get_str(error, "kind", line), get_str(error, "message", line, ""))
        span = m.get("token_span")
        start = end = None
        if span is not None:
            if (not isinstance(span, list) or len(span) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in span)
                    or span[0] > span[1]):
                raise line.error("must be [start, end] with 0 <= start <= end, or null", f"{where}.token_span")
            start, end = span
        out.append(Message(role, content, turn, tool_call=_tool_call(m, line, where), tool_error=error,
                           token_start=start, token_end=end))
    return out


# ------------------------------------------------------------------------------------ tokens
def _logprobs(value: Any, n: int, line: Line, where: str) -> list[float]:
    if value is None:
        return [float("nan")] * n
    if not isinstance(value, list):
        raise line.error("must be a list of numbers (null where none)", where)
    if len(value) != n:
        raise line.error(f"has {len(value)} values but ids has {n}", where)
    nan = float("nan")
    try:
        return [nan if v is None else as_float(v, line, where) for v in value]
    except OverflowError:
        raise line.error("a value is out of range", where) from None


def parse_tokens(value: Any, line: Line) -> tuple[TokenSequence | None, list[float] | None]:
    """`tokens` of a record as (TokenSequence, trainer logprobs or None); (None, None) when
    absent. InputError for lengths that differ, ids outside int32, a mask value not 0/1, a
    prompt_len beyond the ids."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise line.error("must be an object {ids, mask, logprobs, prompt_len} or null", "tokens")
    ids, mask = value.get("ids"), value.get("mask")
    if not isinstance(ids, list):
        raise line.error("must be a list of token ids", "tokens.ids")
    if not isinstance(mask, list):
        raise line.error("must be a list of 0/1, one per id", "tokens.mask")
    if len(mask) != len(ids):
        raise line.error(f"has {len(mask)} values but ids has {len(ids)}", "tokens.mask")
    try:
        if any(isinstance(x, bool) for x in ids):
            raise TypeError
        array("i", ids)
    except (TypeError, OverflowError):
        raise line.error("every id must be an integer in the int32 range", "tokens.ids") from None
    try:
        if any(isinstance(x, bool) for x in mask):
            raise TypeError
        if bytes(mask).translate(None, b"\x00\x01"):
            raise ValueError
    except (TypeError, ValueError):
        raise line.error("every value must be 0 or 1", "tokens.mask") from None
    logprobs = _logprobs(value.get("logprobs"), len(ids), line, "tokens.logprobs")
    trainer = value.get("trainer_logprobs")
    trainer = None if trainer is None else _logprobs(trainer, len(ids), line, "tokens.trainer_logprobs")
    prompt_len = get_int(value, "prompt_len", line)
    if prompt_len is None:
        prompt_len = next((i for i, b in enumerate(mask) if b), len(mask))
    if not 0 <= prompt_len <= len(ids):
        raise line.error(f"must be between 0 and the {len(ids)} ids", "tokens.prompt_len")
    return TokenSequence(ids=list(ids), mask=list(mask), logprobs=logprobs, prompt_len=prompt_len), trainer


# ------------------------------------------------------------------------------------ rewards
def parse_rewards(value: Any, line: Line) -> list[RewardResult] | None:
    """`rewards` as RewardResults: a list of {name, value, weight, detail} or a {name: value}
    object; None when absent. Rewards whose value is null (or NaN) are left out."""
    if value is None:
        return None
    out: list[RewardResult] = []
    if isinstance(value, dict):
        for name, v in value.items():
            if v is not None:
                f = as_float(v, line, f"rewards.{name}")
                if f == f:
                    out.append(RewardResult(name, f))
        return out
    if not isinstance(value, list):
        raise line.error("must be a list of {name, value, weight, detail} or an object {name: value}", "rewards")
    seen = set()
    for i, r in enumerate(value):
        where = f"rewards[{i}]"
        if not isinstance(r, dict):
            raise line.error("must be an object {name, value, weight, detail}", where)
        name = r.get("name")
        if not isinstance(name, str):
            raise line.error("missing or not a string", f"{where}.name")
        if name in seen:
            raise line.error(f"reward {name!r} given twice", f"{where}.name")
        seen.add(name)
        v = get_float(r, "value", line)
        if v is None:
            continue
        weight = get_float(r, "weight", line, 1.0)
        detail = r.get("detail")
        if isinstance(detail, str):
            try:
                detail = json.loads(detail) if detail else {}
            except (json.JSONDecodeError, RecursionError):
                detail = {"text": detail}
        elif detail is None:
            detail = {}
        out.append(RewardResult(name, v, weight, detail if isinstance(detail, dict) else {"value": detail}))
    return out


# ------------------------------------------------------------------------------------ records
@dataclass
class Parsed:
    """One record read: its run key, the trajectory, and what bulk_write does not take."""

    run: tuple[str, str, str]
    item: FinishedTrajectory
    qidx: int | None
    trainer_logprobs: list[float] | None
    token_exact: bool | None


def parse_record(rec: dict[str, Any], line: Line, *, default_name: str, name: str | None = None) -> Parsed:
    """One record (module docstring) as a trajectory ready for Store.bulk_write; `name` overrides
    run_name. InputError naming the file, line and field for anything malformed."""
    if "messages" not in rec:
        raise line.error("missing (a list of {role, content} objects is required)", "messages")
    messages = parse_messages(rec["messages"], line)
    tokens, trainer = parse_tokens(rec.get("tokens"), line)
    rewards = parse_rewards(rec.get("rewards"), line)
    reward = get_float(rec, "reward", line)
    if rewards is None:
        rewards = [RewardResult("reward", reward)] if reward is not None else []
    elif reward is None and rewards:
        reward = sum(r.value * r.weight for r in rewards)
    step = get_int(rec, "step", line)
    kind = get_str(rec, "run_kind", line, "train" if step is not None else "eval")
    if kind not in KINDS:
        raise line.error(f"{kind!r} is not one of {', '.join(KINDS)}", "run_kind")
    run = (name or get_str(rec, "run_name", line, default_name), kind, get_str(rec, "model", line, "unknown"))
    status = get_str(rec, "status", line, "done")
    status = "interrupted" if status == "running" else status  # the run it lands in has ended
    if status not in STATUSES:
        raise line.error(f"{status!r} is not one of {', '.join(STATUSES)}", "status")
    first_user = next((m.content for m in messages if m.role == "user"), "")
    last_assistant = next((m.content for m in reversed(messages) if m.role == "assistant"), "")
    question = get_str(rec, "question", line, first_user)
    gold = get_str(rec, "gold_answer", line, None)
    gold = get_str(rec, "answer", line, "") if gold is None else gold
    turns = get_int(rec, "turns", line, max((m.turn for m in messages), default=0))
    tool_calls = get_int(rec, "tool_calls", line, sum(m.tool_call is not None for m in messages))
    tool_errors = get_int(rec, "tool_errors", line,
                          sum(m.tool_error is not None for m in messages if m.role == "assistant"))
    for key, v in (("turns", turns), ("tool_calls", tool_calls), ("tool_errors", tool_errors)):
        if v < 0:
            raise line.error("must be 0 or more", key)
    exact = get_bool(rec, "token_exact", line)
    outcome = TrajectoryOutcome(
        status=status, finish_reason=get_str(rec, "finish_reason", line, None),
        final_answer=get_str(rec, "final_answer", line, None) if "final_answer" in rec else last_assistant, turns=turns, tool_calls=tool_calls,
        tool_errors=tool_errors, tokens=tokens, rewards=rewards, reward=reward, correct=get_bool(rec, "correct", line),
        advantage=get_float(rec, "advantage", line), drift_at=get_int(rec, "drift_at", line),
        drift_kind=get_str(rec, "drift_kind", line, None), finish_detail=get_str(rec, "finish_detail", line, None))
    item = FinishedTrajectory(
        qidx=0, question=Question("", question, gold), messages=messages, outcome=outcome,
        sample=get_int(rec, "sample", line, 0), step=step, group_id=get_int(rec, "group_id", line),
        started_at=get_float(rec, "started_at", line), finished_at=get_float(rec, "finished_at", line))
    qidx = get_int(rec, "qidx", line)
    if qidx is not None and qidx < 0:
        raise line.error("must be 0 or more", "qidx")
    return Parsed(run, item, qidx, trainer, exact)


def import_jsonl(store: Store, path: str | Path, *, name: str | None = None) -> SourceResult:
    """Import one JSONL file (module docstring) into `store`, streaming, in one transaction.

    Returns what was written, or `skipped` when a file with the same sha256 was imported before.
    InputError (file, line, field) for a malformed record, or a file without records; nothing is
    written then."""
    path = Path(path)
    sha = sha256_file(path)
    result = SourceResult(str(path))
    result.skipped = already_imported(store, sha)
    if result.skipped:
        return result
    config = {"imported_from": absolute(path), "source_sha256": sha, "format": FORMAT}
    writers: dict[tuple[str, str, str], RunWriter] = {}
    with store.transaction():
        for line, rec in read_records(path):
            parsed = parse_record(rec, line, default_name=path.stem, name=name)
            writer = writers.get(parsed.run)
            if writer is None:
                run_name, kind, model = parsed.run
                writer = writers[parsed.run] = RunWriter(store, new_run(store, kind, run_name, model, config))
            q = parsed.item.question
            parsed.item.qidx = writer.qidx_for(q.question, q.answer, parsed.qidx)
            writer.add(parsed.item, parsed.trainer_logprobs, parsed.token_exact)
        if not writers:
            from core.data.records import InputError

            raise InputError(str(path), "no records (one JSON object per line expected)")
        for (run_name, _, _), writer in writers.items():
            writer.flush()
            finish(store, writer.run_id, {"imported_from": absolute(path), "format": FORMAT})
            result.runs.append((writer.run_id, run_name, writer.written))
    return result
