"""Build a database of a million trajectories, for the viewer's speed goals on big databases.

One eval run "big-eval" of N trajectories (one per demo question) and one train run "big-train"
of GRPO groups with steps and advantages, written through `Store.bulk_write`. Trajectories are
small but shaped like real ones: system and user prompt, a search call, its result (the gold
chunk or another one), an answer; about 10% stop on a malformed call, a few run out of turns or
tokens, a few were interrupted; four rewards each, and ~200 tokens with mask and logprobs.

    .venv/bin/python benchmarks/build_big_db.py [PATH] [--n 1000000] [--train 2000] [--group 8]
        [--groups-per-step 10] [--force] [--real-ids]

(--n N --train 0: one eval run of N trajectories, the native side of benchmarks/import_speed.py
--open; --n N/8 --train N --groups-per-step 125: a train run of N, 1,000 trajectories a step.)

An existing database with the right counts is kept unless --force.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import numpy as np

from core.data.demo_data import generate_demo
from core.rollout.prompts import DEFAULT_SYSTEM
from core.data.records import Chunk, Message, Question, RewardResult, ToolCall, ToolError
from core.scoring.rewards import retry_value
from core.store import FinishedTrajectory, Store, StoreError, TrajectoryOutcome
from core.rollout.tokens import TokenSequence

DEFAULT_PATH = Path("/tmp/rl-inspect-big.db")
EVAL_NAME, TRAIN_NAME = "big-eval", "big-train"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SYSTEM = DEFAULT_SYSTEM.replace("{date}", "24 Nov 2026")
USER = "Answer the question below by searching the knowledge corpus with the search_corpus tool.\n\nQuestion: {q}"
BATCH = 5000
"""Trajectories per bulk_write transaction."""
_POOL = 1 << 16
"""Random token ids and logprobs are sliced out of pools of this size."""
_ONES, _ZEROS, _NANS = [1] * 4096, [0] * 4096, [math.nan] * 4096


def _n_tokens(text: str) -> int:
    """About five characters a token, which puts a trajectory near 200 tokens (the ids are random;
    only their number, the mask and the logprobs matter here)."""
    return len(text) // 5 + 1


class TrajectoryMaker:
    """Makes one finished trajectory of a question; deterministic for a seed."""

    def __init__(self, chunks: list[Chunk], questions: list[Question], seed: int, tokenizer=None):
        """tokenizer: when given, the model's turns hold their text's real ids (and its end token
        unless cut), so their text is what they decode to (mask lint's text check passes)."""
        self.chunks, self.questions, self.seed = chunks, questions, seed
        self.tokenizer = tokenizer
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>") if tokenizer is not None else None
        self.rng = random.Random(seed)
        pool = np.random.default_rng(seed)
        self.ids = pool.integers(0, 49152, size=_POOL).tolist()
        self.logprobs = (-pool.exponential(0.5, size=_POOL)).tolist()

    def eval_batch(self, lo: int, hi: int) -> list[FinishedTrajectory]:
        """Trajectories of questions lo..hi-1, seeded by lo: a batch is the same whatever came before."""
        self.rng = random.Random(self.seed * 1_000_003 + lo)
        return [FinishedTrajectory(i, self.questions[i], *self.make(i)) for i in range(lo, hi)]

    def _span(self, tokens: TokenSequence, n: int, generated: bool) -> tuple[int, int]:
        """Append n tokens by list slices. TokenSequence.add_* convert id by id, which would be
        most of the build's Python time; the result is the same sequence."""
        at, start = self.rng.randrange(_POOL - n), len(tokens.ids)
        tokens.ids += self.ids[at: at + n]
        tokens.mask += _ONES[:n] if generated else _ZEROS[:n]
        tokens.logprobs += self.logprobs[at: at + n] if generated else _NANS[:n]
        return start, len(tokens.ids)

    def _generated(self, tokens: TokenSequence, text: str, end: bool = True) -> tuple[int, int]:
        if self.tokenizer is None:
            return self._span(tokens, _n_tokens(text), True)
        ids = self.tokenizer.encode(text, add_special_tokens=False) + ([self.end_id] if end else [])
        at, start = self.rng.randrange(_POOL - len(ids)), len(tokens.ids)
        tokens.ids += ids
        tokens.mask += _ONES[:len(ids)]
        tokens.logprobs += self.logprobs[at: at + len(ids)]
        return start, len(tokens.ids)

    def make(self, qidx: int) -> tuple[list[Message], TrajectoryOutcome]:
        rng, q = self.rng, self.questions[qidx]
        fate = rng.random()
        tokens = TokenSequence()
        user = USER.replace("{q}", q.question)
        start, end = self._span(tokens, _n_tokens(SYSTEM) + _n_tokens(user), False)
        tokens.prompt_len = end
        msgs = [Message("system", SYSTEM, 0, token_start=start, token_end=end),
                Message("user", user, 0, token_start=start, token_end=end)]
        if fate < 0.002:  # interrupted while running: no answer, tokens or rewards
            return msgs, TrajectoryOutcome("interrupted", None, "", 0, 0, 0, None)
        hit = rng.random() < 0.8
        searches = 2 if fate > 0.94 else 1
        query = " ".join(q.question.split()[-4:]).rstrip("?")
        for turn in range(1, searches + 1):
            if fate < 0.1:  # malformed call: the trajectory stops on the tool error
                raw = '{"name": "search_corpus", "arguments": {"query": "' + query + '"}'
                err = ToolError("invalid_json", "Expecting ',' delimiter: line 1 column 71 (char 70)")
                span = self._generated(tokens, raw)
                msgs += [Message("assistant", raw, turn, tool_error=err, token_start=span[0], token_end=span[1]),
                         Message("tool", f"Error: {err.kind}: {err.message}", turn, tool_error=err)]
                return msgs, self._outcome(q, msgs, tokens, "tool_error", "", 1, 1, hit=False)
            raw = '{"name": "search_corpus", "arguments": {"query": "' + query + '"}}'
            text = f"<think>I should search the corpus for this.</think>\n{raw}"
            span = self._generated(tokens, text)
            msgs.append(Message("assistant", text, turn, tool_call=ToolCall("search_corpus", {"query": query}, raw),
                                token_start=span[0], token_end=span[1]))
            chunk = self.chunks[qidx if hit else (qidx + 1 + turn) % len(self.chunks)]
            result = f"Result 1:\n{chunk.text}\n------\n"
            span = self._span(tokens, _n_tokens(result) + 5, False)
            msgs.append(Message("tool", result, turn, token_start=span[0], token_end=span[1]))
        if searches == 2:
            return msgs, self._outcome(q, msgs, tokens, "max_turns", "", searches, 0, hit)
        right = hit and rng.random() < 0.85
        answer = q.answer if right else self.questions[(qidx * 7 + 3) % len(self.questions)].answer
        reason = "max_tokens" if fate > 0.91 else "answered"
        text = f"The answer is {answer}" + (" and, to be thorough, let me" if reason == "max_tokens" else ".")
        span = self._generated(tokens, text, end=reason != "max_tokens")
        msgs.append(Message("assistant", text, 2, token_start=span[0], token_end=span[1]))
        return msgs, self._outcome(q, msgs, tokens, reason, answer, 2, 0, hit, correct=right)

    def _outcome(self, q: Question, msgs: list[Message], tokens: TokenSequence, reason: str, answer: str,
                 turns: int, errors: int, hit: bool, correct: bool = False) -> TrajectoryOutcome:
        calls = sum(1 for m in msgs if m.role == "assistant" and (m.tool_call or m.tool_error))
        rewards = [RewardResult("correctness", float(correct), 1.0, {"judge": "exact", "gold": q.answer}),
                   RewardResult("formatting", 0.0 if errors else 0.7, 1.0, {"tool_errors": ["invalid_json"] * errors}),
                   RewardResult("retry_behavior", retry_value(calls), 1.0, {"tool_calls": calls}),
                   RewardResult("chunk_hit", float(hit), 1.0)]
        return TrajectoryOutcome("done", reason, answer, turns, calls, errors, tokens, rewards,
                                 reward=sum(r.value for r in rewards), correct=correct,
                                 generation_seconds=0.002 * tokens.generated_count)


def _existing_counts(path: Path) -> dict[str, int]:
    try:
        with Store.open_readonly(path) as store:
            return {name: n for name, n in store.conn.execute(
                "SELECT r.name, COUNT(t.id) FROM runs r LEFT JOIN trajectories t ON t.run_id=r.id GROUP BY r.id")}
    except StoreError:
        return {}


def build(path: Path, n: int, n_train: int, group: int, seed: int, real_ids: bool = False,
          groups_per_step: int = 10) -> None:
    began = time.perf_counter()
    chunks, questions = generate_demo(n, seed=seed)
    print(f"demo corpus of {n:,} chunks and questions: {time.perf_counter() - began:.1f} s")
    tokenizer = None
    if real_ids:
        from core.lint import local_tokenizer

        from core.models import DEFAULT_MODEL

        model = DEFAULT_MODEL  # the embedded SmolLM2: its name finds the tokenizer offline, as lint does
        tokenizer = local_tokenizer(model)
        if tokenizer is None:
            raise SystemExit(f"--real-ids needs the embedded model's tokenizer ({model}): run the main job once")
    else:
        model = MODEL
    maker = TrajectoryMaker(chunks, questions, seed, tokenizer)
    with Store.open(path) as store:
        store.conn.execute("PRAGMA cache_size=-262144")  # 256 MiB: index pages stay in memory
        run = store.create_run("eval", EVAL_NAME, model, {"model": model, "questions": "demo", "n": n}, n)
        for lo in range(0, n, 100_000):
            store.add_questions(run, questions[lo: lo + 100_000], start=lo)
        written = time.perf_counter()
        for lo in range(0, n, BATCH):
            store.bulk_write(run, maker.eval_batch(lo, min(n, lo + BATCH)))
            if (lo // BATCH) % 20 == 19:
                done = min(n, lo + BATCH)
                print(f"  {done:>9,} trajectories, {done / (time.perf_counter() - written):,.0f}/s", flush=True)
        eval_seconds = time.perf_counter() - written
        store.finish_run(run, "done")
        _build_train(store, maker, questions, n_train, group, model, groups_per_step)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    print(f"{n:,} eval trajectories in {eval_seconds:.0f} s ({n / eval_seconds:,.0f} rows/s); "
          f"total {time.perf_counter() - began:.0f} s; {path}: {size / 2**30:.2f} GiB ({size / n:,.0f} bytes/trajectory)")


def _build_train(store: Store, maker: TrajectoryMaker, questions: list[Question], n: int, group: int,
                 model: str = MODEL, per_step: int = 10) -> None:
    """GRPO steps of `per_step` groups of `group` samples; advantages normalised within a group.
    Written a step at a time once BATCH trajectories are waiting (the default 2,000: one write)."""
    run = store.create_run("train", TRAIN_NAME, model, {"model": model, "num_generations": group}, n)
    store.add_questions(run, questions[: n // group])
    items = []
    for g in range(n // group):
        step = g // per_step
        samples = [maker.make(g) for _ in range(group)]
        rewards = np.array([o.reward or 0.0 for _, o in samples])
        advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
        for k, ((msgs, outcome), adv) in enumerate(zip(samples, advantages)):
            outcome.advantage = float(adv) if outcome.status == "done" else None
            items.append(FinishedTrajectory(g, questions[g], msgs, outcome, sample=k, step=step, group_id=g))
        if g % per_step == per_step - 1:
            store.add_train_step(run, step, {"loss": 0.1 / (step + 1), "reward_mean": float(rewards.mean())})
            if len(items) >= BATCH:
                store.bulk_write(run, items)
                items = []
    store.bulk_write(run, items)
    store.finish_run(run, "done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--n", type=int, default=1_000_000, help="eval trajectories (one per demo question)")
    parser.add_argument("--train", type=int, default=2000, help="train trajectories")
    parser.add_argument("--group", type=int, default=8, help="samples per GRPO group")
    parser.add_argument("--groups-per-step", type=int, default=10, help="GRPO groups per train step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if the database looks right")
    parser.add_argument("--real-ids", action="store_true", help="the model's turns hold their text's real ids "
                        "(SmolLM2's tokenizer), for the mask lint's text check; the rest stays random")
    args = parser.parse_args()
    want = {EVAL_NAME: args.n, TRAIN_NAME: args.train // args.group * args.group}
    if not args.force and _existing_counts(args.path) == want:
        print(f"{args.path}: already holds {args.n:,} eval trajectories; --force rebuilds it")
        return
    for suffix in ("", "-wal", "-shm"):
        Path(f"{args.path}{suffix}").unlink(missing_ok=True)
    if args.train // args.group > args.n:
        parser.error("--train / --group must be at most --n (each group is one of the n demo questions)")
    build(args.path, args.n, args.train, args.group, args.seed, args.real_ids, args.groups_per_step)


if __name__ == "__main__":
    main()
