"""verl rollout dumps: the JSONL files verl's PPO/GRPO trainer writes to `trainer.rollout_data_dir`.

The writer (read in volcengine/verl at commit b178a3cd, `git describe` v0.7.0-125, version
0.8.0.dev, January 2026): `RayPPOTrainer._dump_generations` in verl/trainer/ppo/ray_trainer.py,
called by `_log_rollout_data` once per training step. It writes the file
`{rollout_data_dir}/{global_steps}.jsonl`, one line per sample (`json.dumps(entry,
ensure_ascii=False)`, lines joined by "\\n", a final "\\n"), each an object with

    input   the prompt ids decoded with skip_special_tokens=True (the chat template's text is kept)
    output  the response ids decoded the same way
    gts     reward_model.ground_truth of the sample's data row (any JSON value, or null)
    score   token_level_scores summed over the response (a float; NaN is written as NaN)
    step    global_steps
    ...     every list of `reward_extra_infos_dict` as long as the batch (what the reward function
            returned besides the score, e.g. acc, pred), and request_id when present.

Older verl versions write the same file without `gts` (it is optional here). The same writer also
writes validation samples to `trainer.validation_data_dir`; such a folder imports the same way.
verl itself cannot run here (it needs Ray and GPUs): the tests build files the way this function
does.

How a dump becomes a run: one train run per folder (or single file). Each record is a text-only
trajectory (no token ids: the dump has none) with the messages [user: input, assistant: output].
step = the record's `step` (else the file name's number); the GRPO group = the records of one step
with the same input (verl repeats each prompt n times, interleaved), numbered in order of first
appearance, `sample` = its index in the group; advantage is unknown (null). Rewards: `score` as the
reward "score" (weight 1, the trajectory's reward); every other numeric or boolean field as a reward
of weight 0 (shown, not summed); other fields (pred, request_id, gts) go in the score reward's
detail. correct = `acc` when the record has a boolean or numeric `acc` (acc > 0), else score > 0:
verl's bundled scorers (verl/utils/reward_score, e.g. gsm8k, math) give 1.0 for a correct answer
and 0 (or a format score below it) otherwise, so score > 0 is correct for them; say otherwise with
`acc`. The gold answer is `gts` (a string as is, anything else as JSON). The model is "unknown"
(the dump does not name it). Each step's reward mean and std are stored as its step metrics.

Re-importing: the run's configuration is {"imported_from": the folder or file, absolute, "format":
"verl", "files": {file name: sha256 of its bytes}}. Importing the same folder again adds only the
files not yet in "files" (a training run still writing steps can be followed); a file whose
content changed since it was imported is not read again (said in the notes), and a file whose last
line has no final "\\n" is still being written and is left for the next import.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from core.data.records import InputError, Message, Question, RewardResult
from core.importers.common import (Line, RunWriter, StepStats, absolute, add_to_run, as_float, complete_file,
                                   finish, get_int, get_str, load_questions, read_records, sha256_file)
from core.importers.jsonl import SourceResult
from core.store.bulk import FinishedTrajectory
from core.store.store import Store, TrajectoryOutcome

FORMAT = "verl"
FIELDS = ("input", "output", "gts", "score", "step")
"""The fields `_dump_generations` always writes (gts since verl 0.5-era versions; optional here)."""
_STEP_FILE = re.compile(r"^(\d+)\.jsonl$")


def looks_like(record: dict[str, Any]) -> bool:
    """True when a first record is verl's: it has input, output and score, and no messages."""
    return "messages" not in record and all(k in record for k in ("input", "output", "score"))


def step_files(folder: Path) -> list[Path]:
    """The .jsonl files of a dump folder (not recursive): `{step}.jsonl` in step order, then any
    other .jsonl by name."""
    files = [p for p in folder.iterdir() if p.suffix == ".jsonl" and p.is_file()]

    def key(p: Path) -> tuple:
        m = _STEP_FILE.match(p.name)
        return (0, int(m.group(1)), p.name) if m else (1, 0, p.name)

    return sorted(files, key=key)


def _existing_run(store: Store, source: str) -> tuple[int, dict[str, Any]] | None:
    row = store.conn.execute(
        "SELECT id, config FROM runs WHERE json_valid(config) AND json_extract(config, '$.imported_from') = ?"
        " AND json_extract(config, '$.format') = ? ORDER BY id DESC LIMIT 1", (source, FORMAT)).fetchone()
    return None if row is None else (row[0], json.loads(row[1]))


