"""How fast a run goes: generated tokens per second and the time left, from its counters.

The runs table (core.store.queries.RunRow) carries counters only: trajectories done and planned,
tokens generated, the run's age. A finished run's pace is its average. A running run's pace is
taken from successive reads of those counters while a viewer watches it (`PaceTracker.observe`),
over the last few minutes, so a resumed run (whose age includes the pause) or a run that sped up
is not judged by its whole history; until a trajectory has finished under watch, the run's
average stands in. Counters move only when a trajectory finishes, so the window is long enough
to hold several of them on a CPU (minutes), and short enough to follow a change of pace.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pace:
    """A run's speed as a viewer shows it."""

    tokens_per_second: float | None
    """Generated tokens (completions, not prompts) per wall-clock second; None when not known
    (nothing generated yet, or no time passed)."""
    eta_seconds: float | None
    """Seconds until the planned trajectories are done at the current rate; None for a run
    that is not running or has no rate yet; 0 when nothing is left."""
    watched: bool = False
    """True when the figures come from counters read while watching (the recent pace), False
    when they are the run's average since it was created."""


@dataclass
class _Sample:
    at: float
    done: int
    tokens: int


@dataclass
class PaceTracker:
    """Per-run samples of (time, trajectories done, tokens generated) from successive reads.

    `window` (seconds): how far back the recent pace looks. Samples older than it are dropped,
    except that the newest sample before a change is kept as the window's start, so a run whose
    trajectories finish less often than the window still gets a rate across two changes.
    """

    window: float = 180.0
    _samples: dict[int, deque[_Sample]] = field(default_factory=dict)

    def observe(self, run_id: int, *, status: str, n_done: int, n_planned: int, generated_tokens: int,
                duration: float, now: float) -> Pace:
        """Record one read of run `run_id`'s counters at `now` (seconds, any clock, increasing)
        and return its pace. `duration`: seconds the run has been going (RunRow.duration).
        A run that is not running is forgotten and gets its average and no ETA."""
        if status != "running":
            self._samples.pop(run_id, None)
            return Pace(_rate(generated_tokens, duration), None)
        samples = self._samples.setdefault(run_id, deque())
        if samples and (n_done < samples[-1].done or generated_tokens < samples[-1].tokens):
            samples.clear()  # counters went back: another run under the same id, or a rewrite
        samples.append(_Sample(now, n_done, generated_tokens))
        while len(samples) > 2 and now - samples[1].at > self.window:
            samples.popleft()
        left = max(0, n_planned - n_done)
        first = samples[0]
        span = now - first.at
        if n_done > first.done and span > 0:
            per_trajectory = span / (n_done - first.done)
            return Pace((generated_tokens - first.tokens) / span, left * per_trajectory, watched=True)
        # Nothing finished while watched: the run's own average (exact for a run not resumed).
        eta = left * duration / n_done if n_done and duration > 0 else (0.0 if not left else None)
        return Pace(_rate(generated_tokens, duration), eta)

    def forget_missing(self, run_ids: set[int]) -> None:
        """Drop the samples of runs no longer listed (deleted, or another database)."""
        for run_id in list(self._samples):
            if run_id not in run_ids:
                del self._samples[run_id]


def _rate(tokens: int, seconds: float) -> float | None:
    return tokens / seconds if tokens and seconds > 0 else None
