"""Writing training steps into the store: trajectories with step, group, sample and advantage,
and each step's metrics (store.add_train_step); a train run's summary (train_summary)."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from core.rollout.agent import Trajectory
from core.evaluate import _answer
from core.lint.summary import lint_totals_or_none
from core.scoring.judges import verdict_correct
from core.scoring.rewards import reward_failures
from core.store import Store, TrajectoryOutcome
from core.train.rewards import ScoreCache
from core.train.rollout import AgentRollout


class StepRecorder:
    """Stores the rollouts of each step and its metrics.

    store_batch(step, advantages) is called right after TRL scored a generated batch;
    advantages is TRL's tensor (one per sample, in the order rollout_func returned them).
    The callback's on_log stores TRL's logged metrics for the step with step_seconds,
    rollout_seconds and store_seconds, and reports progress.
    """

    def __init__(self, store: Store, run_id: int, rollout: AgentRollout, cache: ScoreCache, steps: int,
                 progress: Callable[[Any], None] | None = None):
        self.store, self.run_id, self.rollout, self.cache = store, run_id, rollout, cache
        self.steps, self.progress = steps, progress
        self.next_group = 0
        self.timing: dict[int, dict[str, float]] = {}
        self.began = time.perf_counter()
        self.first_step: int | None = None
        """The first step this process stored metrics for (a resumed run starts after its checkpoint)."""
        self.evaluate: Callable[[Any, int], None] | None = None
        """--eval-every: called as evaluate(policy model, step) after every eval_every-th step."""
        self.eval_every: int | None = None
        self.batch_rows: list[tuple[int, int, int]] = []
        """The newest batch's (trajectory id, prompt length, sequence length), in rollout order:
        the row index TRL's loss sees (ROW_KEY) indexes this list."""
        self.scored_rows: set[int] = set()
        self.group_offset = 0
        """Added to the rollout's local group indices: under several processes, the groups of the
        ranks before this one in the step (core.train.trainer)."""
        self.groups_per_batch: int | None = None
        """Groups a step holds across all ranks (next_group advances by it); None: one process,
        next_group advances by the groups of this batch."""

    def store_batch(self, step: int, advantages: Any) -> None:
        """Write every trajectory of the newest rollout batch as part of `step` (1-based).

        Raises ValueError if TRL scored a different number of samples than the rollout made.
        """
        began = time.perf_counter()
        batch = self.rollout.batches.pop()
        values = [float(a) for a in advantages.reshape(-1).tolist()]
        if len(values) != len(batch.trajectories):
            raise ValueError(f"TRL returned {len(values)} advantages for {len(batch.trajectories)} rollouts")
        scored = self.cache.of(batch.trajectories)
        self.batch_rows, self.scored_rows = [], set()
        with self.store.transaction():
            for traj, group, sample, advantage, results in zip(batch.trajectories, batch.group, batch.sample,
                                                               values, scored):
                tid = self._write(traj, step, self.next_group + self.group_offset + group, sample, advantage, results)
                self.batch_rows.append((tid, traj.tokens.prompt_len, len(traj.tokens.ids)))
        self.next_group += self.groups_per_batch or max(batch.group, default=-1) + 1
        self.cache.forget(batch.trajectories)
        t = self.timing.setdefault(step, {"rollout_seconds": 0.0, "store_seconds": 0.0})
        t["rollout_seconds"] += batch.seconds
        if batch.generate_seconds is not None:
            t["generate_seconds"] = t.get("generate_seconds", 0.0) + batch.generate_seconds
        t["store_seconds"] += time.perf_counter() - began

    def _write(self, traj: Trajectory, step: int, group: int, sample: int, advantage: float, results) -> int:
        tid = self.store.start_trajectory(self.run_id, traj.qidx, traj.question, sample=sample, step=step,
                                          group_id=group)
        self.store.add_messages(tid, list(enumerate(traj.messages)))
        correctness = next((r for r in results if r.name == "correctness"), None)
        self.store.finish_trajectory(self.run_id, tid, TrajectoryOutcome(
            status="done", finish_reason=traj.finish_reason, final_answer=_answer(traj), turns=traj.turns,
            tool_calls=traj.tool_calls, tool_errors=traj.tool_errors, tokens=traj.tokens, rewards=results,
            reward=sum(r.value * r.weight for r in results),
            correct=verdict_correct(correctness),
            advantage=advantage if math.isfinite(advantage) else None, drift_at=traj.drift_at,
            drift_kind=traj.drift_kind, finish_detail=traj.finish_detail,
            generation_seconds=traj.generation_seconds))
        return tid

    def record_trainer_logprobs(self, rows: list[int], logprobs: list[list[float]]) -> None:
        """Store the trainer's per-token logprobs of the completion tokens of `rows` (indices into
        the newest batch, in the order TRL's loss met them after shuffling; logprobs[i] has
        one value per completion position, right-padded: only the first len(completion) count).

        Called from the loss before its backward pass, so these are the logprobs of the weights
        that sampled the batch: their difference from the rollout's is the train-inference gap.
        A row seen again (num_iterations > 1: later passes over the same batch, after updates)
        keeps its first values. Timed into the step's store_seconds.
        """
        began = time.perf_counter()
        with self.store.transaction():
            for row, values in zip(rows, logprobs):
                if row in self.scored_rows or row >= len(self.batch_rows):
                    continue
                self.scored_rows.add(row)
                tid, prompt_len, length = self.batch_rows[row]
                completion = values[:length - prompt_len]
                full = [math.nan] * prompt_len + completion + [math.nan] * (length - prompt_len - len(completion))
                self.store.set_trainer_logprobs(tid, full)
        step = max(self.timing, default=0)
        if step:
            self.timing[step]["store_seconds"] += time.perf_counter() - began

    def callback(self):
        """A transformers TrainerCallback that stores each step's metrics and reports progress."""
        from transformers import TrainerCallback

        recorder = self

        class _StepMetrics(TrainerCallback):
            last_end = None

            def on_train_begin(self, args, state, control, **kwargs):
                self.last_end = time.perf_counter()

            def on_step_end(self, args, state, control, model=None, **kwargs):
                now = time.perf_counter()
                t = recorder.timing.setdefault(state.global_step, {"rollout_seconds": 0.0, "store_seconds": 0.0})
                t["step_seconds"] = now - (self.last_end or recorder.began)
                if recorder.evaluate is not None and recorder.eval_every and model is not None \
                        and state.global_step % recorder.eval_every == 0:
                    began = time.perf_counter()
                    recorder.evaluate(model, state.global_step)
                    t["eval_seconds"] = time.perf_counter() - began
                self.last_end = time.perf_counter()

            def on_log(self, args, state, control, logs=None, **kwargs):
                if not logs or "loss" not in logs:
                    return  # the end-of-training summary (train_runtime...), not a step
                step = state.global_step
                metrics = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
                metrics |= recorder.timing.pop(step, {})
                recorder.store.add_train_step(recorder.run_id, step, metrics)
                if recorder.first_step is None:
                    recorder.first_step = step
                if recorder.progress is not None:
                    from core.train.trainer import StepProgress

                    recorder.progress(StepProgress(recorder.run_id, step, recorder.steps, metrics,
                                                   time.perf_counter() - recorder.began, recorder.first_step))

        return _StepMetrics()


def train_summary(store: Store, run_id: int) -> dict[str, Any]:
    """Steps done, first and last step's reward, mean step time, trajectories stored, and the
    mask lint's counts (core.lint.summary.lint_totals)."""

    run = store.run(run_id)
    steps = store.train_steps(run_id)
    times = [s["step_seconds"] for s in steps if s.get("step_seconds") is not None]
    return {
        "run_id": run_id,
        "name": run["name"],
        "model": run["model"],
        "steps": len(steps),
        "trajectories": run["n_done"],
        "planned": run["n_planned"],
        "first_reward": steps[0].get("reward") if steps else None,
        "last_reward": steps[-1].get("reward") if steps else None,
        "mean_reward": run["reward_sum"] / run["n_done"] if run["n_done"] else None,
        "last_loss": steps[-1].get("loss") if steps else None,
        "mean_step_seconds": sum(times) / len(times) if times else None,
        "seconds": (run["finished_at"] or time.time()) - run["created_at"],
        "reward_failures": reward_failures(store.conn, run_id),
        "lint": lint_totals_or_none(store, run_id),
    }
