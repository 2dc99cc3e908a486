"""`rl-inspect PATH` on a log another tool wrote: import it into a cache database, then view that.

The cache database lives under the cache folder (core.paths.cache_dir, `imports/`). A file's is
keyed by the sha256 of its bytes, so opening the same log again (under any name) reuses it and a
changed file gets its own; a verifiers results folder is keyed the same way by its results.jsonl
(core.importers.verifiers), its one source, and a verifiers v1 eval folder by its traces.jsonl
(core.importers.verifiers_traces). Any other folder's (a prime-rl output folder or a folder of Inspect
logs among them) is keyed by its absolute path, because a folder grows (verl writes a step file per
training step, Inspect a log per eval): opening it again imports only the new steps or logs into
the same database (core.importers.verl; a log imported before is skipped by its sha256). Either
way the import is the one `rl-inspect import` does, with its idempotence and its one transaction
per source.

Following: a folder keyed by its path (`follows`) is re-imported while the TUI is open
(FolderFollower, polled from a TUI worker), so a training run still writing step files can be
watched; the TUI's own poll of the database shows the new rows. A folder of Inspect logs is
followed the same way: a log whose eval has finished since is imported as its own run, and one still
being written (status "started") is left until it has finished (core.importers.import_paths).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from loguru import logger

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


def _key_file(path: Path) -> Path | None:
    """The file whose bytes key `path`'s cache database (the file itself, or a verifiers results or
    eval folder's one file), or None for a folder keyed by its path."""
    from core.importers.verifiers import RESULTS, is_results_folder
    from core.importers.prime_rl import rollouts_folder
    from core.importers.verifiers_traces import TRACES, is_traces_folder

    if is_results_folder(path):
        return path / RESULTS
    if is_traces_folder(path) and rollouts_folder(path) is None:
        return path / TRACES
    if path.is_dir():
        return None
    return path


def follows(path: str | Path) -> bool:
    """True when `path` is a folder whose cache database is keyed by its path (a verl rollout
    folder, a prime-rl output folder, a folder of JSONL files or of Inspect logs): it may grow, and FolderFollower
    follows it. False for a file, a missing path and a folder keyed by its one file's content (a
    verifiers results or eval folder). Never raises."""
    path = Path(path)
    try:
        return path.is_dir() and _key_file(path) is None
    except OSError:
        return False


def cache_database(path: str | Path) -> Path:
    """The cache database for a log file or folder (see the module docstring); not created here.
    InputError when a file cannot be read."""
    from core.paths import cache_dir

    path = Path(path)
    key_file = _key_file(path)
    if key_file is None:
        key = "dir-" + hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:24]
    else:
        key = "file-" + sha256_file(key_file)[:24]
    folder = cache_dir() / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.db"


def cached_import(path: str | Path, fmt: str = "auto") -> tuple[Path, list[SourceResult]]:
    """(cache database, what the import did) for a log file or folder, imported if needed.

    InputError naming the file (and line and field) for a path that is missing, of an unknown
    format or malformed; nothing of a malformed source is written (core.importers.import_paths), and
    a cache database this import created is removed again (core.importers.remove_database), so a
    failure leaves no file behind.
    """
    from core.importers import import_paths, removed_on_failure
    from core.importers.detect import detect_format

    kind = detect_format(path) if fmt == "auto" else fmt  # refuses before a cache file is made
    db = cache_database(path)
    with removed_on_failure(db):
        return db, import_paths(db, [path], fmt=kind)


