"""verifiers evaluation results: the `results.jsonl` + `metadata.json` folder `vf-eval` writes.

The writer (read in PrimeIntellect-ai/verifiers at commit a60a606e, `git describe` v0.3.0-62,
August 2026, where `vf-eval` is verifiers.legacy.scripts.eval; the same code as release 0.3.0's
verifiers/utils/save_utils.py, which wrote tests/fixtures/verifiers/; release 0.4.0 drops it and
its `vf-eval` is the v1 CLI writing traces.jsonl, read by core.importers.verifiers_traces): the
folder `outputs/evals/{env_id}--{model with "/" as "--"}/{8 hex}/` (`get_results_path`,
verifiers/legacy/utils/path_utils.py) holding

    results.jsonl  one RolloutOutput per line (`save_outputs`, verifiers/legacy/utils/save_utils.py:
                   `json.dumps(output, default=make_serializable) + "\\n"`, appended as groups
                   finish, so lines of one example are together but examples are in completion
                   order). Built by `state_to_output`:
        example_id       int, the dataset row (required; verifiers' own reader skips rows without)
        prompt           OpenAI-style message list, or a string (completion environments)
        completion       the same; an assistant message's `tool_calls` are JSON strings
                         (`sanitize_tool_calls`), each {id, name, arguments} (older versions: OpenAI's
                         {id, type, function: {name, arguments}}); tool messages carry tool_call_id
        answer, info     left out when empty; task (older versions) the dataset's task column
        reward           float;  metrics  {name: float} (every rubric function, weighted or not),
                         each also copied to a top-level key (older versions have only those)
        error            null or {error, message, error_chain_repr, error_chain_str}
        timing           RolloutTiming {start_time, setup, generation, scoring: {start, end}, ...}
                         (older versions: {generation_ms, scoring_ms, total_ms})
        is_completed, is_truncated, stop_condition, tool_defs, token_usage
        <state column>   any State field named in --state-columns, e.g. `trajectory`
    metadata.json  GenerateMetadata without path_to_save and date (`save_metadata`): env_id, env_args,
                   model, base_url, num_examples, rollouts_per_example, shuffle, shuffle_seed,
                   sampling_args, time (s), avg_reward, avg_metrics, avg_error, pass_at_k, pass_all_k,
                   pass_threshold, usage, version_info, state_columns, tools (optional `name`).

How a results folder (or its results.jsonl alone; a metadata.json beside it is read when there)
becomes a run: one eval run named `--name`, else metadata `name`, else `env_id`, else the folder's
name; model = metadata `model` (else "unknown"). The run's configuration keeps the metadata's
env_id, env_args, model, base_url, num_examples, rollouts_per_example, shuffle(_seed), sampling_args,
pass_threshold, version_info, state_columns and the tool names; its summary keeps avg_reward,
avg_metrics, avg_error, pass_at_k, pass_all_k, usage and time. One trajectory per line:

    messages     prompt then completion. Content: a string as is, null as "", content parts by
                 core.importers.jsonl's rule (text joined, other parts as "[type]"). A string prompt
                 is one user message, a string completion one assistant message; role "text" is read
                 as user in the prompt and assistant in the completion. turn: 0 before the first
                 assistant message, k for the k-th assistant message and the messages after it.
    tool calls   an assistant message's first call becomes its ToolCall (name, arguments parsed
                 from their JSON text, raw = that text); `tool_calls` counts every call. verifiers
                 records no tool errors, so none are stored.
    question     the prompt's first user message; gold answer `answer` (not a string: as JSON).
    qidx, group  qidx = example_id (when another question already holds that number, the next
                 free one); the rollouts of one example (and task) are one group, numbered in order
                 of first appearance, `sample` = the rollout's index in it.
    rewards      "reward" = `reward` (weight 1, the trajectory's reward; its detail keeps task, info,
                 stop_condition); each metric (`metrics`, else the top-level keys named in the
                 metadata's avg_metrics) a reward of weight 0 (shown, not summed: the rubric's weights
                 are not saved). A metric named "reward" is stored as "reward#2". Non-numbers and
                 NaN are left out.
    correct      reward >= metadata pass_threshold (verifiers' own pass@k rule), None without one.
    status       "failed" with finish_detail = the error's message when `error` is set; else "done".
                 finish_reason = stop_condition ("truncated" when is_truncated and no condition).
    times        timing.start_time as started_at, the latest span end as finished_at (Unix seconds).
    tokens       text only (tokens None, as core.importers.inspect_log) unless the record has the
                 `trajectory` state column with token ids (below).

Training traces with tokens: a `trajectory` column (`vf-eval --state-columns trajectory`) is State's list of
TrajectoryStep {prompt, completion, response, tokens, reward, advantage, is_truncated,
trajectory_id, extras}; `tokens` (TrajectoryStepTokens, verifiers/legacy/types.py) is null when the
server returned no token ids, else {prompt_ids, prompt_mask, completion_ids, completion_mask,
completion_logprobs, overlong_prompt, is_truncated, routed_experts}. The steps with tokens become
one token sequence, as prime-rl's legacy interleaving did: the first step's prompt_ids, then each
step's completion_ids, then the part of the next step's prompt_ids after everything so far (the
tool result and template text between turns). ids as given (int32); mask 0 on every prompt part
(verifiers writes prompt_mask as zeros; it is not read), completion_mask on completions (1 =
trainable); logprobs NaN on prompt parts, completion_logprobs (nats) on completions; prompt_len =
the first step's prompt length. The k-th step's completion is the k-th assistant message of the
completion (one model call each): its token span is that message's token_start / token_end; the other
messages get no span (their tokens sit in the next step's prompt with the template's). A step whose
prompt does not extend what came before (a context
that was cut or rewritten) cannot join it: the sequence starts again from that step, and the note
says how many trajectories kept only their last such part. advantage = the record's `advantage`
(a state column) when a number, else the first step advantage that is one.

prime-rl (read at commit 559b4477, v0.8.1.dev67, August 2026) trains on verifiers v1 traces it holds
in memory (orchestrator/trajectories.py: branches' token_ids / sampled_mask / logprobs) and writes
two files of them: `rollouts/step_N/{kind}/{subset}/traces.jsonl` (v1 Episode
records, monitors/file.py) and, with `enable_token_export`, `token_exports/step_N/rank_R.jsonl`
(one line per sequence the trainer trained on, cut out of its packed micro-batch: token_ids,
position_ids, loss_mask, advantages, inference/trainer logprobs, entropy, importance ratios; no
text; trainer/rl/token_export.py);
verifiers v1's own `eval` writes the same traces.jsonl shape. Those traces.jsonl files are read by
core.importers.verifiers_traces (prime-rl's folder by core.importers.prime_rl); import_verifiers hands
them over.

Not carried over: reasoning_content, tool_defs, token_usage, timing spans, info beyond the reward's
detail, the error chain, every tool call of a message but the first (counted only), images and
audio (as "[image_url]", "[input_audio]"), routed_experts and multimodal data of steps, step rewards.

Detection (core.importers.detect): a folder holding results.jsonl; a JSONL whose first record has
`prompt` and `completion` (message lists or strings) and `example_id` or `reward`, and no `messages`.

Errors: a line that is not one JSON object, a v1 episode (a `traces` list: V1_EPISODE), a missing
or mistyped example_id, prompt, completion, message, tool call, reward or metric, token lists of
unequal lengths or ids outside int32, an unreadable or non-object metadata.json, and a results.jsonl
without records raise InputError naming the file, line and field; nothing is written then (one
transaction). A truncated last line is not JSON, so it is such an error.

Re-importing: the run's configuration has {"imported_from": the folder or file, absolute,
"source_sha256": sha256 of results.jsonl's bytes, "source_bytes": their count, "format": "verifiers"};
results whose sha256 is already in the database are skipped (core.importers.common.already_imported).
An eval still running (or resumed) appends to results.jsonl: when the file at the same path begins
with the bytes a run was imported from, that run is replaced by an import of the whole file, in the
same transaction (core.importers.common.grown_from); a file rewritten otherwise imports as a new run.
"""

