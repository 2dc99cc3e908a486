"""`rl-inspect lint DB [--run N] [--json]`: a table by kind, exit 0 clean, 1 on an error finding,
2 with one line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.store import Store
from inspector.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from tests.test_lint import FAULTS, _faulty, _write, build_faults_db, clean_tokens


@pytest.fixture(scope="module")
def faults_db(tmp_path_factory) -> dict:
    return build_faults_db(tmp_path_factory.mktemp("lint_cli") / "faults.db")


@pytest.fixture
def clean_db(tmp_path) -> Path:
    path = tmp_path / "clean.db"
    with Store.open(path) as store:
        run = store.create_run("eval", "clean", "test:no-tokenizer", {})
        for _ in range(3):
            _write(store, run, clean_tokens())
        t, msgs, finish = _faulty("truncated_trained")  # a warning only
        _write(store, run, t, msgs, finish=finish)
    return path


def test_clean_database_exits_0_with_warnings_shown(clean_db, capsys):
    assert main(["lint", str(clean_db), "--no-tokenizer"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "4 trajectories checked" in out
    assert "truncated_trained" in out and "warning" in out
    assert "skipped special_trained: tokenizer not requested" in out
    assert out.rstrip().endswith("no error findings")


def test_faults_exit_1_with_a_table_by_kind(faults_db, capsys):
    assert main(["lint", str(faults_db["path"]), "--no-tokenizer"]) == EXIT_FAILED
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ") and line.split()}
    outside = lines["trained_outside_assistant"]
    assert outside[1:3] == ["error", "2"]
    assert str(faults_db["ids"]["trained_outside_assistant"]) in " ".join(outside[3:])
    assert lines["zero_spread_groups"][1] == "info"
    assert lines["trainer_count_mismatch"][3:] == ["step", "2"]


def test_json_summary(faults_db, capsys):
    code = main(["lint", str(faults_db["path"]), "--run", "1", "--json", "--no-tokenizer"])
    data = json.loads(capsys.readouterr().out)
    assert code == EXIT_FAILED and data["errors"] > 0
    [run] = data["runs"]
    assert run["run_id"] == 1 and run["checked"] == len(FAULTS) + 5
    assert run["findings"]["prompt_trained"] == {"severity": "error", "count": 1,
                                                 "examples": [faults_db["ids"]["prompt_trained"]]}


def test_json_of_a_clean_run_exits_0(clean_db, capsys):
    assert main(["lint", str(clean_db), "--json", "--no-tokenizer"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["errors"] == 0


def _one_line(capsys, *parts):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rl-inspect: ") and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


def test_unknown_run_is_bad_input(clean_db, capsys):
    assert main(["lint", str(clean_db), "--run", "99"]) == EXIT_BAD_INPUT
    _one_line(capsys, "no run 99")


@pytest.mark.parametrize("kind", ["missing", "folder", "junk", "empty"])
def test_bad_databases_get_one_line(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.db"
    if kind == "folder":
        path.mkdir()
    elif kind == "junk":
        path.write_bytes(b"\x00\xffnot a database at all" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    assert main(["lint", str(path)]) == EXIT_BAD_INPUT
    _one_line(capsys, str(path))


def test_lint_is_a_known_command_not_a_database_name(clean_db, capsys):
    # `rl-inspect X` opens X in the viewer unless X is a command
    assert main(["lint", str(clean_db), "--no-tokenizer"]) == EXIT_OK
    assert "checked" in capsys.readouterr().out
