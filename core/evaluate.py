"""Headless evaluation: load inputs, run the agent over a question set, score and store it all.

`evaluate(config, db)` is what `rl-inspect eval` and scripts call. Inputs are read and checked
before the database is touched, so a bad file writes nothing. Trajectories run in a pool of
`batch_size`: every turn generates for the whole pool, finished trajectories are scored and
written, and new questions take their places, so one long chat does not hold up a batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from loguru import logger

from core.rollout.agent import FINISH_MAX_TURNS, FINISH_TOOL_ERROR, Agent, AgentConfig, Trajectory, drift_input
from core.backends import Backend, SamplingConfig, create_backend
from core.backends.openai_server import server_options
from core.config import EvalConfig
from core.data.corpus import corpus_fingerprint, load_corpus
from core.data.demo_data import generate_demo
from core.scoring.judges import build_judge, effective_judge, judge_label, verdict_correct
from core.scoring.judge_model import judge_complete
from core.models import load_tokenizer, resolve_model
from core.rollout.prompts import PromptTemplate
from core.data.questions import load_questions, split_questions
from core.data.records import Chunk, InputError, Question
from core.lint.summary import lint_totals_or_none
from core.retrieval import build_retriever, format_results
from core.scoring.rewards import (RewardInput, RewardSuite, final_answer, load_user_rewards,
                                  reward_failures)
from core.store import Store, TrajectoryOutcome
from core.store.liveness import check_resumable
from core.store.merge import job_digest, shard_name
from core.store.writer import StoreWriter
from core.rollout.templates import check_template, load_chat_template


@dataclass
class Progress:
    """What a progress display needs, sent after every turn."""

    run_id: int
    done: int
    total: int
    correct: int
    judged: int
    generated_tokens: int
    tool_error_trajectories: int
    active: int
    elapsed: float

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.judged if self.judged else None

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class EvalInputs:
    """Everything read from files, checked before anything is written."""

    chunks: list[Chunk]
    questions: list[Question]
    corpus_label: str
    fingerprint: str
    prompts: PromptTemplate | None = None
    """--prompt-template FILE; None: the default for the tool format (core.rollout.prompts)."""
    chat_template: str | None = None
    """The text of --chat-template FILE, when given."""


ProgressFn = Callable[[Progress], None]


def load_inputs(config: EvalConfig) -> EvalInputs:
    """Read the corpus, questions and prompt template named by the configuration."""
    config.validate()
    load_user_rewards(config.extra_rewards, config.reward_weights)  # a bad --reward is refused before the model loads
    if config.corpus:
        chunks = load_corpus(config.corpus, chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap)
        label = str(config.corpus)
        demo_questions: list[Question] = []
    else:
        chunks, demo_questions = generate_demo(config.demo_chunks, seed=0)
        label = f"demo:{config.demo_chunks}"
    if config.questions:
        questions = load_questions(config.questions)
    elif config.corpus:
        raise InputError(str(config.corpus), "a corpus of your own needs --questions (a question file)")
    else:
        questions = demo_questions
    questions = split_questions(questions, config.split)
    if config.limit:
        questions = questions[: config.limit]
    if not questions:
        raise InputError(config.questions or label, f"no questions in the {config.split!r} split")
    prompts = PromptTemplate.load(config.prompt_template) if config.prompt_template else None
    chat_template = load_chat_template(config.chat_template) if config.chat_template else None
    return EvalInputs(chunks, questions, label, corpus_fingerprint(chunks), prompts, chat_template)


def evaluate(config: EvalConfig, db: str | Path, progress: ProgressFn | None = None,
             backend: Backend | None = None) -> dict[str, Any]:
    """Run a new evaluation into `db` and return its summary (also stored with the run).

    `backend` replaces the one `config.backend` names: any object with the Backend protocol
    (a server client of your own, say); `config.model` is then only the name stored.
    """
    inputs = load_inputs(config)
    # The judge that decides is stored, never "auto": the summary, `runs` and the TUI name it.
    config = replace(config, judge=effective_judge(config.judge, config.judge_model))
    if config.shard is not None and config.job is None:
        config = replace(config, job=job_id(config))
    session = _Session.build(config, inputs, backend)
    todo = shard_questions(list(enumerate(inputs.questions)), config.shard)
    with Store.open(db) as store:
        stored = config.to_dict() | {"corpus_fingerprint": inputs.fingerprint, "corpus_label": inputs.corpus_label,
                                     "n_chunks": len(inputs.chunks),
                                     "chat_format": list(session.agent.chat.fmt.notes)}
        name = config.name or _default_name(config)
        if config.shard is not None:
            name = shard_name(name, *config.shard)
        run_id = store.create_run("eval", name, config.model, stored, n_planned=len(todo))
        # A shard stores every question, so qidx is the same in all shards and merge can join them.
        store.add_questions(run_id, inputs.questions)
        logger.info("run {} ({}) started: {} questions{}", run_id, name, len(todo),
                    f" (shard {config.shard[0]}/{config.shard[1]} of {len(inputs.questions)}, job {config.job})"
                    if config.shard else "")
        return session.run(store, run_id, todo, progress)


def job_id(config: EvalConfig) -> str:
    """The default --job of a sharded evaluation: 12 hex digits of the SHA-256 of the configuration
    without `shard` and `job` (JSON, sorted keys). The N processes of one command get the same id;
    running the same command again later gets it too, and merge then takes each shard's further
    copy (core.store.merge): pass --job to keep two such evaluations apart."""
    return job_digest(config.to_dict())


def shard_questions(indexed: list[tuple[int, Question]], shard: list[int] | None) -> list[tuple[int, Question]]:
    """The (qidx, question) pairs shard [I, N] evaluates: those with qidx % N == I (all for None).
    Interleaved rather than in blocks, so shards of a question file sorted by difficulty or
    source get alike work."""
    if shard is None:
        return indexed
    index, count = shard
    return [(i, q) for i, q in indexed if i % count == index]


def resume(db: str | Path, run_id: int, progress: ProgressFn | None = None,
           backend: Backend | None = None) -> dict[str, Any]:
    """Finish an interrupted run: questions with a finished trajectory are not redone."""
    with Store.open(db, create=False) as store:
        run = store.run(run_id)
        if run["kind"] != "eval":
            raise ValueError(f"run {run_id} is a {run['kind']} run; only eval runs resume here")
        check_resumable(run_id, run)  # a fast refusal; claim_run below decides atomically
        stored = run["config"]
        config = EvalConfig.from_dict(stored)
        inputs = load_inputs(config)
        if inputs.fingerprint != stored.get("corpus_fingerprint"):
            raise InputError(inputs.corpus_label, "the corpus changed since the run started; cannot resume")
        questions = store.questions(run_id)
        done = store.done_question_indices(run_id)
        todo = [(i, q) for i, q in shard_questions(list(enumerate(questions)), config.shard) if i not in done]
        session = _Session.build(config, inputs, backend)
        store.claim_run(run_id)
        logger.info("run {} resumed: {} of {} questions left", run_id, len(todo), len(questions))
        return session.run(store, run_id, todo, progress)


@dataclass
class _Session:
    """A loaded model, retriever and reward suite, ready to run questions into a store."""

    config: EvalConfig
    agent: Agent
    rewards: RewardSuite
    drift: "_DriftCheck | None" = None
    """Checks finished trajectories for drift in the writer thread (None: --no-drift-check)."""

    @classmethod
    def build(cls, config: EvalConfig, inputs: EvalInputs, backend: Backend | None = None) -> "_Session":
        retriever = build_retriever(config.retriever, inputs.chunks)
        # The chat template is checked before the model loads: a template that cannot run the
        # agent is refused in one line (TemplateError) without waiting for the weights.
        template_name = config.chat_template or config.model
        if backend is None:
            ref = resolve_model(config.model)
            tokenizer = load_tokenizer(ref)
            if inputs.chat_template is not None:
                tokenizer.chat_template = inputs.chat_template
            chat_format = check_template(tokenizer, template_name, config.tool_format)
            backend = create_backend(config.backend, ref, device=config.device, dtype=config.dtype,
                                     tokenizer=tokenizer, server=server_options(config), vllm=config.vllm_options(),
                                     kv_reuse=config.kv_reuse)
        else:
            if inputs.chat_template is not None:
                backend.tokenizer.chat_template = inputs.chat_template
            chat_format = check_template(backend.tokenizer, template_name, config.tool_format)
        for note in chat_format.notes:
            logger.info("chat template of {}: {}", template_name, note)
        agent_config = AgentConfig(
            max_generations=config.max_generations,
            max_new_tokens=config.max_new_tokens,
            max_tokens_per_turn=config.max_tokens_per_turn,
            top_k=config.top_k,
            on_tool_error=config.on_tool_error,
            sampling=SamplingConfig(temperature=config.temperature, top_p=config.top_p, seed=config.seed),
            # The drift check (a full re-rendering and re-tokenisation of each finished chat) runs
            # in the store writer thread instead of the turn (issue 9): see _DriftCheck.
            check_drift=False,
        )

        def search(query: str, k: int) -> str:
            return format_results(retriever.search(query, k))

        agent = Agent(backend, search, agent_config, inputs.prompts, chat_format)
        drift = _DriftCheck(agent) if config.check_drift else None
        complete = None
        judge = effective_judge(config.judge, config.judge_model)
        if judge == "llm":
            # Without --judge-model the policy judges, as the seed; --judge-backend openai asks
            # over chat completions, with no local tokenizer (core.scoring.judge_model).
            kind = config.judge_backend or config.backend
            complete = judge_complete(kind, config.judge_model, config.judge_max_tokens,
                                      lambda: create_backend(kind, resolve_model(config.judge_model),
                                                             device=config.device, dtype=config.dtype)
                                      if config.judge_model else backend,
                                      server=server_options(config, judge=True), seed=config.seed)
        suite = RewardSuite(build_judge(judge, complete, config.judge_max_tokens), config.reward_weights,
                            config.extra_rewards)
        return cls(config, agent, suite, drift)

    def run(self, store: Store, run_id: int, todo: list[tuple[int, Question]],
            progress: ProgressFn | None) -> dict[str, Any]:
        """Run `todo` (question index, question) into run `run_id`, a pool of `batch_size`
        trajectories at a time. Store writes go through a StoreWriter thread, so the next turn
        generates while the last one is written; `progress` is called on this thread after
        every turn with the counters as committed (what it reports done is stored)."""
        began = time.perf_counter()
        pool: list[Trajectory] = []
        queue = list(todo)
        committed: list[Progress] = []
        """The writer's latest committed progress (appended in the writer thread)."""
        reported: list[Progress | None] = [None]

        def report() -> None:
            latest = committed[-1] if committed else None
            if progress and latest is not None and latest is not reported[0]:
                reported[0] = latest
                progress(latest)

        def turns() -> None:
            nonlocal pool
            with StoreWriter(store, max_pending=_MAX_PENDING_WRITES) as writer:
                while queue or pool:
                    started = []
                    while queue and len(pool) < self.config.batch_size:
                        qidx, question = queue.pop(0)
                        traj = self.agent.start(question, qidx)
                        pool.append(traj)
                        started.append((traj, list(traj.messages)))
                    if started:
                        writer.submit(partial(_write_starts, run_id, started))
                    step_began = time.perf_counter()
                    new_messages = self.agent.step(pool)
                    logger.debug("turn for {} trajectories took {:.2f} s", len(pool),
                                 time.perf_counter() - step_began)
                    added = [(traj, len(traj.messages) - len(new), list(new)) for traj, new in zip(pool, new_messages)]
                    finished = [t for t in pool if t.finished]
                    outcomes = self._score(finished) if finished else []
                    drift = self.drift.inputs(finished) if self.drift and finished else None
                    pool = [t for t in pool if not t.finished]
                    active = len(pool)
                    writer.submit(partial(_write_turn, run_id, added, outcomes, self.drift, drift),
                                  then=lambda active=active: committed.append(
                                      self._progress(store, run_id, active, began)))
                    report()
                writer.drain()
                report()

        return store.run_to_end(run_id, turns, run_summary)

    def _score(self, finished: list[Trajectory]) -> list[tuple[Trajectory, TrajectoryOutcome]]:
        """Rewards of the finished trajectories (on this thread: an LLM judge uses the model),
        and the outcome each will be stored with."""
        inputs = [RewardInput(t.question, t.messages, _answer(t)) for t in finished]
        scored = self.rewards.score(inputs)
        out = []
        for traj, item, results in zip(finished, inputs, scored):
            correctness = next((r for r in results if r.name == "correctness"), None)
            out.append((traj, TrajectoryOutcome(
                status="done", finish_reason=traj.finish_reason, final_answer=item.final_answer,
                turns=traj.turns, tool_calls=traj.tool_calls, tool_errors=traj.tool_errors,
                tokens=traj.tokens, rewards=results, reward=self.rewards.total(results),
                correct=verdict_correct(correctness),
                drift_at=traj.drift_at, drift_kind=traj.drift_kind, finish_detail=traj.finish_detail,
                generation_seconds=traj.generation_seconds, token_exact=traj.token_exact)))
        return out

    def _progress(self, store: Store, run_id: int, active: int, began: float) -> Progress:
        run = store.run(run_id)
        return Progress(run_id, run["n_done"], run["n_planned"], run["n_correct"], run["n_judged"],
                        run["generated_tokens"], run["n_with_tool_error"], active, time.perf_counter() - began)