from __future__ import annotations

import json
import math
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.data.records import InputError, Message, Question, RewardResult, ToolCall
from core.importers.common import (Line, RunWriter, absolute, already_imported, as_float, finish, get_float, get_int,
                                   grown_from, new_run, prefix_sha256, read_records)
from core.importers.jsonl import SourceResult, _content
from core.rollout.tokens import TokenSequence
from core.store.bulk import FinishedTrajectory
from core.store.store import Store, TrajectoryOutcome

FORMAT = "verifiers"
RESULTS = "results.jsonl"
METADATA = "metadata.json"
_CONFIG_KEYS = ("env_id", "name", "env_args", "model", "base_url", "num_examples", "rollouts_per_example",
                "shuffle", "shuffle_seed", "sampling_args", "pass_threshold", "version_info", "state_columns")
_SUMMARY_KEYS = ("avg_reward", "avg_metrics", "avg_error", "pass_at_k", "pass_all_k", "usage", "time")
_INT32 = (-2 ** 31, 2 ** 31)
V1_EPISODE = ("a verifiers v1 episode (a traces.jsonl line, read by core.importers.verifiers_traces when the "
              "file begins with one) among vf-eval results.jsonl rows: one file holds one kind")


def looks_like(record: dict[str, Any]) -> bool:
    """True when a first record is a verifiers RolloutOutput: `prompt` and `completion` (lists or
    strings), `example_id` or `reward`, and no `messages`. Never raises."""
    return ("messages" not in record
            and all(isinstance(record.get(k), (list, str)) for k in ("prompt", "completion"))
            and ("example_id" in record or "reward" in record))


