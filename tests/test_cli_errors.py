"""Every way the command line can end badly: one line on stderr, the right exit code, no traceback.

Logs go to a log file only, never to the terminal (loguru's default stderr sink is removed);
a closed pipe, Ctrl-C, SIGTERM and a crashed TUI each end the way a shell expects.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger
from textual.app import App

from core.store import Store
from inspector.cli import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _stderr_sink_like_loguru_default(monkeypatch, tmp_path):
    """In a fresh process loguru writes DEBUG and up to stderr; do the same here, so a record
    that reaches the terminal shows up in capsys. Logs and the cache go to temporary folders."""
    monkeypatch.setenv("RL_INSPECT_LOG_DIR", str(tmp_path / "logs"))
    sink = logger.add(lambda message: sys.stderr.write(message), level="DEBUG")  # whichever stderr is current
    yield
    try:
        logger.remove(sink)
    except ValueError:
        pass  # main() removed it, as it should


def _one_line(capsys, *parts) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and err.startswith("rl-inspect: "), err
    for part in parts:
        assert part in err, err
    return err


def _db(tmp_path: Path, runs: int = 3, name: str = "runs.db") -> Path:
    db = tmp_path / name
    with Store.open(db) as store:
        for i in range(runs):
            run = store.create_run("eval", f"run-{i}", "m", {}, n_planned=1)
            store.finish_run(run, "done")
    return db


def _bad(kind: str, tmp_path: Path, suffix: str = ".db") -> Path:
    path = tmp_path / f"{kind}{suffix}"
    if kind == "missing":
        return path
    if kind == "folder":
        path.mkdir()
    elif kind == "junk":
        path.write_bytes(b"\x00\xffnot a database at all" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        with Store.open(path) as store:
            for i in range(300):
                store.create_run("eval", f"run-{i}-" + "x" * 200, "m", {"pad": "y" * 500})
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path.write_bytes(path.read_bytes()[:20000])
    return path


KINDS = ["missing", "folder", "junk", "empty", "truncated"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["runs", "view"])
def test_bad_databases_get_one_line_for_runs_and_view(tmp_path, capsys, command, kind):
    path = _bad(kind, tmp_path)
    assert main([command, str(path)]) == EXIT_BAD_INPUT
    _one_line(capsys, path.name)


@pytest.mark.parametrize("kind", ["folder", "junk", "truncated"])
def test_eval_refuses_a_bad_database_before_loading_a_model(tmp_path, capsys, monkeypatch, kind):
    qs = tmp_path / "qa.jsonl"
    qs.write_text('{"question": "a?", "answer": "b"}\n')
    path = _bad(kind, tmp_path)
    before = path.read_bytes() if path.is_file() else None

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the database was checked")

    monkeypatch.setattr("core.evaluate._Session.build", no_model)
    assert main(["eval", "--db", str(path), "--questions", str(qs), "--split", "all", "--no-open"]) == EXIT_BAD_INPUT
    _one_line(capsys, path.name)
    if before is not None:
        assert path.read_bytes() == before


@pytest.mark.parametrize("option, suffix", [("--questions", ".jsonl"), ("--corpus", ".md")])
@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_files_for_eval_get_one_line(tmp_path, capsys, monkeypatch, option, suffix, kind):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "fresh-cache"))  # the model is not prepared yet
    path = _bad(kind, tmp_path, suffix)
    qs = tmp_path / "qa.jsonl"
    qs.write_text('{"question": "a?", "answer": "b"}\n')
    extra = ["--questions", str(qs)] if option == "--corpus" else []
    db = tmp_path / "new.db"
    assert main(["eval", "--db", str(db), option, str(path), *extra, "--split", "all", "--no-open"]) == EXIT_BAD_INPUT
    _one_line(capsys, path.name)
    assert not db.exists()


def test_a_bad_question_file_on_a_fresh_machine_gets_one_line(tmp_path, capsys, monkeypatch):
    """The 'preparing the embedded model' notice comes only once the inputs are known good."""
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "fresh-cache"))
    qs = tmp_path / "qa.jsonl"
    qs.write_text('{"question": "a?", "answer": "b"}\n{"question": "c?"}\n')
    assert main(["eval", "--db", str(tmp_path / "r.db"), "--questions", str(qs), "--split", "all"]) == EXIT_BAD_INPUT
    _one_line(capsys, "qa.jsonl:2", "answer")


def test_the_preparing_notice_still_comes_before_a_conversion(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "fresh-cache"))
    qs = tmp_path / "qa.jsonl"
    qs.write_text('{"question": "a?", "answer": "b"}\n')

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # stands for the conversion: we only need to see what came before

    monkeypatch.setattr("core.models.embedded_model_dir", stop)
    code = main(["eval", "--db", str(tmp_path / "r.db"), "--questions", str(qs), "--split", "all", "--no-open"])
    assert code == EXIT_CANCELLED
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "rl-inspect: preparing the embedded model (once, about 30 s)…"
    assert len(err) == 2 and err[1].startswith("rl-inspect: cancelled"), err


def test_view_of_a_missing_run_names_database_and_run(tmp_path, capsys, monkeypatch):
    db = _db(tmp_path)

    def no_app(*args, **kwargs):
        raise AssertionError("the TUI was started")

    monkeypatch.setattr("inspector.tui.app.create_app", no_app)
    assert main(["view", "--run", "999", str(db)]) == EXIT_BAD_INPUT
    _one_line(capsys, "runs.db", "999")


@pytest.mark.parametrize("argv", [["--run", "999", "{db}"], ["--no-follow", "--run", "999", "{db}"],
                                  ["{db}", "--run", "999"]])
def test_view_flags_may_come_before_the_path(tmp_path, capsys, monkeypatch, argv):
    """`rl-inspect --run 999 runs.db` is the view command as `rl-inspect runs.db --run 999` is,
    not "invalid choice" from the command parser."""
    db = _db(tmp_path)

    def no_app(*args, **kwargs):
        raise AssertionError("the TUI was started")

    monkeypatch.setattr("inspector.tui.app.create_app", no_app)
    assert main([a.format(db=db) for a in argv]) == EXIT_BAD_INPUT
    _one_line(capsys, "runs.db", "999")


def test_runs_on_a_database_that_breaks_while_reading(tmp_path, capsys, monkeypatch):
    import sqlite3

    db = _db(tmp_path)

    def broken(store):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr("core.store.queries.run_rows", broken)
    assert main(["runs", str(db)]) == EXIT_BAD_INPUT
    _one_line(capsys, "runs.db", "malformed")


@pytest.fixture
def sigterm_ignored():
    """SIGTERM does nothing unless main() handles it (a stray one must not kill the test run)."""
    def ignore(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, ignore)
    yield ignore
    signal.signal(signal.SIGTERM, previous)


def test_runs_cancelled_by_sigterm_or_ctrl_c(tmp_path, capsys, monkeypatch, sigterm_ignored):
    from core.store import queries

    db = _db(tmp_path)
    real_rows = queries.run_rows

    def terminated(store):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_rows(store)

    monkeypatch.setattr("core.store.queries.run_rows", terminated)
    assert main(["runs", str(db)]) == EXIT_CANCELLED
    _one_line(capsys, "cancelled")
    assert signal.getsignal(signal.SIGTERM) is sigterm_ignored  # main() puts the handler back

    def interrupted(store):
        raise KeyboardInterrupt

    monkeypatch.setattr("core.store.queries.run_rows", interrupted)
    assert main(["runs", str(db)]) == EXIT_CANCELLED
    _one_line(capsys, "cancelled")


class _DoubleApp(App):
    """A test double for the TUI: runs headless and does one thing on mount."""

    def __init__(self, on_mount_do):
        super().__init__()
        self.failure = None
        self._do = on_mount_do

    def on_mount(self) -> None:
        self._do(self)

    def run(self, **kwargs):
        return super().run(headless=True, **kwargs)


def _crash(app):
    raise RuntimeError("boom in a screen")


def _terminate(app):
    app.set_timer(5, app.exit)  # if SIGTERM went unheard: end with 0, and the test fails instead of hanging
    os.kill(os.getpid(), signal.SIGTERM)


def _quit(app):
    app.exit()


@pytest.mark.parametrize("action, code, words", [
    (_quit, EXIT_OK, None), (_crash, EXIT_FAILED, "boom in a screen"), (_terminate, EXIT_CANCELLED, "cancelled"),
])
def test_view_exit_code_follows_how_the_app_ended(tmp_path, capsys, monkeypatch, sigterm_ignored, action, code,
                                                   words):
    db = _db(tmp_path)
    monkeypatch.setattr("inspector.tui.app.create_app", lambda *a, **k: _DoubleApp(action))
    assert main(["view", str(db)]) == code
    if words:
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert last.startswith("rl-inspect: ") and words in last, err
    assert signal.getsignal(signal.SIGTERM) is sigterm_ignored


def _cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, timeout=120, **kwargs)


def test_a_real_process_prints_one_line_and_no_log(tmp_path):
    """No fixture can stand in for a fresh interpreter's own loguru sink: run the command."""
    env = {"RL_INSPECT_LOG_DIR": str(tmp_path / "logs"), "RL_INSPECT_CACHE": str(tmp_path / "cache")}
    for command in ("runs", "view"):
        done = _cli(command, str(_bad("junk", tmp_path)), env=env)
        assert done.returncode == EXIT_BAD_INPUT
        assert done.stderr.count("\n") == 1 and "junk.db" in done.stderr, done.stderr
        assert done.stdout == ""


