"""Logging to a file through loguru: the terminal belongs to the progress line or the TUI."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from loguru import logger

from core.paths import cache_dir

_current: Path | None = None


def log_to_file(prefix: str, folder: str | Path | None = None) -> Path:
    """Send every log record (DEBUG and up) to a new file, and nothing to stderr.

    The folder is RL_INSPECT_LOG_DIR, else <cache>/logs. Returns the file's path.
    """
    global _current
    folder = Path(folder or os.environ.get("RL_INSPECT_LOG_DIR") or cache_dir() / "logs")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    logger.remove()
    logger.add(path, level="DEBUG", format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level} | {name}:{line} | {message}",
               enqueue=False)
    _current = path
    return path


def log_nowhere() -> None:
    """Remove every loguru sink, loguru's default stderr one included: until `log_to_file`,
    records are dropped. The command line calls this first, so no log reaches the terminal."""
    global _current
    logger.remove()
    _current = None


def current_log() -> Path | None:
    """The file `log_to_file` opened last in this process, if any."""
    return _current
