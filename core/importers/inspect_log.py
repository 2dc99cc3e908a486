"""Inspect eval logs (UK AISI's inspect_ai): the `.eval` (zip) and `.json` files `inspect eval` writes.

Read with inspect_ai's own reader (inspect_ai.log: `read_eval_log` for the header and for `.json`
logs, `read_eval_log_samples_by_id_async` to stream the samples of an `.eval` log a chunk at a time), checked
against inspect_ai 0.3.285 (log schema version 2, `LOG_SCHEMA_VERSION` in
inspect_ai/_util/constants.py). inspect_ai is an optional extra: `pip install
'rl-inspect[inspect]'`; without it, importing an Inspect log raises InputError naming the extra.

How a log becomes a run: one eval run per log, named after the task (`eval.task`, or --name), with
model `eval.model`. Its configuration keeps the task, task_args, model, model_args, solver,
scorers, the generate config and the eval config (values that are not null), the log's eval_id,
run_id, created, status and schema version. One text-only trajectory per sample and epoch (Inspect
logs have no token ids: tokens are None, as core.importers.verl stores them), `sample` = epoch - 1:

    messages     `sample.messages` in order. Content: a string as is; a list of content parts:
                 the text of text parts joined, any other part (reasoning, image, ...) as
                 "[type]" (core.importers.jsonl's rule). turn: 0 before the first assistant
                 message, k for the k-th assistant message and the messages after it.
    tool calls   an assistant message's first tool call becomes its ToolCall (name = function,
                 arguments as logged, raw ""); `tool_calls` counts every call of every message.
    tool errors  a tool message with `error` (Inspect's ToolCallError {type, message}) gets
                 ToolError(kind=type, message); the assistant message whose call failed gets it
                 too, as the project's own agent does (core/rollout/agent.py); `tool_errors`
                 counts the tool messages with an error.
    question     `sample.input` when a string, else its first user message; gold answer
                 `sample.target` (a list of targets as JSON text).
    final answer `sample.output.completion`; finish_reason `output.stop_reason`, or
                 "{type}_limit" when the sample hit a limit (`sample.limit`).
    status       "failed" with finish_detail = the error's message when `sample.error` is set,
                 else "done".
    rewards      one RewardResult per scorer in `sample.scores` (a dict value: one per key,
                 named "scorer.key"; a name already taken gets "#2", "#3"), its value a float
                 by the rule of Inspect's value_to_float (inspect_ai/scorer/_metric.py): "C" 1,
                 "P" 0.5, "I" and "N" 0, "yes"/"true" 1, "no"/"false" 0, numbers and numeric
                 strings as numbers; a value that rule cannot convert (a list, other text) is
                 left out of the rewards (said in the notes). detail: the score's answer,
                 explanation, metadata and raw value. The headline scorer (`results.headline`,
                 else the first scorer; of a dict value, its first number) has weight 1 and is
                 the trajectory's reward; the others weight 0 (shown, not summed).
    correct      from the headline scorer's value when it is clear: "C"/"I", true/false or
                 exactly 1/0; None otherwise (partial, no answer, other numbers).
    times        started_at / completed_at (ISO 8601) as Unix seconds.

Not carried over: events (the transcript: model calls, sandbox, state changes), the sample store,
metadata, model usage and cost, attachments beyond resolving them into the messages, every tool
call of a message but the first (counted only), reasoning text.

Detection (core.importers.detect): an `.eval` file; a `.json` file that begins `{"version": N,
"status": "` (looks_like_head); a JSON object with version, status and eval on one line of a JSONL
file (looks_like), read as JSON.

A log whose status is not "success" (error, cancelled, started) imports the samples it holds (said
in the notes). A log with no samples, a file inspect_ai cannot read (not a zip, truncated, not an
Inspect log) or a schema version newer than 2 raise InputError naming the file (and the field,
when the reader says which); nothing is written then.

Re-importing: the run's configuration has {"imported_from": path, "source_sha256": sha256 of the
file's bytes, "format": "inspect"}; a file whose sha256 is already in the database (same content,
any path) is skipped, as core.importers.jsonl does.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from core.data.records import InputError, Message, Question, RewardResult, ToolCall, ToolError
from core.importers.common import RunWriter, absolute, already_imported, finish, new_run, sha256_file
from core.importers.jsonl import SourceResult
from core.store.bulk import FinishedTrajectory
from core.store.store import Store, TrajectoryOutcome

FORMAT = "inspect"
EXTRA = "inspect"
SCHEMA_VERSION = 2
"""The newest Inspect log schema version read here (inspect_ai's LOG_SCHEMA_VERSION,
inspect_ai/_util/constants.py, in 0.3.285)."""
SUFFIXES = (".eval", ".json")
_JSON_HEAD = re.compile(rb'^\s*\{\s*"version"\s*:\s*(\d{1,9})\s*,\s*"status"\s*:\s*"')
"""How an Inspect .json log begins: EvalLog's first two fields are `version` and `status`
(inspect_ai/log/_log.py, class EvalLog; written in field order by log/_recorders/json.py)."""
_SNIFF_BYTES = 4096
_EXCLUDE = {"events", "store", "timelines"}
"""Sample fields not read from an .eval log (not carried over, and the biggest)."""


def missing_extra_message() -> str:
    """The one-line reason an Inspect log cannot be read without inspect_ai (names the extra)."""
    return ("an Inspect log: reading it needs the package inspect_ai, which is not installed: "
            f"pip install 'rl-inspect[{EXTRA}]'")


def require(path: str | Path) -> None:
    """Raise InputError naming `path` and the extra when inspect_ai cannot be imported; else nothing."""
    try:
        import inspect_ai.log  # noqa: F401
    except ImportError:
        raise InputError(str(path), missing_extra_message()) from None


def looks_like(record: dict[str, Any]) -> bool:
    """True when a JSON object is an Inspect EvalLog: an integer `version`, a string `status` and
    an `eval` object (inspect_ai/log/_log.py, class EvalLog). Never raises."""
    return (isinstance(record.get("version"), int) and isinstance(record.get("status"), str)
            and isinstance(record.get("eval"), dict))


def looks_like_head(head: bytes) -> bool:
    """True when the first bytes of a file (any bytes, any length) begin an Inspect .json log:
    `{"version": N, "status": "` with any whitespace (_JSON_HEAD). Never raises."""
    return _JSON_HEAD.match(head) is not None


def sniff(path: str | Path) -> bool:
    """True when `path` is an `.eval` file, or a `.json` file whose first 4 KiB begin an Inspect
    log (looks_like_head). False for anything else, a file that cannot be read included."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".eval":
        return True
    if suffix != ".json":
        return False
    try:
        with open(path, "rb") as f:
            return looks_like_head(f.read(_SNIFF_BYTES))
    except OSError:
        return False


