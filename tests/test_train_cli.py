"""`rl-inspect train` refuses bad configurations before any model loads: one line, exit 2."""

from __future__ import annotations

import importlib.util

import pytest

from inspector.cli import EXIT_BAD_INPUT, main


@pytest.fixture(autouse=True)
def _no_model(tmp_path, monkeypatch):
    monkeypatch.setenv("RL_INSPECT_CACHE", str(tmp_path / "cache"))

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded for a configuration that should have been refused")

    import core.train
    import core.train.trainer  # imported before patching: its `from core.models import ...` must
    # bind the real loaders, or the trap would stay in it for every later test of the session

    monkeypatch.setattr(core.train, "train", refuse)
    monkeypatch.setattr("core.models.load_causal_lm", refuse)
    monkeypatch.setattr("core.models.embedded_model_dir", refuse)
    monkeypatch.setattr(core.train.trainer, "load_causal_lm", refuse)


REFUSED = {
    "batch not dividing questions x generations": (["--questions-per-step", "2", "--num-generations", "4",
                                                    "--batch-size", "3"], "does not divide"),
    "one generation per question": (["--num-generations", "1"], "--num-generations"),
    "missing corpus": (["--corpus", "/nonexistent/corpus.md", "--questions", "q.jsonl"], "no such corpus"),
    "missing questions": (["--questions", "/nonexistent/q.jsonl"], "no such questions"),
    "greedy sampling": (["--temperature", "0"], "--temperature"),
    "zero steps": (["--steps", "0"], "--steps"),
    "more questions per step than questions": (["--demo-chunks", "3", "--questions-per-step", "50"],
                                               "questions-per-step"),
    "database in a missing folder": (["--db", "/nonexistent/dir/runs.db"], "no folder"),
    "bad reward weights": (["--reward-weights", "speed=2"], "speed"),
    "held-out evals of a split that holds nothing out": (["--eval-every", "1", "--split", "all"], "--split train"),
    "the policy judging itself": (["--judge", "llm"], "--judge-model"),
    "a judge model no judge asks": (["--judge-model", "some/model"], "--judge llm"),
}


@pytest.mark.parametrize("argv,needle", list(REFUSED.values()), ids=list(REFUSED))
def test_refused_with_one_line_and_exit_2(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--db" not in argv:
        argv = [*argv, "--db", str(tmp_path / "runs.db")]
    assert main(["train", *argv]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rl-inspect: ") and needle in lines[0], lines[0]
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.skipif(importlib.util.find_spec("peft") is not None, reason="peft is installed here")
def test_lora_without_peft_is_refused(tmp_path, capsys):
    assert main(["train", "--lora-r", "8", "--lora-alpha", "16", "--db", str(tmp_path / "runs.db")]) == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "peft" in lines[0]


def test_progress_line_names_step_reward_loss_kl_time_and_eta():
    from core.train.trainer import StepProgress
    from inspector.cli import _train_progress_line

    line = _train_progress_line(StepProgress(1, 2, 4, {"reward": 0.5, "loss": 0.01, "step_seconds": 20.0}, 40.0))
    # A run resumed after step 3 has trained 2 steps in 20 s when it reports step 5 of 6.
    assert StepProgress(1, 5, 6, {}, 20.0, first_step=4).eta == pytest.approx(10.0)
    assert line == "step 2/4  reward 0.500  loss 0.0100  kl –  20.0 s/step  ETA 0m40s"


RANK_REFUSED = {
    "questions not split evenly across ranks": ({"WORLD_SIZE": "2", "RANK": "1"}, ["--questions-per-step", "3"],
                                                "not a multiple of the 2 processes"),
    "a per-device batch cutting a group": ({"WORLD_SIZE": "2"}, ["--questions-per-step", "2", "--num-generations",
                                                                 "4", "--batch-size", "2"], "multiple of"),
    "a rank outside the job": ({"WORLD_SIZE": "2", "RANK": "2"}, [], "no process of the job"),
    "a world size that is no number": ({"WORLD_SIZE": "two"}, [], "WORLD_SIZE='two'"),
    "resume across ranks": ({"WORLD_SIZE": "2"}, ["--resume", "1"], "--resume runs as one process"),
}


@pytest.mark.parametrize("env,argv,needle", list(RANK_REFUSED.values()), ids=list(RANK_REFUSED))
def test_a_multi_process_layout_that_splits_groups_is_refused(env, argv, needle, tmp_path, capsys, monkeypatch):
    # TRL gives each rank a consecutive slice of the generation batch: a rank must hold whole groups.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if "--resume" in argv:  # a run to resume, so the refusal is the ranks' and not a missing run
        monkeypatch.setattr("core.train.trainer.resume_config", lambda db, run: __import__(
            "core.train.config", fromlist=["TrainConfig"]).TrainConfig())
    assert main(["train", "--db", str(tmp_path / "runs.db"), *argv]) == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not list(tmp_path.glob("*.db"))


def test_ranks_write_their_own_database_and_take_an_even_share_of_each_step(monkeypatch):
    from core.train.config import TrainConfig, check_ranks, process_ranks, rank_database
    from core.train.trainer import grpo_config, train_job_id

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert process_ranks() == (3, 4)
    assert rank_database("/data/runs.db", 3).as_posix() == "/data/runs.rank3.db"
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert process_ranks() == (0, 1)
    config = TrainConfig(questions_per_step=4, num_generations=2)
    check_ranks(config, 4)
    # GRPOConfig itself would start a process group under WORLD_SIZE=4: built here as one process.
    args = grpo_config(config, "/tmp/out", "cpu", world=4)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 1)
    assert train_job_id(config) == train_job_id(TrainConfig(questions_per_step=4, num_generations=2))
