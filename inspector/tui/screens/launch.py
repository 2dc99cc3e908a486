"""The launch form (`e` on the runs screen) and the launched eval's log (`o`).

The form's values are checked by inspector.launch.LaunchForm.argv (the CLI's own parser and
EvalConfig.validate) before anything starts; a refused value is named in the form. Backend, split
and judge offer the eval option's own choices (inspector.launch.eval_choices); corpus and
questions complete a typed path inline (→ accepts, PathSuggester). The eval then runs in its own
process (inspector.launch.launch), writing into the open database (creating it when the viewer
was opened on a file that does not exist yet), which the runs screen follows like any other writer.
"""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Label, Select, Static

from inspector.launch import CHOICE_FIELDS, FIELDS, PATH_FIELDS, LaunchForm, complete_path, eval_choices

_HINTS = {
    "model": "embedded:smollm2-135m, a local model folder or a hub id in the local cache",
    "backend": "the generation backend",
    "corpus": "empty: the built-in demo corpus; or a .md/.txt file or folder, .jsonl/.csv of chunks (→ completes)",
    "questions": "empty: the demo's questions; or .jsonl/.json/.csv with question and answer (→ completes)",
    "split": "train, test or all",
    "limit": "empty: every question of the split",
    "max_generations": "generation turns per question (empty: the default)",
    "max_new_tokens": "token budget after the prompt (empty: the default)",
    "temperature": "0 for greedy (empty: the default)",
    "judge": "auto: f1 (token F1 >= 0.5) unless a judge model is named; exact, contains, f1 or llm",
    "name": "empty: model, split and time",
}


class PathSuggester(Suggester):
    """Completes a typed file or folder path inline (inspector.launch.complete_path): the rest of
    the first matching name, '/' after a folder; the right arrow accepts it.

    Textual ships only SuggestFromList; a path needs the file system read as the user types, in
    a thread (a huge or slow folder never stalls the screen), and uncached (files come and go)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value)


def _select(name: str, value: str) -> Select[str]:
    """A field whose values are the eval option's choices; an empty value is the option's default
    (the prompt names it), a value outside the choices is kept so that Start names it as refused."""
    choices, default = eval_choices(name)
    options = [(Text(c), c) for c in choices]
    if value and value not in choices:
        options.append((Text(value), value))
    if value:
        return Select(options, value=value, allow_blank=False, id=f"launch-{name}", tooltip=_HINTS[name])
    return Select(options, prompt=f"default ({default})" if default else "default", allow_blank=True,
                  id=f"launch-{name}", tooltip=_HINTS[name])


class LaunchScreen(ModalScreen[list[str] | None]):
    """The form; dismisses with the eval's options (without --db) or None when closed."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="launch.close"),
        Binding("ctrl+s", "start", "Start", id="launch.start"),
    ]

    DEFAULT_CSS = """
    LaunchScreen { align: center middle; }
    #launch-box { width: 90%; max-width: 100; height: 90%; border: round $primary; background: $surface;
                  padding: 0 1; }
    .launch-row { height: 3; }
    .launch-row Label { width: 18; padding: 1 1 0 0; }
    .launch-row Input, .launch-row Select { width: 1fr; }
    #launch-error { color: $error; height: auto; }
    """

    def __init__(self, form: LaunchForm | None = None) -> None:
        super().__init__()
        self.form = form or LaunchForm()
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="launch-box"):
            yield Static(Text("Launch an evaluation (rl-inspect eval) into this database — "
                              "Enter on the last field or Ctrl+S starts it, Esc closes", style="bold"))
            yield Static("", id="launch-error")
            for name in FIELDS:
                with Horizontal(classes="launch-row"):
                    yield Label(name.replace("_", " "))
                    value = getattr(self.form, name)
                    if name in CHOICE_FIELDS:
                        yield _select(name, value)
                    else:
                        yield Input(value=value, placeholder=_HINTS[name], id=f"launch-{name}",
                                    suggester=PathSuggester() if name in PATH_FIELDS else None)

    def on_mount(self) -> None:
        self.query_one(f"#launch-{FIELDS[0]}", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == f"launch-{FIELDS[-1]}":
            self.action_start()
        else:
            self.focus_next()

    def action_start(self) -> None:
        for name in FIELDS:
            widget = self.query_one(f"#launch-{name}")
            value = widget.value
            setattr(self.form, name, "" if value is Select.NULL else str(value))
        try:
            args = self.form.argv()
        except ValueError as exc:
            self.error = str(exc)
            self.query_one("#launch-error", Static).update(Text(f"not started: {exc}"))  # data, not markup
            return
        self.dismiss(args)

    def action_close(self) -> None:
        self.dismiss(None)


class LogScreen(ModalScreen[None]):
    """The last lines of a launched eval's stderr log."""

    BINDINGS = [Binding("escape,o,q", "dismiss", "Close", id="log.close")]

    DEFAULT_CSS = """
    LogScreen { align: center middle; }
    #log-box { width: 90%; height: 80%; border: round $primary; background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="log-box"):
            yield Static(Text(self.title_text, style="bold"))
            yield Static(Text(self.text or "(nothing written yet)"))
