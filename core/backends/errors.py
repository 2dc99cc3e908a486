"""Errors a backend raises before it generates anything."""

from __future__ import annotations

from core.models import ModelError


class MissingExtraError(ModelError, ValueError):
    """A backend whose optional dependency is not installed (or too old).

    A ModelError, so callers that catch model failures catch it, and a ValueError, so
    `rl-inspect` exits 2 ("bad input": the option asked for something this install cannot do,
    as the issue asks) through its existing ValueError handler (inspector/cli.py `main`).
    The message is one line ending with the exact command that fixes it.
    """


def missing_extra(option: str, package: str, extra: str, detail: str = "") -> MissingExtraError:
    """The error for the command-line `option` that needs `package` (e.g. "--backend vllm",
    "--use-vllm"): one line naming what to install, e.g. "--backend vllm needs the package vllm,
    which is not installed: pip install 'rl-inspect[vllm]'"."""
    why = detail or "which is not installed"
    return MissingExtraError(f"{option} needs the package {package}, {why}: "
                             f"pip install 'rl-inspect[{extra}]'")
