"""Linting a run, or one trajectory, straight from the database.

The data path is built for a million trajectories: one SELECT streams the run's token rows in
trajectory id order (tokens' rowid order) joined with the few trajectory columns the checks
need, a second streams the assistant messages' token spans in the same order, and both are read
in chunks that core.lint.checks checks with numpy. Both run inside one read transaction, so a
writer committing meanwhile cannot make them disagree. Nothing is written: a read-only Store works. Cost: about one full read of the run's token blobs
and of its assistant messages' rows; memory: a few chunks.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from typing import Any, Callable, Collection, Iterator

import numpy as np

from core.lint.checks import StepTotals, check_chunk
from core.lint.findings import Finding, LintReport
from core.lint.special import local_tokenizer, special_ids_of
from core.lint.text import SpanDecoder
from core.store import Store, StoreError

CHUNK = 2048
"""Trajectories checked per numpy pass (about 3 MB of blobs at 200 tokens each)."""
ZERO_SPREAD_ATOL = 1e-8
"""A group's rewards have no spread when max - min <= this (TRL: torch.isclose(std, 0), atol 1e-8)."""
MEAN_LENGTH_TOLERANCE = 1e-3
"""Relative (and, below 1 token, absolute) tolerance of trainer_count_mismatch: TRL logs its mean in float32."""

_TOKEN_SQL = (
    "SELECT t.id, t.finish_reason, t.prompt_tokens, t.completion_tokens, t.generated_tokens, t.step,"
    " k.prompt_len, k.ids, k.mask, k.logprobs, {trainer}, {exact} FROM trajectories t"
    " LEFT JOIN tokens k ON k.trajectory_id = t.id WHERE t.run_id = ? {extra} ORDER BY t.id"
)
_SPAN_SQL = (
    "SELECT m.trajectory_id, m.token_start, m.token_end{text} FROM trajectories t"
    " JOIN messages m ON m.trajectory_id = t.id"
    " WHERE t.run_id = ? {extra} AND m.role = 'assistant' AND m.token_start IS NOT NULL"
    " ORDER BY t.id, m.position"
)

SpecialIds = Collection[int] | None


def lint_run(store: Store, run_id: int, *, special_ids: SpecialIds = None, tokenizer: Any = True,
             progress: Callable[[int], None] | None = None) -> LintReport:
    """Check every trajectory of run `run_id`, and for a train run its steps and groups.

    tokenizer: True: the run's model's local tokenizer when one loads offline (core.lint.special);
    False: none; or a transformers tokenizer to use. Without one, text_mismatch is skipped and,
    unless `special_ids` are given, special_trained too; the report says why.
    special_ids: the token ids special_trained looks for; None: the tokenizer's special ids.
    progress: called with the number of trajectories read so far, after each chunk.
    Returns the run's LintReport (findings in trajectory order, then step findings).
    Raises StoreError for an unknown run or a database that cannot be read.
    Cost: about one full read of the run's token blobs and its messages' rows.
    """
    run = store.run(run_id)
    report = LintReport(run_id, run["kind"], run["model"])
    tok, why = _tokenizer(run["model"], tokenizer)
    lut, special_why = _special_lut(tok, why, special_ids)
    decoder = SpanDecoder.of(tok) if tok is not None else None
    began = time.perf_counter()  # the lint itself, without a tokenizer's first load
    if special_why:
        report.skipped["special_trained"] = special_why
    if decoder is None:
        report.skipped["text_mismatch"] = why
    steps = StepTotals()
    try:
        with _snapshot(store.conn):
            for rows, spans in _chunks(store, "", (run_id,), text=decoder is not None):
                # A trajectory whose ids are a re-tokenisation of server text (token_exact 0) has no
                # model mask or logprobs to check: counted apart, like one without tokens.
                inexact = [r for r in rows if r[8] is not None and r[11] == 0]
                report.not_token_exact += len(inexact)
                with_tokens = [r for r in rows if r[8] is not None and r[11] != 0]
                for r in rows:
                    if r[8] is None:
                        report.without_tokens += 1
                        if r[5] is not None:
                            steps.without_tokens[r[5]] = steps.without_tokens.get(r[5], 0) + 1
                report.checked += len(with_tokens)
                check_chunk(with_tokens, *spans[:3], lut, report.findings, steps, texts=spans[3:] or None,
                            decoder=decoder)
                if progress is not None:
                    progress(report.checked + report.without_tokens)
            if run["kind"] == "train" or steps.count:
                report.findings += _zero_spread(store, run_id)
                report.findings += _step_counts(store, run_id, steps, report)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{store.path}: the database cannot be read ({exc})") from None
    report.seconds = time.perf_counter() - began
    return report


def lint_store(store: Store, run_id: int | None = None, **options) -> list[LintReport]:
    """lint_run over run `run_id`, or over every run (oldest first) when None; options as lint_run.
    A tokenizer is loaded once per model name."""
    if run_id is not None:
        return [lint_run(store, run_id, **options)]
    ids = [r[0] for r in store.conn.execute("SELECT id FROM runs ORDER BY id")]
    return [lint_run(store, i, **options) for i in ids]


