"""prime-rl output folders: one train run from the verifiers v1 episodes prime-rl writes per step,
its held-out evals, its metric log and its trainer's token export.

Read in PrimeIntellect-ai/prime-rl at commit 559b4477 (v0.8.1.dev67, August 2026); prime-rl itself
needs GPUs and is not run here: the test fixtures (tests/fixtures/verifiers_v1/make_traces.py) are
written by verifiers 0.4.0's own code in prime-rl's line format. Everything a run folder
`{output_dir}/{run name}/` holds that is read:

    rollouts/step_N/train/effective/traces.jsonl
        the batch the trainer trained on at step N (src/prime_rl/monitors/file.py `log_episodes`:
        orjson.dumps(episode.to_record()), written when the step is finalized, with advantages):
        step N of the train run, each episode parsed by core.importers.verifiers_traces
        (parse_episode: one trajectory per branch, tokens, mask, logprobs, mean advantage). Its
        step metrics are computed from its trajectories (common.StepStats: reward, reward_std,
        frac_reward_zero_std, completions/mean_length, as TRL logs them).
    rollouts/step_N/eval/effective/traces.jsonl
        the held-out eval prime-rl runs at step N (evals/evals.py finalize_eval_batch): one eval run
        per env it holds, named "<train run>-step<N>-<env name>", whose parent is the train run and
        train_step N, as this project's --eval-every evals (the steps screen shows its mean reward
        and, by prime-rl's solve rule, its accuracy). An eval before any train step (the base model
        at step 0) makes the train run, named from its episodes.
    metrics.jsonl
        what prime-rl's trainer and orchestrator log per step (FileMonitor.log_metrics): every
        number of a step's lines is added to that step (logged_metrics; the steps screen's loss,
        entropy, mismatch KL, grad norm, learning rate and step time come from the trainer's names
        in STEP_METRICS); read again whenever it has grown.
    token_exports/step_N/rank_R.jsonl
        the trainer's token export (trainer/rl/token_export.py TokenExporter, with
        enable_token_export): each sequence gives the step's trajectory with the same token ids
        its trainer logprobs (nats where loss_mask is true, NaN elsewhere: Store.set_trainer_logprobs,
        the token view's gap mode). Read once the step's STABLE marker is there (every rank wrote)
        and its trajectories are imported; a sequence matching none (cut at the trainer's length)
        is counted in the notes.

Not read: the `all` subsets (supersets written one episode at a time before advantages exist:
reading both would duplicate rollouts; the first import's notes say how many were left), the
orchestrator's and trainer's checkpoints and logs.

Run: {"imported_from": the folder, "format": "verifiers", "layout": "prime-rl", "files": {path under
rollouts/ (token exports: under the run folder): sha256}, "metrics_bytes"}. Importing again adds only
the step, eval and export files not yet in "files" (a changed one is not read again, said in the
notes) and re-reads a grown metrics.jsonl, in one transaction that looks at "files" again under its
write lock (two importers of one growing folder never import a step twice). A step file without a
final newline is still being written and is left for later. Detection (core.importers.detect): a
folder holding rollouts/step_N/{train,eval}/*/traces.jsonl, or that rollouts/ folder itself.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from core.importers.common import (Line, RunWriter, StepStats, absolute, add_to_run, complete_file, finish,
                                   load_questions, new_run, read_records, sha256_file)
from core.importers.jsonl import SourceResult
from core.importers.verifiers import _int_list
from core.importers.verifiers_traces import FORMAT, TRACES, _Grouper, _notes, _Tally, parse_episode
from core.store.store import Store

TRAIN_FILE = ("train", "effective", TRACES)
"""The file of a prime-rl step folder read as its training batch."""
EVAL_FILE = ("eval", "effective", TRACES)
"""The file of a prime-rl step folder read as its held-out evaluation (every episode of the epochs
finished at that step; prime-rl's evals/evals.py finalize_eval_batch)."""
METRICS_FILE = "metrics.jsonl"
"""prime-rl's metric log in the run folder beside rollouts/ (src/prime_rl/monitors/file.py
FileMonitor.log_metrics: one {"step", "time", name: value, ...} line per log call; the trainer and
the orchestrator append to the same file under the `rl` entrypoint)."""
STEP_METRICS = {"loss": "loss/mean", "entropy": "entropy/all/mean", "mismatch_kl": "mismatch_kl/all/mean",
                "grad_norm": "optim/grad_norm", "learning_rate": "optim/lr", "step_seconds": "time/step"}
"""This project's step metric name -> the prime-rl trainer's (src/prime_rl/trainer/rl/train.py at
559b4477). mismatch_kl is the trainer-vs-inference KL, not a KL to a reference model."""
TOKEN_EXPORTS = "token_exports"
"""prime-rl's trainer token export beside rollouts/ (src/prime_rl/trainer/rl/token_export.py at
559b4477, TokenExporter, on with enable_token_export): `token_exports/step_N/rank_R.jsonl`, one line
per sequence the trainer trained on ({step, rank, token_ids, loss_mask, inference_logprobs,
trainer_logprobs, importance_ratio, ...}, one value per token), and `step_N/STABLE` once every rank
has written its file."""
OWN_STEP_METRICS = ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "imported_from")
"""The step metrics computed from the imported trajectories (common.StepStats), which a name in
metrics.jsonl does not replace."""
_STEP_DIR = re.compile(r"^step_(\d+)$")


