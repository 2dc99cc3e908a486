"""`rl-inspect import`: runs other tools wrote, converted into this project's database.

Formats: the documented JSONL that `rl-inspect export` writes (core.importers.jsonl), verl
rollout dumps (core.importers.verl), verifiers eval results (core.importers.verifiers; v1 traces.jsonl
and prime-rl rollouts/ folders: core.importers.verifiers_traces) and Inspect
eval logs (core.importers.inspect_log, needs the `inspect` extra); `detect_format` picks one. Each
source is written in one transaction, so a malformed file leaves nothing behind, and re-importing
a source adds nothing that is already there (each module's docstring says how it knows).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Callable, Sequence

from core.data.records import InputError
from core.importers.inspect_log import import_inspect
from core.importers.jsonl import SourceResult, import_jsonl
from core.importers.verifiers import import_verifiers
from core.importers.verl import import_verl

IMPORTERS: dict[str, Callable[..., SourceResult]] = {"jsonl": import_jsonl, "verl": import_verl,
                                                     "verifiers": import_verifiers, "inspect": import_inspect}
FORMATS = ("auto", *IMPORTERS)


def expand(paths: Sequence[str | Path]) -> list[Path]:
    """Paths as given, a glob pattern (`*`, `?`, `[`) that names no existing path expanded in
    sorted order. InputError for a path that does not exist and a pattern that matches nothing."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.exists():
            out.append(path)
        elif any(c in str(p) for c in "*?["):
            matches = sorted(glob.glob(str(p)))
            if not matches:
                raise InputError(str(p), "no file matches this pattern")
            out.extend(Path(m) for m in matches)
        else:
            raise InputError(str(p), "no such file or folder")
    return out


def import_paths(db: str | Path, paths: Sequence[str | Path], *, fmt: str = "auto",
                 name: str | None = None) -> list[SourceResult]:
    """Import every path (files, folders, globs) into database `db` (created when missing); one
    SourceResult per source, in order.

    `fmt` "auto" detects each source's format (core.importers.detect); "jsonl", "verl",
    "verifiers" or "inspect" forces it. A folder is one verl run, one verifiers run (its
    results.jsonl or traces.jsonl, or a prime-rl folder's train steps), or under jsonl each of its .jsonl files. Every source is checked
    (exists, format known) before anything is written; then each is written in its own
    transaction (so an Inspect log without inspect_ai installed fails before any source is
    written). InputError / StoreError as the importers raise them; ValueError for an unknown
    `fmt`."""
    from core.importers.detect import detect_format
    from core.importers.verl import step_files
    from core.store import Store

    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r} (one of: {', '.join(FORMATS)})")
    sources: list[tuple[Path, str]] = []
    for path in expand(paths):
        kind = detect_format(path) if fmt == "auto" else fmt
        if kind == "jsonl" and path.is_dir():
            files = step_files(path)
            if not files:
                raise InputError(str(path), "a folder without .jsonl files: nothing to import")
            sources.extend((f, kind) for f in files)
        else:
            sources.append((path, kind))
    for path, kind in sources:
        if kind == "inspect":
            from core.importers.inspect_log import require

            require(path)
    with Store.open(db) as store:
        return [IMPORTERS[kind](store, path, name=name) for path, kind in sources]


__all__ = ["FORMATS", "IMPORTERS", "SourceResult", "expand", "import_paths", "import_jsonl", "import_verl",
           "import_verifiers", "import_inspect"]
