"""Fixtures shared by several test modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MAKE_LOGS = Path(__file__).parent / "fixtures" / "inspect" / "make_logs.py"


@pytest.fixture(scope="session")
def logs(tmp_path_factory) -> dict[str, Path]:
    """{"eval": path, "json": path}: genuine Inspect logs written by inspect_ai itself, offline, by
    tests/fixtures/inspect/make_logs.py (in a process of its own with a bare environment; once per
    test session)."""
    out = tmp_path_factory.mktemp("inspect_logs")
    home = tmp_path_factory.mktemp("inspect_home")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CACHE_HOME": str(home / "cache"), "NO_PROXY": "*", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(MAKE_LOGS), str(out)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.suffix[1:]: p for p in map(Path, proc.stdout.split())}
