"""Store writes off the rollout's critical path: one background thread, in order, bounded.

An evaluation writes after every turn (the new messages of each trajectory, so a viewer can
follow them) and when trajectories finish (tokens, mask, logprobs, rewards). On a GPU a turn of a
large pool takes a second or two, and a synchronous write of 256 trajectories' tokens and
full-text index is a noticeable slice of it. `StoreWriter` runs the writes in one thread while
the next turn generates:

- Writes run in the order submitted, each in its own transaction, on the store's connection
  (opened with check_same_thread=False). While the writer is open the caller does not touch the
  store itself: it submits, or `drain()`s first.
- The queue is bounded (`max_pending` writes): a writer that falls behind makes `submit` wait,
  so memory stays bounded and the rollout never runs far ahead of what is stored.
- "Reported done" means stored: a write's `then` callback (progress) runs in the writer thread
  after its transaction committed. A crash or a kill loses only writes not yet reported.
- The first failed write stops the writer: later submits and `drain()` raise `WriteFailed` with
  the original error as its cause, so the run ends as failed instead of writing past a hole.

Python's sqlite3 releases the GIL while SQLite works, so the writes overlap the model's generate
(which releases it too) and most of the engine's own Python.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from core.store.store import Store

_STOP = object()


class WriteFailed(RuntimeError):
    """A write submitted to a StoreWriter raised; `__cause__` is the original error."""


class StoreWriter:
    """Run `fn(store)` calls in one background thread, in submission order.

    Use as a context manager: leaving it drains every pending write (re-raising the first
    failure) and stops the thread.
    """

    def __init__(self, store: Store, max_pending: int = 64):
        self.store = store
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, max_pending))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="rl-inspect-store-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[Store], object], then: Callable[[], object] | None = None) -> None:
        """Queue `write(store)` (run in a transaction) and, once it committed, `then()`.
        Blocks while `max_pending` writes wait. Raises WriteFailed if an earlier write failed."""
        self._raise_if_failed()
        self._queue.put((write, then))

    def drain(self) -> None:
        """Wait until every submitted write has run; WriteFailed if one failed."""
        self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Drain, then stop the thread (idempotent). Raises WriteFailed like `drain`."""
        if self._thread.is_alive():
            self._queue.put((_STOP, None))
            interrupted = False
            while self._thread.is_alive():
                # The pending writes are finished trajectories: a Ctrl-C (or SIGTERM) arriving
                # now still waits for them (milliseconds), then propagates, so the caller never
                # uses the connection while the writer does.
                try:
                    self._thread.join()
                except KeyboardInterrupt:
                    interrupted = True
            if interrupted:
                raise KeyboardInterrupt
        self._raise_if_failed()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except WriteFailed:
            if exc_type is None:
                raise  # the body succeeded: the failed write is the error to report
            # Otherwise the body's own error (a Ctrl-C, a crash) is the one that propagates.

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise WriteFailed(f"a store write failed: {self._error.__class__.__name__}: {self._error}") \
                from self._error

    def _loop(self) -> None:
        while True:
            write, then = self._queue.get()
            try:
                if write is _STOP:
                    return
                if self._error is None:  # after a failure, pending writes are dropped, not run
                    with self.store.transaction():
                        write(self.store)
                    if then is not None:
                        then()
            except BaseException as exc:  # noqa: BLE001 - reported to the submitting thread
                if self._error is None:
                    self._error = exc
            finally:
                self._queue.task_done()
