"""`rl-inspect train`: TRL's GRPOTrainer with core.train.rollout as `rollout_func`, every step stored.

Per step the store gets (core.train.store.StepRecorder):
- every trajectory: messages, tokens, assistant mask, rollout logprobs, each reward, the total,
  its step, group (one per question in the step) and sample, and the advantage TRL computed,
  read from the dict `GRPOTrainer._generate_and_score_completions` returns (same order as the
  prompts, before TRL shuffles the batch; one of the three places the notes found identical);
- the step's metrics as TRL logs them (loss, grad_norm, learning_rate, reward, reward_std,
  rewards/<name>/mean and /std, kl when beta > 0, entropy, clip ratios, completion lengths,
  frac_reward_zero_std), plus step_seconds (wall time between step ends), rollout_seconds (the
  whole rollout_func call), generate_seconds (inside it, in the model's generate) and
  store_seconds, through a TrainerCallback's on_log (logging_steps=1). What this project adds to
  a step is (rollout_seconds - generate_seconds) + store_seconds: the agent loop's bookkeeping,
  tokenising, retrieval and scoring, and the writes.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from loguru import logger

from core.rollout.agent import Agent, AgentConfig
from core.backends import SamplingConfig, create_backend
from core.backends.hf import HFBackend
from core.rollout.chat import stop_token_ids
from core.scoring.judges import build_judge
from core.scoring.judge_model import judge_complete
from core.models import load_causal_lm, load_tokenizer, resolve_model
from core.data.records import Question
from core.retrieval import build_retriever, format_results
from core.scoring.rewards import RewardSuite
from core.store import Store
from core.store.liveness import check_resumable
from core.store.merge import job_digest, shard_name
from core.rollout.templates import check_template
from core.train.config import TrainConfig, check_ranks, load_train_inputs, process_ranks, rank_database
from core.train.rewards import ScoreCache, trl_reward_functions
from core.train.rollout import AgentRollout
from core.train.store import StepRecorder, train_summary


@dataclass
class StepProgress:
    """What a progress display needs after each optimizer step."""

    run_id: int
    step: int
    steps: int
    metrics: dict[str, Any]
    elapsed: float
    """Seconds since this process started training (a resumed run: since the resume)."""
    first_step: int = 1
    """The first step this process trained (a run resumed after step 3: 4)."""

    @property
    def eta(self) -> float:
        """Seconds left at this process's mean step time so far."""
        done = self.step - self.first_step + 1
        return self.elapsed / done * (self.steps - self.step) if done > 0 else 0.0


StepProgressFn = Callable[[StepProgress], None]


