"""The mask lint's counts as a run's summary stores them (runs.summary["lint"]), for the run's
closing lines and the runs screen."""

from __future__ import annotations

from typing import Any

from loguru import logger

from core.lint.findings import ERROR, INFO, WARNING
from core.lint.run import lint_run
from core.store import Store


def lint_totals(store: Store, run_id: int) -> dict[str, Any]:
    """Lint run `run_id` (core.lint.lint_run, a local tokenizer when one loads) and count:
    {"errors": int, "warnings": int, "info": int, "kinds": {kind: count}, "seconds": float}.
    Raises StoreError as lint_run does."""
    report = lint_run(store, run_id)
    by_severity = {ERROR: 0, WARNING: 0, INFO: 0}
    for f in report.findings:
        by_severity[f.severity] += 1
    return {"errors": by_severity[ERROR], "warnings": by_severity[WARNING], "info": by_severity[INFO],
            "kinds": report.counts(), "seconds": round(report.seconds, 3)}


def lint_totals_or_none(store: Store, run_id: int) -> dict[str, Any] | None:
    """lint_totals, or None (logged) when the lint itself fails: a run's summary is written as
    it ends, also after a failure, and must not be lost to a fault of the checker."""
    try:
        return lint_totals(store, run_id)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logger.warning("mask lint of run {} failed: {}: {}", run_id, exc.__class__.__name__, exc)
        return None


def lint_line(totals: dict[str, Any] | None, db: str, run_id: int) -> str:
    """One line for a run's closing summary: 'mask lint: clean' or the counts with the command
    that lists them."""
    if not totals:
        return "mask lint: not run"
    if not (totals["errors"] or totals["warnings"] or totals["info"]):
        return "mask lint: clean"
    kinds = ", ".join(f"{k} {n}" for k, n in totals["kinds"].items())
    return (f"mask lint: {totals['errors']} errors, {totals['warnings']} warnings, {totals['info']} info ({kinds});"
            f" rl-inspect lint {db} --run {run_id}")
