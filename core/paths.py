"""Where rl-inspect keeps files it can rebuild: converted models, retrieval indexes, logs.

One function, read at call time (not import time), so tests and users can point the cache
elsewhere with RL_INSPECT_CACHE without reloading anything.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "RL_INSPECT_CACHE"
"""Environment variable that overrides the cache folder."""


def cache_dir() -> Path:
    """The cache folder: $RL_INSPECT_CACHE if set, else ~/.cache/rl-inspect; created on demand.

    Everything under it is derived data: deleting the folder costs time, never results.
    """
    override = os.environ.get(CACHE_ENV)
    folder = Path(override).expanduser() if override else Path.home() / ".cache" / "rl-inspect"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
