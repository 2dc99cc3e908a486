"""Engine overhead per trajectory at 4, 16 and 32 turns, against the seed's way of doing it.

Both sides get the same instant "model" (replies fixed in advance, already tokenised) and the
same instant search, so what is timed is the engine: templates, tokenisation, tool-call parsing
and mask building. The baseline does what the seed's run_agent does every turn: render the
whole chat and tokenise it to build the prompt, render and tokenise it again to count tokens,
and at the end render, split and re-tokenise the chat and scan it for assistant headers to
build the mask. Ours keeps the generated ids, tokenises only the new text each turn, checks each
turn's scaffolding against the template's rendering of the real chat so far ("check ms/turn",
issue 12), and re-tokenises the finished chat once for the drift check.

Issue 9 adds a realistic workload, each tool call returning 2 results of 300 words (about 800
tokens, as a real corpus gives; a different pair each call), with and without the drift check,
and a simulated GPU pace: a pool of 256 trajectories with an instant backend, where the engine's
time per turn for the whole pool is compared with the 1.28 s a GPU needs to generate 100 tokens
per row at 20,000 tokens/s (goal: under 5%, 64 ms).

    .venv/bin/python benchmarks/engine_overhead.py [--trajectories 16] [--repeats 3] [--pool 256]
        [--skip-short] [--skip-pool]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import random
import time
from dataclasses import dataclass
from pathlib import Path

from core.rollout.agent import Agent, AgentConfig
from core.backends import Generation
from core.rollout.chat import ChatTokenizer, stop_token_ids
from core.models import load_tokenizer, resolve_model
from core.rollout.prompts import PromptTemplate
from core.data.records import Question
from core.rollout.toolcalls import parse_tool_call

RESULT = ("Result 1:\nThe Veltran Observatory, founded in 1873 on the island of Qoruna, houses the Maribel "
          "telescope and a library of 4,200 star charts.\n------\nResult 2:\nQoruna's harbour town of "
          "Istel trades in salt and copper; its lighthouse was rebuilt in 1921.\n------\n")


_WORDS = ("the of and to in a is was for on as by with from at that which were its their observatory island "
          "harbour telescope library star charts salt copper lighthouse rebuilt founded century records archive "
          "expedition coast trade route council mayor survey measured distance orbit comet eclipse published "
          "journal astronomer northern southern winter summer station instrument lens mirror catalogue 1873 1921 "
          "4,200 Qoruna Istel Veltran Maribel").split()


def realistic_results(count: int = 64, words: int = 300, seed: int = 9) -> list[str]:
    """`count` tool results of 2 passages of `words` words each, formatted as the search tool does."""
    rng = random.Random(seed)

    def passage() -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."

    return [f"Result 1:\n{passage()}\n------\nResult 2:\n{passage()}\n------\n" for _ in range(count)]


def _search(results: list[str] | None):
    """The instant search: today's short RESULT, or the next of `results` at every call."""
    if results is None:
        return lambda q, k: RESULT
    calls = iter(range(1 << 62))
    return lambda q, k: results[next(calls) % len(results)]


def _replies(turns: int) -> list[str]:
    calls = [f'<think>I need turn {t}.</think>{{"name": "search_corpus", "parameters": {{"query": "Veltran '
             f'Observatory fact {t}"}}}}' for t in range(1, turns)]
    return calls + ["The Veltran Observatory is on Qoruna."]


@dataclass
class InstantBackend:
    """Returns the scripted reply of the current turn for every prompt, already tokenised."""

    tokenizer: object
    replies: list[list[int]]
    texts: list[str]
    name: str = "instant"

    def __post_init__(self):
        self.stop_token_ids = frozenset(stop_token_ids(self.tokenizer))
        self.turn = 0

    def generate(self, prompts, max_tokens, sampling):
        ids, text = self.replies[self.turn], self.texts[self.turn]
        self.turn += 1
        return [Generation(list(ids), [-0.5] * len(ids), text, "stop") for _ in prompts]


class _CheckTimer:
    """Times the per-turn check inside ChatTokenizer.continue_chat: rendering the real chat so far
    (once, or twice when the template rewrites the reply) and aligning it with what the model was
    given. Installed on one ChatTokenizer instance, it only adds two clock reads per call."""

    def __init__(self, chat):
        self.seconds = 0.0
        for name in ("_render", "_aligned_start", "_verbatim_reply_end", "_reply_end", "_reused_scaffold"):
            setattr(chat, name, self._timed(getattr(chat, name)))
        self.in_turn = False
        self.depth = 0

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            self.depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.in_turn and self.depth == 0:  # outermost call only: _reply_end renders too
                    self.seconds += time.perf_counter() - began
        return wrapper


