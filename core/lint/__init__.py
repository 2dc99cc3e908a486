"""Mask lint (issue 15): every stored trajectory checked for the loss-mask faults agentic RL keeps
shipping, fast enough for a million trajectories, with no UI imports.

    from core.lint import lint_run, lint_trajectory
    report = lint_run(store, run_id)          # LintReport: findings, counts(), trajectory_ids(kind)
    findings = lint_trajectory(store, tid)    # one trajectory, for a side panel

Kinds and severities: core.lint.findings.KINDS.
"""

from core.lint.findings import ERROR, INFO, KINDS, WARNING, Finding, Kind, LintReport
from core.lint.run import lint_run, lint_store, lint_trajectory
from core.lint.special import local_tokenizer, special_token_ids

__all__ = ["ERROR", "INFO", "KINDS", "WARNING", "Finding", "Kind", "LintReport", "lint_run", "lint_store",
           "lint_trajectory", "local_tokenizer", "special_token_ids"]
