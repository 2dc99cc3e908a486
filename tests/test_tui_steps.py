"""A train run opens on its steps: curves and the step table; a step opens its trajectories in
group order, a group its samples, a sample its tokens coloured by advantage."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Sparkline

from core.store import Store
from core.store.queries import StepRow, train_step_rows
from inspector.tui.app import create_app
from inspector.tui.screens.group import GroupScreen
from inspector.tui.screens.runs import RunsScreen
from inspector.tui.screens.steps import StepsScreen, columns, curve_keys, curve_label, metric
from inspector.tui.screens.trajectories import TrajectoriesScreen
from inspector.tui.screens.trajectory import TrajectoryScreen
from inspector.tui.widgets.token_view import TokenView
from tests.tui_fixtures import build, settle

SIZE = (120, 40)


@pytest.fixture
def db(tmp_path):
    return build(tmp_path / "steps.db")


def _app(db, **kw):
    return create_app(db, refresh_seconds=0, **kw)


async def _wait_loaded(pilot) -> None:
    for _ in range(100):
        await settle(pilot)
        if getattr(pilot.app.screen, "loaded", True) and getattr(pilot.app.screen, "shown", True) is not None:
            return
        await pilot.pause(0.05)


def test_step_rows_carry_metrics_and_the_linked_eval(db):
    with Store.open(db) as store:
        train = next(r["id"] for r in store.runs() if r["kind"] == "train")
        linked = store.create_run("eval", "held-out", "m", {}, n_planned=2, parent_run_id=train, train_step=2)
        store.conn.execute("UPDATE runs SET n_correct=1, n_judged=2, n_done=2, reward_sum=1.5 WHERE id=?", (linked,))
        rows = train_step_rows(store, train)
    assert [r.step for r in rows] == [1, 2]
    assert rows[0].metrics["reward"] == 0.35 and rows[0].eval_run_id is None and rows[0].get("eval_accuracy") is None
    assert (rows[1].eval_run_id, rows[1].get("eval_accuracy"), rows[1].get("eval_reward")) == (linked, 0.5, 0.75)
    assert metric(rows[0], "ours") == pytest.approx(100 * 0.05 / 61.0)
    keys = [k for k, _ in curve_keys(rows)]
    assert keys[:3] == ["reward", "rewards/correctness/mean", "rewards/formatting/mean"]
    assert {"eval_accuracy", "eval_reward"} <= set(keys) and "kl" not in keys  # beta 0: TRL logs no KL
    # The eval columns show when some step has the figure: both here, neither without a linked eval.
    assert {"eval_accuracy", "eval_reward"} <= {k for k, _, _ in columns(rows)}
    assert not {"eval_accuracy", "eval_reward"} & {k for k, _, _ in columns(rows[:1])}
    unjudged = [StepRow(2, {}, linked, None, 0.75)]
    assert [k for k, _, _ in columns(unjudged)][:3] == ["step", "reward", "reward_std"]
    assert "eval_reward" in {k for k, _, _ in columns(unjudged)} - {k for k, _, _ in columns(rows[:1])}
    assert "eval_accuracy" not in {k for k, _, _ in columns(unjudged)}


def test_curve_label_gives_first_and_last_value_and_is_literal():
    text = curve_label("[bold]x[/]", [None, 0.25, 0.5, None, 0.75])
    assert text.plain.startswith("[bold]x[/]") and "0.25 → 0.75" in text.plain
    assert curve_label("loss", [None]).plain.endswith("–")
    assert metric(StepRow(3, {"loss": float("nan")}), "loss") is None
    # Ours: the rollout minus the model's generate, plus storage, as a share of the step.
    row = StepRow(4, {"step_seconds": 50.0, "rollout_seconds": 20.0, "generate_seconds": 18.0, "store_seconds": 0.5})
    assert row.ours_seconds == pytest.approx(2.5) and metric(row, "ours") == pytest.approx(5.0)


async def test_train_run_opens_on_steps_and_a_step_opens_its_groups_down_to_the_advantage(db):
    app = _app(db)
    async with app.run_test(size=SIZE) as pilot:
        await _wait_loaded(pilot)
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("enter")  # the train run is the newest: first row
        await _wait_loaded(pilot)
        steps = app.screen
        assert isinstance(steps, StepsScreen)
        table = steps.query_one("#steps-table", DataTable)
        assert table.row_count == 2
        first = [str(c) for c in table.get_row_at(0)]
        assert first[:5] == ["1", "0.350", "0.500", "0.00", "0.0210"]  # no eval columns: no eval linked
        sparks = list(steps.query(Sparkline))
        assert len(sparks) == len(curve_keys(steps.rows)) and list(sparks[0].data) == [0.35, 0.55]
        run_line = str(steps.query_one("#run-line").render())
        assert "grpo-demo" in run_line and "2 steps" in run_line
        await pilot.press("enter")  # step 1
        await _wait_loaded(pilot)
        listing = app.screen
        assert isinstance(listing, TrajectoriesScreen)
        assert listing.query_state.filter.step == 1 and listing.query_state.sort == "group_id"
        assert [r.group_id for r in listing.rows] == sorted(r.group_id for r in listing.rows)
        assert "step=1" in str(listing.query_one("#filter-line").render())
        await pilot.press("g")
        await _wait_loaded(pilot)
        assert isinstance(app.screen, GroupScreen)
        await pilot.press("enter")
        await _wait_loaded(pilot)
        traj = app.screen
        assert isinstance(traj, TrajectoryScreen)
        await pilot.press("t")
        await _wait_loaded(pilot)
        view = traj.query_one(TokenView)
        for _ in range(50):
            if view._data is not None:
                break
            await pilot.pause(0.05)
        assert view.advantage in (1.0, -1.0) and "advantage" in view.modes()
        while view.mode != "advantage":
            await pilot.press("l")
        await settle(pilot)
        assert f"advantage {view.advantage:+.3f} on every trained token" in view.render_line(1).text
        for _ in range(3):
            await pilot.press("escape")
            await _wait_loaded(pilot)
        assert app.screen is steps
        await pilot.press("a")
        await _wait_loaded(pilot)
        assert isinstance(app.screen, TrajectoriesScreen) and app.screen.query_state.filter.step is None


async def test_view_run_option_opens_a_train_run_on_its_steps(db):
    app = _app(db, open_run=2)
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait_loaded(pilot)
        assert isinstance(app.screen, StepsScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
