"""Following a growing log folder (core.importers.cache.FolderFollower): `rl-inspect FOLDER` keeps
importing the step files a training run still writes while the TUI is open."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.importers import cache
from core.importers.cache import FolderFollower, cached_import, follows
from core.store import Store


def _verl_step(folder: Path, step: int, n: int = 2) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{step}.jsonl"
    path.write_text("".join(json.dumps({"input": f"p{i}", "output": "o", "gts": "g", "score": 1.0, "step": step})
                            + "\n" for i in range(n)), encoding="utf-8")
    return path


def _trajectories(db: Path) -> int:
    with Store.open_readonly(db) as store:
        return store.conn.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0]


@pytest.fixture
def opened(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A verl folder with step 1, imported the way `rl-inspect FOLDER` does: (folder, its cache database)."""
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "rollouts"
    _verl_step(folder, 1)
    db, _ = cached_import(folder)
    assert _trajectories(db) == 2
    return folder, db


def test_a_follower_adds_a_step_file_written_after_the_first_import(opened):
    folder, db = opened
    follower = FolderFollower(folder, db)
    assert follower.poll() == 0 and follower.error is None and follower.added == 0  # nothing new yet
    _verl_step(folder, 2)
    assert follower.poll() == 2 and follower.error is None
    assert follower.step == 2 and follower.added == 2 and _trajectories(db) == 4
    assert follower.poll() == 0 and _trajectories(db) == 4  # nothing twice


def test_a_half_written_step_file_waits_for_its_last_newline(opened):
    folder, db = opened
    follower = FolderFollower(folder, db)
    data = _verl_step(folder, 2).read_bytes()
    (folder / "2.jsonl").write_bytes(data[:-10])  # verl is still writing it
    assert follower.poll() == 0 and follower.error is None and _trajectories(db) == 2
    (folder / "2.jsonl").write_bytes(data)
    assert follower.poll() == 2 and follower.step == 2 and _trajectories(db) == 4


def test_a_malformed_step_file_keeps_its_error_and_following_goes_on(opened):
    folder, db = opened
    follower = FolderFollower(folder, db)
    (folder / "2.jsonl").write_text(json.dumps({"input": "p", "score": 1.0, "step": 2}) + "\n", encoding="utf-8")
    assert follower.poll() == 0
    assert follower.error is not None and "2.jsonl" in follower.error and "output" in follower.error
    assert _trajectories(db) == 2  # nothing of the bad import written
    assert follower.poll() == 0 and "2.jsonl" in follower.error  # still named until the file changes
    _verl_step(folder, 2)  # rewritten whole
    assert follower.poll() == 2 and follower.error is None and _trajectories(db) == 4


def test_an_unchanged_folder_is_not_read_again(opened, monkeypatch):
    """Every import hashes every step file: a poll that finds the same files (names, sizes, times)
    as the last import skips it, so following a long run does not re-read gigabytes every poll."""
    import core.importers

    folder, db = opened
    calls = []
    real = core.importers.import_paths
    monkeypatch.setattr(core.importers, "import_paths", lambda *a, **k: calls.append(a) or real(*a, **k))
    follower = FolderFollower(folder, db)
    follower.poll()
    follower.poll()
    assert len(calls) == 1
    _verl_step(folder, 2)
    assert follower.poll() == 2 and len(calls) == 2


def test_a_reader_goes_on_while_the_follower_writes(opened):
    """The cache database is in WAL mode: the TUI's read-only connection reads during an import."""
    folder, db = opened
    with Store.open_readonly(db) as reader:
        assert reader.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        before = reader.conn.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0]
        _verl_step(folder, 2)
        assert FolderFollower(folder, db).poll() == 2
        assert reader.conn.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0] == before + 2


def test_a_missing_folder_is_an_error_not_a_crash(opened):
    folder, db = opened
    follower = FolderFollower(folder, db)
    shutil.rmtree(folder)
    assert follower.poll() == 0 and follower.error and "rollouts" in follower.error


