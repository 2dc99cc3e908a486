"""Stale runs: a run whose writer is gone (on this host or another) reads 'interrupted' wherever it
is shown and can be resumed; a live one (a heartbeat, or a live pid on this host) is never resumed,
and of two processes claiming a stale run at once exactly one wins.

Time, thresholds and intervals are injected: another host is a different host name written into
the row, a dead writer a pid that does not exist, an old heartbeat an old updated_at.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings, strategies as st

from core.data.records import Question
from core.store import Store, effective_status

Q = Question("q1", "Where is the Veltran Observatory?", "Qoruna")
OTHER_HOST = "gpu-node-7.elsewhere"
GONE_PID = 2**22 + 12345  # above Linux's largest pid (pid_max is at most 2**22): never a process


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RL_INSPECT_LOG_DIR", str(tmp_path / "logs"))


def _set_writer(db: Path, run_id: int, *, host: str, pid: int | None, age: float, status: str = "running") -> None:
    """Make run `run_id` look written by `pid` on `host`, last heard of `age` seconds ago."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE runs SET status=?, host=?, pid=?, updated_at=? WHERE id=?",
                     (status, host, pid, time.time() - age, run_id))
    conn.close()


def _run_db(tmp_path: Path, **writer) -> tuple[Path, int]:
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        run = store.create_run("eval", "stale-one", "m", {}, n_planned=2)
        store.add_questions(run, [Q])
        store.start_trajectory(run, 0, Q)
    _set_writer(db, run, **writer)
    return db, run


