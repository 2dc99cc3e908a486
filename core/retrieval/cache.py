"""On-disk index cache: one folder per corpus content and retriever settings, written atomically.

Why: embedding a corpus takes minutes and the TUI, eval and train processes all need the same
index. Keyed by the corpus fingerprint and the settings, a folder is never stale; written to a
temporary folder and renamed into place, it is never half-written; read with json and
np.load(allow_pickle=False) only, a cache file can never run code. A folder that fails to load
for any reason is deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from core.paths import cache_dir

INDEX_FORMAT = 1
"""Bumped when the layout of cached indexes changes, so old folders are simply not found."""

MANIFEST = "manifest.json"

T = TypeVar("T")


def index_folder(kind: str, fingerprint: str, params: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The folder an index of this kind, corpus and settings lives in, and the manifest it must hold."""
    manifest = {"format": INDEX_FORMAT, "kind": kind, "fingerprint": fingerprint, "params": dict(params)}
    key = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "indexes" / f"{kind}-{key}", manifest


def load_or_build(folder: Path, manifest: dict[str, Any], load: Callable[[Path], T],
                  build: Callable[[], T], save: Callable[[T, Path], None]) -> tuple[T, bool]:
    """The cached index in folder if it loads, else a freshly built one (then cached).

    Returns (index, loaded_from_cache). load must raise on anything it does not trust. A cache
    that cannot be written (read-only disk, full disk) is logged and the index still returned.
    """
    if folder.is_dir():
        try:
            stored = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            if stored != manifest:
                raise ValueError("manifest does not match")
            index = load(folder)
            logger.debug("loaded {} index from {}", manifest["kind"], folder)
            return index, True
        except Exception as exc:  # any unreadable cache is rebuilt, never trusted
            logger.debug("index cache {} unusable ({}: {}); rebuilding", folder, type(exc).__name__, exc)
            shutil.rmtree(folder, ignore_errors=True)
    index = build()
    try:
        _write_atomically(folder, manifest, lambda tmp: save(index, tmp))
    except OSError as exc:
        logger.debug("could not cache {} index at {}: {}", manifest["kind"], folder, exc)
    return index, False


def _write_atomically(folder: Path, manifest: dict[str, Any], write: Callable[[Path], None]) -> None:
    """Fill a temporary sibling folder, manifest last, then rename it to folder.

    If another process finished the same index first, its folder is kept and ours discarded:
    both hold the same content, since the folder name is a hash of it.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / MANIFEST).is_file():
                raise
            logger.debug("index {} was written by another process meanwhile", folder)
        else:
            logger.debug("cached {} index at {}", manifest["kind"], folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
