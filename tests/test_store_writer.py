"""The store writer thread: order, bounded queue, failures, and nothing reported before it is stored."""

from __future__ import annotations

import threading
import time

import pytest

from core.data.records import Question
from core.store import Store
from core.store.writer import StoreWriter, WriteFailed


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "runs.db")
    yield s
    s.close()


def _run(store):
    run = store.create_run("eval", "w", "m", {}, n_planned=100)
    store.add_questions(run, [Question("q0", "Where?", "Qoruna")])
    return run


def test_writes_run_in_order_each_committed_before_its_callback(store, tmp_path):
    run = _run(store)
    seen: list[int] = []
    with StoreWriter(store, max_pending=2) as writer:
        for i in range(20):
            def write(s, i=i):
                s.conn.execute("UPDATE runs SET n_planned=? WHERE id=?", (i, run))

            def then(i=i):
                # Another connection sees the value: the transaction committed before `then`.
                with Store.open_readonly(tmp_path / "runs.db") as reader:
                    seen.append(reader.run(run)["n_planned"])
            writer.submit(write, then)
    assert seen == list(range(20))


def test_submit_waits_when_the_queue_is_full(store):
    gate = threading.Event()
    writer = StoreWriter(store, max_pending=1)
    writer.submit(lambda s: gate.wait(5))  # taken by the thread, blocks it
    time.sleep(0.05)
    writer.submit(lambda s: None)  # fills the one place
    blocked = threading.Thread(target=writer.submit, args=(lambda s: None,))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # waits for room
    gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    writer.close()


def test_a_failed_write_is_rolled_back_and_stops_later_ones(store):
    run = _run(store)
    writer = StoreWriter(store)

    def half_then_fail(s):
        s.conn.execute("UPDATE runs SET n_planned=7 WHERE id=?", (run,))
        raise ValueError("disk on fire")

    writer.submit(half_then_fail)
    writer.submit(lambda s: s.conn.execute("UPDATE runs SET n_planned=9 WHERE id=?", (run,)))
    with pytest.raises(WriteFailed, match="disk on fire") as info:
        writer.drain()
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(WriteFailed):
        writer.submit(lambda s: None)
    with pytest.raises(WriteFailed):
        writer.close()
    assert store.run(run)["n_planned"] == 100  # neither the half write nor the later one


def test_leaving_on_an_error_stores_what_was_submitted_and_keeps_the_error(store):
    run = _run(store)
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(store) as writer:
            for _ in range(5):
                writer.submit(lambda s: s.start_trajectory(run, 0, Question("q0", "Where?", "Qoruna")))
            raise KeyboardInterrupt
    assert len(store.trajectory_rows(run)) == 5


def test_a_failed_write_does_not_hide_the_bodys_own_error(store):
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(store) as writer:
            writer.submit(lambda s: 1 / 0)
            time.sleep(0.05)
            raise KeyboardInterrupt
