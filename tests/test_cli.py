"""The command line: bad input gets one line and exit 2 with nothing written; listing runs."""

from __future__ import annotations

import json
import sqlite3

import pytest

from core.store import Store
from inspector.cli import EXIT_BAD_INPUT, EXIT_OK, PREPARING_NOTICE, main


def _one_line_error(capsys, *parts):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for part in parts:
        assert part in err, err
    return err


def test_malformed_question_file_names_file_line_and_field(tmp_path, capsys):
    qs = tmp_path / "qa.jsonl"
    qs.write_text('{"question": "a?", "answer": "b"}\n{"question": "c?"}\n')
    db = tmp_path / "runs.db"
    assert main(["eval", "--db", str(db), "--questions", str(qs), "--split", "all"]) == EXIT_BAD_INPUT
    _one_line_error(capsys, str(qs), ":2", "answer")
    assert not db.exists()


def test_missing_corpus_file(tmp_path, capsys):
    db = tmp_path / "runs.db"
    code = main(["eval", "--db", str(db), "--corpus", str(tmp_path / "nope.md"), "--questions", str(tmp_path / "q.jsonl")])
    assert code == EXIT_BAD_INPUT
    _one_line_error(capsys, "nope.md")
    assert not db.exists()


def test_bad_option_values_are_bad_input(tmp_path, capsys):
    assert main(["eval", "--db", str(tmp_path / "r.db"), "--max-generations", "0"]) == EXIT_BAD_INPUT
    _one_line_error(capsys, "--max-generations")
    assert main(["eval", "--db", str(tmp_path / "r.db"), "--reward-weights", "correctness"]) == EXIT_BAD_INPUT
    _one_line_error(capsys)
    assert not (tmp_path / "r.db").exists()


