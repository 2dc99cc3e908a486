"""Reading the database from thread workers, through another process's locks.

The viewer shares its file with writers. In WAL mode readers are not blocked, but a database in
rollback-journal mode (or a checkpoint that must reset the log) can hold an exclusive lock for
as long as a writer likes. The viewer's connection waits only briefly (VIEWER_BUSY_MS) and
`read` retries, telling the user once, so the keyboard stays live and nothing exits.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Callable, TypeVar

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


def read(app: App, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn(*args, **kwargs)` from a thread worker, retrying every RETRY_SECONDS while the
    database is locked (a warning is shown once, and a note when it reads again). Other
    database errors propagate: the caller shows them where they happened.

    Raises: sqlite3.DatabaseError (not a lock); the worker's cancellation ends the retries
    by re-raising the lock error."""
    warned = False
    while True:
        try:
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
