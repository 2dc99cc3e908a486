"""verifiers v1 episodes: the `traces.jsonl` of verifiers >= 0.4's `eval` (one eval run), and the
parsing of each episode that prime-rl's rollouts/ share (core.importers.prime_rl).

The writers (read in PrimeIntellect-ai/verifiers at commit a60a606e, `git describe` v0.3.0-62,
August 2026, the v1 code that release 0.4.0 ships as its CLI; and PrimeIntellect-ai/prime-rl at
commit 559b4477, v0.8.1.dev67; the test fixtures were written by release 0.4.0 from PyPI, whose
nodes also carry `tools`, `semantic_parents` and `is_content`, and traces `is_timeout`, ignored here):

    verifiers eval   `{output_dir}/{run dir}/traces.jsonl` beside `configs/eval.json`
                     (verifiers/v1/cli/output.py `write_episode`: the pydantic dump of one `Episode`
                     per line, `exclude_none=True`, appended as episodes finish; a resumed run appends
                     to the same file). The episode's `run` is {type: "eval", id, name}.
    prime-rl         `{output_dir}/rollouts/step_{N}/{kind}/{subset}/traces.jsonl`
                     (src/prime_rl/monitors/file.py `log_episodes`: `orjson.dumps(episode.to_record())`,
                     the same dump without the tensor fields). kind "train" | "eval"; subset "all"
                     (every episode, appended one at a time as each completes, before advantages are
                     assigned) | "effective" (the batch the trainer trained on, written when the step is
                     finalized, with advantages). The episode's `run` is {type: "train", id, name,
                     work: {type, step, policy}} and `group` is {id}, the GRPO group.

An Episode (verifiers/v1/episode.py) is {id, env: {id, name}, task: TraceTask, group, run, ok, errors:
[Error], traces: [Trace]}. A Trace (verifiers/v1/trace.py, schema `version` 1, TRACE_VERSION) is
{version, id, verifiers: {version, commit}, task: {type, data: {idx, prompt, ... task fields such as
answer}, key, hash}, agent: {config: {model, sampling, ...}, name, trainable}, tools, nodes:
[MessageNode], calls: [ModelCall], rewards: {name: {score, weight} | null}, metrics: {name: number |
null}, info, is_completed, ok, stop_condition, errors, timing: {start, boot, setup, agent, finalize,
scoring: {start, end}}}. The conversation is a graph (verifiers/v1/graph.py): each MessageNode is
{parent (index of an earlier node, null for a root), message (system / user / assistant {content,
reasoning_content, tool_calls: [{id, name, arguments (JSON text)}]} / tool {tool_call_id, content,
name}), sampled, token_ids (the tokens this message adds to the sequence: its template scaffold and
its own tokens), mask (per token, true = model-sampled), logprobs and advantages (one per sampled
token), ...}. A branch is a root-to-leaf path (`Trace.branches`; a leaf is a node no node names as
parent); verifiers trains one sample per branch, so a trace with compaction or subagents has several.

How episodes become trajectories: one trajectory per branch of every trace of every episode, in
file order (a plain single-agent rollout is one trace with one branch: one trajectory). An episode
without traces (it failed before one was made) is one failed trajectory holding the task's prompt.

    messages     the branch's nodes' messages in order. Content: a string as is, null as "", content
                 parts by core.importers.jsonl's rule (text joined, others as "[type]"). turn: 0
                 before the first assistant message, k for the k-th assistant message and those after.
                 A node's token span in the branch's sequence is the message's token_start/token_end
                 (an assistant node's from its first sampled token: the generation prompt before
                 it is the template's, not the model's).
    tool calls   an assistant message's first call becomes its ToolCall (arguments parsed from their
                 JSON text, raw = that text); `tool_calls` counts every call. No tool errors are stored
                 (verifiers records none).
    question     the branch's first user message (else the task's prompt); gold answer = the task
                 data's `answer` when it has one (not a string: as JSON), else "".
    qidx, group  qidx = task.data.idx (when another question already holds that number, the next free
                 one; none: one per distinct question). group = the episode's `group.id`, else the
                 task (its key, else hash, else its data), within a step for prime-rl; numbered in order
                 of first appearance, `sample` = the trajectory's index in its group.
    rewards      each named reward {score, weight} a reward of that weight (value = score); the
                 trajectory's reward = the sum of score x weight (Trace.reward), None when every reward
                 is null or there are none. Each metric a reward of weight 0 (shown, not summed); a
                 metric named like a reward is stored as "name#2". Null and non-finite values are left
                 out. The first reward's detail keeps the episode, trace and task ids, the agent, the
                 branch index (of how many) and the trace's `info`.
    correct      True when the trajectory's reward is exactly 1, False when exactly 0, None otherwise
                 (partial credit, no reward): v1 traces carry no pass threshold, and this is the rule
                 of prime-rl's own solve rates (orchestrator/metrics.py solve_rates at 559b4477).
    status       "failed" when the trace (or, without traces, the episode) has errors or is not ok,
                 finish_detail = the last error's message (first line); else "done". finish_reason =
                 stop_condition.
    times        timing.start as started_at, the latest span end as finished_at (Unix seconds).
    tokens       when the branch's nodes carry token_ids: ids = the nodes' token_ids concatenated
                 (int32), mask = their mask (1 = sampled, trainable), logprobs = each node's logprobs on
                 its sampled positions (nats) and NaN elsewhere (a node with sampled tokens but no
                 logprobs: NaN), prompt_len = the position of the first sampled token. Text only
                 (tokens None) when no node has token_ids (an eval against a plain OpenAI endpoint).
    advantage    the mean of the branch's assigned per-token advantages (prime-rl's GRPO assigns the
                 same value to every sampled token of a trace, so that value), None when unassigned.

Runs: a traces.jsonl (or a folder holding one, as `eval` writes) is one eval run named `--name`, else
the episodes' run name, else env.id, else the folder's name; model = the first trace's
agent.config.model, else a call's model, else "unknown". A prime-rl output folder (or its rollouts/
folder) is one train run, its held-out evals eval runs: core.importers.prime_rl, which parses each
episode here (parse_episode) and says what else of the folder it reads.

Not carried over: reasoning_content, provider_state, every tool call of a message but the first
(counted), tools, calls (usage, per-call timing and finish reasons), request/response rewrites,
extra_usage, is_content, semantic_parents, node timestamps, reference_logprobs, loss_weights,
multimodal data and routed experts (prime-rl never writes them), per-token advantages (only their mean), policy spans, the error
tracebacks, and the eval's configs/eval.json beyond what its config keeps (see import_traces).

Detection (core.importers.detect): a first record with a `traces` list and a `task` or `env` object
and no `prompt`/`messages`; a folder holding traces.jsonl (a prime-rl folder: core.importers.prime_rl).

Errors: a line that is not one JSON object, a trace of another schema version (not 1), a node whose
parent is not an earlier node, a missing or mistyped message, role, content, tool call, reward, metric,
token list (ids outside int32, a mask not as long as the ids, logprobs not one per sampled token)
raise InputError naming the file, line and field (`traces[i].nodes[j].mask`); nothing is written then
(one transaction). A truncated last line of an eval's traces.jsonl is not JSON, so it is such an
error.

Re-importing: an eval file's run has {"imported_from", "source_sha256": sha256 of traces.jsonl,
"source_bytes", "format": "verifiers"}: the same bytes are skipped (core.importers.common.already_imported),
and a file at the same path that begins with the bytes a run was imported from (an eval still
running, or resumed, appends) replaces that run in the same transaction (common.grown_from).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from core.data.records import InputError, Message, Question, RewardResult
from core.importers.common import (Line, RunWriter, absolute, already_imported, as_float, finish, first_record,
                                   grown_from, new_run, prefix_sha256, read_records)
from core.importers.jsonl import SourceResult, _content
from core.importers.verifiers import _int_list, _json_safe, _tool_call, unique_name
from core.rollout.tokens import TokenSequence
from core.store.bulk import FinishedTrajectory
from core.store.store import Store, TrajectoryOutcome

FORMAT = "verifiers"
TRACES = "traces.jsonl"
TRACE_VERSIONS = (1,)
"""Trace schema versions read (verifiers/v1/trace.py TRACE_VERSION)."""
_SPANS = ("boot", "setup", "agent", "finalize", "scoring")


# ------------------------------------------------------------------------------------ detection
def looks_like(record: dict[str, Any]) -> bool:
    """True when a first record is a v1 Episode: a `traces` list, a `task` or `env` object, and no
    `prompt` or `messages`. Never raises."""
    return (isinstance(record.get("traces"), list) and "prompt" not in record and "messages" not in record
            and (isinstance(record.get("task"), dict) or isinstance(record.get("env"), dict)))


def is_traces_folder(path: Path) -> bool:
    """True when `path` is a folder holding traces.jsonl (verifiers eval's run folder). Never raises."""
    try:
        return path.is_dir() and (path / TRACES).is_file()
    except OSError:
        return False


def is_traces_source(path: Path) -> bool:
    """True when `path` is read by this module: a prime-rl folder, a folder holding traces.jsonl, or
    a file whose first record looks_like an episode. Never raises."""
    from core.importers.prime_rl import rollouts_folder

    path = Path(path)
    if path.is_dir():
        return rollouts_folder(path) is not None or is_traces_folder(path)
    try:
        record = first_record(path)
    except InputError:
        return False
    return record is not None and looks_like(record)


# ------------------------------------------------------------------------------------ fields
def _obj(value: Any, line: Line, where: str, what: str, *, optional: bool = True) -> dict[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise line.error(f"must be an object ({what})", where)
    return value


def _list(value: Any, line: Line, where: str, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise line.error(f"must be a list ({what})", where)
    return value


def _str(value: Any, line: Line, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise line.error("must be a string", where)
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _mask(value: Any, n: int, line: Line, where: str) -> list[int]:
    if not isinstance(value, list):
        raise line.error("must be a list of booleans", where)
    if len(value) != n:
        raise line.error(f"has {len(value)} values but token_ids has {n}", where)
    if any(not isinstance(v, (bool, int)) or v not in (0, 1) for v in value):
        raise line.error("every value must be true or false", where)
    return [int(v) for v in value]


def _per_sampled(value: Any, n: int, line: Line, where: str) -> list[float] | None:
    """A node's per-sampled-token list (logprobs, advantages): None when absent or empty."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise line.error("must be a list of numbers", where)
    if not value:
        return None
    if len(value) != n:
        raise line.error(f"has {len(value)} values but the node's mask has {n} sampled tokens", where)
    nan = float("nan")
    return [nan if v is None else as_float(v, line, where) for v in value]


# ------------------------------------------------------------------------------------ traces
@dataclass
class Node:
    """One MessageNode read: its message, tokens (empty when none) and per-sampled-token values."""

    parent: int | None
    message: Message
    calls: int
    ids: list[int]
    mask: list[int]
    logprobs: list[float] | None
    advantages: list[float] | None


def _message(value: Any, line: Line, where: str) -> tuple[Message, int]:
    m = _obj(value, line, where, "a message {role, content}", optional=False)
    role = m.get("role")
    if not isinstance(role, str) or not role:
        raise line.error("missing or not a string", f"{where}.role")
    msg = Message(role, _content(m.get("content"), line, f"{where}.content"), 0)
    calls = _list(m.get("tool_calls"), line, f"{where}.tool_calls", "of {id, name, arguments}")
    parsed = [_tool_call(tc, line, f"{where}.tool_calls[{j}]") for j, tc in enumerate(calls)]
    if parsed:
        msg.tool_call = parsed[0]
    return msg, len(parsed)


def _nodes(trace: dict[str, Any], line: Line, where: str) -> list[Node]:
    out = []
    for j, value in enumerate(_list(trace.get("nodes"), line, f"{where}.nodes", "of MessageNodes")):
        w = f"{where}.nodes[{j}]"
        node = _obj(value, line, w, "a MessageNode", optional=False)
        parent = node.get("parent")
        if parent is not None and (isinstance(parent, bool) or not isinstance(parent, int) or not 0 <= parent < j):
            raise line.error("must be null or the index of an earlier node", f"{w}.parent")
        message, calls = _message(node.get("message"), line, f"{w}.message")
        ids = _int_list(node.get("token_ids") or [], line, f"{w}.token_ids")
        mask = _mask(node.get("mask") if ids or node.get("mask") else [], len(ids), line, f"{w}.mask")
        sampled = sum(mask)
        out.append(Node(parent, message, calls, ids, mask,
                        _per_sampled(node.get("logprobs"), sampled, line, f"{w}.logprobs"),
                        _per_sampled(node.get("advantages"), sampled, line, f"{w}.advantages")))
    return out


def branches(nodes: list[Node]) -> list[list[int]]:
    """Node indices of each root-to-leaf path, leaves in node order (verifiers' Trace.branches)."""
    has_child = {n.parent for n in nodes if n.parent is not None}
    out = []
    for leaf in (i for i in range(len(nodes)) if i not in has_child):
        path: list[int] = []
        at: int | None = leaf
        while at is not None:
            path.append(at)
            at = nodes[at].parent
        out.append(path[::-1])
    return out


def branch_tokens(nodes: list[Node], path: list[int]) -> tuple[TokenSequence | None, list[tuple[int, int] | None],
                                                                 float | None]:
    """(TokenSequence or None, each node's (start, end) in it or None, mean assigned advantage)."""
    nan = float("nan")
    ids: list[int] = []
    mask: list[int] = []
    logprobs: list[float] = []
    spans: list[tuple[int, int] | None] = []
    adv: list[float] = []
    for i in path:
        n = nodes[i]
        if n.advantages is not None:
            adv += [a for a in n.advantages if math.isfinite(a)]
        if not n.ids:
            spans.append(None)
            continue
        start = len(ids)
        ids += n.ids
        mask += n.mask
        lp = iter(n.logprobs or [])
        logprobs += [next(lp, nan) if b else nan for b in n.mask]
        # A sampled node's tokens open with the generation prompt the template put before the
        # model's reply (mask 0): the message's span starts at its first sampled token, as this
        # project's own spans do, so the lint does not read that header as generated-untrained.
        first = n.mask.index(1) if n.message.role == "assistant" and 1 in n.mask else 0
        spans.append((start + first, len(ids)))
    advantage = sum(adv) / len(adv) if adv else None
    if not ids:
        return None, [None] * len(path), advantage
    prompt_len = next((k for k, b in enumerate(mask) if b), len(mask))
    return TokenSequence(ids=ids, mask=mask, logprobs=logprobs, prompt_len=prompt_len), spans, advantage


def _rewards(trace: dict[str, Any], line: Line, where: str) -> tuple[list[RewardResult], float | None]:
    rewards: list[RewardResult] = []
    total = None
    for name, value in _obj(trace.get("rewards"), line, f"{where}.rewards", "{name: {score, weight}}").items():
        if value is None:
            continue
        w = f"{where}.rewards.{name}"
        r = _obj(value, line, w, "{score, weight}", optional=False)
        if "score" not in r:
            raise line.error("missing (a number is required)", f"{w}.score")
        score = as_float(r["score"], line, f"{w}.score")
        weight = 1.0 if r.get("weight") is None else as_float(r["weight"], line, f"{w}.weight")
        if not (math.isfinite(score) and math.isfinite(weight)):
            continue
        rewards.append(RewardResult(name, score, weight, {"from": "verifiers reward"}))
        total = (total or 0.0) + score * weight
    names = {r.name for r in rewards}
    for name, value in _obj(trace.get("metrics"), line, f"{where}.metrics", "{name: number}").items():
        if value is None:
            continue
        v = as_float(value, line, f"{where}.metrics.{name}")
        if not math.isfinite(v):
            continue
        rewards.append(RewardResult(unique_name(name, names), v, 0.0, {"from": "verifiers metric"}))
    return rewards, total


def _times(timing: Any) -> tuple[float | None, float | None]:
    """(started_at, finished_at) in Unix seconds from a Timing dump; (None, None) otherwise."""
    if not isinstance(timing, dict):
        return None, None

    def num(v: Any) -> float | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        return float(v) if ok else None

    start = num(timing.get("start"))
    if start is None:
        return None, None
    ends = [num(s.get("end")) for k in _SPANS if isinstance(s := timing.get(k), dict)]
    ends = [e for e in ends if e is not None and e >= start]
    return start, (max(ends) if ends else None)


def _failure(errors: Any, line: Line, where: str) -> str | None:
    errs = _list(errors, line, where, "of {type, message}")
    if not errs:
        return None
    last = errs[-1]
    text = (last.get("message") or last.get("type")) if isinstance(last, dict) else last
    return (str(text).strip().splitlines() or [""])[0][:500] or "error"


def _idx(data: dict[str, Any]) -> int:
    """The task's `idx` as a wanted qidx: an int in [0, 2**31), else -1 (none)."""
    idx = data.get("idx")
    return idx if isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < 2 ** 31 else -1


def _task_key(task: dict[str, Any]) -> str:
    for k in ("key", "hash"):
        if isinstance(task.get(k), str):
            return task[k]
    return json.dumps(task.get("data"), sort_keys=True, default=str)


def _prompt_messages(prompt: Any, system: Any) -> list[Message]:
    out = [Message("system", system, 0)] if isinstance(system, str) and system else []
    if isinstance(prompt, str):
        out.append(Message("user", prompt, 0))
    elif isinstance(prompt, list):
        for m in prompt:
            if isinstance(m, dict) and isinstance(m.get("role"), str):
                c = m.get("content")
                out.append(Message(m["role"], c if isinstance(c, str) else _text(c), 0))
    return out


@dataclass
class Parsed:
    """One trajectory read from an episode: its group key and the trajectory (qidx, group and
    sample set by the caller)."""

    group: str
    item: FinishedTrajectory


@dataclass
class EpisodeInfo:
    """What an episode says about its run: run name, env id, model, branches beyond the first."""

    run_name: str | None = None
    env: str | None = None
    env_name: str | None = None
    """The name the env ran under (prime-rl's env key; `env.name`), None when not given."""
    model: str | None = None
    extra_branches: int = 0
    no_traces: bool = False


def solved(reward: float | None) -> bool | None:
    """Whether a trajectory of this reward solved its task by prime-rl's rule (solve_rates in
    orchestrator/metrics.py: solved at reward 1.0, unsolved at 0): True, False, or None for any
    other reward (partial credit) and for none."""
    return {1.0: True, 0.0: False}.get(reward) if reward is not None else None


def parse_episode(rec: dict[str, Any], line: Line) -> tuple[list[Parsed], EpisodeInfo]:
    """One traces.jsonl record (an Episode) as trajectories (module docstring). InputError naming
    the file, line and field for anything malformed."""
    if not isinstance(rec.get("traces"), list):
        raise line.error("missing or not a list (a verifiers v1 episode has `traces`)", "traces")
    info = EpisodeInfo()
    env = _obj(rec.get("env"), line, "env", "{id, name}")
    info.env = _str(env.get("id"), line, "env.id") or None
    info.env_name = _str(env.get("name"), line, "env.name") or None
    run = _obj(rec.get("run"), line, "run", "{type, id, name}")
    info.run_name = _str(run.get("name"), line, "run.name")
    group = _obj(rec.get("group"), line, "group", "{id}")
    group_id = _str(group.get("id"), line, "group.id")
    ep_task = _obj(rec.get("task"), line, "task", "a TraceTask {type, data, key, hash}")
    out: list[Parsed] = []
    if not rec["traces"]:
        info.no_traces = True
        data = _obj(ep_task.get("data"), line, "task.data", "the task's row")
        messages = _prompt_messages(data.get("prompt"), data.get("system_prompt"))
        question = next((m.content for m in messages if m.role == "user"), "")
        detail = _failure(rec.get("errors"), line, "errors") or "the episode produced no trace"
        outcome = TrajectoryOutcome(status="failed", finish_reason=None, final_answer="", turns=0, tool_calls=0,
                                    tool_errors=0, tokens=None, rewards=[], reward=None, correct=None,
                                    finish_detail=detail)
        item = FinishedTrajectory(qidx=_idx(data), question=Question("", question, _text(data.get("answer"))),
                                  messages=messages, outcome=outcome)
        out.append(Parsed(group_id or _task_key(ep_task), item))
        return out, info
    for t, value in enumerate(rec["traces"]):
        where = f"traces[{t}]"
        trace = _obj(value, line, where, "a Trace", optional=False)
        version = trace.get("version", 1)
        if isinstance(version, bool) or version not in TRACE_VERSIONS:
            raise line.error(f"trace schema version {json.dumps(version, default=str)[:20]} is not read here "
                             f"(read: {', '.join(map(str, TRACE_VERSIONS))})", f"{where}.version")
        task = _obj(trace.get("task"), line, f"{where}.task", "a TraceTask") or ep_task
        data = _obj(task.get("data"), line, f"{where}.task.data", "the task's row")
        agent = _obj(trace.get("agent"), line, f"{where}.agent", "{config, name, trainable}")
        config = _obj(agent.get("config"), line, f"{where}.agent.config", "the agent's config")
        if info.model is None:
            info.model = config.get("model") if isinstance(config.get("model"), str) else None
        if info.model is None:
            for call in _list(trace.get("calls"), line, f"{where}.calls", "of ModelCalls"):
                if isinstance(call, dict) and isinstance(call.get("model"), str):
                    info.model = call["model"]
                    break
        nodes = _nodes(trace, line, where)
        rewards, total = _rewards(trace, line, where)
        failure = _failure(trace.get("errors"), line, f"{where}.errors")
        ok = trace.get("ok")
        status = "failed" if failure is not None or ok is False else "done"
        stop = _str(trace.get("stop_condition"), line, f"{where}.stop_condition")
        if status == "failed" and failure is None:
            failure = f"not ok ({stop})" if stop else "not ok"
        started, finished = _times(trace.get("timing"))
        gold = _text(data.get("answer"))
        qidx = _idx(data)
        paths = branches(nodes) or [[]]
        info.extra_branches += len(paths) - 1
        for b, path in enumerate(paths):
            tokens, spans, advantage = branch_tokens(nodes, path)
            messages: list[Message] = []
            turn = calls = 0
            for i, span in zip(path, spans):
                n = nodes[i]
                if n.message.role == "assistant":
                    turn += 1
                m = Message(n.message.role, n.message.content, turn, n.message.tool_call)
                if span is not None:
                    m.token_start, m.token_end = span
                messages.append(m)
                calls += n.calls
            if not messages:
                messages = _prompt_messages(data.get("prompt"), data.get("system_prompt"))
            question = next((m.content for m in messages if m.role == "user"), "")
            final = next((m.content for m in reversed(messages) if m.role == "assistant"), "")
            detail = {"episode": rec.get("id"), "trace": trace.get("id"), "task": task.get("key") or task.get("hash"),
                      "agent": agent.get("name"), "trainable": agent.get("trainable"),
                      "branch": f"{b + 1} of {len(paths)}" if len(paths) > 1 else None,
                      "info": _json_safe(trace.get("info")) or None}
            trajectory_rewards = [RewardResult(r.name, r.value, r.weight, dict(r.detail)) for r in rewards]
            if trajectory_rewards:
                trajectory_rewards[0].detail.update({k: v for k, v in detail.items() if v is not None})
            outcome = TrajectoryOutcome(
                status=status, finish_reason=stop, final_answer=final, turns=turn, tool_calls=calls,
                tool_errors=0, tokens=tokens, rewards=trajectory_rewards, reward=total, correct=solved(total),
                advantage=advantage, finish_detail=failure)
            item = FinishedTrajectory(qidx=qidx, question=Question("", question, gold), messages=messages,
                                      outcome=outcome, started_at=started, finished_at=finished)
            out.append(Parsed(group_id or _task_key(task), item))
    return out, info


# ------------------------------------------------------------------------------------ writing
class _Grouper:
    """Group ids, samples and qidx of the trajectories of one run (as core.importers.verifiers)."""

    def __init__(self, store: Store, writer: RunWriter) -> None:
        self.store, self.writer = store, writer
        self.taken: dict[int, tuple[str, str]] = {
            i: key for key, i in writer.questions.items()}
        """qidx -> (question, answer) of the questions written."""
        self.groups: dict[str, list[int]] = {}
        self.base = 0

    def new_step(self) -> None:
        """Start a new group numbering (each prime-rl step file has its own groups)."""
        self.writer.flush()  # earlier group ids are in the table before the next base is read
        self.base = self.store.next_group_id(self.writer.run_id)
        self.groups = {}

    def add(self, parsed: Parsed, step: int | None = None) -> None:
        item = parsed.item
        group = self.groups.setdefault(parsed.group, [self.base + len(self.groups), 0])
        item.group_id, item.sample, group[1] = group[0], group[1], group[1] + 1
        item.step = step
        q = item.question
        key = (q.question, q.answer)
        wanted = item.qidx if item.qidx >= 0 and self.taken.get(item.qidx, key) == key else None
        item.qidx = self.writer.qidx_for(q.question, q.answer, wanted if key not in self.writer.questions else None)
        self.taken[item.qidx] = key
        item.question = Question(f"q{item.qidx}", q.question, q.answer)
        self.writer.add(item)


@dataclass
class _Tally:
    """What the episodes of one import say about the whole: the first episode's info (its model
    taken from the first episode that names one), extra branches and episodes without traces."""

    first: EpisodeInfo | None = None
    extra: int = 0
    no_traces: int = 0

    def episodes(self, path: Path) -> Iterator[Parsed]:
        """The parsed trajectories of every episode (line) of `path`, counted as they go by;
        InputError (file, line, field) for a malformed one."""
        for line, rec in read_records(path):
            parsed, info = parse_episode(rec, line)
            self.first = self.first or info
            if self.first.model is None and info.model:
                self.first.model = info.model
            self.extra += info.extra_branches
            self.no_traces += info.no_traces
            yield from parsed


def _notes(result: SourceResult, extra_branches: int, no_traces: int) -> None:
    if extra_branches:
        result.notes.append(f"{extra_branches} extra branches (compaction or subagents): one trajectory per branch")
    if no_traces:
        result.notes.append(f"{no_traces} episodes without traces: imported as failed trajectories")


def _eval_config(folder: Path) -> dict[str, Any] | None:
    """The run's resolved config (configs/*.json beside traces.jsonl, the first by name) or None."""
    try:
        found = sorted((folder / "configs").glob("*.json")) if (folder / "configs").is_dir() else []
        value = json.loads(found[0].read_text(encoding="utf-8")) if found else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def import_eval_traces(store: Store, path: Path, *, name: str | None = None) -> SourceResult:
    """A traces.jsonl (or the folder holding it) as one eval run, in one transaction; `skipped`
    when the same bytes were imported before. InputError (file, line, field); nothing written then."""
    traces = path / TRACES if path.is_dir() else path
    size = traces.stat().st_size  # first: a file still being appended to is hashed as far as recorded
    sha = prefix_sha256(traces, size)
    result = SourceResult(str(path))
    result.skipped = already_imported(store, sha)
    if result.skipped:
        return result
    grown = grown_from(store, absolute(path), traces)
    config: dict[str, Any] = {"imported_from": absolute(path), "source_sha256": sha, "format": FORMAT,
                              "source_bytes": size}
    eval_config = _eval_config(traces.parent)
    if eval_config is not None:
        config["eval_config"] = _json_safe(eval_config)
    with store.transaction():
        if grown is not None:  # the same traces.jsonl, appended to since: replaced whole, not doubled
            store.delete_run(grown[0])
            result.notes.append(f"{traces.name} has grown since run {grown[0]} was imported from it "
                                f"({grown[1]:,} -> {config['source_bytes']:,} bytes): that run is replaced")
        run_id = new_run(store, "eval", name or "verifiers eval", "unknown", config)
        writer = RunWriter(store, run_id)
        grouper = _Grouper(store, writer)
        grouper.new_step()
        tally = _Tally()
        for p in tally.episodes(traces):
            grouper.add(p)
        first, extra, no_traces = tally.first, tally.extra, tally.no_traces
        writer.flush()
        if writer.written == 0 or first is None:
            raise InputError(str(traces), "no records (one verifiers v1 episode per line expected)")
        title = name or first.run_name or first.env or (path.name if path.is_dir() else traces.parent.name)
        model = first.model
        if model is None and isinstance((eval_config or {}).get("model"), str):
            model = eval_config["model"]
        config.update({"env_id": first.env} if first.env else {})
        store.conn.execute("UPDATE runs SET name=?, model=? WHERE id=?", (title, model or "unknown", run_id))
        store.set_config(run_id, config)
        finish(store, run_id, {"imported_from": absolute(path), "format": FORMAT})
        result.runs.append((run_id, title, writer.written))
    _notes(result, extra, no_traces)
    return result


def import_traces(store: Store, path: str | Path, *, name: str | None = None) -> SourceResult:
    """Import a prime-rl output folder (train run) or a verifiers eval traces.jsonl / its folder
    (eval run); module docstring. InputError (file, line, field) for anything malformed."""
    from core.importers.prime_rl import import_prime_rl, rollouts_folder

    path = Path(path)
    rollouts = rollouts_folder(path)
    if rollouts is not None:
        return import_prime_rl(store, path, rollouts, name=name)
    if path.is_dir() and not is_traces_folder(path):
        raise InputError(str(path), f"a folder without {TRACES} or rollouts/step_N/: not verifiers v1 output")
    return import_eval_traces(store, path, name=name)