def lint_trajectory(store: Store, trajectory_id: int, *, special_ids: SpecialIds = None,
                    tokenizer: Any = True) -> list[Finding]:
    """The findings of one trajectory, as lint_run would report them (same checks, same text),
    plus a zero_spread_groups finding when its GRPO group has no reward spread. Step findings
    (trainer_count_mismatch) concern a whole step and are left out. Cost: one trajectory's
    rows; the tokenizer (when used) is cached per model. Raises StoreError for an unknown id."""
    row = store.conn.execute("SELECT t.run_id, r.model, t.group_id FROM trajectories t JOIN runs r"
                             " ON r.id = t.run_id WHERE t.id = ?", (trajectory_id,)).fetchone()
    if row is None:
        raise StoreError(f"{store.path}: no trajectory {trajectory_id}")
    run_id, model, group_id = row
    tok, why = _tokenizer(model, tokenizer)
    lut, _ = _special_lut(tok, why, special_ids)
    decoder = SpanDecoder.of(tok) if tok is not None else None
    findings: list[Finding] = []
    with _snapshot(store.conn):
        for rows, spans in _chunks(store, "AND t.id = ?", (run_id, trajectory_id), text=decoder is not None):
            check_chunk([r for r in rows if r[8] is not None and r[11] != 0], *spans[:3], lut, findings, StepTotals(),
                        texts=spans[3:] or None, decoder=decoder)
        if group_id is not None:
            findings += _zero_spread(store, run_id, group_id)
    return findings


def _tokenizer(model: str, tokenizer: Any) -> tuple[Any | None, str | None]:
    """(the tokenizer to use, None) or (None, why there is none)."""
    if tokenizer is False or tokenizer is None:
        return None, "tokenizer not requested"
    if tokenizer is not True:
        return tokenizer, None
    tok = local_tokenizer(model)
    return (tok, None) if tok is not None else (None, f"no local tokenizer for {model}")


def _special_lut(tok: Any | None, why: str | None, special_ids: SpecialIds) -> tuple[np.ndarray | None, str | None]:
    """A boolean table indexed by token id, or (None, why the check is skipped)."""
    if special_ids is None:
        if tok is None:
            return None, why
        special_ids = special_ids_of(tok)
    ids = [i for i in special_ids if i >= 0]
    lut = np.zeros(max(ids, default=-1) + 2, dtype=bool)
    lut[ids] = True
    return lut, None


class _snapshot:
    """One read transaction around the lint's SELECTs (unless the connection is in one already)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn, self.began = conn, False

    def __enter__(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
            self.began = True

    def __exit__(self, *exc) -> None:
        if self.began:
            self.conn.execute("COMMIT")


def _has_trainer_column(store: Store) -> bool:
    return _has_column(store, "tokens", "trainer_logprobs")


def _has_column(store: Store, table: str, column: str) -> bool:
    """Whether `table` has `column` (a file of an older schema version, read-only, may not)."""
    return any(r[1] == column for r in store.conn.execute(f"PRAGMA table_info({table})"))


def _chunks(store: Store, extra: str, args: tuple, text: bool = False) -> Iterator[tuple[list[tuple], tuple]]:
    """(token rows, spans) per chunk of CHUNK trajectories, in id order; spans: (trajectory ids,
    starts, ends) int64 arrays, with `text` also (turns, contents): the assistant messages' turn
    numbers and stored texts (an object array), for the text check.

    The spans cursor is read alongside on the same connection (one read transaction: the caller's
    _snapshot): each chunk takes the span rows up to its largest id. Reading the spans on a
    second connection in a thread was measured slower on this project's 2-core machine
    (benchmarks/lint.py, 27 s against 32 s for 1M trajectories), so it is not done."""
    trainer = "k.trainer_logprobs" if _has_trainer_column(store) else "NULL"
    exact = "t.token_exact" if _has_column(store, "trajectories", "token_exact") else "NULL"
    tokens = store.conn.execute(_TOKEN_SQL.format(trainer=trainer, exact=exact, extra=extra), args)
    cur = store.conn.cursor().execute(_SPAN_SQL.format(extra=extra, text=", m.turn, m.content" if text else ""), args)
    batches = (_span_arrays(b, text) for b in iter(lambda: cur.fetchmany(4 * CHUNK), []))
    held: list[tuple[np.ndarray, np.ndarray | None]] = []
    done = False
    while rows := tokens.fetchmany(CHUNK):
        last = rows[-1][0]
        while not done and (not held or held[-1][0][-1, 0] <= last):
            batch = next(batches, None)
            if batch is None:
                done = True
            elif batch[0].size:
                held.append(batch)
        if len(held) > 1:
            spans = np.concatenate([h[0] for h in held])
            contents = np.concatenate([h[1] for h in held]) if text else None
        elif held:
            spans, contents = held[0]
        else:
            spans, contents = np.zeros((0, 4), np.int64), np.zeros(0, dtype=object) if text else None
        cut = int(np.searchsorted(spans[:, 0], last, side="right"))
        held = [(spans[cut:], contents[cut:] if text else None)] if cut < len(spans) else []
        mine = spans[:cut]
        yield rows, (mine[:, 0], mine[:, 1], mine[:, 2]) + ((mine[:, 3], contents[:cut]) if text else ())


def _span_arrays(rows: list[tuple], text: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """((n, 4) int64 array of (trajectory id, token_start, token_end, turn) rows, NULL reads -1
    and turn is -1 without `text`; the contents as an object array, or None without `text`)."""
    width = 4 if text else 3
    flat = np.fromiter((-1 if v is None else v for r in rows for v in r[:width]), dtype=np.int64,
                       count=width * len(rows)).reshape(-1, width)
    if text:
        contents = np.empty(len(rows), dtype=object)
        contents[:] = [r[4] for r in rows]
        return flat, contents
    return np.c_[flat, np.full(len(rows), -1, dtype=np.int64)], None


def _zero_spread(store: Store, run_id: int, group_id: int | None = None) -> list[Finding]:
    """A zero_spread_groups finding per GRPO group of 2+ finished samples whose rewards are all
    equal (max - min <= ZERO_SPREAD_ATOL): TRL's advantages for them are 0, they add no gradient.
    The finding names the group's first trajectory and its step."""
    sql = ("SELECT step, group_id, MIN(id), COUNT(*), MIN(reward), MAX(reward) FROM trajectories"
           " WHERE run_id = ? AND group_id IS NOT NULL AND status = 'done' AND reward IS NOT NULL"
           + (" AND group_id = ?" if group_id is not None else "")
           + " GROUP BY group_id HAVING COUNT(*) > 1 AND MAX(reward) - MIN(reward) <= ? ORDER BY step, group_id")
    args = (run_id, group_id, ZERO_SPREAD_ATOL) if group_id is not None else (run_id, ZERO_SPREAD_ATOL)
    return [Finding("zero_spread_groups", first, f"step {step} group {group}: all {n} samples have reward {lo:g}",
                    step=step) for step, group, first, n, lo, hi in store.conn.execute(sql, args)]


