"""The widgets that show one trajectory, each hosted alone in a tiny app and driven with keys.

Fixtures are built from records (no database): a transcript with reasoning, a call, a gold-chunk
hit, a tool error that ended the chat and text that tries to be markup; token sequences from a
few tokens to 10,000.
"""

from __future__ import annotations

import io
import math
import random

from rich.console import Console
from textual.app import App, ComposeResult
from textual.widget import Widget
from textual.widgets import Static

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.rollout.tokens import TokenSequence
from inspector.tui.token_render import DRIFT_MARK
from inspector.tui.widgets.rewards_panel import RewardsPanel
from inspector.tui.widgets.token_view import TokenView
from inspector.tui.widgets.transcript import Fold, MessageBlock, Transcript

SIZE = (100, 40)
GOLD = "Veltran was founded by Ada in 1873."
ERROR = ToolError("unknown_tool", "unknown tool 'web'")


class Host(App):
    """One widget, full screen."""

    def __init__(self, widget: Widget):
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def transcript_messages() -> list[Message]:
    call = ToolCall("search_corpus", {"query": "Veltran founder"})
    return [
        Message("system", "You are a search agent.\nCall search_corpus.", 0, token_start=0, token_end=20),
        Message("user", "Who founded [bold red]Veltran[/]? \x1b[31m", 0, token_start=0, token_end=20),
        Message("assistant", '<think>search [link=http://x]y[/link]</think>{"name": "search_corpus"}', 1,
                tool_call=call, token_start=20, token_end=30),
        Message("tool", f"Result 1:\n{GOLD}\n------\nResult 2:\n[bold]x[/] " + "z" * 10_000, 1,
                token_start=32, token_end=60),
        Message("assistant", '<think>hm</think>{"name": "web"}', 2, tool_error=ERROR, token_start=60, token_end=70),
        Message("tool", "Error: unknown_tool: unknown tool 'web'", 2, tool_error=ERROR),
    ]


def long_transcript(turns: int = 15) -> list[Message]:
    msgs = [Message("system", "system prompt\n" * 5, 0), Message("user", "question", 0)]
    for turn in range(1, turns + 1):
        msgs.append(Message("assistant", f"<think>{'thinking ' * 80}</think>call {turn}", turn,
                            tool_call=ToolCall("search_corpus", {"query": f"q{turn}"})))
        msgs.append(Message("tool", "\n".join(f"result line {i}" for i in range(8)), turn))
    return msgs


def shown(widget: Static) -> str:
    return widget.content.plain


# ----------------------------------------------------------------------------- transcript
async def test_transcript_shows_turns_calls_hits_errors_and_the_verdict():
    transcript = Transcript()
    async with Host(transcript).run_test(size=SIZE) as pilot:
        transcript.show(transcript_messages(), Question("q", "Who?", "Ada", chunk_content=GOLD), "Ada [b]", "Ada", True)
        await pilot.pause()
        prompts = [f for f in transcript.query(Fold) if f.has_class("prompt")]
        assert [f.collapsed for f in prompts] == [True, True]
        assert prompts[1].title.plain.startswith("user: Who founded [bold red]Veltran[/]? ␛[31m")
        assert [shown(s) for s in transcript.query(".turn-rule")] == ["Turn 1", "Turn 2"]
        assert [shown(s) for s in transcript.query(".call")] == ['→ search_corpus(query="Veltran founder")']
        errors = [shown(s) for s in transcript.query(".tool-error")]
        assert len(errors) == 1 and "TOOL ERROR" in errors[0] and "turn 2" in errors[0]
        hits = [b for b in transcript.query(MessageBlock) if b.has_class("gold-hit")]
        assert [b.message_index for b in hits] == [3]
        assert "✔ gold chunk hit" in shown(hits[0].query(".role").first())
        assert "[bold]x[/] zzz" in shown(hits[0].query_one(".tool-body"))
        verdict = shown(transcript.query_one(".verdict"))
        assert verdict == "Final answer: Ada [b]\nGold: Ada\n✔ correct"


async def test_a_text_only_trajectory_does_not_claim_the_model_never_saw_a_tool_error():
    """An imported trajectory has no token positions at all: 'the model never saw it' (said of a
    tool result without tokens in a tokenised trajectory) was shown on every tool error of an
    Inspect log, even one the model answered in the next turn."""
    call = ToolCall("add", {"x": -2})
    messages = [Message("user", "What is 2+3?", 0),
                Message("assistant", "", 1, tool_call=call, tool_error=ERROR),
                Message("tool", "negative numbers are not allowed", 1, tool_error=ERROR),
                Message("assistant", "The answer is 5", 2)]
    transcript = Transcript()
    async with Host(transcript).run_test(size=SIZE) as pilot:
        transcript.show(messages, None, "The answer is 5", "5", True)
        await pilot.pause()
        roles = " ".join(shown(s) for s in transcript.query(".role"))
        assert "tool result" in roles and "never saw it" not in roles
        transcript.show(transcript_messages(), None, "Ada", "Ada", True)  # tokenised: still said there
        await pilot.pause()
        assert "never saw it" in " ".join(shown(s) for s in transcript.query(".role"))


