"""Whether a run's writer is still alive: a heartbeat any host can read, and a pid check for this host.

A writer stores its pid and host with the run (`runs.pid`, `runs.host`) and, while it runs,
a `Heartbeat` thread with its own SQLite connection moves `runs.updated_at` to the current time
every `HEARTBEAT_SECONDS`, whatever the writer's main thread is doing (a generation or an
optimizer step of several minutes included). A reader decides with `effective_status` alone, and
writes nothing:

- on the writer's own host, the operating system knows: a pid that no longer exists, or that a
  process started after the run's last sign of life now holds, is a dead writer;
- on any other host (or after the host was renamed, or for a row without a pid) the heartbeat
  decides: one older than `STALE_AFTER_SECONDS` (six intervals, room for a busy database and
  for clocks that differ by a few seconds) is a dead writer.

A run whose writer is dead reads 'interrupted', and `Store.claim_run` may take it over; a live
one is never claimed twice, since the claim reads and rewrites the row in one write transaction.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from loguru import logger

HEARTBEAT_SECONDS = 10.0
"""How often a writer refreshes `runs.updated_at` of the runs it owns."""

STALE_AFTER_SECONDS = 60.0
"""A run whose `updated_at` is older than this (and whose writer is not provably alive on this
host) is interrupted: six missed heartbeats."""

HEARTBEAT_BUSY_TIMEOUT_MS = 2_000
"""The heartbeat's wait for the write lock: short, so a long transaction of the writer costs one
skipped beat (retried at the next one), never a blocked writer."""

_CLOCK_SLACK_SECONDS = 5.0
"""Process start times (psutil: boot time plus clock ticks) and stored times (time.time()) both
come from the wall clock, but are rounded differently and disagree after a clock step: a writer is
taken for a reused pid only when its process started clearly after the run's last sign of life."""


class RunBusyError(ValueError):
    """A run that is still running in a live writer, so it cannot be resumed (exit code 2 in the CLI)."""


def this_host() -> str:
    """The name a writer stores as `runs.host` (socket.gethostname())."""
    return socket.gethostname()


def effective_status(row: dict[str, Any], *, now: float | None = None, host: str | None = None,
                     stale_after: float | None = None) -> str:
    """The status a run has for readers: the stored one, except that a stored 'running' whose
    writer is gone reads 'interrupted'.

    `row` holds the runs columns status, pid, host and updated_at (seconds since the epoch).
    `now` (seconds since the epoch, default time.time()), `host` (default this host's name) and
    `stale_after` (seconds, default STALE_AFTER_SECONDS) are there for tests. Never writes; never
    raises for odd values (a pid that is not a number reads as no pid, an updated_at that is not
    a number as no heartbeat). The rule is this module's docstring's.
    """
    if row.get("status") != "running":
        return row.get("status")
    return "running" if writer_alive(row, now=now, host=host, stale_after=stale_after) else "interrupted"


def writer_alive(row: dict[str, Any], *, now: float | None = None, host: str | None = None,
                 stale_after: float | None = None) -> bool:
    """Whether the process that last claimed the run (row: pid, host, updated_at) still lives;
    arguments as `effective_status`."""
    host = this_host() if host is None else host
    try:
        pid = int(row.get("pid") or 0)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        pid = 0
    beat = _float(row.get("updated_at"))
    if pid > 0 and row.get("host") == host:
        started = _process_start(pid)
        if started is None:
            return False  # no such process
        # A pid that a process started after the run's last sign of life holds is a reused pid.
        return beat is None or started <= beat + _CLOCK_SLACK_SECONDS
    if beat is None:
        return False
    limit = STALE_AFTER_SECONDS if stale_after is None else stale_after
    return (time.time() if now is None else now) - beat <= limit


def describe_writer(row: dict[str, Any], *, now: float | None = None) -> str:
    """'pid 123 on host gpu-2, last heartbeat 4 s ago': who holds a run, for error messages."""
    beat = _float(row.get("updated_at"))
    age = "" if beat is None else f", last heartbeat {max(0, (time.time() if now is None else now) - beat):.0f} s ago"
    return f"pid {row.get('pid')} on host {row.get('host')}{age}"


