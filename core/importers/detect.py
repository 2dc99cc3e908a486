"""Which importer reads a path: `--format auto`.

By extension first (a JSONL family file or a folder of them; formats this project does not read
yet are named; `.eval`, and a `.json` that begins like an Inspect log, is an Inspect log:
core.importers.inspect_log.sniff), then by the keys of the first record: `messages` is the
documented JSONL (core.importers.jsonl), `input`/`output`/`score` is a verl rollout dump
(core.importers.verl), `prompt`/`completion` with `example_id` or `reward` a verifiers results file
(core.importers.verifiers), a `traces` list with a `task` or `env` object a verifiers v1 episode
(core.importers.verifiers_traces), `version`/`status`/`eval` an Inspect log on one line. A folder
holding results.jsonl is a verifiers results folder, one holding traces.jsonl a verifiers v1 eval,
one holding rollouts/step_N/train/*/traces.jsonl (or that rollouts/ itself) a prime-rl run; all
three are "verifiers". Any other folder is read by its own files (not recursively): its .jsonl
files by the first one's first record (a verl rollout folder, or documented JSONL files), else its
Inspect logs (`.eval`, and `.json` files that begin like one: inspect_logs), each one run. A
folder holding both .jsonl files and Inspect logs is refused (InputError naming both: `--format
inspect` reads only the logs, `--format verl` / `jsonl` only the .jsonl files), so a stray file never
decides silently what a folder means. Other importers add themselves to SNIFFERS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from core.data.records import InputError
from core.importers import inspect_log, jsonl, prime_rl, verifiers, verifiers_traces, verl
from core.importers.common import first_record

SNIFFERS: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [("inspect", inspect_log.looks_like),
                                                                ("verl", verl.looks_like),
                                                                ("verifiers", verifiers.looks_like),
                                                                ("verifiers", verifiers_traces.looks_like),
                                                                ("jsonl", jsonl.looks_like)]
"""(format, test on the first record), tried in order."""

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
LOOKED_FOR = ("nothing to import: no .jsonl files (jsonl, verl), no results.jsonl or traces.jsonl "
              "(verifiers), no rollouts/step_N/ (prime-rl) and no .eval or .json Inspect logs (inspect)")
"""Why a folder holds nothing any importer reads: the formats looked for, one line."""
UNSUPPORTED = {".parquet": "Parquet (import reads JSONL; `rl-inspect export --format jsonl` writes it)"}


def inspect_logs(folder: Path) -> list[Path]:
    """The Inspect logs directly in `folder` (inspect_log.sniff: `.eval` files, `.json` files that
    begin like a log), sorted by name (Inspect's names begin with the time the eval started), or []
    (a folder that cannot be listed included). Reads at most 4 KiB of each .json file."""
    try:
        return sorted((p for p in folder.iterdir() if p.is_file() and inspect_log.sniff(p)), key=lambda p: p.name)
    except OSError:
        return []


def _names(files: list[Path]) -> str:
    return ", ".join(p.name for p in files[:2]) + (", ..." if len(files) > 2 else "")


def detect_format(path: str | Path) -> str:
    """The format name ("jsonl", "verl", "verifiers" or "inspect") of a file or folder (module
    docstring). InputError naming the path when it is missing, empty, of a format not read here, has a
    first record no format has, or is a folder with nothing to import (LOOKED_FOR says what was
    looked for) or with both .jsonl files and Inspect logs."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such file or folder")
    if path.is_dir():
        if (verifiers.is_results_folder(path) or verifiers_traces.is_traces_folder(path)
                or prime_rl.rollouts_folder(path) is not None):
            return "verifiers"
        files, logs = verl.step_files(path), inspect_logs(path)
        if files and logs:
            raise InputError(str(path), f"holds both .jsonl files ({_names(files)}) and Inspect logs "
                             f"({_names(logs)}): pass --format inspect (the logs) or --format verl / jsonl (the "
                             ".jsonl files), to `rl-inspect import` or `rl-inspect PATH`")
        if logs:
            return "inspect"
        if not files:
            raise InputError(str(path), LOOKED_FOR)
        return detect_format(files[0])
    why = UNSUPPORTED.get(path.suffix.lower())
    if why:
        raise InputError(str(path), f"{why}; formats read: jsonl, verl, verifiers, inspect")
    if inspect_log.sniff(path):
        return "inspect"
    try:
        record = first_record(path)
    except InputError as exc:
        if path.suffix.lower() not in JSONL_SUFFIXES:
            raise InputError(str(path), f"unknown format (not JSONL: {exc.detail}); pass --format jsonl, verl "
                             "or verifiers") from None
        raise
    if record is None:
        raise InputError(str(path), "empty: no records to import")
    for name, test in SNIFFERS:
        if test(record):
            return name
    keys = ", ".join(sorted(record)[:8]) or "none"
    raise InputError(str(path), f"cannot tell the format from the first record (keys: {keys}); expected "
                     "`messages` (jsonl), `input`, `output`, `score` (verl) or `prompt`, `completion`, "
                     "`example_id` (verifiers); pass --format", line=1)
