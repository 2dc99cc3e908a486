"""The per-trajectory mask checks, vectorised over a chunk of trajectories at once.

A chunk's blobs are joined into one array per column (ids, mask, logprobs, trainer logprobs).
A clean token is trained exactly when it lies inside an assistant span, and has a logprob exactly
then; a few whole-array numpy passes find the tokens that break this, and only those are located
(their trajectory by a binary search over the chunk's offsets) and classified by kind. Python
work is per chunk and per finding, never per token.

The rules come from how this project stores a trajectory (core.rollout.tokens.TokenSequence,
core.rollout.agent.Agent): the mask is 1 exactly on the ids the model generated, which are
exactly the assistant messages' [token_start, token_end) spans; logprobs are finite there and NaN
elsewhere; the opening prompt is [0, prompt_len); TRL is given env_mask = mask[prompt_len:]
(core.train.rollout.rollout_output), so its completion count is the mask-1 tokens after the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from core.lint.findings import KINDS, Finding
from core.lint.text import SpanDecoder, check_texts

TRUNCATED = frozenset({"max_tokens", "context_length"})
"""Finish reasons of a completion cut by a token limit (core.rollout.agent)."""

ROW_COLUMNS = ("id", "finish_reason", "prompt_tokens", "completion_tokens", "generated_tokens", "step",
               "prompt_len", "ids", "mask", "logprobs", "trainer_logprobs")
"""The order of the columns of a token row given to `check_chunk`."""


@dataclass
class StepTotals:
    """Per train step: mask-1 completion tokens summed over its trajectories, and their number
    (TRL's completions/mean_length is their ratio), and trajectories without tokens."""

    trained: dict[int, int] = field(default_factory=dict)
    count: dict[int, int] = field(default_factory=dict)
    without_tokens: dict[int, int] = field(default_factory=dict)

    def add(self, step: int, trained: int) -> None:
        self.trained[step] = self.trained.get(step, 0) + int(trained)
        self.count[step] = self.count.get(step, 0) + 1


def _fmt_spans(spans: Sequence[tuple[int, int]], limit: int = 4) -> str:
    """'40-44, 50' for [(40, 45), (50, 51)]; '...' after `limit` spans."""
    parts = [f"{s}" if e - s == 1 else f"{s}-{e - 1}" for s, e in spans[:limit]]
    return ", ".join(parts) + (f", ... ({len(spans)} ranges)" if len(spans) > limit else "")


def _runs(seg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive flagged positions of one trajectory joined into [start, end) runs.

    seg, pos: the segment (trajectory index in the chunk) and position of each flagged token,
    in token order. Returns (segment, start, end) per run.
    """
    if seg.size == 0:
        return seg, pos, pos
    cut = np.flatnonzero((np.diff(pos) != 1) | (np.diff(seg) != 0)) + 1
    first = np.r_[0, cut]
    last = np.r_[cut - 1, seg.size - 1]
    return seg[first], pos[first], pos[last] + 1


def _by_trajectory(flag: np.ndarray, seg: np.ndarray, pos: np.ndarray):
    """Yield (segment, spans, count) for every trajectory with a flagged token."""
    idx = np.flatnonzero(flag)
    if idx.size == 0:
        return
    rseg, rstart, rend = _runs(seg[idx], pos[idx])
    bounds = np.flatnonzero(np.diff(rseg)) + 1
    for lo, hi in zip(np.r_[0, bounds].tolist(), np.r_[bounds, rseg.size].tolist()):
        spans = tuple(zip(rstart[lo:hi].tolist(), rend[lo:hi].tolist()))
        yield int(rseg[lo]), spans, int((rend[lo:hi] - rstart[lo:hi]).sum())


def _covered(start: np.ndarray, end: np.ndarray, total: int) -> np.ndarray:
    """Boolean array of `total` tokens, True inside any [start, end) range (chunk coordinates)."""
    keep = end > start
    start, end = start[keep], end[keep]
    if start.size == 0:
        return np.zeros(total, dtype=bool)
    if np.all(start[1:] >= end[:-1]):  # in order and disjoint, as a store writes them: runs of F/T
        cuts = np.empty(2 * start.size + 2, dtype=np.int64)
        cuts[0], cuts[1:-1:2], cuts[2:-1:2], cuts[-1] = 0, start, end, total
        pattern = np.zeros(2 * start.size + 1, dtype=bool)
        pattern[1::2] = True
        return np.repeat(pattern, np.diff(cuts))
    marks = np.zeros(total + 1, dtype=np.int32)
    np.add.at(marks, start, 1)
    np.add.at(marks, end, -1)
    return np.cumsum(marks[:total], dtype=np.int32) > 0


def _sums(flag: np.ndarray, offsets: np.ndarray, plen: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per trajectory, the count of True in `flag` over [0, prompt_len) and [prompt_len, len)."""
    k = offsets.size
    if flag.size == 0:
        return np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    bounds = np.stack([offsets, offsets + plen], axis=1).ravel()
    # A bound may equal len(flag) (an empty tail), which reduceat refuses: one False more.
    sums = np.add.reduceat(np.r_[flag, False], bounds, dtype=np.int64)
    sums[np.stack([plen, lens - plen], axis=1).ravel() == 0] = 0  # reduceat's empty ranges are not 0
    return sums[0::2], sums[1::2]


def check_chunk(rows: Sequence[tuple], span_tid: np.ndarray, span_start: np.ndarray, span_end: np.ndarray,
                special: np.ndarray | None, findings: list[Finding], steps: StepTotals, *,
                texts: tuple[np.ndarray, np.ndarray] | None = None, decoder: SpanDecoder | None = None) -> None:
    """Check the trajectories of `rows` and append their findings.

    rows: token rows in ascending trajectory id, columns ROW_COLUMNS (blobs as bytes; ids int32
    LE, mask uint8, logprobs and trainer_logprobs float32 LE, trainer_logprobs may be None).
    span_tid/start/end: int64 arrays, the assistant messages' token spans of these trajectories
    (rows of other trajectories are ignored), ordered by trajectory then message position.
    special: a boolean lookup table indexed by token id (True: special token), or None to skip
    special_trained. steps: per-step completion counts are added for rows with a step.
    texts: (turns int64, contents object array) aligned with the spans, and decoder: the run's
    tokenizer's (core.lint.text.SpanDecoder); with both, text_mismatch is checked.
    Findings come in trajectory order, then in KINDS order.
    Cost: O(tokens) numpy work plus O(findings) Python; no per-token Python objects.
    """
    first = len(findings)
    _check(rows, span_tid, span_start, span_end, special, findings, steps, texts if decoder is not None else None,
           decoder)
    findings[first:] = sorted(findings[first:], key=lambda f: (f.trajectory_id, _ORDER[f.kind]))


_ORDER = {kind: i for i, kind in enumerate(KINDS)}


def _check(rows: Sequence[tuple], span_tid: np.ndarray, span_start: np.ndarray, span_end: np.ndarray,
           special: np.ndarray | None, findings: list[Finding], steps: StepTotals,
           texts: tuple[np.ndarray, np.ndarray] | None, decoder: SpanDecoder | None) -> None:
    good: list[tuple] = []
    for row in rows:
        tid, prompt_len, ids, mask, logprobs, trainer = row[0], row[6], row[7], row[8], row[9], row[10]
        n = len(mask)
        problems = []
        if len(ids) != 4 * n:
            problems.append(f"{len(ids) / 4:g} ids")
        if len(logprobs) != 4 * n:
            problems.append(f"{len(logprobs) / 4:g} logprobs")
        if trainer is not None and len(trainer) != 4 * n:
            problems.append(f"{len(trainer) / 4:g} trainer logprobs")
        if problems or not 0 <= prompt_len <= n:
            if not 0 <= prompt_len <= n:
                problems.append(f"prompt_len {prompt_len}")
            findings.append(Finding("length_mismatch", tid, f"{n} mask bytes but {', '.join(problems)}"))
            if row[5] is not None:  # TRL was given env_mask = mask[prompt_len:] all the same
                m = np.frombuffer(mask, dtype=np.uint8)
                steps.add(row[5], int(np.count_nonzero(m[max(0, min(prompt_len, n)):])))
            continue
        good.append(row)
    if not good:
        return
    k = len(good)
    tids = np.fromiter((r[0] for r in good), dtype=np.int64, count=k)
    plen = np.fromiter((r[6] for r in good), dtype=np.int64, count=k)
    lens = np.fromiter((len(r[8]) for r in good), dtype=np.int64, count=k)
    offsets = np.cumsum(lens) - lens
    total = int(lens.sum())
    ids = np.frombuffer(b"".join(r[7] for r in good), dtype="<i4")
    mask = np.frombuffer(b"".join(r[8] for r in good), dtype=np.uint8)
    lp = np.frombuffer(b"".join(r[9] for r in good), dtype="<f4")
    trained = mask != 0
    nan = np.isnan(lp)
    truncated = np.fromiter((r[1] in TRUNCATED for r in good), dtype=bool, count=k)

    # Assistant spans of this chunk's trajectories, in chunk coordinates.
    where = np.searchsorted(tids, span_tid)
    known = where < k
    known[known] = tids[where[known]] == span_tid[known]
    s_seg, s_start, s_end = where[known], span_start[known], span_end[known]
    s_index = np.flatnonzero(known)  # each kept span's index in the given arrays (texts align with those)
    wrong = (s_start < 0) | (s_end < s_start) | (s_end > lens[s_seg])
    for j in np.flatnonzero(wrong).tolist():
        i = int(s_seg[j])
        findings.append(Finding("span_out_of_range", int(tids[i]),
                                f"assistant span [{s_start[j]}, {s_end[j]}) in a sequence of {lens[i]} tokens"))
    s_seg, s_start, s_end, s_index = s_seg[~wrong], s_start[~wrong], s_end[~wrong], s_index[~wrong]
    # A span never covers the prompt: clipped to start after it, prompt tokens stay "outside".
    g_start = offsets[s_seg] + np.maximum(s_start, plen[s_seg])
    g_end = offsets[s_seg] + s_end
    inside = _covered(g_start, g_end, total)
    # A turn's end token: the last token of each non-empty span, except the final span of a
    # truncated trajectory when it runs to the sequence's end (the limit cut it: no end token).
    nonempty = s_end > s_start
    cut = truncated[s_seg] & (s_end == lens[s_seg])
    last_span = np.r_[s_seg[1:] != s_seg[:-1], True] if s_seg.size else np.zeros(0, dtype=bool)
    ends = np.sort((offsets[s_seg] + s_end - 1)[nonempty & ~(cut & last_span)])

    # Per trajectory: trained tokens in the prompt and after it.
    n_prompt, n_completion = _sums(trained, offsets, plen, lens)
    n_trained = n_prompt + n_completion
    n_inside = np.bincount(s_seg, weights=s_end - s_start, minlength=k).astype(np.int64)
    # A trajectory that trains on nothing is reported once, as nothing_trained, not again token
    # by token as masked generated tokens.
    nothing = (n_inside > 0) & (n_trained == 0)

    # Clean tokens are trained exactly inside assistant spans and have a logprob exactly there;
    # only the (few) other tokens are classified, so the common case costs a handful of passes.
    bad = np.flatnonzero((trained != inside) | (trained == nan) | (mask > 1))
    seg = np.searchsorted(offsets, bad, side="right") - 1
    pos = bad - offsets[seg]
    b_trained, b_inside, b_nan = trained[bad], inside[bad], nan[bad]
    b_prompt = pos < plen[seg]
    b_end = np.isin(bad, ends)
    some = ~nothing[seg]
    # A trajectory whose messages have no token spans at all (a source that kept tokens without
    # message boundaries) has no "inside": the checks that compare with spans would flag every
    # generated token. It is named once (no_message_spans) and those checks skip it.
    spanned = np.bincount(s_seg, minlength=k) > 0
    for i in np.flatnonzero(~spanned & (lens > plen)).tolist():
        findings.append(Finding("no_message_spans", int(tids[i]),
                                f"{int(lens[i] - plen[i])} completion tokens and no message token spans: "
                                "mask checks against assistant messages skipped"))
    b_spanned = spanned[seg]

    def emit(kind: str, flag: np.ndarray, what: str, seg=seg, pos=pos) -> None:
        for i, spans, count in _by_trajectory(flag, seg, pos):
            findings.append(Finding(kind, int(tids[i]), f"{count} {what} at {_fmt_spans(spans)}", spans))

    emit("mask_not_binary", mask[bad] > 1, "mask bytes other than 0/1")
    emit("prompt_trained", b_trained & b_prompt, "prompt tokens trained")
    emit("trained_outside_assistant", b_trained & ~b_prompt & ~b_inside & b_spanned,
         "trained tokens outside every assistant message")
    emit("logprob_missing", b_trained & b_nan, "trained tokens without a logprob")
    emit("logprob_on_untrained", ~b_nan & ~b_inside & ~b_trained & (b_spanned | b_prompt),
         "tokens not generated by the model with a logprob")
    for i, spans, count in _by_trajectory(~b_trained & b_end & some, seg, pos):
        at = ", ".join(f"{s} (id {ids[offsets[i] + s]})" for s, _ in spans[:4])
        findings.append(Finding("end_token_masked", int(tids[i]),
                                f"{count} end tokens the model generated are masked: {at}", spans))
    emit("generated_untrained", ~b_trained & b_inside & ~b_end & some, "generated tokens masked")
    if special is not None:
        # ids as unsigned: a negative or too large id lands on the table's last entry, made False
        if special.size == 0 or special[-1]:
            special = np.r_[special, False]
        hit = np.flatnonzero(trained & special[np.minimum(ids.view(np.uint32), special.size - 1)])
        hit = hit[inside[hit] & ~np.isin(hit, ends)]
        s_seg_hit = np.searchsorted(offsets, hit, side="right") - 1
        for i, spans, count in _by_trajectory(np.ones(hit.size, dtype=bool), s_seg_hit, hit - offsets[s_seg_hit]):
            at = np.concatenate([ids[offsets[i] + s: offsets[i] + e] for s, e in spans])
            values, counts = np.unique(at, return_counts=True)
            per = tuple(zip(values.tolist(), counts.tolist()))
            findings.append(Finding("special_trained", int(tids[i]),
                                    f"{count} special tokens trained inside turns: "
                                    + ", ".join(f"id {t} x{c}" for t, c in per) + f" at {_fmt_spans(spans)}",
                                    spans, token_counts=per))
    if any(r[10] is not None for r in good):
        tr = np.concatenate([np.frombuffer(r[10], dtype="<f4") if r[10] is not None
                             else np.zeros(len(r[8]), dtype=np.float32) for r in good])
        hit = np.flatnonzero(trained & np.isnan(tr))
        t_seg = np.searchsorted(offsets, hit, side="right") - 1
        t_pos = hit - offsets[t_seg]
        emit("trainer_logprob_missing", t_pos >= plen[t_seg], "trained tokens without a trainer logprob",
             seg=t_seg, pos=t_pos)

    for i in np.flatnonzero(nothing).tolist():
        spans = tuple((int(a), int(b)) for a, b in zip(s_start[s_seg == i], s_end[s_seg == i]) if b > a)
        findings.append(Finding("nothing_trained", int(tids[i]),
                                f"mask is 0 on all {n_inside[i]} generated tokens", spans))
    final = np.flatnonzero(last_span & cut & nonempty)
    for j in final[trained[g_end[final] - 1]].tolist():
        i = int(s_seg[j])
        a, b = int(s_start[j]), int(s_end[j])
        span_mask = trained[offsets[i] + a: offsets[i] + b]
        findings.append(Finding("truncated_trained", int(tids[i]),
                                f"finish {good[i][1]}: the cut last turn [{a}, {b}) is trained "
                                f"({int(span_mask.sum())} tokens)", ((a, b),)))
    if texts is not None and decoder is not None:
        turns, contents = texts
        check_texts(decoder, tids, offsets, plen, lens, ids, mask, s_seg, s_start, s_end,
                    turns[s_index], contents[s_index], findings)
    stored = np.fromiter((-1 if v is None else v for r in good for v in (r[2], r[3], r[4])), dtype=np.int64,
                         count=3 * k).reshape(k, 3)
    actual = np.stack([plen, lens - plen, n_trained], axis=1)
    for i in np.flatnonzero(((stored >= 0) & (stored != actual)).any(axis=1)).tolist():
        text = [f"{name} {stored[i, c]} (tokens say {actual[i, c]})"
                for c, name in enumerate(("prompt_tokens", "completion_tokens", "generated_tokens"))
                if stored[i, c] >= 0 and stored[i, c] != actual[i, c]]
        findings.append(Finding("count_mismatch", int(tids[i]), "; ".join(text)))
    if any(r[5] is not None for r in good):
        for i, r in enumerate(good):
            if r[5] is not None:
                steps.add(r[5], int(n_completion[i]))