def ours(tokenizer, turns: int, n: int, results: list[str] | None = None, drift: bool = True,
         turn_times: list[float] | None = None, direct: bool = True,
         tokenise_seconds: list[float] | None = None) -> tuple[float, float]:
    """(engine seconds per trajectory, of which the per-turn template check).

    turn_times, when given, receives the engine's seconds for each turn of the whole batch.
    direct False tokenises through transformers' call instead of the Rust backend called
    directly (core.rollout.fast_encode), as the engine did before. tokenise_seconds, when
    given, receives the seconds of each batched tokenise call (the Rust encoding and the cut).
    """
    texts = _replies(turns)
    stop = tokenizer.eos_token_id
    replies = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) + [stop] for t in texts]
    backend = InstantBackend(tokenizer, replies, texts)
    config = AgentConfig(max_generations=turns, max_new_tokens=10**9, max_tokens_per_turn=10**6, check_drift=drift)
    agent = Agent(backend, _search(results), config)
    if not direct:
        agent.chat._backend = None
    if tokenise_seconds is not None:
        tokenise = agent.chat.tokenise

        def timed_tokenise(pending):
            began = time.perf_counter()
            try:
                return tokenise(pending)
            finally:
                tokenise_seconds.append(time.perf_counter() - began)

        agent.chat.tokenise = timed_tokenise
    timer = _CheckTimer(agent.chat)
    continue_chat = agent.chat.prepare_continue

    def checked(*args, **kwargs):
        timer.in_turn = True
        try:
            return continue_chat(*args, **kwargs)
        finally:
            timer.in_turn = False

    agent.chat.prepare_continue = checked
    began = time.perf_counter()
    batch = [agent.start(Question(f"q{i}", f"Where is observatory {i}?", "Qoruna")) for i in range(n)]
    while not all(t.finished for t in batch):
        turn_began = time.perf_counter()
        agent.step(batch)
        if turn_times is not None:
            turn_times.append(time.perf_counter() - turn_began)
    elapsed = time.perf_counter() - began
    assert all(t.turns == turns and t.finish_reason == "answered" for t in batch)
    assert all(t.drift_kind in (None, "template_rewrite") for t in batch)
    return elapsed / n, timer.seconds / n


def seed_like(tokenizer, turns: int, n: int, results: list[str] | None = None) -> float:
    """The seed's per-turn re-rendering and re-tokenising, and its end-of-run mask scan."""
    texts = _replies(turns)
    search = _search(results)
    prompts = PromptTemplate()
    render = tokenizer.apply_chat_template

    def count(chat):
        return len(tokenizer(render(chat, tokenize=False), add_special_tokens=False)["input_ids"])

    began = time.perf_counter()
    for i in range(n):
        chat = [dict(m) for m in prompts.messages(f"Where is observatory {i}?")]
        initial = count(chat)
        for turn in range(turns):
            prompt = render(chat, tokenize=False, add_generation_prompt=True)
            tokenizer(prompt, add_special_tokens=False)  # the generate function tokenises the prompt
            chat.append({"role": "assistant", "content": texts[turn]})
            if parse_tool_call(texts[turn]) is not None:
                chat.append({"role": "tool", "content": search("", 2)})
            count(chat) - initial  # check_exceeded_max_new_tokens
        full = render(chat, tokenize=False)
        marker = "<|im_start|>assistant\n"
        cut = full.find(marker) + len(marker)
        tokenizer(full[:cut], add_special_tokens=False)
        tokenizer(full[cut:], add_special_tokens=False)
        _mask(tokenizer(full, add_special_tokens=False)["input_ids"], tokenizer)
    return (time.perf_counter() - began) / n


