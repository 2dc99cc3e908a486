"""What every importer shares: reading a JSONL file line by line with the file and line in every
error, checking fields, fingerprints, and writing one run's trajectories in one transaction.

Errors: a file that cannot be read, a line that is not UTF-8 or not one JSON object, and a field
of the wrong type raise core.data.records.InputError naming the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from core.data.records import InputError, Question
from core.store.bulk import FinishedTrajectory
from core.store.store import Store

BATCH = 1000
"""Trajectories handed to Store.bulk_write at a time (inside the import's one transaction), so
memory stays flat as a file grows."""

_MISSING = object()


@dataclass
class Line:
    """Where a record came from: its file and 1-based line, for error messages."""

    path: Path
    number: int

    def error(self, message: str, field: str | None = None) -> InputError:
        """An InputError naming this file, line and `field`."""
        return InputError(str(self.path), message, line=self.number, field=field)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read 1 MiB at a time. InputError when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def complete_file(path: Path) -> bool:
    """False when the file's last byte is not "\\n" (verl and prime-rl end every line with one): an
    empty file or one still being written, left for a later import. InputError when unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) == b"\n"
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc})") from None


def read_records(path: Path, *, complete_only: bool = False) -> Iterator[tuple[Line, dict[str, Any]]]:
    """(line, record) for each non-blank line of a JSONL file, streamed. With `complete_only`, a
    last line without its b"\n" (a writer still appending it) is left out, not an error.

    Each line must be UTF-8 holding one JSON object (json.loads; NaN and Infinity literals are
    accepted, as Python's json.dumps writes them). Lines end at b"\\n" only, so U+2028 and
    friends inside a string do not split a record. InputError (file, line) otherwise."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror or exc})") from None
    with f:
        for number, raw in enumerate(f, start=1):
            if complete_only and not raw.endswith(b"\n"):
                return
            line = Line(path, number)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise line.error(f"not UTF-8 text (byte {exc.start})") from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = (f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError)
                          else "nested too deeply")
                raise line.error(f"not valid JSON ({reason}); each line must be one JSON object") from None
            if not isinstance(record, dict):
                raise line.error(f"a JSON {type(record).__name__}, not an object; each line must be one JSON object")
            yield line, record


def first_record(path: Path) -> dict[str, Any] | None:
    """The first record of a JSONL file (None when it has none); errors as read_records."""
    for _, record in read_records(path):
        return record
    return None


# ------------------------------------------------------------------------------------ field checks
def _type_name(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def get_str(rec: dict, key: str, line: Line, default: Any = _MISSING) -> Any:
    """rec[key] as a string; `default` when absent or null (InputError when there is none)."""
    value = rec.get(key)
    if value is None:
        if default is _MISSING:
            raise line.error("missing (a string is required)", key)
        return default
    if not isinstance(value, str):
        raise line.error(f"must be a string, not a {_type_name(value)}", key)
    return value


def get_int(rec: dict, key: str, line: Line, default: Any = None) -> Any:
    """rec[key] as an int (a float with an integral value is accepted); `default` when absent or null."""
    value = rec.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 63:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise line.error(f"must be an integer, not a {_type_name(value)}", key)
    if not -2 ** 63 <= value < 2 ** 63:
        raise line.error("out of the 64-bit integer range", key)
    return value


def get_float(rec: dict, key: str, line: Line, default: Any = None) -> Any:
    """rec[key] as a finite float; `default` when absent, null, NaN or infinite (as the export
    writes null for them)."""
    value = rec.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise line.error(f"must be a number, not a {_type_name(value)}", key)
    value = float(value)
    return value if math.isfinite(value) else default


def get_bool(rec: dict, key: str, line: Line) -> bool | None:
    """rec[key] as a bool: true/false, 1/0 (as the store writes `correct`), or None when absent or null."""
    value = rec.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise line.error(f"must be true, false, 1, 0 or null, not {json.dumps(value)[:40]}", key)


def as_float(value: Any, line: Line, field: str) -> float:
    """A JSON number as a float (InputError for anything else, booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise line.error(f"must be a number, not a {_type_name(value)}", field)
    return float(value)


# ------------------------------------------------------------------------------------ fingerprints
def already_imported(store: Store, sha: str) -> str | None:
    """Why a source whose bytes hash to `sha` (hex sha256) is skipped, or None when no run was
    imported from the same content (under any path)."""
    existing = imported_runs(store, "source_sha256", sha)
    if not existing:
        return None
    return (f"already imported (same content, sha256 {sha[:12]}) as run"
            f"{'s' if len(existing) > 1 else ''} {', '.join(map(str, existing))}")


def grown_from(store: Store, source: str, file: Path) -> tuple[int, int] | None:
    """(run id, its byte count) of the newest run imported from `source` (config imported_from)
    whose file `file` has since grown: `file` is longer than the run's `source_bytes` and its first
    source_bytes bytes hash to the run's `source_sha256`. An append-only writer (vf-eval's
    results.jsonl, verifiers' v1 traces.jsonl) adds lines as rollouts finish; such a run is replaced
    by a new import of the whole file, so nothing is doubled and nothing earlier lost. None when
    there is no such run (runs imported before source_bytes was stored included)."""
    size = file.stat().st_size
    for run_id in reversed(imported_runs(store, "imported_from", source)):
        config = store.run(run_id)["config"]
        old, sha = config.get("source_bytes"), config.get("source_sha256")
        if isinstance(old, int) and isinstance(sha, str) and 0 < old < size and prefix_sha256(file, old) == sha:
            return run_id, old
    return None


def prefix_sha256(path: Path, n: int) -> str:
    """Hex sha256 of the first `n` bytes of `path`."""
    digest = hashlib.sha256()
    left = n
    with path.open("rb") as f:
        while left > 0:
            block = f.read(min(left, 1 << 20))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def imported_runs(store: Store, key: str, value: str) -> list[int]:
    """Ids of runs whose configuration has `key` equal to `value` (e.g. source_sha256), oldest first."""
    return [r[0] for r in store.conn.execute(
        "SELECT id FROM runs WHERE json_valid(config) AND json_extract(config, '$.' || ?) = ? ORDER BY id",
        (key, value))]


# ------------------------------------------------------------------------------------ writing
@dataclass
class RunWriter:
    """One imported run being written: trajectories go to Store.bulk_write in batches of BATCH,
    inside the caller's transaction (Store.transaction), so a failure anywhere leaves nothing.

    Extra columns bulk_write does not take (trainer_logprobs, token_exact) are set right after
    each batch, in the same transaction."""

    store: Store
    run_id: int
    questions: dict[tuple[str, str], int] = field(default_factory=dict)
    """(question, gold answer) -> qidx of the questions written so far."""
    pending: list[tuple[FinishedTrajectory, list[float] | None, bool | None]] = field(default_factory=list)
    written: int = 0
    next_qidx: int = 0

    def __post_init__(self) -> None:
        self.next_qidx = max(self.questions.values(), default=-1) + 1

    def qidx_for(self, question: str, answer: str, qidx: int | None = None) -> int:
        """The qidx of a question: `qidx` when the record gives one, else one per distinct
        (question, answer), numbered in order of first appearance after the run's existing ones."""
        key = (question, answer)
        if qidx is None:
            qidx = self.questions.get(key)
            if qidx is None:
                qidx = self.next_qidx
        if key not in self.questions:
            self.questions[key] = qidx
            self.next_qidx = max(self.next_qidx, qidx + 1)
            self.store.add_questions(self.run_id, [Question(f"q{qidx}", question, answer)], start=qidx)
        return qidx

    def add(self, item: FinishedTrajectory, trainer_logprobs: list[float] | None = None,
            token_exact: bool | None = None) -> None:
        self.pending.append((item, trainer_logprobs, token_exact))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        ids = self.store.bulk_write(self.run_id, [p[0] for p in self.pending])
        from core.rollout.tokens import TokenSequence

        trainer = [(TokenSequence.logprob_blob(t), tid) for tid, (_, t, _) in zip(ids, self.pending) if t is not None]
        if trainer:
            self.store.conn.executemany("UPDATE tokens SET trainer_logprobs=? WHERE trajectory_id=?", trainer)
        exact = [(int(e), tid) for tid, (_, _, e) in zip(ids, self.pending) if e is not None]
        if exact:
            self.store.conn.executemany("UPDATE trajectories SET token_exact=? WHERE id=?", exact)
        self.written += len(ids)
        self.pending.clear()


def load_questions(store: Store, run_id: int) -> dict[tuple[str, str], int]:
    """(question, answer) -> qidx of a run's questions (to continue a run already imported)."""
    return {(q, a): i for i, q, a in store.conn.execute(
        "SELECT qidx, question, answer FROM questions WHERE run_id=?", (run_id,))}


def new_run(store: Store, kind: str, name: str, model: str, config: dict[str, Any], *,
            parent_run_id: int | None = None, train_step: int | None = None) -> int:
    """Create an imported run inside the caller's transaction. Its heartbeat is stopped at once:
    the run is finished ('done') before the transaction commits, so no other process ever sees
    it running. An eval made during training names its train run and step, as --eval-every's
    held-out evals do (core.train.trainer)."""
    run_id = store.create_run(kind, name, model, config, parent_run_id=parent_run_id, train_step=train_step)
    if store.heartbeat is not None:
        store.heartbeat.remove(run_id)
    return run_id


def add_to_run(store: Store, existing: tuple[int, dict[str, Any]] | None, name: str | None, notes: list[str],
               config: dict[str, Any], default_name: str) -> tuple[int, dict[str, Any]]:
    """(run id, configuration) of the train run a folder's new step files go into, inside the
    caller's transaction: the `existing` (id, configuration) one, saying in `notes` that a --name
    is ignored then, or a new run of `config` named `name`, else `default_name` (verl, prime-rl)."""
    if existing:
        if name:
            notes.append(f"--name ignored: steps are added to run {existing[0]}")
        return existing
    return new_run(store, "train", name or default_name, "unknown", config), config


def finish(store: Store, run_id: int, summary: dict[str, Any]) -> None:
    """Mark an imported run 'done' with n_planned = its trajectories and `summary`, inside the
    caller's transaction. Its created_at / finished_at become the source's: the earliest started_at
    and latest finished_at of its trajectories, so its duration and tokens per second describe the
    run that was recorded, not the import; a source without times gets finished_at = created_at
    (no duration: no rate)."""
    n, first, last = store.conn.execute(
        "SELECT COUNT(*), MIN(started_at), MAX(COALESCE(finished_at, started_at)) FROM trajectories WHERE run_id=?",
        (run_id,)).fetchone()
    store.conn.execute("UPDATE runs SET n_planned=?, pid=NULL WHERE id=?", (n, run_id))
    store.finish_run(run_id, "done", summary={**summary, "trajectories": n, "imported_at": time.time()})
    if first is not None and last is not None and last >= first:
        store.conn.execute("UPDATE runs SET created_at=?, finished_at=? WHERE id=?", (first, last, run_id))
    else:
        store.conn.execute("UPDATE runs SET finished_at=created_at WHERE id=?", (run_id,))


def absolute(path: Path) -> str:
    """The path as stored in a run's configuration: absolute, not resolving links."""
    return os.path.abspath(path)


class StepStats:
    """The metrics TRL logs per GRPO step (trl/trainer/grpo_trainer.py, TRL 1.16), recomputed from
    the trajectories an importer writes into a train run, so an imported step reads as a step this
    project trained does (the steps screen's columns). Per step:

        reward                   mean trajectory reward (trajectories without one left out)
        reward_std               their standard deviation with Bessel's correction (TRL's nanstd);
                                 absent for a step with one reward
        frac_reward_zero_std     share of the step's groups whose rewards are all equal (TRL: the
                                 group's std within 1e-8 of 0; a group of one reward has no std, so
                                 is not counted as equal); groups without rewards left out
        completions/mean_length  mean number of trained (mask 1) tokens per trajectory; only when
                                 every trajectory of the step has tokens
        imported_from            the source format (the mask lint does not check these against
                                 the trajectories they were computed from)
    """

    def __init__(self, source: str):
        self.source = source
        self._rewards: dict[int, dict[int, list[float]]] = {}
        """step -> group -> rewards."""
        self._trained: dict[int, list[int | None]] = {}
        """step -> trained tokens of each trajectory (None: no tokens)."""

    def add(self, item: FinishedTrajectory) -> None:
        """Count one written trajectory (its step, group_id, reward and tokens); one without a
        step is not counted."""
        step = item.step
        if step is None:
            return
        reward = item.outcome.reward
        groups = self._rewards.setdefault(step, {})
        if reward is not None and math.isfinite(reward):
            groups.setdefault(item.group_id if item.group_id is not None else -1, []).append(reward)
        tokens = item.outcome.tokens
        self._trained.setdefault(step, []).append(None if tokens is None else len(tokens.mask) - tokens.mask.count(0))

    def metrics(self) -> dict[int, dict[str, float | str]]:
        """step -> its metrics (above), for every step counted."""
        out: dict[int, dict[str, float | str]] = {}
        for step in sorted(set(self._rewards) | set(self._trained)):
            m: dict[str, float | str] = {}
            groups = self._rewards.get(step, {})
            values = [r for g in groups.values() for r in g]
            if values:
                m["reward"] = statistics.fmean(values)
                if len(values) > 1:
                    m["reward_std"] = statistics.stdev(values)  # Bessel's correction, as TRL's nanstd
                # TRL's is_std_zero: isclose(nanstd, 0), False for a group of one (its nanstd is NaN)
                m["frac_reward_zero_std"] = sum(len(g) > 1 and statistics.stdev(g) <= 1e-8
                                                for g in groups.values()) / len(groups)
            trained = self._trained.get(step, [])
            if trained and all(t is not None for t in trained):
                m["completions/mean_length"] = sum(trained) / len(trained)  # type: ignore[arg-type]
            m["imported_from"] = self.source
            out[step] = m
        return out

    def write(self, store: Store, run_id: int) -> None:
        """Store each counted step's metrics (Store.add_train_step, replacing the step's row)
        inside the caller's transaction."""
        for step, m in self.metrics().items():
            store.add_train_step(run_id, step, m)