class FolderFollower:
    """Re-imports a growing log folder into its cache database, each `poll()` adding the step files
    that are new since the last import (the importers' own incremental import: core.importers.verl,
    core.importers.prime_rl), or the Inspect logs whose evals have finished since, so a
    training run or a series of evals still writing can be followed.

    Safe while the TUI reads the same database: each source is written in one transaction and the
    database is in WAL mode, so a reader goes on reading the last committed state meanwhile. A
    step file still being written (no final newline) is left by the importer for a later poll.
    `poll()` never raises for what a folder or database can do wrong: a malformed step file's
    InputError, a lock that outlived the busy timeout or a vanished folder is kept as `error` (one
    line naming the file, line and field) and the next poll tries again. While a malformed file
    is there nothing newer is imported either (an import is all or nothing); it is read again
    once the folder's files change.

    Between polls only the files' names, sizes and modification times are compared: an unchanged
    folder is not imported again (an import hashes every step file).
    """

    def __init__(self, path: str | Path, db: str | Path | None = None, fmt: str = "auto"):
        """`path`: a folder that `follows` (ValueError otherwise: a file's content is fixed);
        `db`: its database (default: its cache database, cache_database); `fmt`: as
        import_paths takes it ("auto" is detected at the first poll and kept)."""
        from core.importers import FORMATS

        path = Path(path)
        if not follows(path):
            raise ValueError(f"{path}: not a folder that grows (a file, or a folder keyed by its one file's "
                             "content): nothing to follow")
        if fmt not in FORMATS:
            raise ValueError(f"unknown import format {fmt!r} (one of: {', '.join(FORMATS)})")
        self.path = path
        self.db = Path(db) if db is not None else cache_database(path)
        self.error: str | None = None
        """Why the last poll imported nothing (a malformed or unreadable file, a locked database),
        one line; None after a poll that worked (whether or not it found new steps)."""
        self.added = 0
        """Trajectories added by this follower's polls, all together."""
        self.last_added = 0
        """Trajectories added by the last import that added any."""
        self.step: int | None = None
        """The highest training step in the followed run after the last import that added
        trajectories (None before one, or for runs without steps)."""
        self.results: list = []
        """The SourceResults of the last import that ran."""
        self._kind: str | None = None if fmt == "auto" else fmt
        self._seen: tuple | None = None
        """The folder's listing (_listing) when it was last imported, or failed on its data."""
        self._lock = threading.Lock()

    def poll(self) -> int:
        """Import what is new in the folder; the number of trajectories added (0 when nothing is
        new, or on an error, kept in `error`). Blocks while another thread's poll runs; the time
        it takes is the import's (hashing each step file, parsing the new ones)."""
        with self._lock:
            return self._poll()

    def _poll(self) -> int:
        import core.importers
        from core.data.records import InputError
        from core.importers.detect import detect_format
        from core.store import StoreError

        listing = self._listing()
        if listing is not None and listing == self._seen:
            return 0
        try:
            kind = self._kind or detect_format(self.path)
            results = core.importers.import_paths(self.db, [self.path], fmt=kind)
        except InputError as exc:  # malformed data: read again only when the files change
            self.error, self._seen = str(exc), listing
            logger.warning("following {}: {}", self.path, exc)
            return 0
        except (StoreError, sqlite3.Error, OSError) as exc:  # locked, or passing: retried next poll
            self.error, self._seen = f"{self.db}: {exc.__class__.__name__}: {exc}", None
            logger.warning("following {}: {}", self.path, self.error)
            return 0
        self._kind, self._seen, self.error, self.results = kind, listing, None, results
        added = sum(n for result in results for _, _, n in result.runs)
        if added:
            self.added += added
            self.last_added = added
            self.step = self._last_step([run_id for result in results for run_id, _, n in result.runs if n])
            logger.info("following {}: {} trajectories added (step {})", self.path, added, self.step)
        return added

    def _listing(self) -> tuple | None:
        """(file, size, modification time in ns) of each file the importer reads (a prime-rl
        folder's step files and metric log, else the folder's .jsonl files and Inspect logs), or None
        when the folder cannot be listed (the import then runs, and names what is wrong)."""
        from core.importers import prime_rl, verl
        from core.importers.detect import inspect_logs

        try:
            rollouts = prime_rl.rollouts_folder(self.path)
            if rollouts is not None:
                train, evals, _ = prime_rl.step_files(rollouts)
                log = rollouts.parent / prime_rl.METRICS_FILE
                exports = [f for _, f in prime_rl.export_files(rollouts.parent)]
                files = [f for _, f in train + evals] + ([log] if log.is_file() else []) + exports
            else:
                files = verl.step_files(self.path) + inspect_logs(self.path)
            return tuple((str(f), st.st_size, st.st_mtime_ns) for f in files for st in (f.stat(),))
        except OSError:
            return None

    def _last_step(self, run_ids: list[int]) -> int | None:
        from core.store import Store, StoreError

        try:
            with Store.open_readonly(self.db) as store:
                row = store.conn.execute(f"SELECT MAX(step) FROM trajectories WHERE run_id IN "
                                         f"({','.join('?' * len(run_ids))})", run_ids).fetchone()
        except (StoreError, sqlite3.Error):
            return self.step
        return row[0] if row and row[0] is not None else self.step
