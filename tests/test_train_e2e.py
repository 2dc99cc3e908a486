"""`rl-inspect train` end to end on the embedded default (CPU, 2 steps of 2 questions x 2
generations, tiny token limits), and what it stored."""

from __future__ import annotations

import json
import math

import pytest

from core.store import Store
from inspector.cli import main
from tests.test_train_resume import assert_trainer_logprobs_match_the_rollout

pytestmark = pytest.mark.slow


def test_two_steps_store_every_trajectory_with_group_advantage_and_step_metrics(tmp_path, capsys):
    db = tmp_path / "runs.db"
    code = main(["train", "--db", str(db), "--steps", "2", "--questions-per-step", "2", "--num-generations", "2",
                 "--max-new-tokens", "24", "--max-tokens-per-turn", "16", "--max-generations", "2",
                 "--demo-chunks", "20", "--json", "--name", "e2e"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps"] == 2 and summary["trajectories"] == 8
    assert "step 1/2" in err and "step 2/2" in err and "ETA" in err
    with Store.open_readonly(db) as store:
        run = store.run(summary["run_id"])
        assert run["kind"] == "train" and run["status"] == "done" and run["name"] == "e2e"
        rows = store.conn.execute(
            "SELECT id, step, group_id, sample, qidx, reward, advantage FROM trajectories WHERE run_id=?"
            " ORDER BY id", (run["id"],)).fetchall()
        assert len(rows) == 8
        assert sorted({r[1] for r in rows}) == [1, 2]
        groups: dict[int, list] = {}
        for tid, step, group, sample, qidx, reward, advantage in rows:
            groups.setdefault(group, []).append((step, sample, qidx, reward, advantage))
            tokens = store.tokens(tid)
            assert tokens is not None and len(tokens.mask) == len(tokens.ids) > tokens.prompt_len
            assert sum(tokens.mask) > 0 and not any(tokens.mask[: tokens.prompt_len])
            assert all(math.isnan(lp) != bool(m) for lp, m in zip(tokens.logprobs, tokens.mask))
            assert advantage is not None and math.isfinite(advantage)
            assert {r.name for r in store.rewards(tid)} >= {"correctness", "formatting", "retry_behavior"}
        assert len(groups) == 4  # one per question per step
        for members in groups.values():
            assert len(members) == 2 and len({m[0] for m in members}) == 1 and len({m[2] for m in members}) == 1
            assert sorted(m[1] for m in members) == [0, 1]
            # TRL's advantage is the reward minus the group's mean (scaled): it sums to 0 in a group
            # and orders the samples as their rewards do, which checks the stored order too.
            assert abs(sum(m[4] for m in members)) < 1e-4
            (_, _, _, r0, a0), (_, _, _, r1, a1) = members
            if abs(r0 - r1) > 1e-5:  # TRL scores in float32: nearer rewards may tie there
                assert (r0 - r1) * (a0 - a1) > 0
            if r0 == r1:
                assert abs(a0 - a1) < 1e-6
        steps = store.train_steps(run["id"])
        assert [s["step"] for s in steps] == [1, 2]
        for s in steps:
            for key in ("loss", "grad_norm", "learning_rate", "reward", "reward_std", "entropy",
                        "rewards/formatting/mean", "completions/mean_length", "step_seconds", "rollout_seconds",
                        "store_seconds", "frac_reward_zero_std"):
                assert key in s and math.isfinite(s[key]), key
        assert_trainer_logprobs_match_the_rollout(store, run["id"], tolerance=1e-2)
