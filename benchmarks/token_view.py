"""The token view on long trajectories: time from `show()` to the first frame drawn.

A TokenView alone in a headless Textual app (Pilot, 120x40) is given a many-turn trajectory of
1k, 10k and 100k tokens (prompt, then assistant / closing / tool result / generation prompt per
turn, newline and wide CJK pieces among them) and timed, in mask and in logprob mode: `show()`
itself (layout and folding), then drawing the screen's lines (`render_line` for every row, what
the compositor asks for), then until Pilot's pause returns with the frame drawn; then the `l` key
(mode switch) and the `end` key (cursor to the last token), each to its frame. "Pilot pause (idle)" is the cost of a pause with nothing to do, a
floor under every "→ frame" figure. Best of --repeat runs per case.

    .venv/bin/python benchmarks/token_view.py [--sizes 1000 10000 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from textual.app import App, ComposeResult

from core.data.records import Message, ToolError
from core.rollout.tokens import TokenSequence
from inspector.tui.widgets.token_view import TokenView

WORDS = [" the", " search", " result", "\n", " Veltran", "<|im_end|>", " 東京", "\t", " [b]x[/b]", " observatory",
         ",", " 1873", ".", " founded", " by", " in"]


def trajectory(n: int, seed: int = 3) -> tuple[TokenSequence, list[str], list[Message]]:
    """A trajectory of about n tokens with pieces and message spans (one tool error every 7 turns)."""
    rnd = random.Random(seed)
    t = TokenSequence()
    start, end = t.add_prompt([rnd.randrange(900) for _ in range(min(n // 4, 2000))])
    messages = [Message("system", "s", 0, token_start=start, token_end=end),
                Message("user", "u", 0, token_start=start, token_end=end)]
    turn = 0
    while len(t.ids) < n:
        turn += 1
        k = rnd.randint(100, 400)
        start, end = t.add_generated([rnd.randrange(900) for _ in range(k)], [-3 * rnd.random() for _ in range(k)])
        error = ToolError("invalid_json", "bad call") if turn % 7 == 0 else None
        messages.append(Message("assistant", "a", turn, tool_error=error, token_start=start, token_end=end))
        t.add_scaffold([901])
        start, end = t.add_scaffold([rnd.randrange(900) for _ in range(rnd.randint(200, 500))])
        messages.append(Message("tool", "r", turn, token_start=start, token_end=end))
        t.add_scaffold([902, 903])
    pieces = [WORDS[i % len(WORDS)] for i in t.ids]
    return t, pieces, messages


class Host(App):
    def compose(self) -> ComposeResult:
        yield TokenView()


async def measure(n: int, repeat: int) -> dict[str, float]:
    t, pieces, messages = trajectory(n)
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(TokenView)
        await pilot.pause()
        for _ in range(repeat):
            began = time.perf_counter()
            await pilot.pause()
            keep("Pilot pause (idle)", time.perf_counter() - began)
            for mode in ("mask", "logprob"):
                view.show_message("…")
                if view.mode != mode:
                    view.action_toggle_mode()
                await pilot.pause()
                began = time.perf_counter()
                view.show(t, pieces, messages, drift_at=len(t.ids) // 2, special={901, 902, 903})
                keep(f"show ({mode})", time.perf_counter() - began)
                for y in range(view.size.height):  # what the compositor asks for the first frame
                    view.render_line(y)
                keep(f"show+draw ({mode})", time.perf_counter() - began)
                await pilot.pause()  # the frame is composed and drawn (headless) before this returns
                keep(f"show → frame ({mode})", time.perf_counter() - began)
            began = time.perf_counter()
            await pilot.press("l")
            await pilot.pause()
            keep("l (mode) → frame", time.perf_counter() - began)
            began = time.perf_counter()
            await pilot.press("end")
            await pilot.pause()
            keep("end → frame", time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = [(n, asyncio.run(measure(n, args.repeat))) for n in args.sizes]
    names = list(rows[0][1])
    print(f"token view, headless 120x40, best of {args.repeat} (ms); goal: 100k tokens show → frame < 200 ms")
    widths = [max(8, len(name)) for name in names]
    print(f"{'tokens':>8}  " + "  ".join(f"{name:>{w}}" for name, w in zip(names, widths)))
    for n, best in rows:
        print(f"{n:>8,}  " + "  ".join(f"{best[name] * 1000:>{w}.1f}" for name, w in zip(names, widths)))


if __name__ == "__main__":
    main()