def _step_counts(store: Store, run_id: int, steps: StepTotals, report: LintReport) -> list[Finding]:
    """trainer_count_mismatch per step whose stored completions/mean_length (TRL's mean of
    sum(env_mask) over the step's completions, grpo_trainer.py `_generate`) differs from the mean
    number of mask-1 completion tokens of the step's stored trajectories. Steps without the
    metric are not compared; a step with trajectories lacking tokens cannot be and is named in
    report.skipped. A rank's part of a multi-process training (configuration `shard`) holds only
    its share of each step while TRL logs the mean of all ranks: not compared there, only once
    merged (core.store.merge)."""
    out: list[Finding] = []
    imported: list[int] = []
    """Steps an importer wrote (core.importers.common.StepStats): their mean was computed from the
    same trajectories, so comparing would prove nothing."""
    config = store.run(run_id).get("config") or {}
    if isinstance(config, dict) and config.get("shard") is not None:
        report.skipped["trainer_count_mismatch"] = ("a rank's share of each step; TRL logs all ranks' mean "
                                                    "(merge the ranks to compare)")
        return out
    for step, metrics in store.conn.execute("SELECT step, metrics FROM train_steps WHERE run_id = ? ORDER BY step",
                                            (run_id,)):
        try:
            metrics_of = json.loads(metrics)
            logged = metrics_of.get("completions/mean_length")
        except (ValueError, AttributeError):
            metrics_of, logged = {}, None
        if not isinstance(logged, (int, float)) or not math.isfinite(logged):
            continue
        if "imported_from" in metrics_of:
            imported.append(step)
            continue
        if steps.without_tokens.get(step):
            report.skipped.setdefault("trainer_count_mismatch", "")
            report.skipped["trainer_count_mismatch"] += (
                f"{'; ' if report.skipped['trainer_count_mismatch'] else ''}step {step}: "
                f"{steps.without_tokens[step]} trajectories without tokens")
            continue
        n = steps.count.get(step, 0)
        if n == 0:
            out.append(Finding("trainer_count_mismatch", None,
                               f"step {step}: TRL logged completions/mean_length {logged:g} but no trajectory "
                               "of the step is stored", step=step))
            continue
        mean = steps.trained[step] / n
        if abs(mean - logged) > MEAN_LENGTH_TOLERANCE * max(1.0, abs(logged)):
            out.append(Finding("trainer_count_mismatch", None,
                               f"step {step}: {n} trajectories train on {mean:.3f} completion tokens on average "
                               f"but TRL logged completions/mean_length {logged:g}", step=step))
    if imported:
        note = (f"{len(imported)} imported steps: their completions/mean_length was computed from the imported "
                "trajectories, not logged by a trainer")
        previous = report.skipped.get("trainer_count_mismatch")
        report.skipped["trainer_count_mismatch"] = f"{previous}; {note}" if previous else note
    return out