_MAX_PENDING_WRITES = 8
"""Turns the writer may lag behind the rollout before `submit` waits (each holds one pool's
new messages and finished trajectories: bounded memory)."""


def _write_starts(run_id: int, started: list[tuple[Trajectory, list]], store: Store) -> None:
    """Writer thread: the new trajectories' rows and first messages (copied when started, since
    the rollout appends to `traj.messages` meanwhile); sets each `traj.store_id`."""
    for traj, messages in started:
        traj.store_id = store.start_trajectory(run_id, traj.qidx, traj.question)
        store.add_messages(traj.store_id, list(enumerate(messages)))


def _write_turn(run_id: int, added: list[tuple[Trajectory, int, list]],
                outcomes: list[tuple[Trajectory, TrajectoryOutcome]], drift: "_DriftCheck | None",
                drift_inputs: list | None, store: Store) -> None:
    """Writer thread: one turn's new messages (position of the first, the messages) and the
    trajectories that finished in it, with their drift checked here, in one transaction."""
    for traj, first, messages in added:
        if messages:
            store.add_messages(traj.store_id, list(enumerate(messages, start=first)))
    if drift is not None and drift_inputs:
        checked = drift.check(drift_inputs)
        outcomes = [(traj, replace(outcome, drift_at=at, drift_kind=kind))
                    for (traj, outcome), (at, kind) in zip(outcomes, checked)]
    for traj, outcome in outcomes:
        store.finish_trajectory(run_id, traj.store_id, outcome)


