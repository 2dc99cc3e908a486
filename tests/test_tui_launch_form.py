"""The launch form's fields (issue 8): backend, split and judge offer the eval option's own
choices, corpus and questions complete a typed path, and a viewer opened on a database that
does not exist yet can launch the eval that creates it (nothing is written until then)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.widgets import DataTable, Input, Select, Static

from core.store import Store, StoreError
from inspector import cli
from inspector.launch import FIELDS, LaunchForm, Launched, complete_path, eval_choices
from inspector.tui.app import create_app
from inspector.tui.screens.launch import LaunchScreen, PathSuggester
from tests.tui_fixtures import wait_until


def _eval_action(dest: str):
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices["eval"]._actions if a.dest == dest)


# --- choices from the CLI's parser ----------------------------------------------------------------

@pytest.mark.parametrize("field", ["backend", "split", "judge"])
def test_choice_fields_take_their_choices_and_default_from_the_cli_parser(field):
    action = _eval_action(field)
    assert eval_choices(field) == (tuple(action.choices), action.default)


def test_eval_choices_refuses_an_option_without_choices_or_missing():
    with pytest.raises(ValueError):
        eval_choices("model")
    with pytest.raises(KeyError):
        eval_choices("no_such_option")


def test_backend_is_a_field_passed_to_the_eval_and_checked_by_its_parser():
    assert FIELDS[:2] == ("model", "backend")
    assert LaunchForm().argv()[:2] == ["--model", "embedded:smollm2-135m"]  # empty: the eval's default
    assert LaunchForm(backend="hf").argv()[2:4] == ["--backend", "hf"]
    with pytest.raises(ValueError, match="invalid choice: 'tpu'"):
        LaunchForm(backend="tpu").argv()


async def test_the_form_offers_the_parsers_choices_and_passes_what_is_chosen(tmp_path, monkeypatch):
    import inspector.launch

    calls = []
    monkeypatch.setattr(inspector.launch, "launch", lambda db, args, **kw: calls.append(args) or _raise())
    app = create_app(_db(tmp_path / "runs.db"), refresh_seconds=0)
    async with app.run_test(size=(110, 40)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        await pilot.press("e")
        form = app.screen
        assert isinstance(form, LaunchScreen)
        for field in ("backend", "split", "judge"):
            select = form.query_one(f"#launch-{field}", Select)
            assert [value for _, value in select._options if value is not Select.NULL] == \
                list(eval_choices(field)[0])
        backend = form.query_one("#launch-backend", Select)
        assert backend.value is Select.NULL  # empty: the eval's default, named in the prompt
        assert form.query_one("#launch-split", Select).value == "test"
        assert form.query_one("#launch-judge", Select).value == "auto"
        backend.value = "hf"
        form.query_one("#launch-split", Select).value = "all"
        form.query_one("#launch-judge", Select).value = "contains"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: calls)
        assert calls == [["--model", "embedded:smollm2-135m", "--backend", "hf", "--split", "all",
                          "--judge", "contains"]]


def _raise():
    raise OSError("test double: nothing started")


# --- path completion ------------------------------------------------------------------------------

def _tree(root: Path) -> Path:
    (root / "data").mkdir()
    (root / "data" / "notes.md").write_text("x", encoding="utf-8")
    (root / "data" / "Questions.jsonl").write_text("{}", encoding="utf-8")
    (root / "data" / ".hidden.md").write_text("x", encoding="utf-8")
    (root / "data" / "sub").mkdir()
    (root / "data" / "odd\nname.md").write_text("x", encoding="utf-8")
    (root / "data" / "[bold]x.md").write_text("x", encoding="utf-8")
    locked = root / "locked"
    locked.mkdir()
    (locked / "inside.md").write_text("x", encoding="utf-8")
    locked.chmod(0)
    (root / "dangling").symlink_to(root / "nowhere")
    return root


@pytest.fixture
def tree(tmp_path):
    root = _tree(tmp_path)
    yield root
    (root / "locked").chmod(0o700)


def test_complete_path_finishes_a_name_folders_with_a_slash(tree):
    d = f"{tree}/data"
    assert complete_path(d) == d + "/"
    assert complete_path(d + "/no") == d + "/notes.md"
    assert complete_path(d + "/s") == d + "/sub/"
    assert complete_path(d + "/[b") == d + "/[bold]x.md"
    assert complete_path(d + "/") == d + "/Questions.jsonl"  # sorted; hidden names left out
    assert complete_path(d + "/.") == d + "/.hidden.md"  # a dot typed: hidden names offered
    assert complete_path(d + "/q") is None  # case-sensitive
    assert complete_path(d + "/odd") is None  # a name with a control character is never offered
    assert complete_path(d + "/notes.md") is None  # already complete
    assert complete_path("") is None and complete_path("   ") is None


def test_complete_path_never_raises_on_odd_input(tree):
    if os.geteuid() != 0:  # root reads any folder
        assert complete_path(f"{tree}/locked/in") is None
    assert complete_path(f"{tree}/dangling/") is None
    assert complete_path(f"{tree}/data/notes.md/x") is None  # a file as a folder
    assert complete_path(f"{tree}/da\x00ta/") is None
    assert complete_path(f"{tree}/{'x' * 5000}/") is None
    assert complete_path("\udcff/") is None


def test_complete_path_expands_the_home_folder_but_keeps_the_tilde(tree, monkeypatch):
    monkeypatch.setenv("HOME", str(tree))
    assert complete_path("~/da") == "~/data/"
    assert complete_path("~/data/no") == "~/data/notes.md"
    assert complete_path("~") == "~/"


def test_complete_path_relative_to_the_working_folder(tree, monkeypatch):
    monkeypatch.chdir(tree / "data")
    assert complete_path("no") == "notes.md"
    assert complete_path("su") == "sub/"


_NAMES = st.sampled_from(["data", "data/", "data/no", "data/s", "data/.", "data/sub/", "locked/", "dangling",
                          "~", "~/", "./", "../", "/", "//", "data//n", "da", "dat", ".", ".."])


def test_complete_path_property_only_existing_paths_that_extend_the_text():
    """Whatever is typed (hostile text, real prefixes, both mixed), complete_path returns None or
    the text extended to a path that exists."""
    with tempfile.TemporaryDirectory() as folder:
        root = _tree(Path(folder))
        try:
            @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
            @given(st.one_of(
                st.text(max_size=40),
                st.builds(lambda a, b: f"{root}/{a}{b}", _NAMES, st.text(max_size=8)),
                st.builds(lambda a: f"{root}/{a}", _NAMES),
            ))
            def check(text):
                got = complete_path(text)
                if got is None:
                    return
                assert got.startswith(text) and len(got) > len(text)
                assert os.path.exists(os.path.expanduser(got.rstrip("/") or "/")), got
                assert got.isprintable()

            check()
        finally:
            (root / "locked").chmod(0o700)


async def test_the_suggester_answers_in_a_thread_without_a_cache(tree):
    suggester = PathSuggester()
    assert suggester.cache is None and suggester.case_sensitive
    assert await suggester.get_suggestion(f"{tree}/data/no") == f"{tree}/data/notes.md"
    (tree / "data" / "newer.md").write_text("x", encoding="utf-8")
    assert await suggester.get_suggestion(f"{tree}/data/ne") == f"{tree}/data/newer.md"


async def test_corpus_and_questions_complete_inline_and_right_accepts(tree, tmp_path):
    app = create_app(_db(tmp_path / "runs.db"), refresh_seconds=0)
    async with app.run_test(size=(110, 40)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        await pilot.press("e")
        form = app.screen
        for field, typed, done in (("corpus", "/data/no", "/data/notes.md"), ("questions", "/data/Q", "/data/Questions.jsonl")):
            field_input = form.query_one(f"#launch-{field}", Input)
            field_input.focus()
            field_input.value = str(tree) + typed
            field_input.cursor_position = len(field_input.value)
            await wait_until(pilot, lambda: field_input._suggestion == str(tree) + done)
            await pilot.press("right")
            assert field_input.value == str(tree) + done
        assert isinstance(form.query_one("#launch-model"), Input)
        assert form.query_one("#launch-model", Input).suggester is None


# --- a database that does not exist yet -----------------------------------------------------------

def _db(path: Path) -> Path:
    with Store.open(path) as store:
        run = store.create_run("eval", "first", "m", {}, n_planned=1)
        store.finish_run(run, "done")
    return path


def _status(app) -> str:
    return str(app.screen.query_one("#runs-status", Static).render())


def _poll(app):
    return app.poll_database().wait()


def test_create_app_refuses_a_missing_file_unless_missing_ok_and_its_folder_exists(tmp_path):
    missing = tmp_path / "new.db"
    with pytest.raises(StoreError, match="no such database"):
        create_app(missing)
    with pytest.raises(StoreError, match="no such database"):
        create_app(tmp_path / "no-folder" / "new.db", missing_ok=True)
    with pytest.raises(StoreError, match="no such database"):
        create_app(missing, missing_ok=True, open_run=1)  # a run cannot be in a file not there
    app = create_app(missing, missing_ok=True)
    assert app.store is None and app.db_path == missing
    assert list(tmp_path.iterdir()) == []


async def test_a_missing_database_opens_empty_says_so_and_writes_nothing(tmp_path):
    missing = tmp_path / "new [bold]x.db"
    app = create_app(missing, refresh_seconds=0, missing_ok=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        assert app.screen.query_one(DataTable).row_count == 0
        status = _status(app)
        assert "new [bold]x.db does not exist yet" in status and "e launches an evaluation that creates it" in status
        assert "q quits" in status
        for _ in range(3):
            await _poll(app)
            app.screen.reload_data()
            await pilot.pause()
        await pilot.press("enter", "c", "x", "R", "r")  # nothing to open, mark, cancel or resume
        await pilot.pause()
        await pilot.press("q")
    assert list(tmp_path.iterdir()) == []


class CreatingLaunch:
    """Test double for inspector.launch.launch: writes the database as `rl-inspect eval` would
    (schema, then a running run) and starts a trivial process in place of the eval."""

    def __init__(self, log: Path):
        self.calls: list[tuple] = []
        self.log = log

    def __call__(self, db, args, *, resume=None, python=None):
        self.calls.append((str(db), list(args), resume))
        with Store.open(db) as store:
            store.create_run("eval", "launched here", "embedded:smollm2-135m", {}, n_planned=2)
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        process.wait()
        return Launched(process, ["python", "-m", "inspector.cli", "eval", *args], self.log)


async def test_launching_into_a_missing_database_follows_the_run_once_the_file_exists(tmp_path, monkeypatch):
    import inspector.launch

    missing = tmp_path / "new.db"
    recorder = CreatingLaunch(tmp_path / "launch.log")
    monkeypatch.setattr(inspector.launch, "launch", recorder)
    app = create_app(missing, refresh_seconds=0, missing_ok=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        runs = app.screen
        await pilot.press("e")
        assert isinstance(app.screen, LaunchScreen)
        app.screen.query_one("#launch-limit", Input).value = "bad"
        await pilot.press("ctrl+s")  # refused in the form: nothing starts, nothing is created
        assert "limit: not a whole number" in str(app.screen.query_one("#launch-error", Static).render())
        assert not missing.exists() and recorder.calls == []
        app.screen.query_one("#launch-limit", Input).value = "2"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is runs)
        assert recorder.calls and recorder.calls[0][0] == str(missing)
        assert missing.exists() and app.store is None  # found at the next poll
        await _poll(app)
        assert app.store is not None and app.store.readonly and app.store.path == missing
        await wait_until(pilot, lambda: runs.query_one(DataTable).row_count == 1)
        assert runs.rows[0].name == "launched here" and runs.rows[0].status == "running"
        assert "does not exist" not in _status(app)
        # from now on it follows the database like any other: a second run appears by itself
        with Store.open(missing) as store:
            store.create_run("eval", "second", "m", {}, n_planned=1)
        await _poll(app)
        await wait_until(pilot, lambda: runs.query_one(DataTable).row_count == 2)
        await pilot.press("q")


async def test_a_file_that_appears_without_a_schema_is_retried_with_its_reason_shown(tmp_path):
    path = tmp_path / "new.db"
    app = create_app(path, refresh_seconds=0, missing_ok=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        path.write_bytes(b"")  # as a writer leaves it for a moment while creating it
        await _poll(app)
        await wait_until(pilot, lambda: "cannot be opened yet" in _status(app), timeout=3)
        assert app.store is None and path.read_bytes() == b""
        path.unlink()
        _db(path)
        await _poll(app)
        assert app.store is not None
        await wait_until(pilot, lambda: app.screen.query_one(DataTable).row_count == 1)
        await pilot.press("q")


async def test_the_following_poll_opens_the_file_by_itself(tmp_path):
    path = tmp_path / "new.db"
    app = create_app(path, refresh_seconds=0.1, missing_ok=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        await pilot.pause(0.3)
        assert not path.exists()
        _db(path)
        await wait_until(pilot, lambda: app.screen.query_one(DataTable).row_count == 1)
        await pilot.press("q")


# --- the command line -----------------------------------------------------------------------------

class _NoRunApp:
    failure = crash = None
    return_code = 0

    def run(self):
        pass


def test_view_in_a_terminal_opens_a_missing_database_in_an_existing_folder(tmp_path, monkeypatch, capsys):
    made = []

    def fake_create_app(db, **kw):
        made.append((db, kw))
        return _NoRunApp()

    monkeypatch.setenv("RL_INSPECT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    monkeypatch.setattr("inspector.tui.app.create_app", fake_create_app)
    db = tmp_path / "new.db"
    assert cli.main([str(db)]) == cli.EXIT_OK
    assert made == [(str(db), {"missing_ok": True})]
    assert not db.exists()
    # its folder missing, or a run asked for: the one-line refusal as before
    for argv in ([str(tmp_path / "nope" / "new.db")], ["view", "--run", "1", str(db)]):
        assert cli.main(argv) == cli.EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no such database" in err, err
    assert len(made) == 1


def test_view_not_in_a_terminal_refuses_a_missing_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_interactive", lambda: False)
    monkeypatch.setattr("inspector.tui.app.create_app", lambda *a, **k: pytest.fail("the TUI was started"))
    assert cli.main([str(tmp_path / "new.db")]) == cli.EXIT_BAD_INPUT
    assert "no such database" in capsys.readouterr().err


_WRITER = """
import sys, time
from core.store import Store
with Store.open(sys.argv[1]) as store:
    time.sleep(0.4)
    run = store.create_run("eval", "from another process", "m", {}, n_planned=1)
    time.sleep(0.4)
    store.finish_run(run, "done")
"""


async def test_a_database_another_process_creates_is_opened_and_followed(tmp_path):
    """A real writer process creates the file while the app polls every 0.1 s: the app opens
    it read-only (through any moment it has no schema yet) and shows the run to its end."""
    path = tmp_path / "new.db"
    app = create_app(path, refresh_seconds=0.1, missing_ok=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "loaded", False))
        root = Path(__file__).resolve().parents[1]
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=root)
        try:
            await wait_until(pilot, lambda: [r.status for r in app.screen.rows] == ["done"], timeout=60)
        finally:
            assert writer.wait(timeout=60) == 0
        assert app.store is not None and app.store.readonly
        await pilot.press("q")