def rollouts_folder(path: Path) -> Path | None:
    """The prime-rl rollouts/ folder of `path` (an output folder holding rollouts/, or rollouts/
    itself) when it has a step_N folder with a train/*/traces.jsonl or eval/*/traces.jsonl (a run
    that has only evaluated its base model so far); else None. Never raises."""
    try:
        if not path.is_dir():
            return None
        for folder in (path / "rollouts", path):
            if folder.is_dir() and any(_STEP_DIR.match(p.name) and any(p.glob(f"*/*/{TRACES}"))
                                       for p in folder.iterdir() if p.is_dir()):
                return folder
    except OSError:
        return None
    return None


def step_files(rollouts: Path) -> tuple[list[tuple[int, Path]], list[tuple[int, Path]], int]:
    """((step, file) of each step_N/train/effective/traces.jsonl in step order, the same of each
    step_N/eval/effective/traces.jsonl, the number of other traces.jsonl files under the step
    folders (the `all` subsets), not read)."""
    train, evals, others = [], [], 0
    for p in rollouts.iterdir():
        m = _STEP_DIR.match(p.name)
        if not (m and p.is_dir()):
            continue
        for f in p.glob(f"*/*/{TRACES}"):
            if f == p.joinpath(*TRAIN_FILE):
                train.append((int(m.group(1)), f))
            elif f == p.joinpath(*EVAL_FILE):
                evals.append((int(m.group(1)), f))
            else:
                others += 1
    return sorted(train), sorted(evals), others


def _existing_run(store: Store, source: str) -> tuple[int, dict[str, Any]] | None:
    row = store.conn.execute(
        "SELECT id, config FROM runs WHERE json_valid(config) AND json_extract(config, '$.imported_from') = ?"
        " AND json_extract(config, '$.format') = ? AND json_extract(config, '$.layout') = 'prime-rl'"
        " ORDER BY id DESC LIMIT 1", (source, FORMAT)).fetchone()
    return None if row is None else (row[0], json.loads(row[1]))


