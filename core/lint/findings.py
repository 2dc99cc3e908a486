"""What a mask lint finds: the kinds of fault, their severity, one finding, and a run's report.

A kind is a short stable snake_case name that scripts may match on; its severity is fixed per
kind, so a pipeline can gate on "any error" (`rl-inspect lint` exits 1) and read warnings and
information as policy choices to look at, not failures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass(frozen=True)
class Kind:
    """A kind of finding: its fixed severity and what it means, in one line."""

    name: str
    severity: str
    description: str
    needs_tokenizer: bool = False


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("length_mismatch", ERROR, "ids, mask, logprobs and trainer logprobs blobs hold different numbers of "
         "tokens, or prompt_len lies outside the sequence (the trajectory's other token checks are skipped)"),
    Kind("span_out_of_range", ERROR, "an assistant message's [token_start, token_end) lies outside the token "
         "sequence or is reversed"),
    Kind("count_mismatch", ERROR, "the trajectory row's prompt_tokens, completion_tokens or generated_tokens "
         "differ from what its token blobs hold"),
    Kind("mask_not_binary", ERROR, "mask bytes other than 0 and 1"),
    Kind("nothing_trained", ERROR, "the model generated tokens but the mask is 0 on all of them: the trajectory "
         "trains on nothing"),
    Kind("prompt_trained", ERROR, "mask 1 inside the opening prompt (TRL's env_mask starts after the prompt, "
         "so these tokens are silently dropped or misaligned)"),
    Kind("trained_outside_assistant", ERROR, "mask 1 on tokens outside every assistant message: tool results, "
         "template scaffolding or the generation prompt"),
    Kind("text_mismatch", ERROR, "an assistant message's trained tokens do not decode (with the model's local "
         "tokenizer) to its stored text: the transcript shows one reply, the loss trains on another",
         needs_tokenizer=True),
    Kind("logprob_missing", ERROR, "mask 1 with a NaN rollout logprob"),
    Kind("logprob_on_untrained", ERROR, "a finite rollout logprob on a token outside every assistant message "
         "(the model did not generate it)"),
    Kind("end_token_masked", ERROR, "the last token the model generated in a turn (its end token) is masked: "
         "the policy is never taught to stop"),
    Kind("generated_untrained", WARNING, "mask 0 on tokens the model generated (inside an assistant message), "
         "other than a turn's end token"),
    Kind("truncated_trained", WARNING, "a completion cut by a token limit (finish max_tokens or "
         "context_length) whose last generated tokens are trained: a policy choice to see, not an error"),
    Kind("special_trained", WARNING, "special tokens (per the model's local tokenizer) trained inside a turn, "
         "other than the turn's own end token", needs_tokenizer=True),
    Kind("trainer_logprob_missing", WARNING, "the trainer stored logprobs for this trajectory but none for "
         "some of its trained completion tokens (the trainer's loss never saw them)"),
    Kind("trainer_count_mismatch", ERROR, "per train step: the mean number of mask-1 completion tokens over "
         "the step's trajectories differs from TRL's logged completions/mean_length"),
    Kind("no_message_spans", INFO, "token ids but no message token spans (an importer's source kept none): "
         "the checks that need message boundaries were skipped for this trajectory"),
    Kind("zero_spread_groups", INFO, "per train step: a GRPO group whose rewards are all equal (its "
         "advantages are 0; it gives no gradient)"),
)}
"""Every kind, in the order reports list them."""


@dataclass(frozen=True)
class Finding:
    """One fault of one trajectory (or of one train step or group).

    spans: the token ranges [start, end) where it applies, positions in the trajectory's full
    sequence (prompt included), ascending; empty when it applies to no token (a step).
    trajectory_id: None for a step finding (trainer_count_mismatch); a group finding names the
    group's first trajectory. token_counts: (token id, count) pairs, for special_trained.
    """

    kind: str
    trajectory_id: int | None
    message: str
    spans: tuple[tuple[int, int], ...] = ()
    step: int | None = None
    token_counts: tuple[tuple[int, int], ...] = ()

    @property
    def severity(self) -> str:
        return KINDS[self.kind].severity

    @property
    def positions(self) -> list[int]:
        """Every token position of `spans`, ascending."""
        return [p for start, end in self.spans for p in range(start, end)]

    @property
    def first_position(self) -> int | None:
        return self.spans[0][0] if self.spans else None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "trajectory_id": self.trajectory_id,
                "step": self.step, "spans": [list(s) for s in self.spans], "message": self.message,
                **({"token_counts": {str(t): n for t, n in self.token_counts}} if self.token_counts else {})}


@dataclass
class LintReport:
    """The findings of one run.

    checked: trajectories whose tokens were read; without_tokens: trajectories with no token
    row (interrupted, or imported as text only), which no token check covers. not_token_exact:
    trajectories whose ids are the local tokenizer's reading of a server's text (schema version
    4, token_exact 0): no model mask or logprobs to check, so no check covers them either.
    skipped: kind -> why its check did not run (e.g. special_trained without a local tokenizer).
    """

    run_id: int
    run_kind: str
    model: str
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0
    without_tokens: int = 0
    not_token_exact: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    _index: tuple[int, dict[int, list[Finding]]] | None = field(default=None, init=False, repr=False, compare=False)

    def counts(self) -> dict[str, int]:
        """Findings per kind, in KINDS order, only kinds that occur."""
        c = Counter(f.kind for f in self.findings)
        return {k: c[k] for k in KINDS if c[k]}

    def trajectory_ids(self, kind: str | None = None) -> list[int]:
        """Ascending ids of trajectories with a finding (of `kind`, or of any kind)."""
        return sorted({f.trajectory_id for f in self.findings
                       if f.trajectory_id is not None and (kind is None or f.kind == kind)})

    def of_trajectory(self, trajectory_id: int) -> list[Finding]:
        """The findings naming `trajectory_id` (a table row's lint marker): O(1) after the first
        call, which indexes the findings by trajectory."""
        if self._index is None or self._index[0] != len(self.findings):
            by_id: dict[int, list[Finding]] = {}
            for f in self.findings:
                if f.trajectory_id is not None:
                    by_id.setdefault(f.trajectory_id, []).append(f)
            self._index = (len(self.findings), by_id)
        return list(self._index[1].get(trajectory_id, ()))

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == ERROR)

    def summary(self, examples: int = 5) -> dict[str, Any]:
        """A JSON-ready summary: per kind its severity, count and the first `examples` trajectory
        ids (steps for step findings); the checked counts and the skipped checks."""
        kinds: dict[str, Any] = {}
        for f in self.findings:
            entry = kinds.setdefault(f.kind, {"severity": f.severity, "count": 0, "examples": []})
            entry["count"] += 1
            example = f.trajectory_id if f.trajectory_id is not None else f"step {f.step}"
            if len(entry["examples"]) < examples and example not in entry["examples"]:
                entry["examples"].append(example)
        return {"run_id": self.run_id, "run_kind": self.run_kind, "model": self.model, "checked": self.checked,
                "without_tokens": self.without_tokens, "not_token_exact": self.not_token_exact,
                "errors": self.errors,
                "findings": {k: kinds[k] for k in KINDS if k in kinds}, "skipped": dict(self.skipped),
                "seconds": round(self.seconds, 3)}
