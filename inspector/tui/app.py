"""The rl-inspect TUI: runs → trajectories → one trajectory (transcript or tokens).

The app opens the database read-only and never writes to it. Every screen pages from SQL
through `core.store.queries`, in thread workers; nothing loads a whole run into Python.

Live following: once a second a worker reads SQLite's change counter (`PRAGMA data_version`,
one integer, no page read); when another process has committed, the screen on top is told to
re-read what it shows (`LiveScreen.database_changed`), and screens underneath re-read when they
come back. So a run started by any process appears by itself, and a running run's page and
open trajectory grow as it writes.

A file that does not exist yet: the app starts with no store (`store` is None) on an empty runs
screen that says so; nothing is created by looking. The same poll watches for the file (an eval
launched with `e` creates it) and, once it holds an rl-inspect schema, opens it read-only and
goes on as above.

Following a log folder (`rl-inspect FOLDER`, create_app(..., follow=FOLDER)): every
`follow_seconds` a thread worker re-imports the folder into the database
(core.importers.cache.FolderFollower; a new import starts only after the last one finished), and
the poll above shows the new rows. The header's subtitle says what the last import added, or why
it failed (also a notification, once per error); this is the only time the app's process writes
to its database, through the importer's own connection.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from loguru import logger
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from core.store import Store, StoreError
from inspector.literal import one_line as clip
from inspector.tui.format import one_line
from inspector.tui.keys import screen_keys
from inspector.tui.reads import VIEWER_BUSY_MS, ConnectionClosed, ConnectionGuard, is_locked
from inspector.tui.screens.help import HelpScreen
from inspector.tui.screens.runs import RunsScreen
from inspector.tui.tokenizers import TokenizerCache

if TYPE_CHECKING:
    from core.importers.cache import FolderFollower


class RLInspectApp(App):
    """Browse the runs of one database."""

    CSS_PATH = "app.tcss"
    TITLE = "rl-inspect"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help", show=False),
        Binding("ctrl+t", "toggle_dark", "Light/dark theme", id="app.theme", show=False),
        Binding("q", "quit", "Quit", id="app.quit", show=False),
    ]

    def __init__(self, store: Store | None, *, refresh_seconds: float = 1.0, open_run: int | None = None,
                 db_path: str | Path | None = None, open_trajectory: int | None = None,
                 follower: FolderFollower | None = None, follow_seconds: float = 5.0):
        super().__init__()
        self.store = store
        """The read-only store every screen queries; None while `db_path` does not exist yet
        (create_app(..., missing_ok=True)), until poll_database finds the file written."""
        self.db_path = Path(db_path) if store is None else store.path
        """The database's path: where an eval launched here writes, whether or not it exists yet."""
        self.missing_reason: str | None = None
        """While there is no store: why the file that appeared cannot be opened yet (None: not there)."""
        self.open_run = open_run
        """A run to open straight away (after an eval, the run it just made)."""
        self.open_trajectory = open_trajectory
        """A trajectory of `open_run` to open straight away (`rl-inspect DB --trajectory ID`)."""
        self.refresh_seconds = refresh_seconds
        """How often the change counter is polled (0 turns following off, as tests do; they call
        `poll_database` themselves)."""
        self.data_version = 0
        """The last change counter seen; screens compare it with the one they loaded at."""
        self.tokenizers = TokenizerCache()
        self.launched_evals: list = []
        """Evaluations started from the runs screen (inspector.launch.Launched), oldest first."""
        self.failure: str | None = None
        """Why the app stopped early (a database it cannot read), for the command line to print."""
        self.crash: BaseException | None = None
        """The unexpected error that ended the app, if one did (logged with its traceback)."""
        self.db_name = one_line(str(self.db_path))
        self.store_guard = ConnectionGuard(self._close_store)
        """Every worker's read holds it; the connection closes only when none is in flight."""
        self.sub_title = one_line(self.db_path.name)
        self.follower = follower
        """Re-imports the log folder this database was imported from (None: nothing followed)."""
        self.follow_seconds = follow_seconds
        """How often, in seconds, a follow import starts; a tick while the last one still runs
        is skipped (0 turns following off)."""
        self._follow_worker = None
        self._follow_title = ""
        """The subtitle before following added its line (the log's name)."""
        self._follow_error: str | None = None
        """The follow error last notified, so that one error is notified once."""

    def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()

    def missing_status(self) -> str:
        """The runs screen's status line while the database does not exist yet (or cannot be
        opened yet): what to do about it."""
        if self.missing_reason is not None:
            return f"{self.db_name} cannot be opened yet ({clip(self.missing_reason, 160)}); " \
                   "retrying every poll · q quits"
        return f"{self.db_name} does not exist yet: e launches an evaluation that creates it · q quits"

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        if self.open_run is not None:
            from inspector.tui.screens.runs import run_screen

            if self.open_trajectory is not None:  # its run's list, with the trajectory opened on top
                from inspector.tui.screens.trajectories import TrajectoriesScreen

                self.push_screen(TrajectoriesScreen(self.open_run, open_trajectory=self.open_trajectory))
            else:
                row = self.store.conn.execute("SELECT kind FROM runs WHERE id=?", (self.open_run,)).fetchone()
                self.push_screen(run_screen(self.open_run, row[0] if row else None))
        if self.refresh_seconds:
            self.set_interval(self.refresh_seconds, self.poll_database)
        if self.follower is not None and self.follow_seconds:
            self._follow_title = self.sub_title
            self.sub_title = self.follow_line()
            self.set_interval(self.follow_seconds, self._follow_tick)

    def _follow_tick(self) -> None:
        """Start a follow import unless the last one is still running (an import of a large
        folder may take longer than `follow_seconds`)."""
        if self._follow_worker is None or self._follow_worker.is_finished:
            self._follow_worker = self.follow_folder()

    @work(thread=True, group="follow", exit_on_error=False)
    def follow_folder(self) -> None:
        """(A thread worker.) Import what is new in the followed folder, then show the outcome.
        Never ends the app: an error is shown and the next tick tries again."""
        try:
            added, error = self.follower.poll(), self.follower.error
        except Exception as exc:  # our bug: logged with its traceback, shown, and following goes on
            logger.opt(exception=exc).error("following {} failed", self.follower.path)
            added, error = 0, f"{exc.__class__.__name__}: {exc}"
        self.call_from_thread(self._show_follow, added, error)

    def follow_line(self, error: str | None = None) -> str:
        """The subtitle while following: 'FOLDER (imported) · following: +N trajectories (step S)',
        or the import's error instead of the count; plain text (the header never reads it as
        markup), one line."""
        follower = self.follower
        line = "following"
        if error:  # a file of the folder named from the folder: the header has one line
            line += f": {clip(error.replace(str(follower.path) + os.sep, ''), 200)}"
        elif follower.last_added:
            n = follower.last_added
            line += f": +{n:,} {'trajectory' if n == 1 else 'trajectories'}"
            line += f" (step {follower.step})" if follower.step is not None else ""
        return f"{self._follow_title} · {line}"

    def _show_follow(self, added: int, error: str | None) -> None:
        self.sub_title = self.follow_line(error)
        if error and error != self._follow_error:
            self.notify(error, title=f"following {clip(self.follower.path.name, 40)}: import failed",
                        severity="error", markup=False, timeout=8)
        self._follow_error = error
        if added and self.refresh_seconds:
            self.poll_database()  # show the new rows now, not at the next tick

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def poll_database(self) -> None:
        """Read the change counter; tell the screen on top when another process committed.
        Also ticks screens that show time-dependent figures (a running run's duration)."""
        if self.store is None:
            self._open_when_written()
            return
        try:
            with self.store_guard.in_use():
                version = self.store.data_version()
        except sqlite3.Error:
            return  # locked, damaged or closing: the screen's own reads report it
        changed = version != self.data_version
        self.data_version = version
        self.call_from_thread(self._tell_screen, changed)

    def _open_when_written(self) -> None:
        """(In the poll worker.) Open the database read-only once its file exists and holds an
        rl-inspect schema; until then nothing is opened, created or locked. A file being created
        (empty, no schema yet, locked) is retried at the next poll, its reason kept for the
        status line."""
        if not self.db_path.exists():
            return
        try:
            with self.store_guard.in_use():  # the app closing meanwhile closes the store opened here
                store = Store.open_readonly(self.db_path)
                try:
                    store.runs()
                    store.conn.execute(f"PRAGMA busy_timeout={VIEWER_BUSY_MS}")
                    version = store.data_version()
                except BaseException:
                    store.close()
                    raise
                self.store = store
        except ConnectionClosed:
            return
        except (StoreError, sqlite3.Error) as exc:
            changed, self.missing_reason = str(exc) != self.missing_reason, str(exc)
            self.call_from_thread(self._tell_screen, changed)  # the runs screen's status names it
            return
        self.missing_reason = None
        self.data_version = version
        self.call_from_thread(self._tell_screen, True)

    def _tell_screen(self, changed: bool) -> None:
        handler = getattr(self.screen, "database_changed", None)
        if handler is not None:
            handler(changed)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers every key of the screen (its widgets' too), then the app's."""
        for key in screen_keys(screen):
            if key.owner is self:
                continue
            yield SystemCommand(f"{key.binding.description}", f"{key.heading} · key: {self.get_key_display(key.binding)}",
                                _runner(key.owner, key.binding.action))
        yield SystemCommand("Help: every key of this screen", "key: ?", self.action_help)
        yield from super().get_system_commands(screen)

    def on_unmount(self) -> None:
        self.store_guard.close()  # now, or when the last worker's read ends

    def _handle_exception(self, error: Exception) -> None:
        # A lock that outlived the retries, or a file broken under a read that had no place to
        # show it, ends the app with one line instead of a traceback; the file is left as it is.
        if isinstance(error, sqlite3.DatabaseError) and not is_locked(error):
            self.failure = f"{self.db_path}: the database cannot be read ({error})"
            self.exit(return_code=2)
            return
        # Anything else is our bug: the traceback goes to the log file, the command line prints
        # one line naming it, and the exit code is 1 (Textual would print a full-screen traceback).
        logger.opt(exception=error).error("the viewer failed")
        self.crash = error
        self.exit(return_code=1)


def _runner(node, action: str):
    async def run() -> None:
        await node.run_action(action)

    return run


def create_app(db_path: str | Path, *, refresh_seconds: float = 1.0, open_run: int | None = None,
               missing_ok: bool = False, open_trajectory: int | None = None,
               title: str | None = None, follow: str | Path | None = None,
               follow_seconds: float = 5.0, follow_format: str = "auto") -> RLInspectApp:
    """Open `db_path` read-only and build the app.

    `missing_ok`: a path that does not exist (in a folder that does) gives an app with no store,
    on an empty runs screen that offers to launch an eval creating it (see the module docstring);
    nothing is created here.

    Raises StoreError (one line naming the file) when the file is missing (unless `missing_ok`,
    then only when its folder is missing too or `open_run` is given), not a database, of another
    schema, damaged where the first screen reads, or when `open_run` is not one of its runs.
    `open_trajectory`: open that trajectory on top of its run's list (its run is `open_run`);
    StoreError when there is no such trajectory, or it is not of `open_run` when that is given.
    `title`: what the header names instead of the file (the log a cache database was imported from).
    `follow`: the log folder `db_path` was imported from, re-imported every `follow_seconds`
    seconds while the app is open (module docstring); ValueError when it is not a folder that
    grows (core.importers.cache.follows).
    """
    path = Path(db_path)
    if missing_ok and open_run is None and open_trajectory is None and not path.exists() and path.parent.is_dir():
        return RLInspectApp(None, refresh_seconds=refresh_seconds, db_path=path)
    store = Store.open_readonly(db_path)
    try:
        store.runs()  # the pages the first screen needs: a damaged file is caught before drawing
        if open_trajectory is not None:
            owner = store.trajectory(open_trajectory)["run_id"]
            if open_run is not None and open_run != owner:
                raise StoreError(f"{db_path}: trajectory {open_trajectory} is of run {owner}, not run {open_run}")
            open_run = owner
        if open_run is not None:
            store.run(open_run)
    except sqlite3.DatabaseError as exc:
        store.close()
        raise StoreError(f"{db_path}: the database cannot be read ({exc})") from None
    except StoreError:
        store.close()
        raise
    store.conn.execute(f"PRAGMA busy_timeout={VIEWER_BUSY_MS}")
    try:
        from core.importers.cache import FolderFollower

        follower = None if follow is None else FolderFollower(follow, path, follow_format)
    except ValueError:
        store.close()
        raise
    app = RLInspectApp(store, refresh_seconds=refresh_seconds, open_run=open_run, open_trajectory=open_trajectory,
                       follower=follower, follow_seconds=follow_seconds)
    if title is None and follower is not None:  # name the folder, not its cache file
        title = f"{follower.path.resolve().name or follower.path} (imported)"
    if title is not None:
        app.sub_title = one_line(title)
    return app
