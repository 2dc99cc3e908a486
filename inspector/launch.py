"""Starting `rl-inspect eval` from the TUI: the form's values checked, and the eval in its own process.

The evaluation runs as the same command a terminal would run (`python -m inspector.cli eval
--db DB ... --no-open`), in a process of its own, so a crash or an out-of-memory in the model
never takes the viewer down and a GPU is freed when it ends; its stderr (progress, summary,
errors) goes to a log file the TUI can show. Cancelling sends SIGTERM, which the CLI treats as
Ctrl-C: finished trajectories are kept, the run is marked cancelled (exit 130), and
`--resume RUN` finishes it later. No Textual here: the rules are testable without an app.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.paths import cache_dir

FIELDS = ("model", "corpus", "questions", "split", "limit", "max_generations", "max_new_tokens", "temperature",
          "judge", "name")
"""The form's fields, in order: each is an `rl-inspect eval` option of the same name."""


@dataclass
class LaunchForm:
    """The launch form's values, as typed (strings; empty: the eval's default)."""

    model: str = "embedded:smollm2-135m"
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
            if name in ("corpus", "questions") and not Path(value).expanduser().exists():
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