async def test_a_ten_thousand_character_line_folds_inside_the_screen():
    transcript = Transcript()
    async with Host(transcript).run_test(size=SIZE) as pilot:
        transcript.show(transcript_messages(), None, None, None, None)
        await pilot.pause()
        body = transcript.query(".tool-body").first()
        assert body.size.width <= SIZE[0] and body.size.height >= 10_000 // SIZE[0]
        assert shown(transcript.query_one(".verdict")).endswith("? not judged")


async def test_keys_fold_and_unfold_reasoning_and_prompts():
    transcript = Transcript()
    async with Host(transcript).run_test(size=SIZE) as pilot:
        transcript.show(transcript_messages(), None, "Ada", "Ada", False)
        transcript.focus()
        await pilot.pause()
        reasoning = [f for f in transcript.query(Fold) if f.has_class("reasoning")]
        prompts = [f for f in transcript.query(Fold) if f.has_class("prompt")]
        assert len(reasoning) == 2 and all(f.collapsed for f in reasoning + prompts)
        assert reasoning[0].title.plain == "reasoning (45 chars)"
        await pilot.press("r")
        assert not any(f.collapsed for f in reasoning) and all(f.collapsed for f in prompts)
        await pilot.press("s")
        assert not any(f.collapsed for f in prompts)
        await pilot.press("r", "s")
        assert all(f.collapsed for f in reasoning + prompts)
        keys = {b.key: b for b in Transcript.BINDINGS}
        assert keys["r"].description and keys["s"].description and keys["r"].show


async def test_the_place_is_kept_when_scrolling_to_a_message_and_folding():
    transcript = Transcript()
    async with Host(transcript).run_test(size=SIZE) as pilot:
        transcript.show(long_transcript(), None, "a", "a", True)
        transcript.focus()
        await pilot.pause()
        assert transcript.message_index_at_scroll() == 0
        transcript.scroll_to_message(17)
        await pilot.pause()
        assert transcript.scroll_y > 0 and transcript.message_index_at_scroll() == 17
        await pilot.press("r")  # opens 15 reasoning folds, most of them above the view
        await pilot.pause()
        assert transcript.message_index_at_scroll() == 17
        await pilot.press("s")
        await pilot.pause()
        assert transcript.message_index_at_scroll() == 17


# ----------------------------------------------------------------------------- tokens
def small_sequence() -> tuple[TokenSequence, list[str], list[Message]]:
    t = TokenSequence()
    t.add_prompt([1, 2, 3])
    t.add_generated([10, 11, 12], [-0.01, -3.0, -0.7])
    t.add_scaffold([4, 5])
    pieces = ["<|im_start|>", "user", "\n", "an", "\n", "swer", "tool", "[bold]x[/]"]
    messages = [Message("system", "s", 0, token_start=0, token_end=3),
                Message("user", "u", 0, token_start=0, token_end=3),
                Message("assistant", "answer", 1, token_start=3, token_end=6),
                Message("tool", "[bold]x[/]", 1, token_start=6, token_end=8)]
    return t, pieces, messages


def big_sequence(n: int = 10_000) -> tuple[TokenSequence, list[str], list[Message]]:
    """A many-turn trajectory: prompt, then assistant / closing / tool / generation prompt per turn."""
    rnd = random.Random(3)
    words = [" the", " search", " result", "\n", " Veltran", "<|im_end|>", " 東京", "\t", " [b]x[/b]"]
    t = TokenSequence()
    start, end = t.add_prompt([rnd.randrange(900) for _ in range(300)])
    messages = [Message("system", "s", 0, token_start=start, token_end=end),
                Message("user", "u", 0, token_start=start, token_end=end)]
    turn = 0
    while len(t.ids) < n:
        turn += 1
        k = rnd.randint(100, 400)
        start, end = t.add_generated([rnd.randrange(900) for _ in range(k)], [-3 * rnd.random() for _ in range(k)])
        messages.append(Message("assistant", "a", turn, token_start=start, token_end=end))
        t.add_scaffold([901])
        start, end = t.add_scaffold([rnd.randrange(900) for _ in range(rnd.randint(200, 500))])
        messages.append(Message("tool", "r", turn, token_start=start, token_end=end))
        t.add_scaffold([902, 903])
    pieces = [words[i % len(words)] for i in t.ids]
    return t, pieces, messages


def screen_rows(view: TokenView) -> list[str]:
    return [view.render_line(y).text.rstrip() for y in range(view.size.height)]