def _gold(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_record(rec: dict[str, Any], line: Line, file_step: int | None) -> tuple[int, str, str, str, float | None,
                                                                                  bool | None, list[RewardResult]]:
    """One verl record as (step, input, output, gold answer, score, correct, rewards) (module
    docstring). InputError naming the file, line and field when a field is missing or mistyped."""
    text_in = get_str(rec, "input", line)
    text_out = get_str(rec, "output", line)
    if "score" not in rec:
        raise line.error("missing (verl writes the summed token-level score)", "score")
    score = rec["score"]
    if score is not None:
        score = as_float(score, line, "score")
        if not math.isfinite(score):
            score = None
    step = get_int(rec, "step", line, file_step)
    if step is None:
        raise line.error("missing, and the file name is not {step}.jsonl", "step")
    detail: dict[str, Any] = {"gts": rec.get("gts")}
    rewards = []
    acc = None
    for key, value in rec.items():
        if key in FIELDS:
            continue
        if isinstance(value, (bool, int, float)):
            v = float(value)
            if key == "acc":
                acc = v > 0
            if math.isfinite(v):
                rewards.append(RewardResult(key, v, 0.0, {"from": "reward_extra_info"}))
        else:
            detail[key] = value
    if score is not None:
        rewards.insert(0, RewardResult("score", score, 1.0, detail))
    correct = acc if acc is not None else (None if score is None else score > 0)
    return step, text_in, text_out, _gold(rec.get("gts")), score, correct, rewards


def import_verl(store: Store, path: str | Path, *, name: str | None = None) -> SourceResult:
    """Import a verl rollout folder (or one step file) as one train run, or add the steps that are
    new since it was last imported (module docstring); one transaction.

    InputError (file, line, field) for a malformed record, a folder without .jsonl files; nothing
    is written then."""
    path = Path(path)
    source = absolute(path)
    result = SourceResult(str(path))
    if path.is_dir():
        files = step_files(path)
        if not files:
            raise InputError(str(path), "no .jsonl step files in this folder (verl writes {step}.jsonl)")
    else:
        files = [path]
    existing = _existing_run(store, source)
    known: dict[str, str] = dict(existing[1].get("files", {})) if existing else {}
    todo = []
    for f in files:
        if not complete_file(f):
            result.notes.append(f"{f.name}: still being written (no final newline), left for the next import")
            continue
        sha = sha256_file(f)
        if f.name in known:
            if known[f.name] != sha:
                result.notes.append(f"{f.name}: changed since it was imported, not read again")
            continue
        todo.append((f, sha))
    if not todo:
        result.skipped = (f"already imported as run {existing[0]}, no new step files" if existing
                          else "no complete step files")
        return result
    with store.transaction():
        # Looked at again under the write lock: another process may have imported these files since.
        existing = _existing_run(store, source)
        known = dict(existing[1].get("files", {})) if existing else {}
        todo = [(f, sha) for f, sha in todo if f.name not in known]
        if not todo:
            result.skipped = f"already imported as run {existing[0]}, no new step files" if existing else None
            return result
        run_id, config = add_to_run(store, existing, name, result.notes,
                                    {"imported_from": source, "format": FORMAT, "files": {}},
                                    path.name if path.is_dir() else path.stem)
        writer = RunWriter(store, run_id, load_questions(store, run_id))
        stats = StepStats(FORMAT)
        for f, sha in todo:
            m = _STEP_FILE.match(f.name)
            file_step = int(m.group(1)) if m else None
            writer.flush()  # group ids of earlier files are in the table before the next base is read
            base = store.next_group_id(run_id)
            groups: dict[tuple[int, str], list[int]] = {}
            for line, rec in read_records(f):
                step, text_in, text_out, gold, score, correct, rewards = parse_record(rec, line, file_step)
                group = groups.setdefault((step, text_in), [base + len(groups), 0])
                sample, group[1] = group[1], group[1] + 1
                qidx = writer.qidx_for(text_in, gold)
                messages = [Message("user", text_in, 0), Message("assistant", text_out, 1)]
                item = FinishedTrajectory(
                    qidx=qidx, question=Question(f"q{qidx}", text_in, gold), messages=messages,
                    outcome=TrajectoryOutcome(status="done", finish_reason=None, final_answer=text_out, turns=1,
                                              tool_calls=0, tool_errors=0, tokens=None, rewards=rewards,
                                              reward=score, correct=correct),
                    sample=sample, step=step, group_id=group[0])
                writer.add(item)
                stats.add(item)
            config["files"][f.name] = sha
        writer.flush()
        stats.write(store, run_id)
        store.set_config(run_id, config)
        finish(store, run_id, {"imported_from": source, "format": FORMAT, "files": len(config["files"])})
        result.runs.append((run_id, store.run(run_id)["name"], writer.written))
    return result