def test_runs_lists_a_database_and_rejects_bad_ones(tmp_path, capsys):
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        store.create_run("eval", "first-run", "m", {}, n_planned=3)
    assert main(["runs", str(db)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "first-run" in out and "0/3" in out
    assert main(["runs", str(db), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["name"] == "first-run"

    assert main(["runs", str(tmp_path / "missing.db")]) == EXIT_BAD_INPUT
    _one_line_error(capsys, "missing.db", "no such database")
    assert not (tmp_path / "missing.db").exists()

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 64)
    assert main(["runs", str(junk)]) == EXIT_BAD_INPUT
    _one_line_error(capsys, "junk.db")
    assert junk.read_bytes() == b"not sqlite at all" * 64


def test_truncated_database_gets_one_line(tmp_path, capsys):
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        for i in range(300):
            store.create_run("eval", f"run-{i}-" + "x" * 200, "m", {"pad": "y" * 500})
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    assert main(["runs", str(db)]) == EXIT_BAD_INPUT
    _one_line_error(capsys, "runs.db")
    assert db.read_bytes() == data[: len(data) // 2]


def test_locked_database_is_reported_not_hung(tmp_path, capsys, monkeypatch):
    db = tmp_path / "runs.db"
    Store.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr("core.store.store.BUSY_TIMEOUT_MS", 100)
    try:
        assert main(["runs", str(db)]) == EXIT_BAD_INPUT
        _one_line_error(capsys, "runs.db")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _newer(tmp_path):
    db = tmp_path / "newer.db"
    Store.open(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    con.commit()
    con.close()
    return db


def _foreign(tmp_path):
    db = tmp_path / "foreign.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    return db


def _junk(tmp_path):
    db = tmp_path / "junk.db"
    db.write_bytes(b"\x00not a database" * 100)
    return db


def _truncated(tmp_path):
    db = tmp_path / "cut.db"
    with Store.open(db) as store:
        for i in range(300):
            store.create_run("eval", f"run-{i}-" + "x" * 200, "m", {"pad": "y" * 500})
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.write_bytes(db.read_bytes()[:20000])
    return db


@pytest.mark.parametrize("make, words", [
    (_newer, "newer than this program"), (_foreign, "not an rl-inspect one"), (_junk, "junk.db"),
    (_truncated, "cut.db"),
])
def test_the_viewer_refuses_bad_databases_in_one_line(tmp_path, capsys, make, words):
    db = make(tmp_path)
    before = db.read_bytes()
    assert main([str(db)]) == EXIT_BAD_INPUT
    _one_line_error(capsys, words)
    assert db.read_bytes() == before


def test_the_viewer_on_a_missing_path_says_how_to_make_one(tmp_path, capsys):
    assert main([str(tmp_path / "none.db")]) == EXIT_BAD_INPUT
    _one_line_error(capsys, "none.db", "rl-inspect eval")
    assert not (tmp_path / "none.db").exists()


def test_chat_template_and_tool_format_reach_the_engine(tmp_path, capsys):
    db = tmp_path / "r.db"
    missing = tmp_path / "nope.jinja"
    assert main(["eval", "--db", str(db), "--chat-template", str(missing)]) == EXIT_BAD_INPUT
    _one_line_error(capsys, str(missing))
    phi = tmp_path / "drops_tools.jinja"  # renders no tool message at all, as Phi-3.5-mini's does
    phi.write_text("{% for m in messages %}{% if m['role'] != 'tool' and m['role'] != 'ipython' %}"
                   "<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endif %}{% endfor %}"
                   "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert main(["eval", "--db", str(db), "--chat-template", str(phi), "--tool-format", "seed"]) == EXIT_BAD_INPUT
    # The template is checked with the model's tokenizer: on a fresh machine the one-time notice
    # that the embedded model is being prepared comes first, then the refusal, and nothing else.
    err = capsys.readouterr().err.strip().removeprefix(PREPARING_NOTICE).strip()
    assert "\n" not in err and "Traceback" not in err and "tool" in err, err
    assert not db.exists()
    with pytest.raises(SystemExit):
        main(["eval", "--db", str(db), "--tool-format", "xml"])


@pytest.mark.parametrize("flag", ["--prompt-template", "--chat-template"])
def test_a_folder_given_as_a_template_file_is_bad_input(tmp_path, capsys, flag):
    assert main(["eval", "--db", str(tmp_path / "r.db"), flag, str(tmp_path)]) == EXIT_BAD_INPUT
    _one_line_error(capsys, str(tmp_path), "folder")


def test_paths_are_stored_absolute_so_resume_works_from_another_directory(tmp_path, monkeypatch):
    """Found by a fresh-user trial: --questions q.jsonl was stored as typed, and --resume from
    another directory failed with 'q.jsonl: no such file'."""
    from inspector import cli

    (tmp_path / "q.jsonl").write_text('{"question": "Where?", "answer": "Qoruna"}\n', encoding="utf-8")
    (tmp_path / "notes.md").write_text("# Notes\n\nQoruna.\n", encoding="utf-8")
    (tmp_path / "my_rewards.py").write_text("def r(messages, question):\n    return 1.0\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["eval", "--questions", "q.jsonl", "--corpus", "notes.md",
                                          "--reward", "my_rewards.py:r", "--reward", "pkg.mod:fn"])
    config = cli._config_from_args(args)
    assert config.questions == str(tmp_path / "q.jsonl") and config.corpus == str(tmp_path / "notes.md")
    assert config.extra_rewards == [f"{tmp_path / 'my_rewards.py'}:r", "pkg.mod:fn"]
    train = cli._train_config_from_args(cli.build_parser().parse_args(["train", "--questions", "q.jsonl"]))
    assert train.questions == str(tmp_path / "q.jsonl")
    missing = cli._config_from_args(cli.build_parser().parse_args(["eval", "--questions", "nope.jsonl"]))
    assert missing.questions == "nope.jsonl"  # left as typed: its loader names it


def test_options_given_with_resume_are_named_as_ignored():
    """Found by a fresh-user trial: --resume 1 --limit 5 silently ran with the stored limit."""
    from inspector import cli

    parse = cli.build_parser().parse_args
    assert cli._ignored_on_resume(parse(["eval", "--db", "x.db", "--resume", "1", "--json", "--no-open"])) == []
    assert cli._ignored_on_resume(parse(["eval", "--resume", "1", "--limit", "5", "--judge", "f1"])) == [
        "--limit", "--judge"]
