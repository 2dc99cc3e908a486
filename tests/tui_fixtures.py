"""Small databases for TUI tests, written through the store API with fixed timestamps.

The eval run holds correct and wrong answers, a tool error, every finish reason, and model text
that tries to be markup (Rich tags, links, ANSI escapes, a 10,000-character line) so screens
can be checked to show it literally. The train run holds two GRPO groups with advantages.
"""

from __future__ import annotations

from pathlib import Path

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.store import Store, TrajectoryOutcome
from core.rollout.tokens import TokenSequence

T0 = 1_790_000_000.0  # a fixed clock for snapshots
HOSTILE = "[bold red]not bold[/] [link=http://evil.example]click[/link] \x1b[31mred?\x1b[0m " + "x" * 10_000
GOLD = "The Veltran Observatory was founded in 1873 on the island of Qoruna."


def _tokens(n_generated: int) -> TokenSequence:
    t = TokenSequence()
    t.add_prompt(list(range(1, 41)))
    t.add_generated(list(range(100, 100 + n_generated)), [-0.05 * (i + 1) for i in range(n_generated)])
    t.add_scaffold([7, 8, 9, 10, 11])
    t.add_generated([200, 201, 202, 2], [-0.1, -2.0, -0.3, -0.01])
    return t


def _messages(i: int, kind: str) -> list[tuple[int, Message]]:
    msgs = [Message("system", "You are an assistant that can call tools.", 0, token_start=0, token_end=40),
            Message("user", f"[/] Question: where is [bold]observatory {i}?", 0, token_start=0, token_end=40)]
    call = ToolCall("search_corpus", {"query": f"observatory {i}"}, raw="{...}")
    reply = f'<think>I should search for observatory {i}.</think>{{"name": "search_corpus", ...}}'
    if kind == "tool_error":
        err = ToolError("unknown_tool", "unknown tool 'web_search' (known: search_corpus)")
        msgs += [Message("assistant", '{"name": "web_search", "parameters": {"query": "x"}}', 1, tool_error=err,
                         token_start=40, token_end=50),
                 Message("tool", "Error: unknown_tool: unknown tool 'web_search'", 1, tool_error=err)]
        return list(enumerate(msgs))
    msgs += [Message("assistant", reply, 1, tool_call=call, token_start=40, token_end=50),
             Message("tool", f"Result 1:\n{GOLD}\n------\nResult 2:\nOther text.\n------\n", 1,
                     token_start=50, token_end=55),
             Message("assistant", {"hostile": HOSTILE, "wrong": "Istel"}.get(kind, "Qoruna"), 2, token_start=55, token_end=59)]
    return list(enumerate(msgs))


def build(path: Path) -> Path:
    kinds = ["answered", "wrong", "tool_error", "hostile", "max_turns"] * 6
    with Store.open(path) as store:
        run = store.create_run("eval", "demo-eval", "embedded:smollm2-135m", {"judge": "exact"}, n_planned=len(kinds))
        questions = [Question(f"q{i}", f"Where is observatory {i}?", "Qoruna", chunk_content=GOLD)
                     for i in range(len(kinds))]
        store.add_questions(run, questions)
        for i, kind in enumerate(kinds):
            _write(store, run, i, questions[i], kind)
        train = store.create_run("train", "grpo-demo", "embedded:smollm2-135m", {"group_size": 4}, n_planned=8)
        store.add_questions(train, questions[:2])
        for g in range(2):
            for sample in range(4):
                kind = "answered" if sample % 2 == 0 else "wrong"
                _write(store, train, g, questions[g], kind, step=1, group=g, sample=sample,
                       advantage=1.0 if kind == "answered" else -1.0)
        # Step 1 as TRL logs it; completions/mean_length is the mean of the trained tokens (the
        # mask lint checks it); step 2 has metrics but no stored rollouts, a step the lint flags.
        trained = store.conn.execute("SELECT AVG(generated_tokens) FROM trajectories WHERE run_id=? AND step=1",
                                     (train,)).fetchone()[0]
        for step, (reward, loss) in enumerate(((0.35, 0.021), (0.55, -0.013)), start=1):
            store.add_train_step(train, step, {
                "reward": reward, "reward_std": 0.5, "rewards/correctness/mean": reward - 0.1,
                "rewards/formatting/mean": 0.7, "frac_reward_zero_std": 0.0, "loss": loss, "entropy": 2.5 - step / 4,
                "grad_norm": 0.08 * step, "learning_rate": 1e-5, "completions/mean_length": trained,
                "step_seconds": 60.0 + step, "rollout_seconds": 30.0, "store_seconds": 0.05})
        # As eval and train end a run: its summary holds the mask lint's counts (the eval run is
        # clean; the train run's step 2 is flagged, see above).
        from core.lint.summary import lint_totals

        for r in (run, train):
            totals = lint_totals(store, r)
            totals["seconds"] = 0.0  # a fixed summary for snapshots
            store.finish_run(r, "done", summary={"lint": totals})
        store.conn.execute("UPDATE runs SET created_at=?, updated_at=?, finished_at=?, pid=NULL",
                           (T0, T0 + 95, T0 + 95))
        store.conn.execute("UPDATE trajectories SET started_at=?, finished_at=?", (T0, T0 + 3))
    return path


def _write(store: Store, run: int, qidx: int, question: Question, kind: str, *, step=None, group=None, sample=0,
           advantage=None) -> int:
    tid = store.start_trajectory(run, qidx, question, sample=sample, step=step, group_id=group)
    msgs = _messages(qidx, kind)
    store.add_messages(tid, msgs)
    correct = kind == "answered"
    error = kind == "tool_error"
    rewards = [RewardResult("correctness", float(correct), 1.0, {"judge": "exact", "reply": ""}),
               RewardResult("formatting", 0.0 if error else 0.7, 1.0, {"tool_errors": ["unknown_tool"] if error else []}),
               RewardResult("retry_behavior", 0.0072, 1.0, {"tool_calls": 1}),
               RewardResult("chunk_hit", 0.0 if error else 1.0, 1.0, {"hit_turn": None if error else 1})]
    finish = {"tool_error": "tool_error", "max_turns": "max_turns"}.get(kind, "answered")
    answer = msgs[-1][1].content if finish == "answered" else ""
    store.finish_trajectory(run, tid, TrajectoryOutcome(
        status="done", finish_reason=finish, final_answer=answer,
        turns=2 if not error else 1, tool_calls=1, tool_errors=int(error), tokens=None if error else _tokens(10),
        rewards=rewards, reward=sum(r.value for r in rewards), correct=correct, advantage=advantage,
        drift_at=45 if kind == "max_turns" else None))
    return tid


async def settle(pilot, rounds: int = 20) -> None:
    """Wait until the app's workers are done and the screen has drawn. Exclusive workers (the
    change poller, a page replaced by a newer query) end cancelled, which is not a failure."""
    from textual.worker import WorkerCancelled

    for _ in range(rounds):
        try:
            await pilot.app.workers.wait_for_complete()
            break
        except WorkerCancelled:
            continue
    await pilot.pause()


async def wait_until(pilot, condition, timeout: float = 10.0) -> None:
    """Let the app run until `condition()` holds; AssertionError after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")