def test_runs_into_a_pipe_closed_early_ends_quietly(tmp_path):
    db = tmp_path / "many.db"
    with Store.open(db) as store:
        with store.transaction():
            for i in range(3000):
                store.create_run("eval", f"run-{i}", "model", {}, n_planned=10)
    proc = subprocess.Popen([sys.executable, "-m", "inspector.cli", "runs", str(db)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    first = [proc.stdout.readline(), proc.stdout.readline()]  # what `| head -2` reads
    proc.stdout.close()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert first[0].split()[:2] == [b"id", b"kind"] and first[1].split()[0] == b"3000"
    assert err == "", err
    assert code == 128 + signal.SIGPIPE


def test_a_crash_in_the_real_viewer_prints_one_line_and_logs_the_traceback(tmp_path, capsys, monkeypatch):
    from inspector.tui.app import RLInspectApp
    from inspector.tui.screens.runs import RunsScreen

    db = _db(tmp_path)
    monkeypatch.setenv("RL_INSPECT_LOG_DIR", str(tmp_path / "logs"))
    run = RLInspectApp.run
    monkeypatch.setattr(RLInspectApp, "run", lambda self, **kw: run(self, headless=True, **kw))

    def boom(self):
        raise RuntimeError("boom in the runs screen")

    monkeypatch.setattr(RunsScreen, "reload_data", boom)
    assert main(["view", str(db)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "boom in the runs screen" in err and "Traceback" not in err, err
    logged = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "Traceback" in logged and "boom in the runs screen" in logged