def test_only_a_folder_keyed_by_its_path_is_followed(tmp_path, monkeypatch):
    from tests.test_import_verifiers import RESULTS

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "rollouts"
    step = _verl_step(folder, 1)
    assert follows(folder)
    assert not follows(step)  # a file is keyed by its content: it does not grow
    assert not follows(RESULTS)  # a verifiers results folder is keyed by its results.jsonl
    assert not follows(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a folder"):
        FolderFollower(step, tmp_path / "x.db")


def test_a_prime_rl_folder_is_followed(tmp_path, monkeypatch):
    from tests.test_import_verifiers_traces import PRIME, STEP, _grow, _records

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    out = _grow(tmp_path, (1,))
    assert follows(out)
    db, _ = cached_import(out)
    follower = FolderFollower(out, db)
    assert follower.poll() == 0
    _grow(tmp_path, (2,))
    assert follower.poll() == len(_records(PRIME / STEP.format(2))) and follower.step == 2
    # the held-out eval of step 2, written after the step's batch, is picked up too
    from tests.test_import_verifiers_traces import EVAL_STEP

    dst = out / EVAL_STEP.format(2)
    dst.parent.mkdir(parents=True)
    shutil.copy(PRIME / EVAL_STEP.format(2), dst)
    assert follower.poll() == len(_records(PRIME / EVAL_STEP.format(2)))
    with Store.open_readonly(db) as store:
        assert [(r["kind"], r["train_step"]) for r in store.runs()] == [("eval", 2), ("train", None)]
    # the run's metric log, appended to as the trainer finishes each step, fills the steps' metrics
    shutil.copy(PRIME / "metrics.jsonl", out / "metrics.jsonl")
    assert follower.poll() == 0 and follower.error is None
    with Store.open_readonly(db) as store:
        train = next(r["id"] for r in store.runs() if r["kind"] == "train")
        assert [s.get("loss") for s in store.train_steps(train)] == [0.01, 0.02]


def test_the_follower_uses_the_cache_database_by_default(opened):
    folder, db = opened
    assert FolderFollower(folder).db == db == cache.cache_database(folder)


def test_the_cli_follows_an_opened_folder_unless_told_not_to(tmp_path, monkeypatch):
    from inspector import cli

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "rollouts"
    step = _verl_step(folder, 1)
    opened = []
    monkeypatch.setattr(cli, "_run_view", lambda db, run=None, trajectory=None, title=None, follow=None,
                        follow_format="auto":
                        opened.append((title, follow)) or 0)
    assert cli.main([str(folder)]) == 0
    assert cli.main([str(folder), "--no-follow"]) == 0
    assert cli.main([str(step)]) == 0  # a file's content is fixed: nothing to follow
    db = tmp_path / "runs.db"
    with Store.open(db):
        pass
    assert cli.main([str(db)]) == 0  # a database is opened as it is
    assert opened == [("rollouts (imported)", folder), ("rollouts (imported)", None), ("1.jsonl (imported)", None),
                      (None, None)]


def test_run_view_hands_the_folder_to_the_app(tmp_path, monkeypatch):
    from inspector import cli
    from inspector.tui import app as tui

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "rollouts"
    _verl_step(folder, 1)
    db, _ = cached_import(folder)
    made = []

    class Stop(Exception):
        pass

    def create_app(*args, **kwargs):
        made.append(kwargs.get("follow"))
        raise Stop

    monkeypatch.setattr(tui, "create_app", create_app)
    with pytest.raises(Stop):
        cli._run_view(str(db), title="rollouts (imported)", follow=folder)
    assert made == [folder]


# ------------------------------------------------------------------------------------ a folder of Inspect logs
def _started(log: Path, dst: Path) -> Path:
    """`log` (a .json Inspect log) as it reads while its eval still runs: status "started"."""
    text = log.read_text(encoding="utf-8")
    assert '"status": "success"' in text[:200]
    dst.write_text(text.replace('"status": "success"', '"status": "started"', 1), encoding="utf-8")
    return dst


def test_a_folder_of_inspect_logs_is_followed(logs, tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "logs"
    folder.mkdir()
    shutil.copy(logs["json"], folder / "a.json")
    assert follows(folder)
    db, _ = cached_import(folder)
    assert _trajectories(db) == 6
    follower = FolderFollower(folder, db)
    assert follower.poll() == 0 and follower.error is None
    shutil.copy(logs["eval"], folder / "b.eval")  # another eval finished
    assert follower.poll() == 6 and follower.error is None and _trajectories(db) == 12
    assert follower.poll() == 0 and _trajectories(db) == 12


def test_an_inspect_log_still_being_written_waits_until_it_has_finished(logs, tmp_path, monkeypatch):
    """A running eval rewrites its log as samples finish: a folder's log with status "started" is left
    for a later poll (else each version would become a run of its own)."""
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "logs"
    folder.mkdir()
    shutil.copy(logs["eval"], folder / "a.eval")
    running = _started(logs["json"], folder / "b.json")
    db, results = cached_import(folder)
    assert [bool(r.runs) for r in results] == [True, False]
    assert "started" in results[1].skipped and _trajectories(db) == 6
    follower = FolderFollower(folder, db)
    assert follower.poll() == 0
    shutil.copy(logs["json"], running)  # the eval has finished
    assert follower.poll() == 6 and _trajectories(db) == 12
    with Store.open_readonly(db) as store:
        assert len(store.runs()) == 2
