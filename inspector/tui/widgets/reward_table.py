"""Every reward of a trajectory: weight, value and why (the judge's reply, the hit turn, ...)."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Static

from core.records import RewardResult
from inspector.tui.text import visible

_WHY = {"correctness": ("reply", "verdict"), "formatting": ("tool_errors",), "retry_behavior": ("tool_calls",),
        "chunk_hit": ("hit_turn",)}


def detail_summary(reward: RewardResult) -> str:
    """The one or two detail fields that explain a reward, else its whole detail as JSON."""
    keys = [k for k in _WHY.get(reward.name, ()) if k in reward.detail]
    if reward.name == "correctness" and "judge" in reward.detail:
        keys = ["judge", *keys]
    if keys:
        return "; ".join(f"{k}: {json.dumps(reward.detail[k], ensure_ascii=False)}" for k in keys)
    return json.dumps(reward.detail, ensure_ascii=False, default=str) if reward.detail else ""


class RewardTable(Static):
    """A small table of rewards with the weighted total."""

    def show(self, rewards: list[RewardResult], total: float | None) -> None:
        text = Text("Rewards\n", style="bold")
        for r in rewards:
            text.append(f"{r.name:<15}", style="bold")
            text.append(f"{r.value:>7.3f}", style="green" if r.value > 0 else "red")
            text.append(f"  ×{r.weight:g}\n", style="dim")
            why = detail_summary(r)
            if why:
                text.append(f"  {visible(why)}\n", style="italic")
        text.append("total          ", style="bold")
        text.append("–" if total is None else f"{total:>7.3f}", style="bold")
        self.update(text)
