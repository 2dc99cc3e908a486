"""Every reward of a trajectory: weight, value and why (the judge's reply, the errors, the hit turn).

A Static holding one aligned text table rather than a DataTable: a trajectory has a handful of
rewards and sits in a narrow side panel, where a fourth column for the reason would be a few
characters wide. So each reward is one aligned line (name, weight, value) with its reason folded
on the line below. Everything is `Text`, never markup: the judge's reply is model text, and a user
reward's error is text from user code.

A user reward that raised or returned something unusable (core.scoring.rewards.REWARD_FAILURE) reads
"failed" in place of its value, with its error below: its stored 0.0 is not a score.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from core.data.records import RewardResult
from core.scoring.rewards import is_failure
from inspector.tui.render import reward_rows, reward_total


class RewardsPanel(Static):
    """Rewards of one trajectory with their weighted total."""

    DEFAULT_CSS = """
    RewardsPanel {
        height: auto;
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(Text("no rewards", style="dim italic"), name=name, id=id, classes=classes)
        self.rows: list[tuple[str, str, str, str]] = []
        """What is on show, as reward_rows gave it (tests and copy actions read it)."""
        self.total: float | None = None
        self.failed: list[bool] = []
        """Per row: whether that user reward failed (its value is then no score)."""

    def show(self, rewards: list[RewardResult], total: float | None) -> None:
        """Show the rewards; `total` is the stored total (None: not scored yet, or computed here)."""
        self.rows = reward_rows(rewards)
        self.total = total if total is not None else (reward_total(rewards) if rewards else None)
        self.failed = [is_failure(r.detail) for r in rewards]
        self.update(rewards_text(self.rows, [r.value for r in rewards], self.total, self.failed))


def rewards_text(rows: list[tuple[str, str, str, str]], values: list[float], total: float | None,
                 failed: list[bool] | None = None) -> Text:
    """The table: header, one line per reward with its reason below, then the total.

    `failed[i]` marks row i as a failed user reward: "failed" in place of its value, its reason
    (the error) in red. All arguments are shown as plain text, never parsed as markup.
    """
    failed = failed if failed is not None else [False] * len(rows)
    name_w = max([len("reward"), len("total"), *(len(r[0]) for r in rows)])
    weight_w = max([len("×w"), *(len(r[1]) + 1 for r in rows)])
    value_w = max(len("value"), 7)
    text = Text(overflow="fold")
    text.append("Rewards\n", style="bold")
    text.append(f"{'reward':<{name_w}}  {'×w':>{weight_w}}  {'value':>{value_w}}\n", style="dim")
    if not rows:
        text.append("(none)\n", style="dim italic")
    for (name, weight, value, why), v, bad in zip(rows, values, failed):
        text.append(f"{name:<{name_w}}", style="bold")
        text.append(f"  {'×' + weight:>{weight_w}}  ", style="dim")
        if bad:
            text.append(f"{'failed':>{value_w}}\n", style="bold red reverse")
        else:
            text.append(f"{value:>{value_w}}\n", style="green" if v > 0 else "red")
        if why:
            text.append(f"  {why}\n", style="bold red" if bad else "italic")
    text.append("─" * (name_w + weight_w + value_w + 4) + "\n", style="dim")
    text.append(f"{'total':<{name_w}}  {'':>{weight_w}}  ", style="bold")
    text.append(f"{'–' if total is None else f'{total:.3f}':>{value_w}}", style="bold")
    return text