class _DriftCheck:
    """The drift check of finished trajectories (core.rollout.chat.ChatTokenizer.drift_many),
    run in the store writer thread so the next turn does not wait for it.

    It has a ChatTokenizer of its own over a copy of the tokenizer: a fast tokenizer's Rust side
    is not made to be used from two threads at once (a call that changes its padding or
    truncation settings raises "Already borrowed" while another encodes), and the turn's own
    tokenising goes on meanwhile on the rollout's thread.
    """

    def __init__(self, agent: Agent):
        import copy

        from core.rollout.chat import ChatTokenizer

        chat = agent.chat
        self.chat = ChatTokenizer(copy.deepcopy(chat.tokenizer), chat.fmt,
                                  stop_ids=sorted(getattr(agent.backend, "stop_token_ids", ()) or ()),
                                  reuse_renderings=False)

    @staticmethod
    def inputs(finished: list[Trajectory]) -> list:
        """What the check needs of each trajectory, taken on the rollout's thread (cheap)."""
        return [drift_input(t) for t in finished]

    def check(self, inputs: list) -> list[tuple[int | None, str | None]]:
        """(drift_at, drift_kind) of each input (writer thread)."""
        return self.chat.drift_many(inputs)


def _answer(traj: Trajectory) -> str:
    """The final answer; a trajectory stopped by a tool error or the turn limit gave none (the
    seed judged whatever message came last, an error text or a search result)."""
    if traj.finish_reason in (FINISH_TOOL_ERROR, FINISH_MAX_TURNS):
        return ""
    return final_answer(traj.messages)


