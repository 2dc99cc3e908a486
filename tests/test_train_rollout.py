"""The rollout adapter TRL calls (core.train.rollout) and the reward adapters (core.train.rewards),
with a scripted backend: one completion per received prompt in order, groups, exact masks."""

from __future__ import annotations

import math

import pytest

from core.rollout.agent import Agent, AgentConfig
from core.scoring.judges import build_judge
from core.data.records import Question
from core.scoring.rewards import RewardInput, RewardSuite, retry_value
from core.train.rewards import ScoreCache, trl_reward_functions
from core.train.rollout import AgentRollout
from tests.local_tokenizers import chatml_tokenizer
from tests.scripted_backend import ScriptedBackend

CALL = '{"name": "search_corpus", "parameters": {"query": "%s"}}'

QUESTIONS = [Question("a", "What colour is the sky?", "blue", chunk_content="The sky is blue."),
             Question("b", "What colour is grass?", "green"),
             Question("c", "Unused question?", "none")]


def _script(prompt: str, turn: int) -> str:
    if turn == 1:
        return CALL % "colour"
    return "blue" if "sky" in prompt else "red"


def _rollout():
    tok = chatml_tokenizer()
    backends = []

    def make_agent(trainer):
        backend = ScriptedBackend(tok, _script)
        backends.append(backend)
        return Agent(backend, lambda q, k: "The sky is blue.", AgentConfig(max_generations=3))

    return AgentRollout(QUESTIONS, make_agent), backends


def test_one_completion_per_received_prompt_in_order_grouped_by_question():
    rollout, _ = _rollout()
    # As TRL 1.16 sends them: already repeated num_generations (here 3) times, interleaved.
    prompts = [QUESTIONS[1].question, QUESTIONS[0].question, QUESTIONS[1].question,
               QUESTIONS[0].question, QUESTIONS[0].question, QUESTIONS[1].question]
    out = rollout(prompts, trainer=None)
    assert set(out) == {"prompt_ids", "completion_ids", "logprobs", "env_mask", "trajectory"}
    assert all(len(v) == len(prompts) for v in out.values())
    assert [t.question.question for t in out["trajectory"]] == prompts
    batch = rollout.batches[-1]
    assert batch.group == [0, 1, 0, 1, 1, 0]
    assert batch.sample == [0, 0, 1, 1, 2, 2]
    assert [t.qidx for t in batch.trajectories] == [1, 0, 1, 0, 0, 1]


def test_groups_are_trls_blocks_of_num_generations():
    rollout, _ = _rollout()
    rollout.num_generations = 2
    prompts = [QUESTIONS[1].question] * 2 + [QUESTIONS[0].question] * 2
    out = rollout(prompts, trainer=None)
    assert [t.qidx for t in out["trajectory"]] == [1, 1, 0, 0]
    assert rollout.batches[-1].group == [0, 0, 1, 1] and rollout.batches[-1].sample == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="not one question repeated"):
        rollout([QUESTIONS[1].question, QUESTIONS[0].question] * 2, trainer=None)
    with pytest.raises(ValueError, match="not a multiple"):
        rollout([QUESTIONS[1].question] * 3, trainer=None)


def test_ids_mask_and_logprobs_are_the_trajectory_exactly():
    rollout, backends = _rollout()
    out = rollout([QUESTIONS[0].question, QUESTIONS[0].question], trainer=None)
    backend = backends[-1]
    for i, traj in enumerate(out["trajectory"]):
        t = traj.tokens
        assert out["prompt_ids"][i] == t.ids[: t.prompt_len]
        assert out["prompt_ids"][i] + out["completion_ids"][i] == t.ids
        assert out["env_mask"][i] == t.mask[t.prompt_len:]
        # Mask 1 exactly on the ids the backend generated, in order.
        completion, mask = out["completion_ids"][i], out["env_mask"][i]
        generated = [c for c, m in zip(completion, mask) if m]
        assert generated == [x for g in backend.generated[i::2] for x in g]
        assert 0 in mask  # the tool result and scaffolding are there, untrained
        for lp, m in zip(out["logprobs"][i], mask):
            assert (lp == backend.logprob) if m else math.isnan(lp)
        assert len(out["logprobs"][i]) == len(completion)