async def test_token_view_shows_header_labels_drift_and_toggles_the_mode():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = small_sequence()
        view.show(t, pieces, messages, drift_at=4, special={1})
        view.focus()
        await pilot.pause()
        view.scroll_to(y=0, animate=False)
        await pilot.pause()
        rows = screen_rows(view)
        assert rows[0].startswith("8 tokens · 3 trained · 5 masked · prompt 3 · completion 5 · ⚠ drift at token 4")
        assert rows[1].startswith("mask: ")
        assert rows[2].startswith("#3  id 10  'an'  trained  logprob -0.0100  p=0.9900  · assistant, turn 1")
        body = [r for r in rows[3:] if r]
        assert body[:7] == ["── system + user prompt ──", "<|im_start|>user↵", "── assistant (turn 1) ──",
                            f"an{DRIFT_MARK}↵", "swer", "── tool (turn 1) ──", "tool[bold]x[/]"]
        await pilot.press("l")
        assert view.mode == "logprob" and screen_rows(view)[1].startswith("p = exp(logprob):")
        await pilot.press("l")
        assert view.mode == "mask"
        view.show_message("No tokens stored for this trajectory.")
        await pilot.pause()
        assert screen_rows(view)[0] == "No tokens stored for this trajectory." and view.token_at_scroll() is None


async def test_token_view_scrolls_to_tokens_and_keeps_the_place_on_resize_and_mode_switch():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = big_sequence()
        view.show(t, pieces, messages, drift_at=None, special={901, 902, 903})
        await pilot.pause()
        header_rows = 3  # counts, legend, the cursor's token
        for m in messages[2::5]:
            view.scroll_to_token(m.token_start)
            await pilot.pause()
            assert view.token_at_scroll() == m.token_start
            assert screen_rows(view)[header_rows] == f"── {m.role} (turn {m.turn}) ──"
        middle = messages[len(messages) // 2].token_start + 57  # a token inside a message
        view.scroll_to_token(middle)
        await pilot.pause()
        assert view.token_at_scroll() == middle
        await pilot.resize_terminal(61, 30)
        await pilot.pause()
        assert view.token_at_scroll() == middle
        assert max(len(r) for r in screen_rows(view)) <= 61
        await pilot.press("l")
        assert view.token_at_scroll() == middle
        view.scroll_to(y=view.scroll_y + 7, animate=False)  # the user scrolled: the row decides
        await pilot.pause()
        place = view.token_at_scroll()
        assert place is not None and view.token_row(place) <= int(view.scroll_y) <= view.token_row(place + 1)


async def test_token_view_scroll_before_layout_is_applied_once_laid_out():
    view = TokenView()
    t, pieces, messages = big_sequence(3_000)
    view.show(t, pieces, messages, None, set())  # before mounting: no width yet
    view.scroll_to_token(messages[4].token_start)
    async with Host(view).run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert view.token_at_scroll() == messages[4].token_start


async def test_ids_are_shown_without_a_tokenizer_and_folded_rows_lose_nothing():
    view = TokenView()
    async with Host(view).run_test(size=(37, 20)) as pilot:
        t, _, messages = big_sequence(600)
        view.show(t, None, messages, None, set())
        await pilot.pause()
        view.scroll_to(y=0, animate=False)  # it opens on the first trained token
        await pilot.pause()
        header = screen_rows(view).index("── system + user prompt ──")  # the header folds at this width
        assert header > 2 and "showing ids" in "".join(screen_rows(view)[:header])
        width = view.scrollable_content_region.width  # inside the padding, clear of the scrollbar
        assert view.show_vertical_scrollbar and width < 37
        by_row: dict[int, str] = {}
        page, total = view.size.height - header, view.virtual_size.height - header
        for top in range(0, total, page):
            view.scroll_to(y=top, animate=False)
            await pilot.pause()
            first = int(view.scroll_y)  # the last page stops short of `top`
            for k, row in enumerate(screen_rows(view)[header:]):
                by_row.setdefault(first + k, row)
        rows = [by_row[r] for r in range(total)]
        assert all(len(r) <= width for r in rows)
        shown_ids = "".join(r for r in rows if not r.startswith("──"))
        assert shown_ids == "".join(f"⟨{i}⟩" for i in t.ids)


# ----------------------------------------------------------------------------- rewards
async def test_rewards_panel_shows_rows_literally_with_the_total():
    panel = RewardsPanel()
    rewards = [RewardResult("correctness", 1.0, 1.0, {"judge": "llm", "reply": "Yes [bold]same[/]"}),
               RewardResult("formatting", 0.0, 1.0, {"tool_errors": ["unknown_tool"]}),
               RewardResult("chunk_hit", 1.0, 0.5, {"hit_turn": 1, "tool_results": 1})]
    async with Host(panel).run_test(size=SIZE) as pilot:
        panel.show(rewards, None)
        await pilot.pause()
        assert [r[0] for r in panel.rows] == ["correctness", "formatting", "chunk_hit"]
        assert math.isclose(panel.total, 1.5)
        console = Console(file=io.StringIO(), width=80, color_system=None)
        console.print(panel.content)
        out = console.file.getvalue()
        assert "llm replied: Yes [bold]same[/]" in out and "tool errors: unknown_tool" in out
        assert "total" in out and "1.500" in out
        panel.show([], None)
        await pilot.pause()
        assert panel.rows == [] and panel.total is None