def is_results_folder(path: Path) -> bool:
    """True when `path` is a folder holding a results.jsonl file. Never raises."""
    try:
        return path.is_dir() and (path / RESULTS).is_file()
    except OSError:
        return False


def _files(path: Path) -> tuple[Path, Path | None]:
    """(results.jsonl, metadata.json or None) of a results folder or a results file."""
    if path.is_dir():
        results = path / RESULTS
        if not results.is_file():
            raise InputError(str(path), f"a folder without {RESULTS}: not a verifiers results folder")
    else:
        results = path
    meta = results.parent / METADATA
    return results, (meta if meta.is_file() else None)


def read_metadata(path: Path | None) -> dict[str, Any]:
    """metadata.json as a dict ({} when None). InputError naming the file when it cannot be read,
    is not JSON, or is not an object."""
    if path is None:
        return {}
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"not UTF-8 text (byte {exc.start})") from None
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise InputError(str(path), f"not valid JSON ({reason})") from None
    if not isinstance(meta, dict):
        raise InputError(str(path), "must be a JSON object (verifiers' GenerateMetadata)")
    for key in ("env_id", "model", "name"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise InputError(str(path), "must be a string", field=key)
    threshold = meta.get("pass_threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise InputError(str(path), "must be a number", field="pass_threshold")
    return meta


# ------------------------------------------------------------------------------------ messages
def _arguments(text: Any) -> Any:
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return text  # a model's broken JSON stays as the text it wrote
        return value
    return text


def _tool_call(value: Any, line: Line, where: str) -> ToolCall:
    """One saved tool call: a JSON string or an object, {id, name, arguments} or OpenAI's
    {id, type, function: {name, arguments}}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise line.error("a tool call saved as text must be JSON (verifiers writes json.dumps)", where) from None
    if not isinstance(value, dict):
        raise line.error("must be an object {id, name, arguments} or its JSON text", where)
    fn = value.get("function", value)
    if not isinstance(fn, dict):
        raise line.error("must be an object {name, arguments}", f"{where}.function")
    name = fn.get("name")
    if not isinstance(name, str):
        raise line.error("missing or not a string", f"{where}.name")
    args = fn.get("arguments")
    raw = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    parsed = _arguments(args)
    if not isinstance(parsed, dict):
        parsed = {"arguments": parsed}
    return ToolCall(name, parsed, raw)


def parse_messages(value: Any, line: Line, field: str, *, turn: int = 0) -> tuple[list[Message], int, int]:
    """A `prompt` or `completion` as (Messages, last turn, tool calls counted); `turn` continues
    the count from the prompt. InputError naming `field[i].role`, `.content`, `.tool_calls[j]`."""
    default_role = "user" if field == "prompt" else "assistant"
    if value is None:
        return [], turn, 0
    if isinstance(value, str):
        if default_role == "assistant":
            turn += 1
        return [Message(default_role, value, turn)], turn, 0
    if not isinstance(value, list):
        raise line.error("must be a list of {role, content} messages or a string", field)
    out: list[Message] = []
    calls = 0
    for i, m in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise line.error("must be an object {role, content}", where)
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise line.error("missing or not a string", f"{where}.role")
        if role == "text":
            role = default_role
        content = _content(m.get("content"), line, f"{where}.content")
        if role == "assistant":
            turn += 1
        msg = Message(role, content, turn)
        tool_calls = m.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                raise line.error("must be a list of tool calls", f"{where}.tool_calls")
            parsed = [_tool_call(tc, line, f"{where}.tool_calls[{j}]") for j, tc in enumerate(tool_calls)]
            if parsed:
                msg.tool_call = parsed[0]
                calls += len(parsed)
        out.append(msg)
    return out, turn, calls


# ------------------------------------------------------------------------------------ tokens
def _int_list(value: Any, line: Line, where: str, *, bits: tuple[int, int] = _INT32) -> list[int]:
    if not isinstance(value, list):
        raise line.error("must be a list of integers", where)
    try:
        if any(isinstance(x, bool) for x in value):
            raise TypeError
        array("q", value)
    except (TypeError, OverflowError):
        raise line.error("every value must be an integer", where) from None
    lo, hi = bits
    if value and not (lo <= min(value) and max(value) < hi):
        raise line.error(f"every value must be in [{lo}, {hi})", where)
    return value


def _floats(value: Any, n: int, line: Line, where: str) -> list[float]:
    if not isinstance(value, list):
        raise line.error("must be a list of numbers", where)
    if len(value) != n:
        raise line.error(f"has {len(value)} values but completion_ids has {n}", where)
    nan = float("nan")
    return [nan if v is None else as_float(v, line, where) for v in value]


def parse_trajectory_tokens(value: Any, line: Line) -> tuple[TokenSequence | None, float | None, bool,
                                                             list[tuple[int, int]]]:
    """The `trajectory` column as (one TokenSequence or None, the first step advantage that is a
    number, whether a step had to restart the sequence, the [start, end) token span of each
    step's completion in that sequence, in order: the steps since the last restart) by the module
    docstring's rule. None when no step carries tokens. InputError naming
    `trajectory[i].tokens.<list>`."""
    if value is None:
        return None, None, False, []
    if not isinstance(value, list):
        raise line.error("must be a list of trajectory steps", "trajectory")
    ids: list[int] = []
    mask: list[int] = []
    logprobs: list[float] = []
    prompt_len = None
    advantage = None
    restarted = False
    spans: list[tuple[int, int]] = []
    nan = float("nan")
    for i, step in enumerate(value):
        where = f"trajectory[{i}]"
        if not isinstance(step, dict):
            raise line.error("must be an object (a TrajectoryStep)", where)
        if advantage is None:
            advantage = get_float(step, "advantage", line)
        tokens = step.get("tokens")
        if tokens is None:
            continue
        if not isinstance(tokens, dict):
            raise line.error("must be an object {prompt_ids, completion_ids, ...} or null", f"{where}.tokens")
        t = f"{where}.tokens"
        p_ids = _int_list(tokens.get("prompt_ids"), line, f"{t}.prompt_ids")
        c_ids = _int_list(tokens.get("completion_ids"), line, f"{t}.completion_ids")
        c_mask = _int_list(tokens.get("completion_mask"), line, f"{t}.completion_mask", bits=(0, 2))
        if len(c_mask) != len(c_ids):
            raise line.error(f"has {len(c_mask)} values but completion_ids has {len(c_ids)}",
                             f"{t}.completion_mask")
        c_lp = _floats(tokens.get("completion_logprobs"), len(c_ids), line, f"{t}.completion_logprobs")
        if prompt_len is not None and len(p_ids) >= len(ids) and p_ids[:len(ids)] == ids:
            new = p_ids[len(ids):]
        else:
            if prompt_len is not None:
                restarted = True
            ids, mask, logprobs, new, spans = [], [], [], p_ids, []
            prompt_len = len(p_ids)
        spans.append((len(ids) + len(new), len(ids) + len(new) + len(c_ids)))
        ids += new + c_ids
        mask += [0] * len(new) + c_mask
        logprobs += [nan] * len(new) + c_lp
    if prompt_len is None:
        return None, advantage, False, []
    if restarted:
        prompt_len = next((k for k, b in enumerate(mask) if b), len(mask))
    return TokenSequence(ids=ids, mask=mask, logprobs=logprobs, prompt_len=prompt_len), advantage, restarted, spans


# ------------------------------------------------------------------------------------ records
def unique_name(name: str, names: set[str]) -> str:
    """`name`, or "name#2", "name#3"... when taken; added to `names` (a metric named like a reward)."""
    unique, k = name, 1
    while unique in names:
        k += 1
        unique = f"{name}#{k}"
    names.add(unique)
    return unique


def _gold(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def _times(timing: Any) -> tuple[float | None, float | None]:
    """(started_at, finished_at) in Unix seconds from a RolloutTiming dump; (None, None) otherwise."""
    if not isinstance(timing, dict):
        return None, None
    start = timing.get("start_time")
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start) or start <= 0:
        return None, None
    ends = [span.get("end") for span in timing.values() if isinstance(span, dict)]
    ends = [float(e) for e in ends if isinstance(e, (int, float)) and not isinstance(e, bool)
            and math.isfinite(e) and e >= start]
    return float(start), (max(ends) if ends else None)


def _metrics(rec: dict[str, Any], line: Line, names: list[str]) -> list[tuple[str, float]]:
    """(name, value) of each metric: `metrics` when an object, else the top-level keys in `names`."""
    metrics = rec.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise line.error("must be an object {name: number}", "metrics")
    items = (list(metrics.items()) if isinstance(metrics, dict)
             else [(k, rec[k]) for k in names if k in rec])
    out = []
    for name, value in items:
        if value is None:
            continue
        where = f"metrics.{name}" if isinstance(metrics, dict) else name
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise line.error(f"must be a number, not {json.dumps(value, default=str)[:40]}", where)
        v = float(value)
        if math.isfinite(v):
            out.append((name, v))
    return out


@dataclass
class Parsed:
    """One results.jsonl line read: its example key, the trajectory, and whether its token steps restarted."""

    example: tuple[str, int]
    item: FinishedTrajectory
    restarted: bool


def parse_record(rec: dict[str, Any], line: Line, meta: dict[str, Any]) -> Parsed:
    """One results.jsonl record (module docstring) as a trajectory (qidx, group and sample set by
    the caller). InputError naming the file, line and field for anything malformed."""
    if isinstance(rec.get("traces"), list) and "prompt" not in rec:
        raise line.error(V1_EPISODE, "traces")
    example_id = get_int(rec, "example_id", line)
    if example_id is None:
        example_id = get_int(rec, "id", line)
    if example_id is None:
        raise line.error("missing (verifiers writes the dataset row's example_id)", "example_id")
    if example_id < 0:
        raise line.error("must be 0 or more", "example_id")
    for key in ("prompt", "completion"):
        if key not in rec:
            raise line.error("missing (a list of {role, content} messages is required)", key)
    prompt, turn, calls_p = parse_messages(rec["prompt"], line, "prompt")
    completion, turn, calls_c = parse_messages(rec["completion"], line, "completion", turn=turn)
    messages = prompt + completion
    reward = get_float(rec, "reward", line)
    task = rec.get("task")
    task = task if isinstance(task, str) else ""
    detail = {"from": "verifiers", "task": task or None, "info": _json_safe(rec.get("info")),
              "stop_condition": _json_safe(rec.get("stop_condition"))}
    rewards = [RewardResult("reward", reward, 1.0, {k: v for k, v in detail.items() if v is not None})] \
        if reward is not None else []
    names = {r.name for r in rewards}
    avg = meta.get("avg_metrics")
    for name, value in _metrics(rec, line, list(avg) if isinstance(avg, dict) else []):
        rewards.append(RewardResult(unique_name(name, names), value, 0.0, {"from": "verifiers metric"}))
    tokens, step_advantage, restarted, spans = parse_trajectory_tokens(rec.get("trajectory"), line)
    assistants = [m for m in completion if m.role == "assistant"]
    if spans and len(spans) <= len(assistants):  # one model call per assistant message: the last ones
        for m, (start, end) in zip(assistants[len(assistants) - len(spans):], spans):
            m.token_start, m.token_end = start, end
    advantage = get_float(rec, "advantage", line)
    if advantage is None:
        advantage = step_advantage
    threshold = meta.get("pass_threshold")
    correct = None if reward is None or threshold is None else reward >= float(threshold)
    error = rec.get("error")
    status, finish_detail = "done", None
    if error is not None:
        status = "failed"
        if isinstance(error, dict):
            text = error.get("message") or error.get("error") or json.dumps(error, default=str)
        else:
            text = error
        finish_detail = (str(text).strip().splitlines() or [""])[0][:500]
    stop = rec.get("stop_condition")
    finish_reason = stop if isinstance(stop, str) else None
    if finish_reason is None and rec.get("is_truncated") is True:
        finish_reason = "truncated"
    question = next((m.content for m in prompt if m.role == "user"), "")
    final = next((m.content for m in reversed(completion) if m.role == "assistant"), "")
    started, finished = _times(rec.get("timing"))
    gold = _gold(rec.get("answer"))
    outcome = TrajectoryOutcome(
        status=status, finish_reason=finish_reason, final_answer=final,
        turns=max((m.turn for m in messages), default=0), tool_calls=calls_p + calls_c, tool_errors=0,
        tokens=tokens, rewards=rewards, reward=reward, correct=correct, advantage=advantage,
        finish_detail=finish_detail)
    item = FinishedTrajectory(qidx=example_id, question=Question("", question, gold), messages=messages,
                              outcome=outcome, started_at=started, finished_at=finished)
    return Parsed((task, example_id), item, restarted)


def run_name(path: Path, meta: dict[str, Any]) -> str:
    """The run's default name: metadata `name`, else `env_id`, else the folder's (or file's) name."""
    return meta.get("name") or meta.get("env_id") or (path.name if path.is_dir() else path.stem)


def import_verifiers(store: Store, path: str | Path, *, name: str | None = None) -> SourceResult:
    """Import a verifiers results folder (or its results.jsonl) as one eval run (module docstring),
    streaming, in one transaction. A v1 traces.jsonl, a folder holding one, or a prime-rl output
    folder goes to core.importers.verifiers_traces.import_traces instead.

    Returns what was written, or `skipped` when results with the same sha256 were imported before.
    InputError (file, line, field) for a malformed record or metadata.json, or results without
    records; nothing is written then."""
    from core.importers.verifiers_traces import import_traces, is_traces_source

    path = Path(path)
    if is_traces_source(path):  # verifiers >= 0.4 `eval` / prime-rl output: v1 episodes
        return import_traces(store, path, name=name)
    results, meta_path = _files(path)
    size = results.stat().st_size  # first: a file still being appended to is hashed as far as recorded
    sha = prefix_sha256(results, size)
    result = SourceResult(str(path))
    result.skipped = already_imported(store, sha)
    if result.skipped:
        return result
    meta = read_metadata(meta_path)
    grown = grown_from(store, absolute(path), results)
    config: dict[str, Any] = {"imported_from": absolute(path), "source_sha256": sha, "format": FORMAT,
                              "source_bytes": size}
    config.update({k: _json_safe(meta[k]) for k in _CONFIG_KEYS if meta.get(k) is not None})
    tools = meta.get("tools")
    if isinstance(tools, list):
        config["tools"] = [t.get("name") or (t.get("function") or {}).get("name") for t in tools if isinstance(t, dict)]
    restarted = 0
    with store.transaction():
        if grown is not None:  # the same results.jsonl, appended to since: replaced whole, not doubled
            store.delete_run(grown[0])
            result.notes.append(f"{results.name} has grown since run {grown[0]} was imported from it "
                                f"({grown[1]:,} -> {config['source_bytes']:,} bytes): that run is replaced")
        title = name or run_name(path, meta)
        writer = RunWriter(store, new_run(store, "eval", title, meta.get("model") or "unknown", config))
        base = store.next_group_id(writer.run_id)
        groups: dict[tuple[str, int], list[int]] = {}
        """(task, example_id) -> [group id, rollouts so far]."""
        taken: dict[int, tuple[str, str]] = {}
        """qidx -> (question, answer) of the questions written."""
        for line, rec in read_records(results):
            parsed = parse_record(rec, line, meta)
            item = parsed.item
            group = groups.setdefault(parsed.example, [base + len(groups), 0])
            item.group_id, item.sample, group[1] = group[0], group[1], group[1] + 1
            q = item.question
            key = (q.question, q.answer)
            wanted = item.qidx if taken.get(item.qidx, key) == key else None
            item.qidx = writer.qidx_for(q.question, q.answer, wanted if key not in writer.questions else None)
            taken[item.qidx] = key
            item.question = Question(f"q{item.qidx}", q.question, q.answer)
            restarted += parsed.restarted
            writer.add(item)
        writer.flush()
        if writer.written == 0:
            raise InputError(str(results), "no records (one RolloutOutput per line expected)")
        summary = {k: _json_safe(meta[k]) for k in _SUMMARY_KEYS if meta.get(k) is not None}
        finish(store, writer.run_id, {"imported_from": absolute(path), "format": FORMAT, **summary})
        result.runs.append((writer.run_id, title, writer.written))
    if meta_path is None:
        result.notes.append(f"no {METADATA} beside {results.name}: model unknown, no pass threshold")
    if restarted:
        result.notes.append(f"{restarted} trajectories: a step's prompt did not extend the tokens before it; "
                            "their token view starts at the last such step")
    return result