# ------------------------------------------------------------------------------------ conversions
def score_float(value: Any) -> float | None:
    """A scorer's value as a float by the rule of inspect_ai's value_to_float (scorer/_metric.py,
    default sentinels): "C" 1.0, "P" 0.5, "I"/"N" 0.0, a bool or number as a float, a string
    "yes"/"true" 1.0, "no"/"false" 0.0, a numeric string as its number. None where that rule
    would warn (lists, dicts, other text, None) and for a NaN or infinite result. Never raises."""
    if isinstance(value, str):
        if value == "C":
            return 1.0
        if value == "P":
            return 0.5
        if value in ("I", "N"):
            return 0.0
        low = value.strip().lower()
        if low in ("yes", "true"):
            return 1.0
        if low in ("no", "false"):
            return 0.0
        try:
            out = float(low)
        except ValueError:
            return None
    elif isinstance(value, (bool, int, float)):
        try:
            out = float(value)
        except OverflowError:
            return None
    else:
        return None
    return out if math.isfinite(out) else None


def score_correct(value: Any) -> bool | None:
    """Whether a scorer's value says correct, when it says so clearly: "C" True, "I" False
    (Inspect's CORRECT / INCORRECT, scorer/_metric.py), a bool as is, a number exactly 1 or 0.
    None for anything else (partial, no answer, other numbers, text). Never raises."""
    if isinstance(value, bool):
        return value
    if value == "C":
        return True
    if value == "I":
        return False
    if isinstance(value, (int, float)) and value in (0, 1):
        return value == 1
    return None


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        kind = getattr(part, "type", None)
        if kind == "text":
            parts.append(getattr(part, "text", "") or "")
        else:
            parts.append(f"[{kind or type(part).__name__}]")
    return "".join(parts)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def _seconds(stamp: Any) -> float | None:
    if not stamp:
        return None
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def convert_messages(messages: list[Any]) -> tuple[list[Message], int, int]:
    """Inspect ChatMessages (system/user/assistant/tool pydantic objects) as (Messages, tool calls,
    tool errors), by the module docstring's rules. Never raises for a message inspect_ai validated."""
    out: list[Message] = []
    turn = 0
    calls = errors = 0
    by_call_id: dict[str, Message] = {}
    for m in messages:
        role = getattr(m, "role", "user")
        if role == "assistant":
            turn += 1
        msg = Message(role, _text(getattr(m, "content", "")), turn)
        tool_calls = getattr(m, "tool_calls", None) or []
        if role == "assistant" and tool_calls:
            first = tool_calls[0]
            args = first.arguments if isinstance(first.arguments, dict) else {"arguments": first.arguments}
            msg.tool_call = ToolCall(first.function, _json_safe(args), "")
            calls += len(tool_calls)
            for call in tool_calls:
                if call.id:
                    by_call_id[call.id] = msg
        error = getattr(m, "error", None) if role == "tool" else None
        if error is not None:
            msg.tool_error = ToolError(str(error.type), str(error.message))
            errors += 1
            caller = by_call_id.get(getattr(m, "tool_call_id", None) or "")
            if caller is not None and caller.tool_error is None:
                caller.tool_error = msg.tool_error
        out.append(msg)
    return out, calls, errors