def run_summary(store: Store, run_id: int) -> dict[str, Any]:
    """Accuracy, mean of each reward, tool-error rate, finish reasons, drift by kind, speed, and
    the mask lint's counts (core.lint.summary.lint_totals_or_none) of a run.

    "judge" names the judge that decided (core.scoring.judges.judge_label: "f1", "llm:<model>",
    None when the configuration names none). "accuracy" is correct / judged; "judge_unparseable"
    counts finished trajectories the judge gave no verdict on (a reply with no yes or no), which
    are neither right nor wrong and left out of accuracy (None before anything was judged)."""

    run = store.run(run_id)
    done = run["n_done"]
    means = {name: mean for name, mean in store.conn.execute(
        "SELECT r.name, AVG(r.value) FROM rewards r JOIN trajectories t ON t.id=r.trajectory_id"
        " WHERE t.run_id=? AND t.status='done' GROUP BY r.name ORDER BY r.name", (run_id,))}
    reasons = {reason: n for reason, n in store.conn.execute(
        "SELECT finish_reason, COUNT(*) FROM trajectories WHERE run_id=? AND status='done'"
        " GROUP BY finish_reason ORDER BY finish_reason", (run_id,))}
    drift = store.conn.execute(
        "SELECT COUNT(*) FROM trajectories WHERE run_id=? AND status='done' AND drift_at IS NOT NULL",
        (run_id,)).fetchone()[0]
    # Each kind of drift apart (core.rollout.chat.DRIFT_KINDS): a template rewrite is harmless, the others
    # are differences between the trained ids and a re-render. "unexplained": drift stored
    # without a kind (runs written before schema version 2).
    kinds = {kind or "unexplained": n for kind, n in store.conn.execute(
        "SELECT drift_kind, COUNT(*) FROM trajectories WHERE run_id=? AND status='done' AND drift_at IS NOT NULL"
        " GROUP BY drift_kind ORDER BY drift_kind", (run_id,))}
    inexact = store.conn.execute(
        "SELECT COUNT(*) FROM trajectories WHERE run_id=? AND status='done' AND token_exact=0", (run_id,)).fetchone()[0]
    seconds = run["generation_seconds"]
    return {
        "run_id": run_id,
        "name": run["name"],
        "model": run["model"],
        "trajectories": done,
        "planned": run["n_planned"],
        "accuracy": run["n_correct"] / run["n_judged"] if run["n_judged"] else None,
        "judge": judge_label(run["config"]),
        "judged": run["n_judged"],
        "judge_unparseable": done - run["n_judged"],
        "mean_reward": run["reward_sum"] / done if done else None,
        "reward_means": means,
        "reward_failures": reward_failures(store.conn, run_id),
        "tool_error_rate": run["n_with_tool_error"] / done if done else None,
        "finish_reasons": reasons,
        "drifted_trajectories": drift,
        "drift_kinds": kinds,
        "not_token_exact": inexact,
        "generated_tokens": run["generated_tokens"],
        "tokens_per_second": run["generated_tokens"] / seconds if seconds > 0 else None,
        "seconds": (run["finished_at"] or time.time()) - run["created_at"],
        "lint": lint_totals_or_none(store, run_id),
    }


def _default_name(config: EvalConfig) -> str:
    model = Path(config.model).name if "/" in config.model or Path(config.model).exists() else config.model
    return f"{model.replace('embedded:', '')}-{config.split}-{datetime.now():%Y%m%d-%H%M%S}"