def _mask(ids: list[int], tokenizer) -> list[int]:
    """The seed's header scan, for ChatML: 1 from after '<|im_start|>assistant\\n' to '<|im_end|>'."""
    start_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
    mask, i = [0] * len(ids), 0
    while i < len(ids):
        if ids[i] == start_id and ids[i + 1: i + 1 + len(header)] == header:
            i += 1 + len(header)
            while i < len(ids) and ids[i] != end_id:
                mask[i] = 1
                i += 1
        i += 1
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trajectories", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed-trajectories", type=int, default=2,
                        help="trajectories for the seed-like loop on the realistic workload (it is slow)")
    parser.add_argument("--pool", type=int, default=256)
    parser.add_argument("--pool-turns", type=int, default=16)
    parser.add_argument("--skip-short", action="store_true", help="skip today's short-result tables")
    parser.add_argument("--skip-pool", action="store_true")
    args = parser.parse_args()
    tokenizer = load_tokenizer(resolve_model("default"))
    ChatTokenizer(tokenizer)  # warm the template cache on both sides
    results = realistic_results()
    size = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in results) / len(results)
    print(f"realistic workload: 2 results of 300 words per tool call, {size:.0f} tokens on average")
    print(f"{'turns':>5} {'ours ms':>9} {'seed-like ms':>13} {'seed/ours':>10} {'ours ms/turn':>13} "
          f"{'no-drift ms/turn':>17} {'seed ms/turn':>13} {'check ms/turn':>14}")
    for turns in (4, 16, 32):
        a, check = min(ours(tokenizer, turns, args.trajectories, results) for _ in range(args.repeats))
        nd, _ = min(ours(tokenizer, turns, args.trajectories, results, drift=False) for _ in range(args.repeats))
        b = min(seed_like(tokenizer, turns, args.seed_trajectories, results) for _ in range(max(1, args.repeats - 2)))
        print(f"{turns:>5} {a * 1e3:>9.2f} {b * 1e3:>13.2f} {b / a:>9.1f}x {a * 1e3 / turns:>13.3f} "
              f"{nd * 1e3 / turns:>17.3f} {b * 1e3 / turns:>13.3f} {check * 1e3 / turns:>14.3f}")
    if not args.skip_pool:
        # As core.evaluate runs it: the drift check is not in the turn but in the store writer
        # thread (core/evaluate.py _DriftCheck), so the turn here is timed without it.
        gpu = args.pool * 100 / 20_000
        print(f"\nsimulated GPU pace: pool of {args.pool}, {args.pool_turns} turns, instant backend, realistic "
              f"results, drift checked off the turn (as eval does); a GPU turn of 100 tokens per row at "
              f"20,000 tok/s takes {gpu:.2f} s")
        print(f"{'tokenizer call':>26} {'engine ms/turn (mean)':>22} {'of which tokenise':>18} "
              f"{'worst turn ms':>14} {'% of GPU turn':>14} {'goal ms':>8}")
        for label, direct in (("Rust backend (engine)", True), ("transformers __call__", False)):
            times: list[float] = []
            tokenising: list[float] = []
            ours(tokenizer, args.pool_turns, args.pool, results, drift=False, turn_times=times, direct=direct,
                 tokenise_seconds=tokenising)
            mean, worst = sum(times) / len(times), max(times)
            print(f"{label:>26} {mean * 1e3:>22.1f} {sum(tokenising) / len(times) * 1e3:>18.1f} "
                  f"{worst * 1e3:>14.1f} {100 * mean / gpu:>13.1f}% {gpu * 0.05 * 1e3:>8.0f}")
    if args.skip_short:
        return
    print()
    print(f"engine overhead per trajectory, SmolLM2 tokenizer (ChatML), {args.trajectories} trajectories "
          f"per batch, best of {args.repeats}")
    print(f"{'turns':>5} {'ours ms':>9} {'seed-like ms':>13} {'seed/ours':>10} {'ours ms/turn':>13} "
          f"{'seed ms/turn':>13} {'check ms/turn':>14}")
    for turns in (4, 16, 32):
        a, check = min(ours(tokenizer, turns, args.trajectories) for _ in range(args.repeats))
        b = min(seed_like(tokenizer, turns, args.trajectories) for _ in range(args.repeats))
        print(f"{turns:>5} {a * 1e3:>9.2f} {b * 1e3:>13.2f} {b / a:>9.1f}x {a * 1e3 / turns:>13.3f} "
              f"{b * 1e3 / turns:>13.3f} {check * 1e3 / turns:>14.3f}")
    # A template that rewrites every reply (Qwen3 re-renders '<think>...</think>' with newlines): the
    # check renders the chat twice a turn and aligns it piece by piece. Read from the installed trl.
    qwen3 = Path(importlib.util.find_spec("trl").submodule_search_locations[0]) / "chat_templates" / "qwen3.jinja"
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = qwen3.read_text(encoding="utf-8")
    print("\nsame tokenizer with TRL's Qwen3 template (rewrites each reply's think block)")
    print(f"{'turns':>5} {'ours ms':>9} {'ours ms/turn':>13} {'check ms/turn':>14}")
    for turns in (4, 16, 32):
        a, check = min(ours(tokenizer, turns, args.trajectories) for _ in range(args.repeats))
        print(f"{turns:>5} {a * 1e3:>9.2f} {a * 1e3 / turns:>13.3f} {check * 1e3 / turns:>14.3f}")


if __name__ == "__main__":
    main()
