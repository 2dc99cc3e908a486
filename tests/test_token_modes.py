"""The token view's training colour modes: the advantage a token was trained with, and the gap
between the trainer's and the rollout's logprob; and the gold highlight of supporting paragraphs."""

from __future__ import annotations

import math

import numpy as np
from rich.style import Style

from core.data.records import Message, Question
from core.rollout.tokens import TokenSequence
from inspector.tui import render, token_render
from inspector.tui.render import GOLD, message_body
from inspector.tui.token_render import ADVANTAGE_LIMIT, advantage_legend, advantage_level, gap_legend, gap_levels, token_codes, token_info, token_layout, token_style
from inspector.tui.widgets.token_view import TokenView
from tests.test_trajectory_widgets import SIZE, Host, screen_rows, small_sequence


def _background(code: int) -> str | None:
    style: Style = token_style(code)
    return None if style.bgcolor is None else style.bgcolor.name


def _codes(mode, **kw):
    t, _, _ = small_sequence()
    n = len(t.ids)
    return t, token_codes(t.mask, t.logprobs, np.zeros(n, bool), np.zeros(n, bool), mode, **kw)


def test_advantage_colours_every_trained_token_alike_and_no_masked_one():
    t, plus = _codes("advantage", advantage=1.5)
    _, minus = _codes("advantage", advantage=-1.5)
    trained = [i for i, m in enumerate(t.mask) if m]
    masked = [i for i, m in enumerate(t.mask) if not m]
    # Same colour (up to the alternating shade) on every trained token; masked ones keep the mask look.
    assert len({_background(int(plus[i]) & ~1) for i in trained}) == 1
    assert all(_background(int(plus[i])) == _background(int(minus[i])) for i in masked)
    assert _background(int(plus[trained[0]])) != _background(int(minus[trained[0]]))
    # Clipped at the scale's ends; none stored colours nothing.
    assert advantage_level(99.0) == advantage_level(ADVANTAGE_LIMIT)
    _, none = _codes("advantage", advantage=None)
    _, mask = _codes("mask")
    assert none.tolist() == mask.tolist()


def test_gap_levels_are_decades_with_the_sign():
    gaps = np.array([0.0, 5e-5, -5e-5, 2e-4, -2e-3, 0.05, -0.5, 3.0, -30.0])
    mid = len(token_render.GAP_BUCKETS)
    assert gap_levels(gaps).tolist() == [mid, mid, mid, mid + 1, mid - 2, mid + 3, mid - 4, mid + 5, mid - 5]


def test_gap_mode_colours_trained_tokens_by_trainer_minus_rollout():
    t, _, _ = small_sequence()
    trainer = [math.nan] * 3 + [lp + d for lp, d in zip(t.logprobs[3:6], (0.0, 0.5, -0.5))] + [-1.0, -2.0]
    _, codes = _codes("gap", trainer_logprobs=trainer)
    backgrounds = [_background(int(c) & ~1) for c in codes.tolist()]
    assert backgrounds[4] != backgrounds[5] and backgrounds[3] not in (backgrounds[4], backgrounds[5])
    # Masked tokens (prompt, tool) are not coloured even though the trainer scored the tool tokens.
    _, mask = _codes("mask")
    assert [codes[i] for i in (0, 1, 2, 6, 7)] == [mask[i] for i in (0, 1, 2, 6, 7)]


def test_info_line_gives_trainer_logprob_gap_ratio_and_advantage():
    t, pieces, messages = small_sequence()
    t.trainer_logprobs = [math.nan] * 3 + [-0.02, -3.0, -0.7] + [math.nan] * 2
    line = token_info(3, t, pieces[3], None, "assistant, turn 1", advantage=0.75).plain
    assert "logprob -0.0100" in line and "trainer -0.0200" in line and "gap -1.00e-02" in line
    assert f"ratio {math.exp(-0.01):.4f}" in line and "advantage +0.750" in line
    masked = token_info(6, t, pieces[6], None, "tool, turn 1", advantage=0.75).plain
    assert "trainer" not in masked and "advantage" not in masked


def test_legends_say_why_a_mode_is_empty():
    assert "none stored" in advantage_legend(None).plain
    assert "+0.500" in advantage_legend(0.5).plain
    assert "none stored" in gap_legend(False).plain and "nats" in gap_legend(True).plain


def test_layout_rejects_an_unknown_mode():
    t, pieces, messages = small_sequence()
    try:
        token_layout(t, pieces, messages, None, "heat")  # type: ignore[arg-type]
    except ValueError as exc:
        assert "mask, logprob, advantage, gap" in str(exc)
    else:
        raise AssertionError("no ValueError")


async def test_l_cycles_only_through_the_modes_the_trajectory_has_data_for():
    view = TokenView()
    async with Host(view).run_test(size=SIZE) as pilot:
        t, pieces, messages = small_sequence()
        view.show(t, pieces, messages, None)
        view.focus()
        await pilot.pause()
        seen = []
        for _ in range(3):
            await pilot.press("l")
            seen.append(view.mode)
        assert seen == ["logprob", "mask", "logprob"]  # an eval trajectory: no advantage, no trainer logprobs
        trained = TokenSequence(list(t.ids), list(t.mask), list(t.logprobs), t.prompt_len,
                                [math.nan] * 3 + [-0.02, -3.0, -0.7, -1.0, -1.0])
        view.show(trained, pieces, messages, None, advantage=-0.5)
        await pilot.pause()
        seen = []
        for _ in range(4):
            await pilot.press("l")
            seen.append(view.mode)
            if view.mode == "advantage":
                assert screen_rows(view)[1].startswith("advantage -0.500 on every trained token")
            if view.mode == "gap":
                assert screen_rows(view)[1].startswith("trainer − rollout logprob (nats)")
        assert seen == ["advantage", "gap", "mask", "logprob"], seen
        # Showing an eval trajectory again leaves a training-only mode.
        while view.mode != "gap":
            await pilot.press("l")
        view.show(t, pieces, messages, None)
        assert view.mode == "mask"


def test_supporting_paragraph_is_lit_in_a_tool_result_despite_other_whitespace():
    q = Question("q1", "Who?", "Ada", supporting=("First para.", "Veltran was  founded\nby Ada."))
    m = Message("tool", "Result 1:\nVeltran was founded by   Ada.\n------", 1)
    text = message_body(m, q)
    lit = [text.plain[s.start:s.end] for s in text.spans if s.style == GOLD]
    assert lit == ["Veltran was founded by   Ada."]
    assert render.gold_chunk_hit(m, q)
    assert not render.gold_chunk_hit(Message("assistant", "Veltran was founded by Ada.", 1), q)