def check_resumable(run_id: int, row: dict[str, Any]) -> None:
    """RunBusyError when run `run_id` (its row, status already effective) is still running in a
    live writer; see `busy_error`."""
    if row.get("status") == "running":
        raise busy_error(run_id, row)


def busy_error(run_id: int, row: dict[str, Any], *, now: float | None = None) -> RunBusyError:
    """The one-line refusal to resume run `run_id` whose writer (row: pid, host, updated_at) lives."""
    return RunBusyError(f"run {run_id} is still running ({describe_writer(row, now=now)}); "
                        "resume it once that writer has stopped")


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch); None when there is no such process.
    psutil (a dependency of accelerate, kept well) rather than os.kill(pid, 0), which on Windows
    would end the process, and which cannot tell a reused pid."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, ValueError, OverflowError):  # a zombie (exited, not reaped) included
        return None
    except (psutil.AccessDenied, OSError):
        return 0.0  # it exists; its start time is not ours to read: count it alive


class Heartbeat:
    """A daemon thread that refreshes `runs.updated_at` of the runs this process writes, every
    `interval` seconds, through its own connection to `path` (so it never touches the writer's
    transactions). A beat only moves a run that is still 'running' under this pid and host; a run
    claimed by another writer is dropped with a warning. `stop()` ends the thread (Store.close
    calls it); as a daemon it also ends with the process."""

    def __init__(self, path: Path, interval: float | None = None):
        self.path = Path(path)
        self.interval = HEARTBEAT_SECONDS if interval is None else interval
        """Seconds between beats (default HEARTBEAT_SECONDS, read when the store opens)."""
        self._runs: dict[int, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run_id: int, pid: int, host: str) -> None:
        """Beat for run `run_id`, owned by `pid` on `host`, from now on (starting the thread)."""
        with self._lock:
            self._runs[run_id] = (pid, host)
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._loop, name=f"rl-inspect heartbeat {self.path.name}",
                                                daemon=True)
                self._thread.start()

    def remove(self, run_id: int) -> None:
        """Stop beating for run `run_id` (it ended)."""
        with self._lock:
            self._runs.pop(run_id, None)

    @property
    def runs(self) -> list[int]:
        """The run ids beaten for now."""
        with self._lock:
            return sorted(self._runs)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread and wait for it (at most `timeout` seconds)."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def beat(self, conn: sqlite3.Connection, now: float | None = None) -> None:
        """One beat over `conn`: each owned run's updated_at becomes `now` (default time.time())."""
        now = time.time() if now is None else now
        with self._lock:
            owned = dict(self._runs)
        for run_id, (pid, host) in owned.items():
            cur = conn.execute("UPDATE runs SET updated_at=MAX(updated_at, ?) WHERE id=? AND status='running'"
                               " AND pid=? AND host=?", (now, run_id, pid, host))
            if cur.rowcount == 0:
                with self._lock:
                    if self._runs.get(run_id) != (pid, host):
                        continue  # it ended (finish_run) while this beat ran
                    del self._runs[run_id]
                logger.warning("run {} is no longer running under pid {} on {}: its heartbeat stops", run_id, pid, host)

    def _loop(self) -> None:
        conn = None
        try:
            while not self._stopped.wait(self.interval):
                try:
                    if conn is None:
                        # mode=rw: a database deleted meanwhile is not created again, empty.
                        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True,
                                               isolation_level=None, timeout=0)
                        conn.execute(f"PRAGMA busy_timeout={HEARTBEAT_BUSY_TIMEOUT_MS}")
                        conn.execute("PRAGMA synchronous=NORMAL")  # a beat lost to a power cut costs nothing
                    self.beat(conn)
                except sqlite3.Error as exc:  # locked for long, or the file went away: try at the next beat
                    logger.debug("heartbeat of {}: {}", self.path, exc)
        finally:
            if conn is not None:
                conn.close()
