"""GRPO training through TRL's GRPOTrainer with this project's agent loop as `rollout_func`.

    from core.train import TrainConfig, train
    summary = train(TrainConfig(steps=2), "runs.db")

Every step is stored: each trajectory with its step, group, sample and the advantage TRL
computed, and the step's metrics (core.train.trainer).
"""

from core.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def train(config, db, progress=None, resume_run=None):
    """Run `rl-inspect train`; see core.train.trainer.train (imported lazily: torch and TRL are slow to import)."""
    from core.train.trainer import train as _train

    return _train(config, db, progress, resume_run=resume_run)
