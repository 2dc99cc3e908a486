"""`rl-inspect compare` as terminal text: counts, means, then the questions that changed.

Every line fits 80 terminal cells (ids up to six digits, ten million trajectories); every string from the database (run
names, models, question text) goes through `one_line`, so it is shown literally and clipped.
A question's figures take one line and its text the next, indented, so the text gets nearly the
whole width.
"""

from __future__ import annotations

import textwrap

from core.store.compare import Comparison, Mean, QuestionRow, QuestionStats
from inspector.literal import one_line

WIDTH = 80
LABELS = {"gained": "gained", "lost": "lost", "still_right": "still right", "still_wrong": "still wrong",
          "not_judged": "not judged"}
"""How each of core.store.compare.CHANGES is written in the table."""

TABLE_HEADER = (f"{'change':<11} {'correct':^11} {'reward':^11} {'Δrew':>6} {'calls':^9} {'errors':^9} "
                f"trajectory")
"""The column titles over `row_line`'s columns; each pair of figures reads A→B."""


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _mean_line(label: str, m: Mean, fmt: str, delta_fmt: str, scale: float = 1.0, unit: str = "") -> str:
    delta = "" if m.delta is None else f" ({format(m.delta * scale, delta_fmt)}{unit})"
    return f"{label:<12}{_num(m.a, fmt)} → {_num(m.b, fmt)}{delta}"


def _correct(s: QuestionStats) -> str:
    return f"{s.correct}/{s.judged}" if s.judged else "–"


def row_line(r: QuestionRow) -> str:
    """The figures of a question in both runs on one line, under TABLE_HEADER."""
    a, b = r.a, r.b
    return (f"{LABELS[r.change]:<11} {_correct(a):>5}→{_correct(b):<5} "
            f"{_num(a.mean_reward, '.2f'):>5}→{_num(b.mean_reward, '.2f'):<5} {_num(r.reward_delta, '+.2f'):>6} "
            f"{a.mean_tool_calls:>4.1f}→{b.mean_tool_calls:<4.1f} {a.mean_tool_errors:>4.1f}→{b.mean_tool_errors:<4.1f} "
            f"{a.trajectory_id}/{b.trajectory_id}")


def question_line(text: str) -> str:
    """A question's text under its figures: indented, literal, clipped to the width."""
    return "  " + one_line(text, WIDTH - 2)


def _run_lines(tag: str, side) -> list[str]:
    return [f"{tag}: run {side.id} {one_line(side.name, 40)} ({one_line(side.status, 11)})",
            f"   {one_line(side.model, 30)}: {side.trajectories:,} trajectories, {side.questions:,} questions",
            f"   judge {one_line(side.judge or '–', 60)}"]


def judge_warning(c: Comparison) -> str | None:
    """A line when the runs were judged differently (their flips compare two judges), else None."""
    if not c.judges_differ:
        return None
    return (f"warning: different judges ({one_line(c.run_a.judge or '–', 20)} vs {one_line(c.run_b.judge or '–', 20)}):"
            " correctness and flips are not comparable")


def comparison_lines(c: Comparison, *, rows: int | None = 30) -> list[str]:
    """The comparison as terminal lines; at most `rows` questions in each list (None: all), with
    a line saying how many more `--json` holds."""
    n = c.counts
    warning = judge_warning(c)
    lines = [*_run_lines("A", c.run_a), *_run_lines("B", c.run_b), *([warning] if warning else []),
             f"{'questions':<12}{n['both']:,} in both, {n['only_a']:,} only in A, {n['only_b']:,} only in B",
             f"{'shared':<12}gained {n['gained']:,}  lost {n['lost']:,}  (wrong→right, right→wrong)",
             f"{'':<12}still right {n['still_right']:,}  still wrong {n['still_wrong']:,}  "
             f"not judged {n['not_judged']:,}",
             _mean_line("accuracy", c.means["accuracy"], ".1%", "+.1f", 100.0, " pts")
             + f" over {c.means['accuracy'].questions:,} judged in both",
             _mean_line("reward", c.means["reward"], ".3f", "+.3f"),
             _mean_line("tool calls", c.means["tool_calls"], ".2f", "+.2f") + " per question",
             _mean_line("tool errors", c.means["tool_errors"], ".2f", "+.2f") + " per question"]
    lines += textwrap.wrap("rule: " + c.rule, WIDTH, subsequent_indent="  ")
    changed = [r for r in c.rows if r.changed]
    lines.append("")
    if not changed:
        lines.append(f"no shared question changed ({n['both']:,} in both)")
    else:
        lines += [f"{len(changed):,} of {n['both']:,} shared questions changed, flips first, then by reward change.",
                  "Pairs read A→B; trajectory: an A/B sample id agreeing with the verdict.", TABLE_HEADER]
        for r in changed[:rows]:
            lines += [row_line(r), question_line(r.question)]
        lines += _more(len(changed), rows)
    for where, tag in (("a", "A"), ("b", "B")):
        only = [r for r in c.rows if r.where == where]
        if not only:
            continue
        lines += ["", f"only in {tag} ({len(only):,}): trajectory, correct, reward, question"]
        for r in only[:rows]:
            s = r.a or r.b
            head = f"{s.trajectory_id:>7} {_correct(s):>7} {_num(s.mean_reward, '.2f'):>6}  "
            lines.append(head + one_line(r.question, WIDTH - len(head)))
        lines += _more(len(only), rows)
    return lines


def _more(total: int, shown: int | None) -> list[str]:
    if shown is None or total <= shown:
        return []
    return [f"… {total - shown:,} more (--rows 0 shows all; --json holds every question)"]
