"""One trajectory: its transcript or its tokens, with every reward beside it.

`t` toggles between the transcript and the token view and keeps the place (the message on
screen maps to its token span and back); `n`/`p` walk the list the user came from, with its
filter and sort; `y` copies the whole trajectory as JSON.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Header, Static

from core.export import trajectory_record
from core.records import Question
from core.store.queries import TrajectoryQuery, neighbour
from inspector.tui import format as fmt
from inspector.tui.text import visible
from inspector.tui.widgets.chat_view import ChatView as Transcript
from inspector.tui.widgets.reward_table import RewardTable as RewardsPanel
from inspector.tui.widgets.token_pane import TokenPane as TokenView


class TrajectoryScreen(Screen):
    BINDINGS = [
        Binding("t", "toggle_tokens", "Transcript/tokens", id="trajectory.toggle"),
        Binding("n", "step(1)", "Next", id="trajectory.next"),
        Binding("p", "step(-1)", "Previous", id="trajectory.previous"),
        Binding("y", "copy_json", "Copy JSON", id="trajectory.copy"),
        Binding("escape", "back", "Back", id="trajectory.back"),
    ]

    def __init__(self, query: TrajectoryQuery, trajectory_id: int, run_info: dict):
        super().__init__()
        self.list_query = query
        self.trajectory_id = trajectory_id
        self.run_info = run_info
        self.messages = []
        self._tokens_loaded_for: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="trajectory-line", classes="status-line")
        with Horizontal():
            with ContentSwitcher(initial="transcript", id="views"):
                yield Transcript(id="transcript")
                yield TokenView(id="tokens")
            with Vertical(id="side"):
                yield Static("", id="answer-box")
                yield RewardsPanel(id="rewards")
        yield Footer()

    def on_mount(self) -> None:
        self.show(self.trajectory_id)

    def show(self, trajectory_id: int) -> None:
        store = self.app.store
        self.trajectory_id = trajectory_id
        self.row = store.trajectory(trajectory_id)
        self.messages = store.messages(trajectory_id)
        question = store.question(self.row["run_id"], self.row["qidx"]) or Question(
            str(self.row["qidx"]), self.row["question"], self.row["gold_answer"])
        self.query_one(Transcript).show(self.messages, question, self.row["final_answer"], self.row["gold_answer"],
                                        None if self.row["correct"] is None else bool(self.row["correct"]))
        rewards = store.rewards(trajectory_id)
        self.query_one(RewardsPanel).show(rewards, self.row["reward"])
        self.query_one("#answer-box", Static).update(self._answer_text())
        self.query_one("#trajectory-line", Static).update(self._line())
        self._tokens_loaded_for = None
        if self.query_one(ContentSwitcher).current == "tokens":
            self._load_tokens()

    def _line(self) -> str:
        r = self.row
        parts = [f"trajectory {r['id']}", f"question {r['qidx']}", r["status"], r["finish_reason"] or "",
                 f"{r['turns']} turns", f"{r['tool_calls']} calls"]
        if r["tool_errors"]:
            parts.append(f"{r['tool_errors']} tool error(s)")
        if r["step"] is not None:
            parts += [f"step {r['step']}", f"group {r['group_id']}", f"advantage {fmt.num(r['advantage'])}"]
        if r["drift_at"] is not None:
            parts.append(f"⚠ drift at token {r['drift_at']}")
        return " · ".join(p for p in parts if p)

    def _answer_text(self) -> Text:
        r = self.row
        text = Text()
        text.append("Question\n", style="bold")
        text.append(visible(r["question"]) + "\n\n")
        text.append("Answer  ", style="bold")
        text.append(visible(fmt.clip(r["final_answer"], 300) if r["final_answer"] else "(none)") + "\n")
        text.append("Gold    ", style="bold")
        text.append(visible(r["gold_answer"]) + "\n")
        if r["correct"] is not None:
            text.append("✔ correct" if r["correct"] else "✘ wrong", style="bold green" if r["correct"] else "bold red")
        return text

    # ------------------------------------------------------------------ tokens
    def _load_tokens(self) -> None:
        if self._tokens_loaded_for == self.trajectory_id:
            return
        self._tokens_loaded_for = self.trajectory_id
        self.query_one(TokenView).loading = True
        self._fetch_tokens(self.trajectory_id)

    @work(thread=True, exclusive=True, group="tokens")
    def _fetch_tokens(self, trajectory_id: int) -> None:
        tokens = self.app.store.tokens(trajectory_id)
        pieces = self.app.tokenizers.pieces(self.run_info["model"], tokens.ids) if tokens else None
        self.app.call_from_thread(self._show_tokens, trajectory_id, tokens, pieces)

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
        view.show(tokens, pieces.pieces if pieces else None, self.messages, self.row["drift_at"],
                  pieces.special if pieces else set())
        if getattr(self, "_pending_token", None) is not None:
            view.scroll_to_token(self._pending_token)
            self._pending_token = None

    # ------------------------------------------------------------------ actions
    def action_toggle_tokens(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        if switcher.current == "transcript":
            index = self.query_one(Transcript).message_index_at_scroll()
            start = self.messages[index].token_start if 0 <= index < len(self.messages) else None
            self._pending_token = start
            switcher.current = "tokens"
            if self._tokens_loaded_for == self.trajectory_id and start is not None:
                self.query_one(TokenView).scroll_to_token(start)
                self._pending_token = None
            self._load_tokens()
            self.query_one(TokenView).focus()
        else:
            token = self.query_one(TokenView).token_at_scroll()
            switcher.current = "transcript"
            transcript = self.query_one(Transcript)
            if token is not None:
                transcript.scroll_to_message(_message_at_token(self.messages, token))
            transcript.focus()

    def action_step(self, direction: int) -> None:
        nxt = neighbour(self.app.store, self.list_query, self.trajectory_id, direction)
        if nxt is None:
            self.notify("end of the list" if direction > 0 else "start of the list", timeout=1.5)
            return
        self.show(nxt)

    def action_copy_json(self) -> None:
        text = json.dumps(trajectory_record(self.app.store, self.trajectory_id), ensure_ascii=False)
        self.app.copy_to_clipboard(text)
        self.notify(f"trajectory {self.trajectory_id} copied as JSON ({len(text):,} characters)")

    def action_back(self) -> None:
        self.app.pop_screen()


def _message_at_token(messages, token: int) -> int:
    """The last message whose span starts at or before `token`."""
    best = 0
    for i, m in enumerate(messages):
        if m.token_start is not None and m.token_start <= token:
            best = i
    return best