def convert_scores(scores: dict[str, Any] | None, headline: str | None) -> tuple[list[RewardResult], float | None,
                                                                                   bool | None, list[str]]:
    """A sample's `scores` ({scorer: Score}) as (rewards, reward, correct, names left out), by the
    module docstring's rules; `headline` the headline scorer's name (None: the first)."""
    rewards: list[RewardResult] = []
    left_out: list[str] = []
    if not scores:
        return rewards, None, None, left_out
    if headline not in scores:
        headline = next(iter(scores))
    reward = correct = None
    weighted = False
    names: set[str] = set()
    for name, score in scores.items():
        value = score.value
        detail = {"answer": score.answer, "explanation": score.explanation,
                  "metadata": _json_safe(score.metadata), "value": _json_safe(value), "from": "inspect"}
        items = ([(f"{name}.{k}", v) for k, v in value.items()] if isinstance(value, dict) else [(name, value)])
        for rname, v in items:
            f = score_float(v)
            if f is None:
                left_out.append(rname)
                continue
            weight = 1.0 if name == headline and not weighted else 0.0
            if weight:
                weighted = True
                reward = f
                correct = score_correct(v)
            unique, k = rname, 1
            while unique in names:  # the store keys rewards by name: "a.b" of scorer a vs scorer "a.b"
                k += 1
                unique = f"{rname}#{k}"
            names.add(unique)
            rewards.append(RewardResult(unique, f, weight, detail))
    return rewards, reward, correct, left_out


def _question(sample: Any) -> str:
    value = sample.input
    if isinstance(value, str):
        return value
    return next((_text(m.content) for m in value if getattr(m, "role", None) == "user"), "")


