"""Reading the database from thread workers, through another process's locks.

The viewer shares its file with writers. In WAL mode readers are not blocked, but a database in
rollback-journal mode (or a checkpoint that must reset the log) can hold an exclusive lock for
as long as a writer likes. The viewer's connection waits only briefly (VIEWER_BUSY_MS) and
`read` retries, telling the user once, so the keyboard stays live and nothing exits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from textual.app import App
from textual.worker import get_current_worker

T = TypeVar("T")

VIEWER_BUSY_MS = 250
"""How long one read waits on a lock before `read` gets control back (milliseconds)."""
RETRY_SECONDS = 0.5


def is_locked(exc: BaseException) -> bool:
    """A lock held by another connection, as opposed to a damaged or foreign file."""
    return isinstance(exc, sqlite3.OperationalError) and any(
        word in str(exc).lower() for word in ("locked", "busy"))


class ConnectionClosed(sqlite3.ProgrammingError):
    """The app is closing its connection: a worker's read came too late (nothing to show)."""


class ConnectionGuard:
    """Closes the app's store only when no worker is reading from it.

    Workers share the app's sqlite3 connection; closing it while another thread is inside a
    call on it crashes the interpreter (a segfault seen when a test app exited during a poll).
    Every read goes through `in_use()`; `close()` closes at once when none is in flight, else
    the last read to finish closes it. A read begun after close() raises ConnectionClosed.
    """

    def __init__(self, close: Callable[[], None]):
        self._close, self._lock = close, threading.Lock()
        self._active, self._closing = 0, False

    @contextmanager
    def in_use(self) -> Iterator[None]:
        with self._lock:
            if self._closing:
                raise ConnectionClosed("the viewer is closing its database connection")
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                last = self._closing and self._active == 0
            if last:
                self._close()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            now = self._active == 0
        if now:
            self._close()


def read(app: App, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn(*args, **kwargs)` from a thread worker, retrying every RETRY_SECONDS while the
    database is locked (a warning is shown once, and a note when it reads again). Other
    database errors propagate: the caller shows them where they happened.

    Raises: sqlite3.DatabaseError (not a lock); the worker's cancellation ends the retries
    by re-raising the lock error."""
    warned = False
    guard: ConnectionGuard | None = getattr(app, "store_guard", None)
    while True:
        try:
            if guard is None:
                result = fn(*args, **kwargs)
            else:
                with guard.in_use():
                    result = fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            if not warned:
                warned = True
                app.call_from_thread(app.notify, f"{getattr(app, 'db_name', 'the database')} is locked by "
                                     "another writer; retrying…", severity="warning", markup=False, timeout=4)
            worker = get_current_worker()
            if worker.is_cancelled:
                raise
            time.sleep(RETRY_SECONDS)
            continue
        if warned:
            app.call_from_thread(app.notify, "the database is readable again", markup=False, timeout=2)
        return result
