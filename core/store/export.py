"""One trajectory as a plain JSON-ready record: messages, rewards, tokens and mask.

The TUI copies it to the clipboard; `rl-inspect export` will stream one per line.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from core.store import Store


def trajectory_record(store: Store, trajectory_id: int) -> dict[str, Any]:
    """Everything stored about one trajectory, with token logprobs as null where not generated."""
    row = store.trajectory(trajectory_id)
    tokens = store.tokens(trajectory_id)
    record: dict[str, Any] = dict(row)
    record["messages"] = [
        {
            "turn": m.turn,
            "role": m.role,
            "content": m.content,
            "tool_call": m.tool_call.to_dict() if m.tool_call else None,
            "tool_error": m.tool_error.to_dict() if m.tool_error else None,
            "token_span": [m.token_start, m.token_end] if m.token_start is not None else None,
        }
        for m in store.messages(trajectory_id)
    ]
    record["rewards"] = [asdict(r) for r in store.rewards(trajectory_id)]
    record["tokens"] = None if tokens is None else {
        "prompt_len": tokens.prompt_len,
        "ids": tokens.ids,
        "mask": tokens.mask,
        "logprobs": [None if math.isnan(lp) else lp for lp in tokens.logprobs],
    }
    return record