def _gold(target: Any) -> str:
    if isinstance(target, str):
        return target
    return json.dumps(_json_safe(target), ensure_ascii=False)


def sample_trajectory(sample: Any, headline: str | None) -> tuple[FinishedTrajectory, list[str]]:
    """One Inspect EvalSample as (a FinishedTrajectory with qidx 0, scorer values left out of the
    rewards) by the module docstring's rules; the caller sets qidx."""
    messages, n_calls, n_errors = convert_messages(sample.messages)
    rewards, reward, correct, left_out = convert_scores(sample.scores, headline)
    output = sample.output
    choices = getattr(output, "choices", None) or []
    finish_reason = choices[0].stop_reason if choices else None
    limit = getattr(sample, "limit", None)
    finish_detail = None
    if limit is not None:
        finish_reason = f"{limit.type}_limit"
        finish_detail = f"{limit.type} limit {limit.limit}"
    status = "done"
    if sample.error is not None:
        status = "failed"
        finish_detail = (str(sample.error.message).strip().splitlines() or [""])[0][:500]
    question = _question(sample)
    gold = _gold(sample.target)
    outcome = TrajectoryOutcome(
        status=status, finish_reason=finish_reason,
        final_answer=output.completion if output is not None else "",
        turns=max((m.turn for m in messages), default=0), tool_calls=n_calls, tool_errors=n_errors, tokens=None,
        rewards=rewards, reward=reward, correct=correct, finish_detail=finish_detail)
    item = FinishedTrajectory(qidx=0, question=Question("", question, gold), messages=messages, outcome=outcome,
                              sample=max(0, int(sample.epoch) - 1),
                              started_at=_seconds(getattr(sample, "started_at", None)),
                              finished_at=_seconds(getattr(sample, "completed_at", None)))
    return item, left_out


# ------------------------------------------------------------------------------------ reading
_PARTS = {"EvalSpec": "eval", "EvalPlan": "plan", "EvalResults": "results", "EvalStats": "stats",
          "EvalError": "error", "EvalSample": "samples", "EvalLog": None}
"""EvalLog's field for each part model (inspect_ai/log/_log.py), to name the field of an error
whose location is empty because inspect_ai validated that part alone."""


def _reader_error(path: Path, exc: BaseException) -> InputError:
    """inspect_ai's exception while reading `path` as an InputError naming the file, and the field
    when a pydantic ValidationError is in its chain (inspect_ai wraps it in "Unable to read log
    file"; the field is its first error's location, e.g. "eval" or "samples.0.messages")."""
    chain, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen and len(chain) < 10:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        errors = getattr(e, "errors", None)
        if type(e).__name__ == "ValidationError" and callable(errors):
            try:
                first = errors()[0]
                field = ".".join(str(p) for p in first.get("loc", ())) or None
                if field is None:  # a part validated on its own (header-only read): its model
                    title = str(getattr(e, "title", ""))
                    field = _PARTS.get(title, title or None)
                reason = " ".join(str(first.get("msg", "invalid")).split())[:200]
            except Exception:  # noqa: BLE001 - an odd ValidationError still gives the generic message
                field, reason = None, "invalid"
            return InputError(str(path), f"not a valid Inspect log ({reason})", field=field)
    inner = chain[-1]
    text = " ".join(str(inner).replace(str(path), "").split())[:300] or type(inner).__name__
    if path.suffix.lower() == ".eval" and (type(inner).__name__ == "BadZipFile" or "EOCD" in text):
        # inspect_ai's zip reader: no end-of-central-directory record, the last bytes of a zip file
        return InputError(str(path), "not a complete .eval log: the zip archive is truncated or damaged "
                                     f"(inspect_ai: {text})")
    return InputError(str(path), f"cannot read as an Inspect log ({type(inner).__name__}: {text})")


def _format(path: Path) -> str:
    """inspect_ai's reader format: "eval" for an .eval file, else "json" (a log detected by its
    content under another name, e.g. one line of a .jsonl, is JSON)."""
    return "eval" if path.suffix.lower() == ".eval" else "json"


