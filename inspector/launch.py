"""Starting `rl-inspect eval` from the TUI: the form's values checked, and the eval in its own process.

The evaluation runs as the same command a terminal would run (`python -m inspector.cli eval
--db DB ... --no-open`), in a process of its own, so a crash or an out-of-memory in the model
never takes the viewer down and a GPU is freed when it ends; its stderr (progress, summary,
errors) goes to a log file the TUI can show. Cancelling sends SIGTERM, which the CLI treats as
Ctrl-C: finished trajectories are kept, the run is marked cancelled (exit 130), and
`--resume RUN` finishes it later. No Textual here: the rules are testable without an app.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.paths import cache_dir

FIELDS = ("model", "backend", "corpus", "questions", "split", "limit", "max_generations", "max_new_tokens",
          "temperature", "judge", "name")
"""The form's fields, in order: each is an `rl-inspect eval` option of the same name."""
CHOICE_FIELDS = ("backend", "split", "judge")
"""The fields whose values are the eval option's fixed choices (eval_choices)."""
PATH_FIELDS = ("corpus", "questions")
"""The fields that name a file or folder (completed by complete_path)."""


@dataclass
class LaunchForm:
    """The launch form's values, as typed (strings; empty: the eval's default)."""

    model: str = "embedded:smollm2-135m"
    backend: str = ""
    corpus: str = ""
    questions: str = ""
    split: str = "test"
    limit: str = ""
    max_generations: str = ""
    max_new_tokens: str = ""
    temperature: str = ""
    judge: str = "auto"
    name: str = ""

    def argv(self) -> list[str]:
        """The `rl-inspect eval` options these values make (without --db), or ValueError naming
        the first field that is wrong and why: a number that is not one, a file that does not
        exist, a value EvalConfig.validate refuses (the same check the CLI makes)."""
        args: list[str] = []
        for name in FIELDS:
            value = getattr(self, name).strip()
            if not value:
                continue
            if name in PATH_FIELDS and not Path(value).expanduser().exists():
                raise ValueError(f"{name}: no such file or folder: {value}")
            if name in ("limit", "max_generations", "max_new_tokens"):
                try:
                    int(value)
                except ValueError:
                    raise ValueError(f"{name}: not a whole number: {value!r}") from None
            if name == "temperature":
                try:
                    float(value)
                except ValueError:
                    raise ValueError(f"temperature: not a number: {value!r}") from None
            args += [f"--{name.replace('_', '-')}", value]
        _check(args)
        return args


@functools.lru_cache(maxsize=None)
def eval_choices(field: str) -> tuple[tuple[str, ...], str | None]:
    """The choices of `rl-inspect eval --FIELD` and its default, read from the CLI's own parser
    (inspector.cli.build_parser), so a backend or judge added there appears in the form by
    itself. `field`: the option's dest ("backend", "split", "judge"). Raises KeyError when the
    eval command has no such option, ValueError when it takes any value (no choices).

    argparse has no public way to list a subcommand's options; `_actions` and
    `_SubParsersAction` are the long-stable attributes argparse's own help formatter reads."""
    from inspector import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next((a for a in sub.choices["eval"]._actions if a.dest == field), None)
    if action is None:
        raise KeyError(f"rl-inspect eval has no option --{field.replace('_', '-')}")
    if not action.choices:
        raise ValueError(f"rl-inspect eval --{field.replace('_', '-')} takes any value, not a choice")
    return tuple(str(c) for c in action.choices), None if action.default is None else str(action.default)


def complete_path(text: str, *, limit: int = 50_000) -> str | None:
    """The first existing file or folder whose path starts with `text`, as `text` followed by
    the rest of its name ('/' after a folder), or None. Shapes: `text` as typed in the form;
    the answer is `text` + at least one character.

    Shell-like: `~` is expanded for the look-up but kept in the answer; names are matched
    case-sensitively in sorted order; names starting with '.' only when the typed part of the
    name starts with '.'; names that are not printable (control characters, undecodable bytes)
    are never offered. At most `limit` entries of a folder are read (a huge folder costs no more).
    Never raises: an unreadable or missing folder, a NUL or an over-long name give None.
    """
    if not text or not text.strip():
        return None
    if text.startswith("~") and os.sep not in text:  # "~" or "~user": their home folder
        try:
            return text + os.sep if os.path.expanduser(text) != text and os.path.isdir(os.path.expanduser(text)) else None
        except (OSError, ValueError):
            return None
    folder, sep, prefix = text.rpartition(os.sep)
    if sep and not folder:
        folder = os.sep  # "/us" completes in the root
    try:
        where = os.path.expanduser(folder) if folder else os.curdir
        names: list[tuple[str, bool]] = []
        with os.scandir(where) as entries:
            for i, entry in enumerate(entries):
                if i >= limit:
                    break
                name = entry.name
                if not name.startswith(prefix) or name.startswith(".") and not prefix.startswith("."):
                    continue
                if not name.isprintable():
                    continue
                kind = _kind(entry)
                if kind is not None and (name != prefix or kind == "dir"):
                    names.append((name, kind == "dir"))
    except (OSError, ValueError):  # unreadable, missing, not a folder, NUL in the name, too long
        return None
    for name, is_dir in sorted(names):
        rest = name[len(prefix):] + (os.sep if is_dir else "")
        if rest:
            return text + rest
    return None


def _kind(entry: os.DirEntry) -> str | None:
    """'dir', 'file', or None for anything else (a dangling link, a socket, an unreadable entry).
    Links are followed: a link to a folder is completed as a folder."""
    try:
        return "dir" if entry.is_dir() else "file" if entry.is_file() else None
    except OSError:
        return None


def _check(args: list[str]) -> None:
    """Parse `args` with the CLI's own parser and validate the config it makes; ValueError when
    either refuses (argparse's reason, or EvalConfig.validate's)."""
    import contextlib
    import io

    from inspector import cli

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):  # argparse prints its usage, then exits
            namespace = cli.build_parser().parse_args(["eval", "--no-open", *args])
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        raise ValueError(lines[-1].split("error: ", 1)[-1] if lines else "the options were refused") from None
    cli._config_from_args(namespace).validate()


@dataclass
class Launched:
    """One evaluation started from the TUI: its process, command and log file."""

    process: subprocess.Popen
    argv: list[str]
    log: Path
    started: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def cancel(self) -> None:
        """SIGTERM: the CLI stops after the trajectories in flight are stored and marks the run
        cancelled. A process already gone is left alone."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of its stderr log ('' when nothing was written yet)."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def launch(db: str | os.PathLike, args: list[str], *, resume: int | None = None,
           python: str | None = None) -> Launched:
    """Start `rl-inspect eval --db DB ARGS --no-open` (or `--resume RUN`) in a new process whose
    stderr goes to a log under the cache folder (logs/tui-launch-<time>.log). `python`: the
    interpreter (default: this one). Raises OSError when the process cannot start."""
    argv = [python or sys.executable, "-m", "inspector.cli", "eval", "--db", str(db), "--no-open"]
    argv += ["--resume", str(resume)] if resume is not None else args
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"tui-launch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}.log"
    with open(log, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True, cwd=os.getcwd())
    return Launched(process, argv, log)
