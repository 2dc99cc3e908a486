"""`rl-inspect import`: its help, what a failed import leaves behind, and the lines it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.store import Store
from inspector import cli


def _jsonl(path: Path, n: int = 3) -> Path:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"a{i}"}],
                                        "reward": float(i)}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def _bad(path: Path) -> Path:
    """A JSONL file whose first record is fine (so its format is detected) and whose second is not."""
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + '\n{"messages": 5}\n',
                    encoding="utf-8")
    return path


def _siblings(db: Path) -> list[Path]:
    return [p for p in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))) if p.exists()]


def _runs(db: Path) -> int:
    with Store.open_readonly(db) as store:
        return len(store.runs())


def test_import_help_names_every_format_and_what_verifiers_covers(capsys):
    with pytest.raises(SystemExit):
        cli.main(["import", "--help"])
    out = capsys.readouterr().out
    described = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    for name in ("jsonl", "verl", "verifiers", "inspect"):
        assert name in described, name  # each format begins a line of its own
    text = " ".join(out.split())
    for what in ("vf-eval", "results.jsonl", "traces.jsonl", "prime-rl", ".eval", "folder of Inspect logs"):
        assert what in text, what


def test_a_failed_import_into_a_new_database_leaves_no_file(tmp_path, capsys):
    db = tmp_path / "fresh.db"
    assert cli.main(["import", str(_bad(tmp_path / "bad.jsonl")), "--db", str(db)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.jsonl:2" in err[0]
    assert _siblings(db) == []


def test_a_later_source_failing_removes_the_new_database_whole(tmp_path, capsys):
    db = tmp_path / "fresh.db"
    good, bad = _jsonl(tmp_path / "good.jsonl"), _bad(tmp_path / "bad.jsonl")
    assert cli.main(["import", str(good), str(bad), "--db", str(db)]) == cli.EXIT_BAD_INPUT
    assert _siblings(db) == []  # the good source's run went with it: a failure leaves nothing


def test_a_failed_import_never_removes_a_database_that_existed(tmp_path, capsys):
    db = tmp_path / "runs.db"
    assert cli.main(["import", str(_jsonl(tmp_path / "good.jsonl")), "--db", str(db)]) == cli.EXIT_OK
    assert cli.main(["import", str(_bad(tmp_path / "bad.jsonl")), "--db", str(db)]) == cli.EXIT_BAD_INPUT
    assert db.exists() and _runs(db) == 1
    empty = tmp_path / "empty.db"
    with Store.open(empty):
        pass
    assert cli.main(["import", str(_bad(tmp_path / "bad.jsonl")), "--db", str(empty)]) == cli.EXIT_BAD_INPUT
    assert empty.exists()  # there before, even with no runs: kept


def test_a_failed_open_leaves_no_cache_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "_run_view", lambda *a, **k: pytest.fail("the viewer opened"))
    assert cli.main([str(_bad(tmp_path / "bad.jsonl"))]) == cli.EXIT_BAD_INPUT
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert list((tmp_path / "cache").rglob("*.db*")) == []


def test_counts_of_one_are_singular(tmp_path, capsys):
    db = tmp_path / "runs.db"
    assert cli.main(["import", str(_jsonl(tmp_path / "one.jsonl", n=1)), "--db", str(db)]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert "imported 1 trajectory into run" in err and "1 trajectories" not in err
    assert cli.main(["import", str(_jsonl(tmp_path / "two.jsonl", n=2)), "--db", str(db)]) == cli.EXIT_OK
    assert "imported 2 trajectories into run" in capsys.readouterr().err


def test_the_cli_offers_every_import_format():
    from core.importers import FORMATS

    assert cli.IMPORT_FORMATS == FORMATS