def logged_metrics(path: Path) -> dict[int, dict[str, float]]:
    """step -> {name: value} of prime-rl's metrics.jsonl: every finite number of the step's lines
    (a later line wins), `time` left out, plus STEP_METRICS' names for the trainer's. A last line
    still being written is left for later. InputError (file, line, field) for a line that is not
    a JSON object or has no integer step."""
    steps: dict[int, dict[str, float]] = {}
    for line, rec in read_records(path, complete_only=True):
        step = rec.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step != int(step):
            raise line.error("missing or not an integer (each prime-rl metric line names its step)", "step")
        values = steps.setdefault(int(step), {})
        for name, value in rec.items():
            if name not in ("step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                values[name] = float(value)
    for values in steps.values():
        values.update({ours: values[theirs] for ours, theirs in STEP_METRICS.items() if theirs in values})
    return steps


def _merge_logged(store: Store, run_id: int, path: Path) -> int:
    """Merge metrics.jsonl into the stored steps of run `run_id` (the metrics StepStats computed
    from the step's trajectories kept); returns how many steps it changed. Inside the caller's
    transaction."""
    logged = logged_metrics(path)
    changed = 0
    for row in store.train_steps(run_id):
        step = row.pop("step")
        if step not in logged:
            continue
        merged = {**row, **logged[step], **{k: v for k, v in row.items() if k in OWN_STEP_METRICS}}
        if merged != row:
            store.add_train_step(run_id, step, merged)
            changed += 1
    return changed


def export_files(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, file) of each token_exports/step_N/rank_R.jsonl of a step folder holding STABLE (all
    ranks written), in step order; [] when there are none or the folder cannot be listed."""
    out = []
    try:
        for folder in (run_dir / TOKEN_EXPORTS).iterdir():
            m = _STEP_DIR.match(folder.name)
            if m and folder.is_dir() and (folder / "STABLE").exists():
                out += [(int(m.group(1)), f) for f in sorted(folder.glob("rank_*.jsonl"))]
    except OSError:
        return []
    return sorted(out)


def _trainer_logprobs(rec: dict[str, Any], line: Line) -> tuple[bytes, list[float]]:
    """One token export record as (its token ids as the store keeps them: int32 little-endian
    bytes, the trainer's logprob of each token: nats where loss_mask is true, NaN elsewhere and
    where the trainer wrote null or a value that is not finite). InputError (file, line, field)."""
    ids = _int_list(rec.get("token_ids"), line, "token_ids")
    n = len(ids)
    mask = rec.get("loss_mask")
    if not isinstance(mask, list) or len(mask) != n or not all(isinstance(b, bool) for b in mask):
        raise line.error(f"must be a list of {n} true/false values, one per token_ids", "loss_mask")
    lps = rec.get("trainer_logprobs")
    if not isinstance(lps, list) or len(lps) != n:
        raise line.error(f"must be a list of {n} numbers or nulls, one per token_ids", "trainer_logprobs")
    nan = float("nan")
    values = []
    for m, lp in zip(mask, lps):
        if lp is not None and (isinstance(lp, bool) or not isinstance(lp, (int, float))):
            raise line.error("every value must be a number or null", "trainer_logprobs")
        values.append(float(lp) if m and lp is not None and math.isfinite(lp) else nan)
    return np.asarray(ids, dtype="<i4").tobytes(), values


def _import_exports(store: Store, run_id: int, todo: list[tuple[int, Path, str, str]]) -> tuple[int, int]:
    """Store the trainer logprobs of each token export record of `todo` on the trajectory of its
    step whose token ids are the record's (the first not yet given one, for identical sequences);
    returns (matched, unmatched). Inside the caller's transaction. InputError (file, line, field)."""
    matched = unmatched = 0
    by_ids: dict[int, dict[bytes, list[int]]] = {}
    for step, f, _, _ in todo:
        if step not in by_ids:
            by_ids[step] = {}
            for tid, blob in store.conn.execute(
                    "SELECT t.id, k.ids FROM trajectories t JOIN tokens k ON k.trajectory_id = t.id"
                    " WHERE t.run_id = ? AND t.step = ? ORDER BY t.id", (run_id, step)):
                by_ids[step].setdefault(bytes(blob), []).append(tid)
        for line, rec in read_records(f):
            key, values = _trainer_logprobs(rec, line)
            tids = by_ids[step].get(key)
            if tids:
                store.set_trainer_logprobs(tids.pop(0), values)
                matched += 1
            else:
                unmatched += 1
    return matched, unmatched


def _todo(rollouts: Path, files: list[tuple[int, Path]], known: dict[str, str],
          result: SourceResult) -> list[tuple[int, Path, str, str]]:
    """(step, file, path under rollouts/, sha256) of the complete step files not yet imported; a
    file still being written or changed since its import is said in the notes."""
    todo = []
    for step, f in files:
        rel = f.relative_to(rollouts).as_posix()
        if not complete_file(f):
            result.notes.append(f"{rel}: still being written (no final newline), left for the next import")
            continue
        sha = sha256_file(f)
        if rel in known:
            if known[rel] != sha:
                result.notes.append(f"{rel}: changed since it was imported, not read again")
            continue
        todo.append((step, f, rel, sha))
    return todo


def import_prime_rl(store: Store, path: Path, rollouts: Path, *, name: str | None = None) -> SourceResult:
    """A prime-rl output (or rollouts/) folder as one train run, or the step files new since it was
    last imported (module docstring); each step's held-out eval as eval runs linked to the train
    run and step. One transaction. InputError (file, line, field); nothing written then."""
    source = absolute(path)
    result = SourceResult(str(path))
    files, eval_files, others = step_files(rollouts)
    existing = _existing_run(store, source)
    known: dict[str, str] = dict(existing[1].get("files", {})) if existing else {}
    todo = _todo(rollouts, files, known, result)
    eval_todo = _todo(rollouts, eval_files, known, result)
    # a step's token export is read once that step's trajectories are in the run
    trained_steps = {step for step, f in files if f.relative_to(rollouts).as_posix() in known} | {t[0] for t in todo}
    export_todo = [t for t in _todo(rollouts.parent, export_files(rollouts.parent), known, result)
                   if t[0] in trained_steps]
    metrics_file = rollouts.parent / METRICS_FILE
    metrics_bytes = metrics_file.stat().st_size if metrics_file.is_file() else None
    metrics_grown = existing is not None and metrics_bytes not in (None, existing[1].get("metrics_bytes"))
    if not todo and not eval_todo and not export_todo and not metrics_grown:
        result.skipped = (f"already imported as run {existing[0]}, no new step files" if existing
                          else f"no complete step_N/{'/'.join(TRAIN_FILE)} files")
        return result
    if others and not existing:  # said once, on the first import, not on every poll of a followed folder
        result.notes.append(f"{others} traces.jsonl files of the `all` subset not read (the train run is "
                            f"read from step_N/{'/'.join(TRAIN_FILE)}, its evals from step_N/{'/'.join(EVAL_FILE)})")
    with store.transaction():
        # Looked at again under the write lock: another process may have imported these files since.
        seen = existing
        existing = _existing_run(store, source)
        if existing is not None and existing != seen:
            known = dict(existing[1].get("files", {}))
            todo = [t for t in todo if t[2] not in known]
            eval_todo = [t for t in eval_todo if t[2] not in known]
            export_todo = [t for t in export_todo if t[2] not in known]
            if not todo and not eval_todo and not export_todo and metrics_bytes in (None,
                                                                                   existing[1].get("metrics_bytes")):
                result.skipped = f"already imported as run {existing[0]}, no new step files"
                return result
        run_id, config = add_to_run(store, existing, name, result.notes,
                                    {"imported_from": source, "format": FORMAT, "layout": "prime-rl", "files": {}},
                                    path.name)
        writer = RunWriter(store, run_id, load_questions(store, run_id))
        grouper = _Grouper(store, writer)
        stats = StepStats("prime-rl")
        tally = _Tally()
        for step, f, rel, sha in todo:
            grouper.new_step()
            for p in tally.episodes(f):
                grouper.add(p, step)
                stats.add(p.item)
            config["files"][rel] = sha
        writer.flush()
        stats.write(store, run_id)
        if export_todo:
            matched, unmatched = _import_exports(store, run_id, export_todo)
            config["files"].update({rel: sha for _, _, rel, sha in export_todo})
            result.notes.append(f"{TOKEN_EXPORTS}: the trainer's logprobs of {matched} trajector"
                                f"{'y' if matched == 1 else 'ies'}" + (
                                    f" ({unmatched} exported sequence{'' if unmatched == 1 else 's'} matched no "
                                    "trajectory of its step: cut at the trainer's length, or not in the batch)"
                                    if unmatched else ""))
        first = tally.first
        if first is None and eval_todo:  # evals before any train step (prime-rl evaluates the base model at step 0)
            for line, rec in read_records(eval_todo[0][1]):
                first = parse_episode(rec, line)[1]
                break
        if not existing and first is not None:
            title = name or first.run_name or path.name
            store.conn.execute("UPDATE runs SET name=?, model=? WHERE id=?", (title, first.model or "unknown", run_id))
            if first.env:
                config["env_id"] = first.env
        if metrics_bytes is not None:
            if n := _merge_logged(store, run_id, metrics_file):
                result.notes.append(f"{METRICS_FILE}: the logged metrics of {n} step{'s' if n != 1 else ''}")
            config["metrics_bytes"] = metrics_bytes
        train_name, train_model = store.run(run_id)["name"], store.run(run_id)["model"]
        for step, f, rel, sha in eval_todo:
            for eval_id, eval_name, n in _import_step_eval(store, run_id, train_name, train_model, step, f, sha,
                                                           tally):
                result.runs.append((eval_id, eval_name, n))
            config["files"][rel] = sha
        store.set_config(run_id, config)
        finish(store, run_id, {"imported_from": source, "format": FORMAT, "layout": "prime-rl",
                               "files": len(config["files"])})
        result.runs.insert(0, (run_id, train_name, writer.written))
    _notes(result, tally.extra, tally.no_traces)
    return result


def _import_step_eval(store: Store, train_id: int, train_name: str, train_model: str, step: int, f: Path,
                      sha: str, tally: _Tally) -> list[tuple[int, str, int]]:
    """The held-out eval of one step file (step_N/eval/effective/traces.jsonl) as one eval run per
    env it holds, named "<train run>-step<N>-<env>", linked to the train run and step as
    --eval-every's own evals are (runs.parent_run_id, train_step; the steps screen shows their
    reward). Inside the caller's transaction; returns (run id, name, trajectories) of each."""
    runs: dict[str, tuple[int, str, RunWriter, _Grouper]] = {}
    for line, rec in read_records(f):
        parsed, info = parse_episode(rec, line)
        tally.extra += info.extra_branches
        tally.no_traces += info.no_traces
        env = info.env_name or info.env or "eval"
        if env not in runs:
            config = {"imported_from": absolute(f), "format": FORMAT, "layout": "prime-rl eval",
                      "source_sha256": sha, "env_id": info.env, "env_name": info.env_name}
            eval_name = f"{train_name}-step{step}-{env}"
            eval_id = new_run(store, "eval", eval_name, info.model or train_model, config, parent_run_id=train_id,
                              train_step=step)
            writer = RunWriter(store, eval_id)
            grouper = _Grouper(store, writer)
            grouper.new_step()
            runs[env] = (eval_id, eval_name, writer, grouper)
        for p in parsed:
            runs[env][3].add(p)
    out = []
    for eval_id, eval_name, writer, _ in runs.values():
        writer.flush()
        finish(store, eval_id, {"imported_from": absolute(f), "format": FORMAT, "layout": "prime-rl eval"})
        out.append((eval_id, eval_name, writer.written))
    return out
