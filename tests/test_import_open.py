"""`rl-inspect PATH` on a log another tool wrote: imported into a cache database, then opened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.data.records import InputError
from core.importers.cache import cached_import, is_database
from core.store import Store
from inspector import cli


def _jsonl(path: Path, n: int = 3) -> Path:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"[b]a{i}[/b]"}],
                                        "reward": float(i)}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def _verl_step(folder: Path, step: int) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{step}.jsonl").write_text("".join(json.dumps({"input": f"p{i}", "output": "o", "gts": "g",
                                                              "score": 1.0, "step": step}) + "\n"
                                                  for i in range(2)), encoding="utf-8")


def _trajectories(db: Path) -> int:
    with Store.open_readonly(db) as store:
        return store.conn.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0]


def test_a_database_is_recognised_by_its_header(tmp_path):
    db = tmp_path / "runs.db"
    with Store.open(db):
        pass
    assert is_database(db)
    assert not is_database(_jsonl(tmp_path / "x.jsonl"))
    assert not is_database(tmp_path / "missing.db")
    assert not is_database(tmp_path)


def test_a_file_is_imported_once_into_a_cache_database_keyed_by_its_content(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    log = _jsonl(tmp_path / "run.jsonl")
    db, results = cached_import(log)
    assert db.parent.parent == tmp_path / "cache" and db.exists()
    assert results[0].runs and _trajectories(db) == 3
    again, results = cached_import(log)
    assert again == db and results[0].skipped and _trajectories(db) == 3  # nothing added twice
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(log.read_bytes())
    assert cached_import(copy)[0] == db  # same content, same cache
    _jsonl(log, n=4)
    assert cached_import(log)[0] != db  # changed content, its own cache


def test_a_folder_keeps_its_cache_database_and_adds_new_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "rollouts"
    _verl_step(folder, 1)
    db, _ = cached_import(folder)
    assert _trajectories(db) == 2
    _verl_step(folder, 2)  # a training run still writing
    again, _ = cached_import(folder)
    assert again == db and _trajectories(db) == 4


def test_a_malformed_file_names_the_file_and_leaves_no_half_import(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}]}\n{"messages": 5}\n', encoding="utf-8")
    with pytest.raises(InputError) as err:
        cached_import(bad)
    assert "bad.jsonl" in str(err.value)
    for db in (tmp_path / "cache").rglob("*.db"):
        assert _trajectories(db) == 0


def test_cli_opens_an_imported_log_in_the_viewer(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    log = _jsonl(tmp_path / "run.jsonl")
    opened = []
    monkeypatch.setattr(cli, "_run_view", lambda db, run=None, trajectory=None, title=None, follow=None,
                        follow_format="auto":
                        opened.append((db, run, title)) or 0)
    assert cli.main([str(log)]) == 0
    [(db, run, title)] = opened
    assert title == "run.jsonl (imported)"  # the header names the log, not the cache file
    assert Path(db).parent.parent == tmp_path / "cache" and run is None and _trajectories(Path(db)) == 3
    err = capsys.readouterr().err
    assert "run.jsonl" in err and "imported 3 trajectories" in err


def test_cli_refuses_a_malformed_log_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    monkeypatch.setattr(cli, "_run_view", lambda *a, **k: pytest.fail("the viewer opened"))
    assert cli.main([str(bad)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.jsonl" in err[0]


def test_cli_still_names_a_damaged_database_as_a_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "runs.db"
    bad.write_bytes(b"not sqlite at all" * 10)
    assert cli.main([str(bad)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "runs.db" in err and "import" not in err and not (tmp_path / "cache" / "imports").exists()


async def test_the_header_names_the_log_a_cache_database_came_from(tmp_path, monkeypatch):
    from inspector.tui.app import create_app

    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    db, _ = cached_import(_jsonl(tmp_path / "run.jsonl"))
    app = create_app(db, refresh_seconds=0, title="run.jsonl (imported)")
    async with app.run_test(size=(80, 24)):
        assert app.sub_title == "run.jsonl (imported)"


# ------------------------------------------------------------------------------------ a folder of Inspect logs
def _inspect_folder(logs, folder: Path) -> Path:
    """A folder as `inspect eval` leaves it: the two logs, named so that the .json sorts first, and a
    file that is not a log (Inspect's logs.json listing)."""
    folder.mkdir()
    (folder / "b.eval").write_bytes(logs["eval"].read_bytes())
    (folder / "a.json").write_bytes(logs["json"].read_bytes())
    (folder / "logs.json").write_text(json.dumps({"a.json": {"eval": {}}}), encoding="utf-8")
    return folder


def test_a_folder_of_inspect_logs_imports_each_log_in_name_order(logs, tmp_path):
    from core.importers import import_paths
    from core.importers.detect import detect_format

    folder = _inspect_folder(logs, tmp_path / "logs")
    assert detect_format(folder) == "inspect"
    results = import_paths(tmp_path / "runs.db", [folder])
    assert [Path(r.source).name for r in results] == ["a.json", "b.eval"]
    assert [(name, n) for r in results for _, name, n in r.runs] == [("adder", 6), ("adder", 6)]
    again = import_paths(tmp_path / "runs.db", [folder])
    assert all(r.skipped and not r.runs for r in again)  # nothing twice
    assert [Path(r.source).name for r in import_paths(tmp_path / "f.db", [folder], fmt="inspect")] == ["a.json",
                                                                                                      "b.eval"]


def test_cli_imports_and_opens_a_folder_of_inspect_logs(logs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = _inspect_folder(logs, tmp_path / "logs")
    assert cli.main(["import", str(folder), "--db", str(tmp_path / "runs.db")]) == 0
    assert _trajectories(tmp_path / "runs.db") == 12
    opened = []
    monkeypatch.setattr(cli, "_run_view", lambda db, run=None, trajectory=None, title=None, follow=None,
                        follow_format="auto":
                        opened.append((db, title)) or 0)
    assert cli.main([str(folder)]) == 0
    [(db, title)] = opened
    assert title == "logs (imported)" and _trajectories(Path(db)) == 12


def test_a_folder_of_another_format_keeps_its_meaning_beside_an_inspect_log(logs, tmp_path):
    import shutil

    from core.importers.detect import detect_format
    from tests.test_import_verifiers import RESULTS

    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "x.eval").write_bytes(logs["eval"].read_bytes())
    assert detect_format(results) == "verifiers"


def test_a_folder_of_jsonl_files_and_inspect_logs_is_refused_naming_both(logs, tmp_path, capsys):
    from core.importers import import_paths

    folder = tmp_path / "mixed"
    _verl_step(folder, 1)
    (folder / "x.eval").write_bytes(logs["eval"].read_bytes())
    db = tmp_path / "runs.db"
    assert cli.main(["import", str(folder), "--db", str(db)]) == cli.EXIT_BAD_INPUT
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "mixed" in line and ".jsonl" in line and "Inspect" in line and "--format inspect" in line
    assert not db.exists()
    # told which, each kind imports on its own
    assert [Path(r.source).name for r in import_paths(db, [folder], fmt="inspect")] == ["x.eval"]
    assert [r.runs[0][2] for r in import_paths(db, [folder], fmt="verl")] == [2]


def test_opening_a_mixed_folder_takes_format_too(logs, tmp_path, monkeypatch, capsys):
    """The refusal says to pass --format; `rl-inspect FOLDER --format inspect` opens the logs (and
    follows the folder as that format), as `rl-inspect import --format` imports them."""
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "mixed"
    _verl_step(folder, 1)
    (folder / "x.eval").write_bytes(logs["eval"].read_bytes())
    assert cli.main([str(folder)]) == cli.EXIT_BAD_INPUT
    assert "--format inspect" in capsys.readouterr().err
    opened = []
    monkeypatch.setattr(cli, "_run_view", lambda db, run=None, trajectory=None, title=None, follow=None,
                        follow_format="auto": opened.append((db, follow_format)) or 0)
    assert cli.main([str(folder), "--format", "inspect"]) == 0
    [(db, fmt)] = opened
    assert fmt == "inspect" and _trajectories(Path(db)) == 6


@pytest.mark.parametrize("files", [[], ["notes.txt", "data.csv"], ["notes.json"]])
def test_a_folder_with_nothing_to_import_names_the_formats_looked_for(tmp_path, monkeypatch, capsys, files):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "stuff"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}\n", encoding="utf-8")
    for argv in (["import", str(folder), "--db", str(tmp_path / "runs.db")], [str(folder)]):
        assert cli.main(argv) == cli.EXIT_BAD_INPUT
        [line] = capsys.readouterr().err.strip().splitlines()
        assert str(folder) in line and "without .jsonl files" not in line
        for what in (".jsonl", "verl", "results.jsonl", "traces.jsonl", "prime-rl", ".eval", "Inspect"):
            assert what in line, (what, line)
    assert not (tmp_path / "runs.db").exists()
