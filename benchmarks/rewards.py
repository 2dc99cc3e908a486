"""A reward the embedded 135M model can move, for benchmarks/learning_curve.py.

`tool_call_format` grades the first assistant message of a trajectory as a search call, in three
steps, after the format reward measured in /work/shared/notes/trl-grpo-on-this-machine.md:
0.2 for naming search_corpus, +0.2 for a reply that is nothing but something shaped like a JSON
object (starts with "{"), +0.2 when it parses as one, +0.4 for exactly
{"name": "search_corpus", "parameters": {"query": <non-empty string>}} and nothing else. The
"starts with {" step is ours: on the agent loop's prompt the 135M model's base rate on the
notes' three steps was 0.03-0.11, too few groups with any spread for GRPO to learn from. It is
a user reward function (`--reward benchmarks.rewards:tool_call_format`), the same interface
`rl-inspect eval --reward` takes: (messages as dicts, question as a dict) -> (value, detail).
"""

from __future__ import annotations

import json
from typing import Any

from core.rollout.toolcalls import strip_reasoning


def tool_call_format(messages: list[dict[str, Any]], question: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """0.0 to 1.0 for the first assistant message (see the module docstring); detail names the steps met."""
    first = next((m for m in messages if m["role"] == "assistant"), None)
    text = strip_reasoning(first["content"] or "").strip() if first else ""
    met = []
    value = 0.0
    if "search_corpus" in text:
        value, met = 0.2, ["names search_corpus"]
    if text.startswith("{"):
        value += 0.2
        met.append("starts as an object")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        obj = None
    if isinstance(obj, dict):
        value += 0.2
        met.append("JSON object")
        params = obj.get("parameters")
        if (set(obj) == {"name", "parameters"} and obj["name"] == "search_corpus" and isinstance(params, dict)
                and set(params) == {"query"} and isinstance(params["query"], str) and params["query"].strip()):
            value += 0.4
            met.append("exact search call")
    return round(value, 6), {"met": met}
