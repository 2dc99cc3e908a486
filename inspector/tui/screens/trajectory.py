"""One trajectory: its transcript or its tokens, with every reward beside it.

`t` toggles between the transcript and the token view and keeps the place (the message on
screen maps to its token span and back); `n`/`p` walk the list the user came from, with its
filter and sort; `e`, `d` and `m` jump to the next tool error, the drift position and the next
search match in whichever view is shown; `y` copies the whole trajectory as JSON and saves it.
Reads run in thread workers; a trajectory whose pages are damaged shows the error in place.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import ContentSwitcher, Header, Static

from core.store.export import trajectory_record
from core.paths import cache_dir
from core.data.records import Message, Question, RewardResult
from core.store.queries import TrajectoryQuery, matching_positions, neighbour
from inspector.tui.widgets.line import Line
from inspector.tui import format as fmt
from inspector.tui.reads import read
from inspector.literal import visible
from inspector.tui.screens.live import LiveScreen
from inspector.tui.widgets.key_bar import KeyBar
from inspector.tui.widgets.lint_panel import LintPanel
from inspector.tui.widgets.rewards_panel import RewardsPanel
from inspector.tui.widgets.token_view import TokenView
from inspector.tui.widgets.transcript import Transcript


@dataclass
class Loaded:
    """What one read of a trajectory brings back (all of it, or the error that stopped it)."""

    row: dict
    messages: list[Message]
    question: Question
    rewards: list[RewardResult]
    hits: list[int]


class SidePanel(VerticalScroll, can_focus=True):
    """The answer against gold and every reward; scrolls (Tab focuses it) on small terminals."""

    HELP_HEADING = "Side panel"


class TrajectoryScreen(LiveScreen):
    BINDINGS = [
        Binding("t", "toggle_tokens", "Transcript/tokens", id="trajectory.toggle"),
        Binding("n", "step(1)", "Next", id="trajectory.next"),
        Binding("p", "step(-1)", "Previous", id="trajectory.previous"),
        Binding("e", "next_error", "Next tool error", id="trajectory.next_error"),
        Binding("d", "drift", "Drift", id="trajectory.drift", tooltip="Go to where the re-rendered chat "
                "first differs from the stored tokens"),
        Binding("m", "next_match", "Next match", id="trajectory.next_match", tooltip="Next message the "
                "list's search matched"),
        Binding("y", "copy_json", "Copy JSON", id="trajectory.copy"),
        Binding("escape", "back", "Back", id="trajectory.back"),
    ]

    def __init__(self, query: TrajectoryQuery, trajectory_id: int, run_info: dict):
        super().__init__()
        self.list_query = query
        self.trajectory_id = trajectory_id
        """The trajectory on screen (n/p change it; the list puts its cursor there on Esc)."""
        self.run_info = run_info
        self.row: dict | None = None
        self.messages: list[Message] = []
        self.hits: list[int] = []
        self.loaded = False
        """True once the trajectory on screen has been read (tests wait on it)."""
        self._tokens_loaded_for: int | None = None
        self._pending_token: int | None = None
        self._flag_positions: list[int] | None = None
        """First token of each mask-lint finding of the trajectory on show (None: not checked yet)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Line("", id="trajectory-line", classes="status-line")
        with Horizontal():
            with ContentSwitcher(initial="transcript", id="views"):
                yield Transcript(id="transcript")
                yield TokenView(id="tokens")
            with SidePanel(id="side"):
                yield Static("", id="answer-box")
                yield RewardsPanel(id="rewards")
                yield LintPanel(id="lint")
        yield KeyBar()

    def on_mount(self) -> None:
        self.show(self.trajectory_id)

    # ------------------------------------------------------------------ loading
    def show(self, trajectory_id: int) -> None:
        """Read trajectory `trajectory_id` (in a worker) and show it from the top."""
        self.trajectory_id = trajectory_id
        self.loaded = False
        self.loaded_version = self.app.data_version
        self._load(trajectory_id, fresh=True)

    def reload_data(self) -> None:
        """Another process wrote: a running trajectory grows; a finished one is left as it is."""
        self.loaded_version = self.app.data_version
        if self.row is None or self.row["status"] == "running":
            self._load(self.trajectory_id, fresh=False)

    @work(thread=True, exclusive=True, group="trajectory", exit_on_error=False)
    def _load(self, trajectory_id: int, fresh: bool) -> None:
        try:
            loaded = read(self.app, self._read, trajectory_id)
        except sqlite3.DatabaseError as exc:
            self.app.call_from_thread(self._show_error, trajectory_id, exc)
            return
        self.app.call_from_thread(self._show, trajectory_id, loaded, fresh)

    def _read(self, trajectory_id: int) -> Loaded:
        store = self.app.store
        row = store.trajectory(trajectory_id)
        messages = store.messages(trajectory_id)
        question = store.question(row["run_id"], row["qidx"]) or Question(
            str(row["qidx"]), row["question"], row["gold_answer"])
        search = self.list_query.filter.search
        hits = matching_positions(store, trajectory_id, search) if search else []
        return Loaded(row, messages, question, store.rewards(trajectory_id), hits)

    def _show_error(self, trajectory_id: int, exc: Exception) -> None:
        if trajectory_id != self.trajectory_id:
            return
        self.loaded = True
        message = f"trajectory {trajectory_id} cannot be read: {fmt.one_line(str(exc))}"
        self.query_one("#trajectory-line", Static).update(Text(message, style="bold red"))
        self.query_one(Transcript).remove_children()
        self.query_one(Transcript).mount(Static(Text(message + "\nOther trajectories may still be readable: "
                                                     "n/p or Esc.", style="bold red")))
        self.notify(message, severity="error", markup=False)

    def _show(self, trajectory_id: int, loaded: Loaded, fresh: bool) -> None:
        if trajectory_id != self.trajectory_id:
            return
        grown = (self.row is None or len(loaded.messages) != len(self.messages)
                 or loaded.row["status"] != self.row["status"])
        self.row, self.messages, self.hits = loaded.row, loaded.messages, loaded.hits
        self.loaded = True
        self.query_one("#trajectory-line", Static).update(self._line())
        self.query_one(RewardsPanel).show(loaded.rewards, self.row["reward"])
        self.query_one("#answer-box", Static).update(self._answer_text())
        if fresh or grown:
            self._flag_positions = None
            self.query_one(LintPanel).show(None)
            self._lint(trajectory_id)
        if not fresh and not grown:
            return
        transcript = self.query_one(Transcript)
        place = None if fresh else transcript.message_index_at_scroll()
        following = not fresh and transcript.scroll_y >= transcript.max_scroll_y
        r = self.row
        transcript.show(self.messages, loaded.question, r["final_answer"], r["gold_answer"],
                        None if r["correct"] is None else bool(r["correct"]),
                        search=self.list_query.filter.search, hits=self.hits, finish_reason=r["finish_reason"])
        if following:
            transcript.call_after_refresh(transcript.scroll_end, animate=False)
        elif place:
            transcript.scroll_to_message(place)
        elif fresh and self.hits:
            transcript.scroll_to_message(self.hits[0])
        self._tokens_loaded_for = None
        if self.query_one(ContentSwitcher).current == "tokens":
            self._load_tokens()

    def _line(self) -> Text:
        r = self.row
        parts: list = [f"trajectory {r['id']}", f"question {r['qidx']}", r["status"], r["finish_reason"] or "",
                       f"{r['turns']} turns", f"{r['tool_calls']} calls"]
        if r["tool_errors"]:
            parts.append((f"{r['tool_errors']} tool error(s)", "bold red"))
        if r["step"] is not None:
            parts += [f"step {r['step']}", f"group {r['group_id']}", f"advantage {fmt.num(r['advantage'])}"]
        if r["drift_at"] is not None:
            kind = r.get("drift_kind")
            harmless = kind == "template_rewrite"  # the stored ids are what the model saw (core.rollout.chat)
            parts.append((f"{'drift' if harmless else '⚠ drift'} at token {r['drift_at']:,}"
                          f"{f' ({kind})' if kind else ''}", "yellow" if harmless else "bold yellow"))
        if r.get("finish_detail"):
            parts.append((r["finish_detail"], "italic"))
        if r.get("token_exact") == 0:
            parts.append(("⚠ not token-exact: the server returned text, its ids are the local tokenizer's reading "
                          "(mask and logprobs are not the model's)", "bold yellow"))
        if self.hits:
            parts.append((f"{len(self.hits)} search match(es): m", "bold"))
        return fmt.line(*parts)

    def _answer_text(self) -> Text:
        r = self.row
        text = Text(overflow="fold")
        text.append("Question\n", style="bold")
        text.append(visible(r["question"]) + "\n\n")
        text.append("Answer  ", style="bold")
        text.append(visible(fmt.clip(r["final_answer"], 300) if r["final_answer"] else "(none)") + "\n")
        text.append("Gold    ", style="bold")
        text.append(visible(r["gold_answer"]) + "\n")
        if r["correct"] is not None:
            text.append("✔ correct" if r["correct"] else "✘ wrong", style="bold green" if r["correct"] else "bold red")
        return text

    # ------------------------------------------------------------------ lint
    @work(thread=True, exclusive=True, group="lint", exit_on_error=False)
    def _lint(self, trajectory_id: int) -> None:
        """The trajectory's mask-lint findings (core.lint.lint_trajectory), off the UI thread:
        the first check of a model may load its tokenizer (for special_trained)."""
        from core.store import StoreError

        try:
            findings = read(self.app, lint_one, self.app.store.path, trajectory_id)
        except (sqlite3.DatabaseError, StoreError) as exc:
            self.app.call_from_thread(self._show_lint, trajectory_id, None, str(exc))
            return
        self.app.call_from_thread(self._show_lint, trajectory_id, findings, None)

    def _show_lint(self, trajectory_id: int, findings, error: str | None) -> None:
        if trajectory_id != self.trajectory_id:
            return
        status = self.row["status"] if self.row else None
        unchecked = ("not checked yet: tokens and mask are stored when the trajectory ends" if status == "running"
                     else f"nothing to check: no tokens were stored ({status})" if status in ("interrupted", "failed")
                     else "not checked: not token-exact (ids re-tokenised from the server's text)"
                     if self.row and self.row.get("token_exact") == 0 else None)
        self.query_one(LintPanel).show(findings, error, unchecked)
        self._flag_positions = [f.first_position for f in findings or [] if f.first_position is not None]
        if self._tokens_loaded_for == trajectory_id:
            self.query_one(TokenView).set_flags(self._flag_positions)

    # ------------------------------------------------------------------ tokens
    def _load_tokens(self) -> None:
        if self._tokens_loaded_for == self.trajectory_id:
            return
        self._tokens_loaded_for = self.trajectory_id
        self.query_one(TokenView).loading = True
        self._fetch_tokens(self.trajectory_id)

    @work(thread=True, exclusive=True, group="tokens", exit_on_error=False)
    def _fetch_tokens(self, trajectory_id: int) -> None:
        try:
            tokens = read(self.app, self.app.store.tokens, trajectory_id)
        except sqlite3.DatabaseError as exc:
            self.app.call_from_thread(self._show_token_error, trajectory_id, exc)
            return
        pieces = self.app.tokenizers.pieces(self.run_info["model"], tokens.ids) if tokens else None
        self.app.call_from_thread(self._show_tokens, trajectory_id, tokens, pieces)

    def _show_token_error(self, trajectory_id: int, exc: Exception) -> None:
        if trajectory_id == self.trajectory_id:
            view = self.query_one(TokenView)
            view.loading = False
            view.show_message(f"the tokens of trajectory {trajectory_id} cannot be read: {fmt.one_line(str(exc))}")

    def _show_tokens(self, trajectory_id: int, tokens, pieces) -> None:
        if trajectory_id != self.trajectory_id:
            return
        view = self.query_one(TokenView)
        view.loading = False
        if self.query_one(ContentSwitcher).current == "tokens":
            view.focus()  # a loading widget refuses focus, so take it now
        if tokens is None:
            view.show_message("No tokens stored for this trajectory (it did not finish).")
            return
        view.show(tokens, pieces, self.messages, self.row["drift_at"], advantage=self.row.get("advantage"))
        hit_tokens = [self.messages[i].token_start for i in self.hits
                      if i < len(self.messages) and self.messages[i].token_start is not None]
        view.set_search_hits(hit_tokens)
        view.set_flags(self._flag_positions or [])
        if self._pending_token is not None:
            view.scroll_to_token(self._pending_token)
            self._pending_token = None

    # ------------------------------------------------------------------ actions
    def _in_tokens(self) -> bool:
        return self.query_one(ContentSwitcher).current == "tokens"

    def action_toggle_tokens(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        if switcher.current == "transcript":
            transcript = self.query_one(Transcript)
            index = transcript.message_index_at_scroll()
            # At the top of the transcript, the token view opens at its own start: the first
            # trained token, not token 0 of the system prompt.
            start = (self.messages[index].token_start
                     if transcript.scroll_y > 0 and 0 <= index < len(self.messages) else None)
            self._pending_token = start
            switcher.current = "tokens"
            if self._tokens_loaded_for == self.trajectory_id and start is not None:
                self.query_one(TokenView).scroll_to_token(start)
                self._pending_token = None
            self._load_tokens()
            self.query_one(TokenView).focus()
        else:
            token = self.query_one(TokenView).current_token()
            switcher.current = "transcript"
            transcript = self.query_one(Transcript)
            if token is not None:
                transcript.scroll_to_message(_message_at_token(self.messages, token))
            transcript.focus()

    def action_next_error(self) -> None:
        if self._in_tokens():
            found = self.query_one(TokenView).next_tool_error()
        else:
            found = self.query_one(Transcript).next_tool_error() is not None
        if not found:
            self.notify("no tool error in this trajectory", timeout=1.5)

    def action_drift(self) -> None:
        drift = self.row["drift_at"] if self.row else None
        if drift is None:
            self.notify("no drift: the re-rendered chat matches the stored tokens", timeout=2)
            return
        if self._in_tokens():
            self.query_one(TokenView).go_to_drift()
        else:
            self.query_one(Transcript).go_to_token(drift)

    def action_next_match(self) -> None:
        if not self.list_query.filter.search:
            self.notify("no search: / on the trajectory list searches every message", timeout=2)
            return
        if self._in_tokens():
            found = self.query_one(TokenView).next_search_hit()
        else:
            found = self.query_one(Transcript).next_search_hit() is not None
        if not found:
            self.notify("the search matches no message of this trajectory", timeout=1.5)

    def action_step(self, direction: int) -> None:
        nxt = neighbour(self.app.store, self.list_query, self.trajectory_id, direction)
        if nxt is None:
            self.notify("end of the list" if direction > 0 else "start of the list", timeout=1.5)
            return
        self.show(nxt)

    def action_copy_json(self) -> None:
        """The trajectory as JSON: sent to the terminal's clipboard (OSC 52, which some terminals
        ignore and none confirms) and always saved to a file, whose path is shown."""
        text = json.dumps(trajectory_record(self.app.store, self.trajectory_id), ensure_ascii=False, indent=1)
        path = export_path(self.app.store.path, self.trajectory_id)
        path.write_text(text, encoding="utf-8")
        self.app.copy_to_clipboard(text)
        self.notify(f"trajectory {self.trajectory_id} as JSON ({len(text):,} characters): saved to {path}; also "
                    "sent to the terminal clipboard (OSC 52), where the terminal allows it",
                    markup=False, timeout=8)

    def action_back(self) -> None:
        self.app.pop_screen()


def export_path(db: Path, trajectory_id: int) -> Path:
    """Where `y` saves a trajectory: <cache>/exports/<database name>-trajectory-<id>.json."""
    folder = cache_dir() / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in db.stem) or "db"
    return folder / f"{stem}-trajectory-{trajectory_id}.json"


def _message_at_token(messages, token: int) -> int:
    """The last message whose span starts at or before `token`."""
    best = 0
    for i, m in enumerate(messages):
        if m.token_start is not None and m.token_start <= token:
            best = i
    return best


def lint_one(path: Path, trajectory_id: int):
    """core.lint.lint_trajectory on a connection of its own: the lint holds a read transaction,
    which must not meet the other workers' reads on the app's shared connection."""
    from core.lint import lint_trajectory
    from core.store import Store

    with Store.open_readonly(path) as store:
        return lint_trajectory(store, trajectory_id)