def _newer(path: Path, version: int) -> InputError:
    return InputError(str(path), f"Inspect log schema version {version} is newer than this import reads "
                      f"({SCHEMA_VERSION}); a newer rl-inspect may read it", field="version")


def _header(path: Path) -> Any:
    from inspect_ai.log import read_eval_log

    if _format(path) == "json":  # inspect_ai's own message for a newer version names no field
        try:
            with open(path, "rb") as f:
                m = _JSON_HEAD.match(f.read(_SNIFF_BYTES))
        except OSError as exc:
            raise InputError(str(path), f"cannot read ({exc.strerror or exc})") from None
        if m and int(m.group(1)) > SCHEMA_VERSION:
            raise _newer(path, int(m.group(1)))
    try:
        header = read_eval_log(str(path), header_only=True, format=_format(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input, named
        raise _reader_error(path, exc) from None
    if header.version > SCHEMA_VERSION:
        raise _newer(path, header.version)
    return header


def _samples(path: Path, header: Any) -> Iterator[Any]:
    """The samples of a log: streamed a chunk at a time from an .eval log with sample ids in its
    header (_eval_samples), else read whole (read_eval_log: a .json log is one JSON
    document, which inspect_ai reads whole anyway). InputError as _reader_error."""
    from inspect_ai.log import read_eval_log

    try:
        if path.suffix.lower() == ".eval" and header.eval.dataset.sample_ids is not None:
            yield from _eval_samples(path, header)
        else:
            log = read_eval_log(str(path), resolve_attachments=True, format=_format(path))
            yield from log.samples or []
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input, named
        raise _reader_error(path, exc) from None


_CHUNK = 256
"""Samples read per chunk: memory stays at one chunk."""


def _eval_samples(path: Path, header: Any) -> Iterator[Any]:
    """The samples of an .eval log in the header's order (sample id, then epoch), _CHUNK at a time.

    Not inspect_ai's read_eval_log_samples, nor read_eval_log_samples_by_id called per chunk: both
    open the zip and parse its central directory (one entry per sample) again, per sample or per
    chunk, so a log of n samples costs O(n^2) (54 samples/s at 2,000 samples one at a time; 266
    -> 169 trajectories/s from 10k to 100k in chunks of 256; benchmarks/import_speed.py). Here
    each chunk goes through read_eval_log_samples_by_id_async with one AsyncZipReader built on the
    central directory parsed for the first chunk (its public `reader` and `central_directory`
    arguments; AsyncZipReader itself lives in inspect_ai._util, checked in 0.3.285). A chunk
    naming a sample the log lacks (a log that did not finish) raises IndexError; that chunk is
    then read sample by sample, skipping the missing ones, as all_samples_required=False does."""
    from inspect_ai._util._async import run_coroutine
    from inspect_ai._util.async_zip import AsyncZipReader
    from inspect_ai._util.asyncfiles import get_async_filesystem
    from inspect_ai.log import read_eval_log_sample_async, read_eval_log_samples_by_id_async

    central: list[Any] = []  # the parsed central directory, once read

    async def read(chunk: list[tuple[Any, int]]) -> list[Any]:
        reader = AsyncZipReader(get_async_filesystem(), str(path),
                                central_directory=central[0] if central else None)
        if not central:
            central.append(await reader.entries())
        try:
            return await read_eval_log_samples_by_id_async(str(path), chunk, resolve_attachments=True,
                                                           format="eval", exclude_fields=_EXCLUDE,
                                                           reader=reader)
        except IndexError:
            found = []
            for sample_id, epoch in chunk:
                try:
                    found.append(await read_eval_log_sample_async(str(path), id=sample_id, epoch=epoch,
                                                                  resolve_attachments=True, format="eval",
                                                                  exclude_fields=_EXCLUDE, reader=reader))
                except IndexError:
                    continue
            return found

    epochs = header.eval.config.epochs or 1
    wanted = [(sample_id, epoch) for sample_id in header.eval.dataset.sample_ids for epoch in range(1, epochs + 1)]
    for at in range(0, len(wanted), _CHUNK):
        yield from run_coroutine(read(wanted[at:at + _CHUNK]))


def _dump(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        return _json_safe(value.model_dump(mode="json", exclude_none=True))
    return _json_safe(value)


def run_config(path: Path, sha: str, header: Any) -> dict[str, Any]:
    """The imported run's configuration (module docstring) from a log's header (EvalLog)."""
    ev = header.eval
    return {"imported_from": absolute(path), "source_sha256": sha, "format": FORMAT,
            "task": ev.task, "task_args": _dump(ev.task_args), "model": ev.model, "model_args": _dump(ev.model_args),
            "solver": ev.solver, "scorers": _dump(getattr(ev, "scorers", None)),
            "generate_config": _dump(ev.model_generate_config), "eval_config": _dump(ev.config),
            "eval_id": ev.eval_id, "run_id": ev.run_id, "created": str(ev.created),
            "log_status": header.status, "log_version": header.version}


def _headline(header: Any) -> str | None:
    results = header.results
    if results is None:
        return None
    head = getattr(results, "headline", None)
    if head is not None and getattr(head, "score", None):
        return head.score
    return results.scores[0].name if results.scores else None


def _metrics(header: Any) -> dict[str, Any]:
    results = header.results
    if results is None:
        return {}
    return {s.name: {k: m.value for k, m in s.metrics.items()} for s in results.scores}


def import_inspect(store: Store, path: str | Path, *, name: str | None = None,
                   finished_only: bool = False) -> SourceResult:
    """Import one Inspect log (.eval or .json) as one eval run (module docstring), streaming its
    samples, in one transaction.

    Returns what was written, or `skipped` when a file with the same sha256 was imported before,
    or, with `finished_only` (a log found in a folder), when its status is still "started": a
    running eval rewrites its log, so each version would become a run of its own.
    InputError naming the file (and field) when inspect_ai is not installed (naming the extra),
    the file cannot be read as an Inspect log, its schema version is newer than SCHEMA_VERSION, or
    it holds no samples; nothing is written then."""
    path = Path(path)
    require(path)
    sha = sha256_file(path)
    result = SourceResult(str(path))
    result.skipped = already_imported(store, sha)
    if result.skipped:
        return result
    header = _header(path)
    if finished_only and header.status == "started":
        result.skipped = ('log status "started" (its eval is still running, or was stopped): not imported from a '
                          "folder until it has finished; name the file to import the samples it holds")
        return result
    config = run_config(path, sha, header)
    headline = _headline(header)
    left_out: dict[str, int] = {}
    with store.transaction():
        run_name = name or header.eval.task or path.stem
        writer = RunWriter(store, new_run(store, "eval", run_name, header.eval.model or "unknown", config))
        for sample in _samples(path, header):
            item, lost = sample_trajectory(sample, headline)
            for key in lost:
                left_out[key] = left_out.get(key, 0) + 1
            q = item.question
            item.qidx = writer.qidx_for(q.question, q.answer)
            item.question = Question(f"q{item.qidx}", q.question, q.answer)
            writer.add(item)
        writer.flush()
        if writer.written == 0:
            raise InputError(str(path), f"no samples to import (log status {header.status})", field="samples")
        finish(store, writer.run_id, {"imported_from": absolute(path), "format": FORMAT,
                                      "log_status": header.status, "metrics": _json_safe(_metrics(header))})
        result.runs.append((writer.run_id, run_name, writer.written))
    if header.status != "success":
        result.notes.append(f"log status {header.status!r}: imported the {writer.written} samples it holds")
    for key, n in left_out.items():
        result.notes.append(f"score {key!r} is not a number on {n} sample(s): left out of the rewards")
    return result