def test_reward_adapters_give_the_suites_values_and_weights():
    rollout, _ = _rollout()
    out = rollout([QUESTIONS[0].question, QUESTIONS[1].question], trainer=None)
    suite = RewardSuite(build_judge("contains"), {"formatting": 0.5})
    cache = ScoreCache(suite)
    funcs, weights = trl_reward_functions(cache)
    assert [f.__name__ for f in funcs] == suite.names
    assert weights == [suite.weight(n) for n in suite.names]
    columns = {f.__name__: f(prompts=[], completions=[], completion_ids=[], trajectory=out["trajectory"])
               for f in funcs}
    assert columns["correctness"] == [1.0, 0.0]  # "blue" for the sky, "red" for the grass
    assert columns["chunk_hit"] == [1.0, None]  # no gold chunk: not applicable (TRL: NaN)
    from core.evaluate import _answer

    expected = suite.score([RewardInput(t.question, t.messages, _answer(t)) for t in out["trajectory"]])
    for j, results in enumerate(expected):
        for r in results:
            assert columns[r.name][j] == r.value


def test_empty_completion_gets_one_untrained_eos():
    from core.rollout.agent import Trajectory
    from core.rollout.tokens import TokenSequence
    from core.train.rollout import rollout_output

    tokens = TokenSequence()
    tokens.add_prompt([5, 6, 7])
    traj = Trajectory(QUESTIONS[0], [], tokens, finish_reason="context_length")
    out = rollout_output([traj], eos_id=2)
    assert out["completion_ids"] == [[2]] and out["env_mask"] == [[0]] and math.isnan(out["logprobs"][0][0])