def question_dataset(questions: list[Question]):
    """TRL's train dataset: one row per question, its text as the "prompt" (AgentRollout maps it back)."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [q.question for q in questions]})


def grpo_config(config: TrainConfig, output_dir: str, device: str, world: int = 1):
    """GRPOConfig for `config`, with the CPU defaults that trip users set (notes: `use_cpu=True`,
    since `no_cuda` raises in transformers 5; `bf16=False`, True by default even on CPU;
    logging every step; checkpoints only with --save-every; no trackers). A --batch-size below
    questions x generations becomes gradient accumulation, still one rollout per optimizer step.
    Under `world` processes each rank takes questions_per_step / world of the step's questions
    (core.train.config.check_ranks), so a step trains on questions_per_step questions in all."""
    from trl import GRPOConfig

    total = config.questions_per_step * config.num_generations // world
    per_device = config.batch_size or total
    accumulation = total // per_device
    return GRPOConfig(
        output_dir=output_dir,
        use_cpu=device == "cpu",
        bf16=False,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,  # one rollout per optimizer step
        num_generations=config.num_generations,
        max_steps=config.steps,
        learning_rate=config.learning_rate,
        max_grad_norm=config.max_grad_norm,
        beta=config.beta,
        temperature=config.temperature,
        top_p=config.top_p,
        max_completion_length=config.max_new_tokens,
        logging_steps=1,
        save_strategy="steps" if config.save_every else "no",
        save_steps=config.save_every or 500,
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,
        **_vllm_options(config),
    )


def _vllm_options(config: TrainConfig) -> dict:
    """GRPOConfig's vLLM fields for --use-vllm (trl 1.16 names); none without it. The import
    check comes first so a missing extra is one install line (core.backends.errors), not TRL's
    own ImportError from inside GRPOTrainer."""
    if not config.use_vllm:
        return {}
    from core.backends.vllm_backend import import_vllm

    import_vllm("--use-vllm")
    options = {"use_vllm": True, "vllm_mode": config.vllm_mode,
               "vllm_gpu_memory_utilization": config.vllm_gpu_memory_utilization}
    if config.vllm_server_url:
        options["vllm_server_base_url"] = config.vllm_server_url
    return options


def _device(config: TrainConfig) -> str:
    if config.device != "auto":
        return config.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train(config: TrainConfig, db: str | Path, progress: StepProgressFn | None = None,
          resume_run: int | None = None) -> dict[str, Any]:
    """Train `config.model` with GRPO for `config.steps` steps into a new train run of `db`, or
    with `resume_run` continue that run from its last checkpoint (core.train.resume).

    Inputs are checked before the model loads (ValueError / InputError / StoreError: nothing
    written). Returns the run's summary (also stored with it). Ctrl-C marks the run cancelled
    and re-raises KeyboardInterrupt; any other error marks it failed and re-raises; finished
    steps stay stored either way (and checkpoints every `save_every` steps, when set).
    """
    inputs = load_train_inputs(config)
    rank, world = process_ranks()
    check_ranks(config, world, resume=resume_run is not None)
    if world > 1:  # each rank writes its own database; `rl-inspect merge` joins them (core.store.merge)
        base_db, db = db, rank_database(db, rank)
    questions = inputs.questions
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    # transformers 5 warns at every step that gradient checkpointing is being renamed (notes):
    # it would bury the progress lines.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning)
    device = _device(config)
    ref = resolve_model(config.model)
    tokenizer = load_tokenizer(ref)
    chat_format = check_template(tokenizer, config.model, "auto")
    model = load_causal_lm(ref, device=device, dtype="float32" if device == "cpu" else "auto")
    model.train()
    stops = frozenset(stop_token_ids(tokenizer, model.generation_config))
    retriever = build_retriever(config.retriever, inputs.chunks)
    agent_config = AgentConfig(max_generations=config.max_generations, max_new_tokens=config.max_new_tokens,
                               max_tokens_per_turn=config.max_tokens_per_turn, top_k=config.top_k,
                               on_tool_error=config.on_tool_error,
                               # No per-call seed: HFBackend would reseed every turn and every step
                               # alike; the trainer seeds torch once (GRPOConfig.seed).
                               sampling=SamplingConfig(temperature=config.temperature, top_p=config.top_p))

    def search(query: str, k: int) -> str:
        return format_results(retriever.search(query, k))

    def make_agent(trainer: Any) -> Agent:
        if config.use_vllm and trainer is not None:
            # TRL synced the policy's weights into its vLLM engine before calling rollout_func.
            from core.backends.vllm_backend import trl_vllm_backend

            return Agent(trl_vllm_backend(trainer, tokenizer, sorted(stops)), search, agent_config, inputs.prompts,
                         chat_format)
        policy = trainer.accelerator.unwrap_model(trainer.model) if trainer is not None else model
        backend = HFBackend(model=policy, tokenizer=tokenizer, device=device, stop_token_ids=stops)
        return Agent(backend, search, agent_config, inputs.prompts, chat_format)

    suite = reward_suite(config, lambda: create_backend("hf", resolve_model(config.judge_model), device=device,
                                                        dtype="float32" if device == "cpu" else "auto"))
    cache = ScoreCache(suite)
    rollout = AgentRollout(questions, _generating(make_agent), num_generations=config.num_generations)
    reward_funcs, weights = trl_reward_functions(cache)
    with Store.open(db) as store, tempfile.TemporaryDirectory(prefix="rl-inspect-train-") as tmp:
        checkpoint = None
        if resume_run is None:
            name = config.name or f"{Path(ref.name).name.replace('embedded:', '')}-grpo-{datetime.now():%Y%m%d-%H%M%S}"
            stored = config.to_dict() | {"corpus_fingerprint": inputs.fingerprint,
                                         "corpus_label": inputs.corpus_label, "n_chunks": len(inputs.chunks),
                                         "chat_format": list(chat_format.notes), "trl": _trl_version(),
                                         "reward_names": suite.names}
            if world > 1:
                job = train_job_id(config)
                stored |= {"shard": [rank, world], "job": job}
                name = shard_name(name, rank, world)
            run_id = store.create_run("train", name, config.model, stored,
                                      n_planned=config.steps * config.questions_per_step * config.num_generations
                                      // world)
            store.add_questions(run_id, questions)
            if config.save_every:
                # Every rank must name the same folder (TRL's main process writes the checkpoints).
                config.output_dir = config.output_dir or str(
                    checkpoint_folder(db, run_id) if world == 1 else Path(base_db).parent / f"{Path(base_db).stem}"
                    f"-train-{job}")
                store.set_config(run_id, stored | {"output_dir": config.output_dir})
        else:
            run_id = resume_run
            if inputs.fingerprint != store.run(run_id)["config"].get("corpus_fingerprint"):
                raise ValueError(f"{inputs.corpus_label}: the corpus changed since run {run_id} started; cannot resume")
            checkpoint = last_checkpoint(config.output_dir)
            done = int(checkpoint.name.split("-")[-1])
            store.claim_run(run_id)  # first: a run another process holds is refused before anything is dropped
            store.drop_train_steps_after(run_id, done)
            name = store.run(run_id)["name"]
        args = grpo_config(config, config.output_dir or tmp, device, world)
        args.reward_weights = weights
        recorder = StepRecorder(store, run_id, rollout, cache, config.steps, progress)
        recorder.next_group = store.next_group_id(run_id)
        if world > 1:  # group ids of the whole step: rank r holds groups r*share .. (r+1)*share - 1
            recorder.group_offset = rank * (config.questions_per_step // world)
            recorder.groups_per_batch = config.questions_per_step
        if config.eval_every and rank == 0:  # held-out evals once, by the main process
            recorder.evaluate = _held_out_evaluator(config, db, store, run_id, tokenizer, stops, device)
            recorder.eval_every = config.eval_every
        trainer = build_trainer(model, tokenizer, args, reward_funcs, question_dataset(questions), rollout, recorder,
                                peft_config=lora_config(config))
        logger.info("train run {} ({}) {}: {} steps of {} x {}", run_id, name,
                    "started" if checkpoint is None else f"resumed from {checkpoint}", config.steps,
                    config.questions_per_step, config.num_generations)
        return store.run_to_end(
            run_id, lambda: trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None),
            train_summary)


def train_job_id(config: TrainConfig) -> str:
    """The job id the ranks of one multi-process training share (merge joins their runs by it):
    core.store.merge.job_digest of the configuration, the same in every rank of one command."""
    return job_digest(config.to_dict())


def resume_config(db: str | Path, run_id: int) -> TrainConfig:
    """The stored configuration of train run `run_id` of `db`, checked to be resumable (a train
    run, not running, with a checkpoint); ValueError saying why not. Reads only, loads no model."""
    with Store.open_readonly(db) as store:
        run = store.run(run_id)
    if run["kind"] != "train":
        raise ValueError(f"run {run_id} is a {run['kind']} run; train --resume continues train runs")
    check_resumable(run_id, run)
    config = TrainConfig.from_dict(run["config"])
    last_checkpoint(config.output_dir)
    return config


def _held_out_evaluator(config: TrainConfig, db: str | Path, store: Store, run_id: int, tokenizer, stops,
                        device: str) -> Callable[[Any, int], None]:
    """`evaluate(model, step)` for --eval-every: core.evaluate's session (same agent loop, rewards
    and storage as `rl-inspect eval`) on the current policy, stored as an eval run whose
    parent_run_id is the train run and train_step the step. Inputs are read once, here."""
    from core.evaluate import _Session, load_inputs

    eval_config = config.held_out_config()
    inputs = load_inputs(eval_config)
    train_name = store.run(run_id)["name"]

    def evaluate(model: Any, step: int) -> None:
        backend = _EvalModeBackend(HFBackend(model=model, tokenizer=tokenizer, device=device, stop_token_ids=stops))
        session = _Session.build(eval_config, inputs, backend)
        stored = eval_config.to_dict() | {"corpus_fingerprint": inputs.fingerprint,
                                          "corpus_label": inputs.corpus_label, "n_chunks": len(inputs.chunks)}
        eval_id = store.create_run("eval", f"{train_name}-step{step}", config.model, stored,
                                   n_planned=len(inputs.questions), parent_run_id=run_id, train_step=step)
        store.add_questions(eval_id, inputs.questions)
        summary = session.run(store, eval_id, list(enumerate(inputs.questions)), None)
        logger.info("train run {} step {}: held-out eval run {}: accuracy {}", run_id, step, eval_id,
                    summary["accuracy"])

    return evaluate


def checkpoint_folder(db: str | Path, run_id: int) -> Path:
    """Where train run `run_id` of `db` keeps its checkpoints: beside the database,
    `<db stem>-train-<run_id>/checkpoint-<step>/` (TRL's / transformers' layout)."""
    db = Path(db)
    return db.parent / f"{db.stem}-train-{run_id}"


def last_checkpoint(output_dir: str | None) -> Path:
    """The newest complete `checkpoint-<step>` folder under `output_dir`; ValueError when there is none.

    transformers writes a checkpoint in place and its trainer_state.json last
    (Trainer._save_checkpoint), so a folder without it is one a kill interrupted: skipped.
    """
    folder = Path(output_dir) if output_dir else None
    found = sorted((p for p in folder.glob("checkpoint-*")
                    if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()),
                   key=lambda p: int(p.name.split("-")[-1])) if folder and folder.is_dir() else []
    if not found:
        raise ValueError(f"no checkpoint to resume from in {output_dir} (train with --save-every N)")
    return found[-1]


def reward_suite(config: TrainConfig, load_judge_backend: Callable[[], Any]) -> RewardSuite:
    """The run's rewards (core.scoring.rewards) with its judge: a deterministic one, or for --judge llm a
    model apart from the policy, loaded by `load_judge_backend()` and asked greedily for a
    verdict within `config.judge_max_tokens` (as eval's LLM judge: reasoning stripped, a reply with
    no yes or no not judged); user rewards from --reward after the built-in ones."""
    complete = None
    if config.judge == "llm":  # train's judge is always an hf model (core.scoring.judge_model)
        complete = judge_complete("hf", config.judge_model, config.judge_max_tokens, load_judge_backend)
    return RewardSuite(build_judge(config.judge, complete, config.judge_max_tokens), config.reward_weights,
                       config.extra_rewards)


def _generating(make_agent: Callable[[Any], Agent]) -> Callable[[Any], Agent]:
    """Agents whose backend generates with the policy in eval mode: with gradient checkpointing
    on, a model in train mode generates without a KV cache (transformers turns it off)."""

    def make(trainer: Any) -> Agent:
        agent = make_agent(trainer)
        agent.backend = _EvalModeBackend(agent.backend)
        return agent

    return make


class _EvalModeBackend:
    """Wraps HFBackend.generate in model.eval() ... model.train(previous); `seconds` adds up the
    wall time spent in generate (AgentRollout reads it as the batch's generate_seconds)."""

    def __init__(self, inner: HFBackend):
        self.inner = inner
        self.name, self.tokenizer, self.stop_token_ids, self.model = (inner.name, inner.tokenizer,
                                                                     inner.stop_token_ids, inner.model)
        self.seconds = 0.0

    def generate(self, prompts, max_tokens, sampling):
        was_training = self.model.training
        self.model.eval()
        began = time.perf_counter()
        try:
            return self.inner.generate(prompts, max_tokens, sampling)
        finally:
            self.seconds += time.perf_counter() - began
            self.model.train(was_training)


def lora_config(config: TrainConfig):
    """peft's LoraConfig for --lora-r/--lora-alpha (alpha defaults to 2r), on every linear layer
    as the seed's LoRA did; None without --lora-r. TRL wraps the model with it (GRPOTrainer's
    peft_config), so rollouts generate with the adapter being trained."""
    if config.lora_r is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha or 2 * config.lora_r,
                      target_modules="all-linear", task_type="CAUSAL_LM")


