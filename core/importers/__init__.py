"""`rl-inspect import`: runs other tools wrote, converted into this project's database.

Formats: the documented JSONL that `rl-inspect export` writes (core.importers.jsonl), verl
rollout dumps (core.importers.verl), verifiers eval results (core.importers.verifiers; v1 traces.jsonl:
core.importers.verifiers_traces; prime-rl output folders: core.importers.prime_rl) and Inspect
eval logs (core.importers.inspect_log, needs the `inspect` extra); `detect_format` picks one. Each
source is written in one transaction, so a malformed file leaves nothing behind, and re-importing
a source adds nothing that is already there (each module's docstring says how it knows). A caller
whose import failed into a database it created removes it (remove_database).
"""

from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

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
    results.jsonl or traces.jsonl, or a prime-rl folder's train steps), under jsonl each of its
    .jsonl files, or under inspect each of its Inspect logs (detect.inspect_logs: one run per log,
    in name order). A folder's Inspect log whose status is still "started" (its eval is running, or
    was killed) is skipped, said in its SourceResult's `skipped` (import_inspect's `finished_only`);
    name the file to import the samples it holds.

    Every source is checked (exists, format known) before anything is written; then each is
    written in its own transaction (so an Inspect log without inspect_ai installed fails before any
    source is written). A database this call created stays when a source fails (empty when the
    first does): the caller removes it (removed_on_failure; the CLI and core.importers.cache do). InputError / StoreError as the importers raise them;
    ValueError for an unknown `fmt`."""
    from core.importers.detect import LOOKED_FOR, inspect_logs, detect_format
    from core.importers.verl import step_files
    from core.store import Store

    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r} (one of: {', '.join(FORMATS)})")
    sources: list[tuple[Path, str, bool]] = []  # (path, format, found in a folder of Inspect logs)
    for path in expand(paths):
        kind = detect_format(path) if fmt == "auto" else fmt
        if kind == "jsonl" and path.is_dir():
            files = step_files(path)
            if not files:
                raise InputError(str(path), "--format jsonl: no .jsonl files in this folder, nothing to import"
                                 if fmt == "jsonl" else LOOKED_FOR)
            sources.extend((f, kind, False) for f in files)
        elif kind == "inspect" and path.is_dir():
            logs = inspect_logs(path)
            if not logs:
                raise InputError(str(path), "--format inspect: no .eval or .json Inspect logs in this folder, "
                                 "nothing to import" if fmt == "inspect" else LOOKED_FOR)
            sources.extend((log, kind, True) for log in logs)
        else:
            sources.append((path, kind, False))
    for path, kind, _ in sources:
        if kind == "inspect":
            from core.importers.inspect_log import require

            require(path)
    with Store.open(db) as store:
        return [import_inspect(store, path, name=name, finished_only=True) if in_folder
                else IMPORTERS[kind](store, path, name=name) for path, kind, in_folder in sources]


@contextlib.contextmanager
def removed_on_failure(db: str | Path) -> Iterator[None]:
    """Run an import into `db`; when it raises and `db` did not exist before, remove what it
    created (remove_database), so a failed import leaves no file behind. A database that was there
    before is never touched. The exception goes on."""
    created = not os.path.lexists(db)
    try:
        yield
    except BaseException:
        if created:
            remove_database(db)
        raise


def remove_database(db: str | Path) -> None:
    """Delete database file `db` and its -wal, -shm and -journal files, those that exist: what an
    import that failed leaves of a database it created (call it only for one that did not exist
    before). An error deleting one is ignored (the failure being reported matters more)."""
    db = Path(db)
    for path in (db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


__all__ = ["FORMATS", "IMPORTERS", "SourceResult", "expand", "import_paths", "removed_on_failure", "remove_database",
           "import_jsonl",
           "import_verl", "import_verifiers", "import_inspect"]
