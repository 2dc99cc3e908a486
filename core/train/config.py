"""The configuration of a training run, stored whole with its run (runs.config)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.config import EvalConfig
from core.scoring.judges import JUDGE_MAX_TOKENS
from core.models import DEFAULT_MODEL
from core.data.records import InputError


@dataclass
class TrainConfig:
    """What `rl-inspect train` runs. Defaults are sized for the embedded 135M model on a CPU:
    2 questions x 4 generations, 2 turns, 96 tokens after the prompt (one step in well under a
    minute on 2 cores; see README "Training"). The seed trained with 8 generations, lr 5e-6,
    max_grad_norm 0.1 and up to 5 turns on a GPU."""

    model: str = DEFAULT_MODEL
    device: str = "auto"
    corpus: str | None = None
    """A corpus file or folder; None means the built-in demo corpus."""
    demo_chunks: int = 200
    questions: str | None = None
    split: str = "train"
    chunk_size: int = 1000
    chunk_overlap: int = 100
    retriever: str = "bm25"
    top_k: int = 2
    steps: int = 4
    """Optimizer steps (TRL's max_steps)."""
    questions_per_step: int = 2
    num_generations: int = 4
    """Samples per question: one GRPO group (TRL's num_generations)."""
    batch_size: int | None = None
    """Samples per forward/backward pass; None: the whole step (questions x generations).
    Must divide questions x generations (the rest is gradient accumulation)."""
    learning_rate: float = 1e-5
    max_grad_norm: float = 0.1
    """As the seed."""
    beta: float = 0.0
    """KL coefficient against the reference model (TRL's default 0: no reference model kept)."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_generations: int = 2
    max_new_tokens: int = 96
    max_tokens_per_turn: int = 64
    on_tool_error: str = "stop"
    judge: str = "contains"
    """exact, f1, contains, or llm with a judge_model: never the policy (a policy grading itself
    rewards its own mistakes, issue 7)."""
    judge_model: str | None = None
    """The model --judge llm asks; loaded apart from the policy and never trained."""
    judge_max_tokens: int = JUDGE_MAX_TOKENS
    """Reply budget of --judge llm: room for a thinking judge to reason before its yes or no."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    extra_rewards: list[str] = field(default_factory=list)
    """--reward MODULE:FUNCTION, repeatable: user reward functions beside the built-in ones, as
    `eval` takes them (core.scoring.rewards.load_reward_function); weight 1 unless --reward-weights names them."""
    prompt_template: str | None = None
    """--prompt-template FILE: the system and user texts of each chat (core.rollout.prompts.PromptTemplate);
    None: the default. A worked tool call in it is what lets a small model find the format (notes)."""
    lora_r: int | None = None
    lora_alpha: int | None = None
    seed: int = 0
    name: str | None = None
    eval_every: int | None = None
    """Evaluate the policy on held-out questions (the "test" split) every N steps, each stored as
    an eval run linked to this run and step (runs.parent_run_id, runs.train_step). None: never."""
    eval_questions: int = 8
    """Held-out questions per evaluation (greedy decoding, the training run's judge and limits)."""
    save_every: int | None = None
    """Checkpoint (weights, optimizer, scheduler, RNG: transformers' checkpoint) every N steps;
    `--resume RUN` continues from the last one. None: no checkpoints."""
    output_dir: str | None = None
    """TRL's output folder, where checkpoints go; None: beside the database with --save-every
    (core.train.trainer.checkpoint_folder), else a temporary one."""
    use_vllm: bool = False
    """Generate the rollouts with TRL's vLLM integration (GRPOConfig.use_vllm): TRL syncs the
    policy's weights into vLLM before each rollout_func call, and the agent loop generates through
    that engine (core.backends.vllm_backend.trl_vllm_backend). Needs the [vllm] extra and a GPU."""
    vllm_mode: str = "colocate"
    """"colocate" (vLLM in the trainer's process) or "server" (a `trl vllm-serve` server)."""
    vllm_server_url: str | None = None
    """vllm_mode server: the server's base URL (TRL's vllm_server_base_url); None: TRL's default host and port."""
    vllm_gpu_memory_utilization: float = 0.3
    """vllm_mode colocate: the GPU memory fraction vLLM takes beside the trainer (TRL's default)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Rebuild from a run's stored configuration, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        data = {"judge_max_tokens": 8} | dict(data)  # stored before --judge-max-tokens: what it ran with
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def eval_config(self) -> EvalConfig:
        """The EvalConfig that reads the same corpus and questions (core.evaluate.load_inputs)."""
        return EvalConfig(model=self.model, corpus=self.corpus, demo_chunks=self.demo_chunks,
                          questions=self.questions, split=self.split, chunk_size=self.chunk_size,
                          chunk_overlap=self.chunk_overlap, retriever=self.retriever, top_k=self.top_k,
                          max_generations=self.max_generations, max_new_tokens=self.max_new_tokens,
                          max_tokens_per_turn=self.max_tokens_per_turn, temperature=self.temperature,
                          top_p=self.top_p, seed=self.seed, judge=self.judge, on_tool_error=self.on_tool_error,
                          judge_max_tokens=self.judge_max_tokens,
                          prompt_template=self.prompt_template)

    def held_out_config(self) -> EvalConfig:
        """The EvalConfig of --eval-every: the test split, greedy, at most eval_questions questions."""
        c = self.eval_config()
        c.split, c.limit, c.temperature, c.judge_model = "test", self.eval_questions, 0.0, self.judge_model
        return c

    def validate(self) -> None:
        """Refuse what cannot train, before any model loads.

        Raises ValueError naming the option, InputError for a missing corpus or question file.
        TRL's rules: num_generations >= 2 (the group's std is the advantage's scale) and the
        generation batch (questions x generations) a multiple of the per-device batch.
        """
        for name in ("steps", "questions_per_step", "num_generations", "max_generations", "max_new_tokens",
                     "max_tokens_per_turn", "top_k", "chunk_size", "demo_chunks", "judge_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.num_generations < 2:
            raise ValueError(f"--num-generations must be at least 2 (GRPO compares samples of one question), "
                             f"not {self.num_generations}")
        total = self.questions_per_step * self.num_generations
        if self.batch_size is not None:
            if self.batch_size < 1 or total % self.batch_size:
                raise ValueError(f"--batch-size {self.batch_size} does not divide the step's "
                                 f"{self.questions_per_step} questions x {self.num_generations} generations = {total}")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0 for training (GRPO samples), not {self.temperature}")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"--vllm-mode must be colocate or server, not {self.vllm_mode!r}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError(f"--vllm-gpu-memory-utilization must be in (0, 1], not {self.vllm_gpu_memory_utilization}")
        if self.vllm_server_url and not self.use_vllm:
            raise ValueError("--vllm-server-url needs --use-vllm")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], not {self.top_p}")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning-rate must be > 0, not {self.learning_rate}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"--max-grad-norm must be > 0, not {self.max_grad_norm}")
        if self.beta < 0:
            raise ValueError(f"--beta must be >= 0, not {self.beta}")
        if self.judge not in ("exact", "f1", "contains", "llm"):
            raise ValueError(f"--judge must be exact, f1, contains or llm, not {self.judge!r}")
        if self.judge == "llm" and not self.judge_model:
            raise ValueError("--judge llm needs --judge-model in training: a policy grading itself "
                             "rewards its own mistakes")
        if self.judge_model and self.judge != "llm":
            raise ValueError(f"--judge-model is only used by --judge llm, not --judge {self.judge}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"--eval-every must be at least 1, not {self.eval_every}")
        if self.eval_questions < 1:
            raise ValueError(f"--eval-questions must be at least 1, not {self.eval_questions}")
        if self.eval_every is not None and self.split != "train":
            raise ValueError(f"--eval-every evaluates on the held-out test split: train on --split train, "
                             f"not {self.split}")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"--save-every must be at least 1, not {self.save_every}")
        from core.scoring.rewards import BUILTIN_REWARDS, load_user_rewards

        names = list(BUILTIN_REWARDS) + [r.name for r in load_user_rewards(self.extra_rewards)]
        unknown = [name for name in self.reward_weights if name not in names]
        if unknown:
            raise ValueError(f"unknown reward {unknown[0]!r} in --reward-weights (rewards: {', '.join(names)})")
        if self.lora_r is not None or self.lora_alpha is not None:
            if importlib.util.find_spec("peft") is None:
                raise ValueError("--lora-r/--lora-alpha need peft, which is not installed "
                                 "(pip install 'rl-inspect[lora]')")
            if self.lora_r is None or self.lora_r < 1:
                raise ValueError("--lora-r must be given and at least 1 with --lora-alpha")
        for label, path in (("corpus", self.corpus), ("questions", self.questions)):
            if path is not None and not Path(path).exists():
                raise InputError(path, f"no such {label} file or folder")


def process_ranks() -> tuple[int, int]:
    """(rank, world size) of this process: RANK and WORLD_SIZE as `accelerate launch` and torchrun
    set them; (0, 1) without them. ValueError for values that are not such numbers."""
    raw_world, raw_rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    try:
        world, rank = int(raw_world), int(raw_rank)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={raw_world!r} / RANK={raw_rank!r} in the environment are not process "
                         "numbers") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} of WORLD_SIZE={world} in the environment is no process of the job")
    return rank, world


def check_ranks(config: TrainConfig, world: int, resume: bool = False) -> None:
    """Refuse a multi-process layout that cannot train whole GRPO groups (ValueError, one line).

    TRL hands rank r the r-th consecutive slice of every generation batch (grpo_trainer.py,
    `process_slice`) and normalises rewards over consecutive blocks of num_generations of the
    gathered batch, so a rank's share must be whole groups: questions_per_step a multiple of the
    world size, and the per-device batch (--batch-size, else the rank's whole share) a multiple
    of num_generations that divides the share. Resuming runs as one process for now."""
    if world == 1:
        return
    if resume:
        raise ValueError(f"--resume runs as one process, not {world} (WORLD_SIZE={world}): resume each rank's "
                         "database alone is not supported; start a new run")
    if config.questions_per_step % world:
        raise ValueError(f"--questions-per-step {config.questions_per_step} is not a multiple of the {world} "
                         "processes: each rank trains on whole GRPO groups")
    share = config.questions_per_step // world * config.num_generations
    per_device = config.batch_size or share
    if share % per_device or per_device % config.num_generations:
        raise ValueError(f"--batch-size {per_device} must divide each rank's {share} samples and be a multiple of "
                         f"--num-generations {config.num_generations} under {world} processes")


def rank_database(db: str | Path, rank: int) -> Path:
    """Where rank `rank` of a multi-process training writes: `<stem>.rank<rank><suffix>` beside
    `db` (runs.db -> runs.rank0.db); `rl-inspect merge db runs.rank*.db` joins them into one run."""
    db = Path(db)
    return db.with_name(f"{db.stem}.rank{rank}{db.suffix}")


def load_train_inputs(config: TrainConfig):
    """Validate `config` and read its corpus and questions (core.evaluate.EvalInputs), refusing a
    split with fewer questions than one step needs; raises ValueError / InputError, writes nothing."""
    from core.evaluate import load_inputs

    config.validate()
    check_ranks(config, process_ranks()[1])
    inputs = load_inputs(config.eval_config())
    if config.eval_every:
        load_inputs(config.held_out_config())  # an empty test split is refused now, not at step N
    if len(inputs.questions) < config.questions_per_step:
        raise ValueError(f"--questions-per-step {config.questions_per_step} but the {config.split!r} split "
                         f"has only {len(inputs.questions)} questions")
    return inputs