ROW_KEY = "rl_inspect_row"
"""Extra key of TRL's generation batch: each sample's index in rollout order. TRL shuffles and
splits the batch by every key alike (trl.trainer.utils.shuffle_sequence_dict,
split_tensor_dict), so the loss can name the sample whose logprobs it computed."""


def build_trainer(model, tokenizer, args, reward_funcs, dataset, rollout: AgentRollout, recorder: StepRecorder,
                  peft_config=None):
    """A GRPOTrainer that hands every generated batch, with TRL's advantages, to `recorder`, and
    the per-token logprobs its loss computes to recorder.record_trainer_logprobs.

    TRL exposes neither through a public hook: the batch is read where
    `_generate_and_score_completions` returns it, and the loss's logprobs by wrapping
    `_get_per_token_logps_and_entropies` while `_compute_loss` runs (its first return value,
    (batch, completion length), nats). Checked against trl 1.16.
    """
    import torch
    from trl import GRPOTrainer

    class _StoringGRPOTrainer(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            recorder.store_batch(self.state.global_step + 1, output["advantages"])
            output[ROW_KEY] = torch.arange(len(output["advantages"]), device=output["advantages"].device)
            return output

        def _compute_loss(self, model, inputs):
            seen = []
            compute = self._get_per_token_logps_and_entropies

            def keeping(*args, **kwargs):
                result = compute(*args, **kwargs)
                seen.append(result[0])
                return result

            self._get_per_token_logps_and_entropies = keeping
            try:
                loss = super()._compute_loss(model, inputs)
            finally:
                del self._get_per_token_logps_and_entropies
            if seen and ROW_KEY in inputs:
                recorder.record_trainer_logprobs(inputs[ROW_KEY].tolist(), seen[0].detach().float().cpu().tolist())
            return loss

    from transformers.trainer_callback import PrinterCallback

    trainer = _StoringGRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward_funcs, args=args,
                                  train_dataset=dataset, rollout_func=rollout, callbacks=[recorder.callback()],
                                  peft_config=peft_config)
    # With tqdm off, transformers prints every log dict on stdout: stdout belongs to --json.
    trainer.remove_callback(PrinterCallback)
    return trainer


def _trl_version() -> str:
    import trl

    return trl.__version__