def test_recorder_stores_each_sample_with_its_step_group_sample_and_advantage(tmp_path):
    import torch

    from core.store import Store
    from core.train.store import StepRecorder

    rollout, _ = _rollout()
    cache = ScoreCache(RewardSuite(build_judge("contains")))
    with Store.open(tmp_path / "runs.db") as store:
        run_id = store.create_run("train", "t", "scripted", {})
        store.add_questions(run_id, QUESTIONS)
        recorder = StepRecorder(store, run_id, rollout, cache, steps=2)
        for step, prompts in ((1, [QUESTIONS[1].question, QUESTIONS[0].question] * 2),
                              (2, [QUESTIONS[0].question] * 2)):
            rollout(prompts, trainer=None)
            advantages = torch.arange(len(prompts), dtype=torch.float32) / 10
            recorder.store_batch(step, advantages)
        rows = store.conn.execute("SELECT step, group_id, sample, qidx, advantage, reward FROM trajectories"
                                  " WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
        assert [r[:4] for r in rows] == [(1, 0, 0, 1), (1, 1, 0, 0), (1, 0, 1, 1), (1, 1, 1, 0),
                                         (2, 2, 0, 0), (2, 2, 1, 0)]
        assert [round(r[4], 6) for r in rows] == [0.0, 0.1, 0.2, 0.3, 0.0, 0.1]
        # The sky question (qidx 0) is answered right and its search hits the gold chunk.
        assert [r[5] for r in rows if r[3] == 0] == pytest.approx([1.0 + 0.7 + 1.0 + retry_value(1)] * 4)
        assert [r[5] for r in rows if r[3] == 1] == pytest.approx([0.7 + retry_value(1)] * 2)
        assert store.run(run_id)["n_done"] == 6
        assert recorder.timing[1]["rollout_seconds"] > 0 and not rollout.batches and not cache.results


def test_llm_judge_is_a_model_apart_from_the_policy():
    from core.train.config import TrainConfig
    from core.train.trainer import reward_suite

    tok = chatml_tokenizer()

    def verdict(prompt: str, turn: int) -> str:
        fields = dict(line.split(": ", 1) for line in prompt.splitlines() if ": " in line)
        return "Yes" if fields.get("Reference answer") == fields.get("Given answer") else "No"

    judge = ScriptedBackend(tok, verdict)
    suite = reward_suite(TrainConfig(judge="llm", judge_model="judge-folder"), lambda: judge)
    rollout, backends = _rollout()
    out = rollout([QUESTIONS[0].question, QUESTIONS[1].question], trainer=None)
    funcs, _ = trl_reward_functions(ScoreCache(suite))
    correctness = next(f for f in funcs if f.__name__ == "correctness")
    assert correctness(trajectory=out["trajectory"]) == [1.0, 0.0]
    assert judge.calls == [2] and all(judge is not b for b in backends)
    assert reward_suite(TrainConfig(), lambda: pytest.fail("a deterministic judge loads no model")).judge.name \
        == "contains"


def test_ranks_record_global_groups_and_merge_into_one_train_run(tmp_path):
    """Two ranks of one training, as `accelerate launch --num_processes 2` runs them: each stores
    its slice of every step in its own database with the step's global group ids; merge joins
    them into one train run (core.store.merge), its held-out eval keeping its parent."""
    import json

    import torch

    from core.store import Store
    from core.store.merge import merge_databases, shard_name
    from core.train.store import StepRecorder

    world, per_rank = 2, 1  # questions_per_step 2: one question (one group of 2 samples) per rank
    steps = {0: ([QUESTIONS[0].question] * 2, [QUESTIONS[1].question] * 2),
             1: ([QUESTIONS[1].question] * 2, [QUESTIONS[0].question] * 2)}
    paths = []
    for rank in range(world):
        rollout, _ = _rollout()
        rollout.num_generations = 2
        cache = ScoreCache(RewardSuite(build_judge("contains")))
        path = tmp_path / f"runs.rank{rank}.db"
        with Store.open(path) as store:
            run_id = store.create_run("train", shard_name("grpo", rank, world), "scripted",
                                      {"shard": [rank, world], "job": "j1"}, n_planned=4)
            store.add_questions(run_id, QUESTIONS)
            recorder = StepRecorder(store, run_id, rollout, cache, steps=2)
            recorder.group_offset, recorder.groups_per_batch = rank * per_rank, world * per_rank
            for step in (1, 2):
                rollout(steps[rank][step - 1], trainer=None)
                recorder.store_batch(step, torch.tensor([0.5, -0.5]))
                # TRL logs the mean over all ranks: no rank's share can be compared with it.
                store.add_train_step(run_id, step, {"loss": 0.1 * step, "completions/mean_length": 999.0})
            if rank == 0:
                child = store.create_run("eval", "grpo-step2", "scripted", {}, parent_run_id=run_id, train_step=2)
                store.finish_run(child, "done")
            store.finish_run(run_id, "done")
        paths.append(path)
    from core.lint import lint_store

    with Store.open_readonly(paths[1]) as store:
        assert [r[0] for r in store.conn.execute("SELECT group_id FROM trajectories ORDER BY id")] == [1, 1, 3, 3]
        [part] = lint_store(store, 1, tokenizer=None)
        assert "trainer_count_mismatch" not in {f.kind for f in part.findings}
        assert "rank's share" in part.skipped["trainer_count_mismatch"]
    out = tmp_path / "runs.db"
    merge_databases(out, paths)
    with Store.open_readonly(out) as store:
        runs = {r["kind"]: store.run(r["id"]) for r in store.runs()}
        train = runs["train"]
        assert (train["name"], train["status"], train["n_planned"], train["n_done"]) == ("grpo", "done", 8, 8)
        assert json.loads(json.dumps(train["config"]))["shards"] == 2
        assert runs["eval"]["parent_run_id"] == train["id"]
        rows = store.conn.execute("SELECT step, group_id, sample, qidx FROM trajectories WHERE run_id=?"
                                  " ORDER BY step, group_id, sample", (train["id"],)).fetchall()
        assert rows == [(1, 0, 0, 0), (1, 0, 1, 0), (1, 1, 0, 1), (1, 1, 1, 1),
                        (2, 2, 0, 1), (2, 2, 1, 1), (2, 3, 0, 0), (2, 3, 1, 0)]
        assert [s["step"] for s in store.train_steps(train["id"])] == [1, 2]
        [whole] = lint_store(store, train["id"], tokenizer=None)  # merged: compared, and 999 is wrong
        assert [f.step for f in whole.findings if f.kind == "trainer_count_mismatch"] == [1, 2]
    # What `rl-inspect train` does at the end under torchrun: rank 1 names its part, rank 0 merges.
    import argparse

    from inspector.cli import _merge_ranks

    args = argparse.Namespace(db=tmp_path / "runs.db", json=False)
    assert _merge_ranks(args, {"run_id": 1}, 1, world, "log") == 0
    assert _merge_ranks(args, {"run_id": 1}, 0, world, "log", wait_seconds=5) == 0
    with Store.open_readonly(out) as store:
        assert [r["kind"] for r in store.runs()].count("train") == 1  # merged again: nothing doubled
