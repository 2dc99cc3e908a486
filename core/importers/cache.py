"""`rl-inspect PATH` on a log another tool wrote: import it into a cache database, then view that.

The cache database lives under the cache folder (core.paths.cache_dir, `imports/`). A file's is
keyed by the sha256 of its bytes, so opening the same log again (under any name) reuses it and a
changed file gets its own; a verifiers results folder is keyed the same way by its results.jsonl
(core.importers.verifiers), its one source, and a verifiers v1 eval folder by its traces.jsonl
(core.importers.verifiers_traces). Any other folder's (a prime-rl output folder among them) is keyed by its absolute path,
because a folder grows (verl writes a step file per training step): opening it again imports only
the new steps into the same database (core.importers.verl). Either way the import is the one `rl-inspect import` does, with its
idempotence and its one transaction per source.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from core.importers.common import sha256_file
from core.importers.jsonl import SourceResult

_SQLITE_HEADER = b"SQLite format 3\x00"
LOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".eval")
"""Extensions `rl-inspect PATH` imports rather than opens (with any folder); anything else is
opened as a database, so a damaged one is still named as a database."""


def is_database(path: str | Path) -> bool:
    """True when `path` is a file that begins with SQLite's 16-byte header (rl-inspect's own
    database, or any SQLite file: the viewer names what is wrong with one that is not ours)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:  # missing, a folder, unreadable
        return False


def cache_database(path: str | Path) -> Path:
    """The cache database for a log file or folder (see the module docstring); not created here.
    InputError when a file cannot be read."""
    from core.paths import cache_dir

    from core.importers.verifiers import RESULTS, is_results_folder
    from core.importers.verifiers_traces import TRACES, is_traces_folder, rollouts_folder

    path = Path(path)
    if is_results_folder(path):
        key = "file-" + sha256_file(path / RESULTS)[:24]
    elif is_traces_folder(path) and rollouts_folder(path) is None:
        key = "file-" + sha256_file(path / TRACES)[:24]
    elif path.is_dir():
        key = "dir-" + hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:24]
    else:
        key = "file-" + sha256_file(path)[:24]
    folder = cache_dir() / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.db"


def cached_import(path: str | Path, fmt: str = "auto") -> tuple[Path, list[SourceResult]]:
    """(cache database, what the import did) for a log file or folder, imported if needed.

    InputError naming the file (and line and field) for a path that is missing, of an unknown
    format or malformed; nothing of a malformed source is written (core.importers.import_paths).
    """
    from core.importers import import_paths
    from core.importers.detect import detect_format

    kind = detect_format(path) if fmt == "auto" else fmt  # refuses before a cache file is made
    db = cache_database(path)
    return db, import_paths(db, [path], fmt=kind)