# ---------------------------------------------------------------------------- reading
def test_a_writer_dead_on_another_host_reads_interrupted_everywhere_without_a_write(tmp_path, capsys):
    from core.store import queries
    from inspector.cli import EXIT_OK, main

    db, run = _run_db(tmp_path, host=OTHER_HOST, pid=os.getpid(), age=3600)  # even a pid alive here
    before = db.read_bytes()
    with Store.open_readonly(db) as store:
        assert store.runs()[0]["status"] == "interrupted"
        assert store.run(run)["status"] == "interrupted"
        row = queries.run_rows(store)[0]
        assert row.status == "interrupted"
        assert row.duration < 3600  # an interrupted run's duration ends at its last sign of life
    assert main(["runs", str(db)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "interrupted" in out and "running" not in out
    assert main(["runs", str(db), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["status"] == "interrupted"
    assert db.read_bytes() == before


def test_a_live_writer_on_another_host_reads_running(tmp_path):
    db, run = _run_db(tmp_path, host=OTHER_HOST, pid=GONE_PID, age=5)  # its pid means nothing here
    with Store.open_readonly(db) as store:
        assert store.run(run)["status"] == "running"


def test_a_renamed_host_is_another_host(tmp_path):
    db, run = _run_db(tmp_path, host=socket.gethostname() + "-old-name", pid=os.getpid(), age=600)
    with Store.open_readonly(db) as store:
        assert store.run(run)["status"] == "interrupted"


def test_on_this_host_a_dead_pid_is_interrupted_at_once(tmp_path):
    db, run = _run_db(tmp_path, host=socket.gethostname(), pid=GONE_PID, age=0)
    with Store.open_readonly(db) as store:
        assert store.run(run)["status"] == "interrupted"


def test_on_this_host_a_reused_pid_is_not_the_writer(tmp_path):
    # This process is alive, but it started long after the run's last heartbeat: the writer that
    # had this pid is gone (a reboot, a pid reused).
    db, run = _run_db(tmp_path, host=socket.gethostname(), pid=os.getpid(), age=10 * 365 * 86400)
    with Store.open_readonly(db) as store:
        assert store.run(run)["status"] == "interrupted"


def test_on_this_host_a_live_writer_reads_running_however_old_its_heartbeat(tmp_path):
    # A writer of this host proves itself by its process (an older writer without a heartbeat,
    # a process stopped with Ctrl-Z): never taken over while it lives.
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        run = store.create_run("eval", "live", "m", {})
        store.heartbeat.stop()
        store.conn.execute("UPDATE runs SET updated_at=updated_at-0.5 WHERE id=?", (run,))
        assert effective_status(store.runs()[0], now=time.time() + 3600) == "running"


def test_the_rule_with_injected_time_host_and_threshold():
    from core.store.liveness import effective_status as status

    row = {"status": "running", "pid": 17, "host": "a", "updated_at": 1000.0}
    assert status(row, now=1059.0, host="b", stale_after=60) == "running"
    assert status(row, now=1060.0, host="b", stale_after=60) == "running"
    assert status(row, now=1060.5, host="b", stale_after=60) == "interrupted"
    assert status(row | {"pid": None, "host": None}, now=1010.0, host="b", stale_after=60) == "running"
    assert status(row | {"updated_at": None}, now=1010.0, host="b") == "interrupted"
    for ended in ("done", "failed", "cancelled", "interrupted"):
        assert status(row | {"status": ended}, now=1e12, host="b") == ended


@settings(max_examples=200, deadline=None)
@given(status=st.sampled_from(["running", "done", "failed", "cancelled", "interrupted"]),
       pid=st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.text(max_size=8), st.floats()),
       host=st.one_of(st.none(), st.text(max_size=12), st.just(socket.gethostname())),
       updated_at=st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=8)),
       now=st.floats(0, 4e9))
@example(status="running", pid=float("inf"), host=None, updated_at=None, now=0.0)  # found in CI: OverflowError
def test_the_rule_never_raises_on_odd_rows(status, pid, host, updated_at, now):
    """Rows of old or damaged files: any value in the columns reads as a status, never an error."""
    got = effective_status({"status": status, "pid": pid, "host": host, "updated_at": updated_at}, now=now)
    assert got == status or (status == "running" and got == "interrupted")


async def test_the_runs_screen_shows_a_dead_writers_run_as_interrupted(tmp_path):
    from inspector.tui.app import create_app

    db, run = _run_db(tmp_path, host=OTHER_HOST, pid=os.getpid(), age=3600)
    before = db.read_bytes()
    app = create_app(db, refresh_seconds=0.1)
    async with app.run_test(size=(140, 40)) as pilot:
        for _ in range(5):
            await pilot.pause(0.05)
        row = app.screen.rows[0]
        assert (row.id, row.status) == (run, "interrupted")
        assert "running" not in str(app.screen.query_one("#runs-status").render())
    assert db.read_bytes() == before


# ---------------------------------------------------------------------------- resuming
def _backend():
    from tests.local_tokenizers import chatml_tokenizer
    from tests.scripted_backend import ScriptedBackend

    return ScriptedBackend(chatml_tokenizer(), lambda prompt, turn: "Qoruna")


def _cancelled_eval(db: Path) -> int:
    from core.config import EvalConfig
    from core.evaluate import evaluate

    def cancel(progress):
        if progress.done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(EvalConfig(demo_chunks=40, split="all", judge="exact", limit=4, batch_size=1), db,
                 progress=cancel, backend=_backend())
    with Store.open_readonly(db) as store:
        return store.runs()[0]["id"]


def test_resume_takes_over_a_run_whose_writer_died_on_another_host(tmp_path):
    from core.evaluate import resume

    db = tmp_path / "runs.db"
    run = _cancelled_eval(db)
    _set_writer(db, run, host=OTHER_HOST, pid=4242, age=3600)  # as a writer killed mid-run leaves it
    summary = resume(db, run, backend=_backend())
    assert summary["trajectories"] == 4
    with Store.open_readonly(db) as store:
        r = store.run(run)
        assert (r["status"], r["pid"], r["host"]) == ("done", os.getpid(), socket.gethostname())


@pytest.mark.parametrize("host, pid", [(OTHER_HOST, GONE_PID), ("this", None)])
def test_resume_of_a_live_run_is_one_line_and_exit_2(tmp_path, capsys, host, pid):
    from inspector.cli import EXIT_BAD_INPUT, main

    db = tmp_path / "runs.db"
    run = _cancelled_eval(db)
    writer = None
    if host == "this":
        writer = Store.open(db)  # this process holds the run: a live pid here
        writer.claim_run(run)
    else:
        _set_writer(db, run, host=host, pid=pid, age=3)  # a fresh heartbeat from elsewhere
    before = db.read_bytes()
    assert main(["eval", "--db", str(db), "--resume", str(run)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"run {run} is still running (pid" in err
    assert (socket.gethostname() if host == "this" else OTHER_HOST) in err
    assert db.read_bytes() == before
    if writer is not None:
        writer.close()


def test_train_resume_check_refuses_a_live_run_and_accepts_a_stale_one(tmp_path):
    from core.store.liveness import RunBusyError
    from core.train.config import TrainConfig
    from core.train.trainer import resume_config

    checkpoints = tmp_path / "ckpt"
    (checkpoints / "checkpoint-2").mkdir(parents=True)
    (checkpoints / "checkpoint-2" / "trainer_state.json").write_text("{}")
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        run = store.create_run("train", "t", "m", TrainConfig(output_dir=str(checkpoints)).to_dict())
    _set_writer(db, run, host=OTHER_HOST, pid=GONE_PID, age=2)
    with pytest.raises(RunBusyError, match=f"run {run} is still running"):
        resume_config(db, run)
    _set_writer(db, run, host=OTHER_HOST, pid=GONE_PID, age=3600)
    assert resume_config(db, run).output_dir == str(checkpoints)


def test_claim_takes_a_stale_run_and_interrupts_its_dead_trajectories(tmp_path):
    from core.store import StoreError

    db, run = _run_db(tmp_path, host=OTHER_HOST, pid=GONE_PID, age=3600)
    with Store.open(db) as store:
        store.claim_run(run)
        r = store.run(run)
        assert (r["status"], r["pid"], r["host"]) == ("running", os.getpid(), socket.gethostname())
        assert [t["status"] for t in store.trajectory_rows(run)] == ["interrupted"]
        assert store.heartbeat.runs == [run]
        with pytest.raises(StoreError, match="no run 99"):
            store.claim_run(99)


def test_two_claims_at_once_exactly_one_wins(tmp_path, monkeypatch):
    """Each claimant reads the row slowly (as if the liveness check took long): a claim that read
    outside its write transaction would let both through."""
    import core.store.store as store_module

    db, run = _run_db(tmp_path, host=OTHER_HOST, pid=GONE_PID, age=3600)
    real = store_module.effective_status

    def slow(row, **kw):
        time.sleep(0.2)
        return real(row, **kw)

    monkeypatch.setattr(store_module, "effective_status", slow)
    start = threading.Barrier(2)
    results: list[str] = []

    def claim():
        with Store.open(db) as store:
            start.wait()
            try:
                store.claim_run(run)
                results.append("won")
            except ValueError as exc:
                results.append(str(exc))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results)[-1] == "won" and results.count("won") == 1, results
    assert any(f"run {run} is still running (pid {os.getpid()}" in r for r in results), results


_HOLDER = """
import sys
from core.store import Store
store = Store.open(sys.argv[1])
store.claim_run(int(sys.argv[2]))
print("claimed", flush=True)
sys.stdin.read()
"""


def test_a_run_held_by_another_live_process_is_refused_until_it_dies(tmp_path):
    from core.store.liveness import RunBusyError

    db, run = _run_db(tmp_path, host=OTHER_HOST, pid=GONE_PID, age=3600)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with Store.open(db) as store:
            with pytest.raises(RunBusyError, match=f"pid {holder.pid} on host"):
                store.claim_run(run)
            assert store.run(run)["pid"] == holder.pid
    finally:
        holder.kill()  # dies without finishing the run, as a killed writer does
        holder.wait(10)
    with Store.open(db) as store:
        assert store.run(run)["status"] == "interrupted"
        store.claim_run(run)
        assert store.run(run)["pid"] == os.getpid()


# ---------------------------------------------------------------------------- the heartbeat
def _updated_at(db: Path, run: int) -> float:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT updated_at FROM runs WHERE id=?", (run,)).fetchone()[0]
    finally:
        conn.close()


def _wait_for(predicate, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_heartbeat_beats_through_a_long_cpu_step_and_stops_with_the_run(tmp_path, monkeypatch):
    import core.store.liveness as liveness

    monkeypatch.setattr(liveness, "HEARTBEAT_SECONDS", 0.05)
    db = tmp_path / "runs.db"
    store = Store.open(db)
    run = store.create_run("eval", "r", "m", {})
    first = _updated_at(db, run)
    end = time.time() + 1.0
    while time.time() < end:  # the writer's thread busy in Python, never sleeping
        sum(i * i for i in range(2000))
    assert _updated_at(db, run) > first + 0.3
    store.finish_run(run, "done")
    finished = _updated_at(db, run)
    time.sleep(0.2)
    assert _updated_at(db, run) == finished and store.heartbeat.runs == []
    thread = store.heartbeat._thread
    store.close()
    assert not thread.is_alive()


def test_the_heartbeat_never_breaks_the_writers_transaction(tmp_path, monkeypatch):
    import core.store.liveness as liveness

    monkeypatch.setattr(liveness, "HEARTBEAT_SECONDS", 0.02)
    monkeypatch.setattr(liveness, "HEARTBEAT_BUSY_TIMEOUT_MS", 5)
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        run = store.create_run("eval", "r", "m", {})
        store.add_questions(run, [Q])
        with store.transaction():  # longer than the heartbeat waits for the lock: its beats are skipped
            store.start_trajectory(run, 0, Q)
            time.sleep(0.2)
            store.set_planned(run, 5)
        assert store.trajectory_rows(run)[0]["status"] == "running"
        held = _updated_at(db, run)
        assert _wait_for(lambda: _updated_at(db, run) > held)  # and it beats again afterwards
        assert store.heartbeat._thread.is_alive()


def test_the_heartbeat_lets_go_of_a_run_another_writer_claimed(tmp_path):
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        run = store.create_run("eval", "r", "m", {})
        store.heartbeat.stop()
        _set_writer(db, run, host=OTHER_HOST, pid=GONE_PID, age=0)
        taken = _updated_at(db, run)
        conn = sqlite3.connect(db, isolation_level=None)
        store.heartbeat.beat(conn, now=time.time() + 100)
        conn.close()
        assert store.heartbeat.runs == [] and _updated_at(db, run) == taken


def test_a_readonly_store_has_no_heartbeat(tmp_path):
    db, run = _run_db(tmp_path, host=OTHER_HOST, pid=GONE_PID, age=3600)
    with Store.open_readonly(db) as store:
        assert store.heartbeat is None
