"""The token view's document: every token with its mask and class, labels, drift and tool-error
marks, the colour modes (mask, exp(logprob), advantage, trainer - rollout logprob), their legends
and the cursor's info line. Laid out with numpy so 100k tokens open in about 0.1 s."""

from __future__ import annotations

import math
import re
from array import array
from bisect import bisect_right
from collections.abc import Sequence as SequenceABC
from functools import lru_cache
from typing import Iterable, Literal, Sequence

import numpy as np
from rich.cells import cell_len, get_character_cell_size
from rich.style import Style
from rich.text import Text

from core.data.records import Message
from core.rollout.tokens import TokenSequence
from inspector.literal import show_escape, visible
from inspector.tui.render import ERROR_LABEL

TokenMode = Literal["mask", "logprob", "advantage", "gap"]
TOKEN_MODES: tuple[TokenMode, ...] = ("mask", "logprob", "advantage", "gap")
"""What colours the trained tokens: the mask alone, exp(rollout logprob), the trajectory's
advantage (what the GRPO loss multiplied them by), or trainer minus rollout logprob (the
train-inference gap). Masked tokens are never coloured: the loss does not see them."""

_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
                        "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U000e0000-\U000e0fff]")
"""Characters that draw nothing (or join their neighbours into one glyph): shown as escapes in tokens."""
_SPECIAL_PIECE = re.compile(r"<\|[^|\s]{1,64}\|>")

try:  # Rich >= 14.1 measures graphemes (emoji sequences) the way it draws them
    from rich.cells import split_graphemes
except ImportError:  # pragma: no cover
    split_graphemes = None


# ----------------------------------------------------------------------------- tokens
# The token view draws the mask first and the token's class second: the background says trained
# or masked (a generated <|im_end|> is trained and looks it), the foreground and an underline say
# template token, an italic dot says "continues the character before". Every other token takes
# the _ALT shade of its style, so where each token starts shows even inside a run of one kind.
TRAINED = Style(color="bright_white", bgcolor="rgb(20,90,40)", bold=True)
TRAINED_ALT = Style(color="bright_white", bgcolor="rgb(38,124,62)", bold=True)
MASKED = Style(dim=True)
MASKED_ALT = Style(dim=True, bgcolor="rgb(54,54,62)")
SPECIAL = Style(color="bright_magenta", underline=True)
"""Template tokens' class, laid over their mask background."""
SPECIAL_ON_HEAT = Style(color="rgb(110,0,130)", underline=True)
"""Template tokens' class over a heat colour (dark magenta reads on yellow and green)."""
PARTIAL = Style(italic=True)
PARTIAL_MARK = "·"
"""Drawn for a token that continues a character split over several byte-level tokens: the
character is shown on the run's first token, and each later token keeps one cell of its own so
its mask colour shows and the cursor can land on it (zero width would hide both)."""
CURSOR = Style(reverse=True, bold=True)
LABEL = Style(color="blue", bold=True)
DRIFT = Style(color="bright_white", bgcolor="red", bold=True)
DRIFT_MARK = "⚠drift▸"
ERROR_MARK = "✘ tool error"
HEAT_LEVELS = 20
"""Probabilities are drawn in 1/20 steps, and the legend shows exactly the colours used."""
_ALT, _TRAINED, _SPECIAL, _PARTIAL = 1, 2, 4, 8
_HEAT_SHIFT = 4
_PALETTE_SHIFT = _HEAT_SHIFT + 5
"""A token's style is an int code: the bits above, (level + 1) << _HEAT_SHIFT on a colour scale
(0: none), and the scale's index in _SCALES << _PALETTE_SHIFT. Codes are computed for all
tokens at once with numpy; a code's Style is cached."""
ADVANTAGE_LIMIT = 2.0
"""The advantage scale runs from -2 to +2 (TRL scales advantages by the group's std, so most fall
inside); larger ones take the end colours."""
ADVANTAGE_LEVELS = 20
GAP_BUCKETS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""|trainer - rollout logprob| is drawn by decade (nats): under 1e-4 neutral, then one step per
decade, 1 and more the end colour, each side for its sign."""
NO_PIECE = "⟨{}⟩"


def _inline(text: str | None) -> str:
    """Text for one line of the token view: control characters, newlines and tabs made visible."""
    return visible(text).replace("\n", "↵").replace("\t", "⇥")


def token_text(piece: str) -> str:
    """A token's text as the token view draws it: control characters visible, tab as ⇥, a newline
    as ↵ and a line break, invisible format characters (zero-width joiner, variation selectors,
    BOM...) as \\uXXXX, and a piece that starts with a combining mark on a dotted circle ◌, so
    every token takes at least one cell of its own and no two tokens merge into one glyph."""
    text = _INVISIBLE.sub(show_escape, visible(piece)).replace("\t", "⇥").replace("\n", "↵\n")
    if text and get_character_cell_size(text[0]) == 0:
        text = "◌" + text
    return text


def heat_colour(p: float, shade: float = 1.0) -> str:
    """Red (p=0) through yellow to green (p=1), in HEAT_LEVELS steps; shade < 1 darkens it."""
    p = round(max(0.0, min(1.0, p)) * HEAT_LEVELS) / HEAT_LEVELS
    red, green = (255, int(510 * p)) if p < 0.5 else (int(510 * (1 - p)), 255)
    return f"rgb({int(red * shade)},{int(green * shade)},{int(60 * shade)})"


_HEAT_STYLES = [Style(color="black", bgcolor=heat_colour(level / HEAT_LEVELS), bold=True)
                for level in range(HEAT_LEVELS + 1)]
_HEAT_ALT_STYLES = [Style(color="black", bgcolor=heat_colour(level / HEAT_LEVELS, 0.8), bold=True)
                    for level in range(HEAT_LEVELS + 1)]


def diverging_colour(x: float, shade: float = 1.0) -> str:
    """Red (x=-1) through light grey (0) to blue (x=+1); shade < 1 darkens it."""
    x = max(-1.0, min(1.0, x))
    mid, end = (205, 205, 205), ((220, 50, 47) if x < 0 else (38, 110, 235))
    rgb = [int((m + (e - m) * abs(x)) * shade) for m, e in zip(mid, end)]
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def _scale(colours: list[str], alt_colours: list[str]) -> tuple[list[Style], list[Style]]:
    return ([Style(color="black", bgcolor=c, bold=True) for c in colours],
            [Style(color="black", bgcolor=c, bold=True) for c in alt_colours])


_GAP_LEVELS = len(GAP_BUCKETS)
_SCALES = (
    (_HEAT_STYLES, _HEAT_ALT_STYLES),
    _scale([diverging_colour(2 * k / ADVANTAGE_LEVELS - 1) for k in range(ADVANTAGE_LEVELS + 1)],
           [diverging_colour(2 * k / ADVANTAGE_LEVELS - 1, 0.8) for k in range(ADVANTAGE_LEVELS + 1)]),
    _scale([diverging_colour((k - _GAP_LEVELS) / _GAP_LEVELS) for k in range(2 * _GAP_LEVELS + 1)],
           [diverging_colour((k - _GAP_LEVELS) / _GAP_LEVELS, 0.8) for k in range(2 * _GAP_LEVELS + 1)]),
)
"""(styles, alternate-shade styles) per level of each colour scale: exp(logprob), advantage, gap."""
_SCALE_OF = {"logprob": 0, "advantage": 1, "gap": 2}


def advantage_level(advantage: float) -> int:
    """The advantage scale's level (0..ADVANTAGE_LEVELS) of an advantage, clipped to ±ADVANTAGE_LIMIT."""
    x = max(-ADVANTAGE_LIMIT, min(ADVANTAGE_LIMIT, advantage)) / ADVANTAGE_LIMIT
    return round((x + 1) / 2 * ADVANTAGE_LEVELS)


def gap_levels(gap: np.ndarray) -> np.ndarray:
    """The gap scale's level of each gap (nats; int64, 0..2*len(GAP_BUCKETS)): the middle level
    under 1e-4, one more per decade of |gap| above it, on the side of its sign."""
    decade = np.searchsorted(np.asarray(GAP_BUCKETS), np.abs(gap), side="right")
    return _GAP_LEVELS + np.sign(gap).astype(np.int64) * decade


def heat_style(logprob: float) -> Style:
    """The style of a trained token with this logprob (exp(logprob) on the heat scale)."""
    p = max(0.0, min(1.0, math.exp(logprob)))
    return _HEAT_STYLES[round(p * HEAT_LEVELS)]


@lru_cache(maxsize=None)
def token_style(code: int) -> Style:
    """The Style of a token style code (see `token_codes`): mask or heat background, then class."""
    alt, heat = code & _ALT, ((code >> _HEAT_SHIFT) & 31) - 1
    if heat >= 0:
        styles, alt_styles = _SCALES[code >> _PALETTE_SHIFT]
        style = (alt_styles if alt else styles)[heat]
    elif code & _TRAINED:
        style = TRAINED_ALT if alt else TRAINED
    else:
        style = MASKED_ALT if alt else MASKED
    if code & _SPECIAL:
        style = style + (SPECIAL_ON_HEAT if heat >= 0 else SPECIAL)
    if code & _PARTIAL:
        style = style + PARTIAL
    return style


def token_codes(mask: Sequence[int], logprobs: Sequence[float], special: np.ndarray, partial: np.ndarray,
                mode: TokenMode, advantage: float | None = None,
                trainer_logprobs: Sequence[float] | None = None) -> np.ndarray:
    """Style code of each token (int64, shape (n,)): alternate shade, trained, template, partial,
    and on a colour scale, for trained tokens with a value: "logprob" exp(logprob) in 1/20 steps;
    "advantage" the trajectory's advantage (one value for all its trained tokens in GRPO);
    "gap" trainer_logprobs - logprobs by decade (`gap_levels`). Without the mode's data no token
    is coloured (the legend says why).

    special, partial: bool arrays of shape (n,); logprobs, trainer_logprobs: nats, length n.
    """
    n = len(mask)
    trained = np.asarray(mask)[:n] != 0
    code = (np.arange(n, dtype=np.int64) & _ALT) | (trained * _TRAINED) | (special * _SPECIAL) | (partial * _PARTIAL)
    if not n or mode == "mask":
        return code
    lp = np.asarray(logprobs, dtype=np.float64)[:n]
    known, level = None, None
    with np.errstate(all="ignore"):
        if mode == "logprob":
            known = trained & ~np.isnan(lp)
            level = np.round(np.clip(np.exp(np.nan_to_num(lp)), 0.0, 1.0) * HEAT_LEVELS).astype(np.int64)
        elif mode == "advantage" and advantage is not None and math.isfinite(advantage):
            known, level = trained, np.full(n, advantage_level(advantage), dtype=np.int64)
        elif mode == "gap" and trainer_logprobs is not None:
            gap = np.asarray(trainer_logprobs, dtype=np.float64)[:n] - lp
            known = trained & np.isfinite(gap)
            level = gap_levels(np.nan_to_num(gap, nan=0.0, posinf=0.0, neginf=0.0))
    if known is not None:
        code |= np.where(known, level + 1, 0) << _HEAT_SHIFT
        code |= np.where(known, _SCALE_OF[mode], 0) << _PALETTE_SHIFT
    return code


def logprob_legend() -> Text:
    """The logprob mode's key: the heat scale of trained tokens, then the classes (`mask_legend`)."""
    text = Text("p = exp(logprob): ")
    for p in (0.0, 0.5, 1.0):
        text.append(f" {p:g} ", style=_HEAT_STYLES[round(p * HEAT_LEVELS)])
    text.append(" ")
    text.append(" masked ", style=MASKED_ALT)
    _legend_classes(text)
    return text


def advantage_legend(advantage: float | None) -> Text:
    """The advantage mode's key: the trajectory's advantage and the scale; or why there is none."""
    if advantage is None or not math.isfinite(advantage):
        return Text("advantage: none stored (only training trajectories have one)", style="italic")
    text = Text(f"advantage {advantage:+.3f} on every trained token: ")
    styles = _SCALES[1][0]
    for a in (-ADVANTAGE_LIMIT, -1.0, 0.0, 1.0, ADVANTAGE_LIMIT):
        text.append(f" {a:+g} " if a else " 0 ", style=styles[advantage_level(a)])
    text.append(" ")
    text.append(" masked ", style=MASKED_ALT)
    _legend_classes(text)
    return text


def gap_legend(has_trainer_logprobs: bool) -> Text:
    """The gap mode's key: trainer minus rollout logprob by decade; or why there is none."""
    if not has_trainer_logprobs:
        return Text("trainer − rollout logprob: none stored (only training steps score tokens twice)",
                    style="italic")
    text = Text("trainer − rollout logprob (nats): ")
    styles = _SCALES[2][0]
    for label, gap in (("−1", -1.0), ("−.01", -0.01), ("<1e-4", 0.0), ("+.01", 0.01), ("+1", 1.0)):
        text.append(f" {label} ", style=styles[int(gap_levels(np.array([gap]))[0])])
    text.append(" ")
    text.append(" masked ", style=MASKED_ALT)
    _legend_classes(text)
    return text


def mask_legend() -> Text:
    """The mask mode's key. Tokens alternate two shades of their style, so "trained" and "masked"
    are drawn as the tokens tr|ain|ed would be; template tokens keep their mask's background."""
    text = Text("mask: ")
    for i, part in enumerate((" tr", "ain", "ed ")):
        text.append(part, style=TRAINED_ALT if i % 2 else TRAINED)
    for i, part in enumerate((" ma", "sk", "ed ")):
        text.append(part, style=MASKED_ALT if i % 2 else MASKED)
    _legend_classes(text)
    return text


def _legend_classes(text: Text) -> None:
    text.append(" ")
    text.append("<|t|>", style=TRAINED + SPECIAL)
    text.append("<|t|>", style=MASKED_ALT + SPECIAL)
    text.append(" template ")
    text.append(PARTIAL_MARK, style=TRAINED + PARTIAL)
    text.append(" split char ")
    text.append(f" {ERROR_MARK} ", style=ERROR_LABEL)
    text.append(" ")
    text.append(f" {DRIFT_MARK} ", style=DRIFT)
    text.append(" ")
    text.append(" cursor ", style=CURSOR)


def token_counts(tokens: TokenSequence) -> dict[str, int]:
    trained = sum(tokens.mask)
    return {"total": len(tokens.ids), "trained": trained, "masked": len(tokens.ids) - trained,
            "prompt": tokens.prompt_len, "completion": tokens.completion_len}


def token_summary(tokens: TokenSequence, drift_at: int | None = None, have_pieces: bool = True) -> Text:
    """One line: how many tokens, how many trained, where the prompt ends, where drift is."""
    c = token_counts(tokens)
    text = Text(f"{c['total']:,} tokens · ", style="bold", overflow="fold")
    text.append(f"{c['trained']:,} trained", style=TRAINED)
    text.append(f" · {c['masked']:,} masked", style="dim")
    text.append(f" · prompt {c['prompt']:,} · completion {c['completion']:,}")
    if drift_at is not None:
        text.append(f" · ⚠ drift at token {drift_at:,}", style="bold red")
    if not have_pieces:
        text.append(" · no local tokenizer: showing ids", style="italic")
    return text


def boundary_labels(messages: Iterable[Message], length: int) -> dict[int, str]:
    """Token position -> label for the start of every message span and of template scaffolding.

    Messages sharing a span (the opening system + user prompt is one template rendering) share
    one label; tokens no message owns (a turn's closing, the next generation prompt) are
    labelled "template" so the trained region visibly ends where the assistant's span ends.
    """
    owners: dict[int, list[Message]] = {}
    spans: list[tuple[int, int]] = []
    for m in messages:
        if m.token_start is None or m.token_end is None:
            continue  # e.g. a tool error that ended the chat: the model never saw it
        owners.setdefault(m.token_start, []).append(m)
        spans.append((m.token_start, m.token_end))
    labels: dict[int, str] = {}
    for start, group in owners.items():
        roles = " + ".join(dict.fromkeys(_inline(m.role) for m in group))
        turn = group[0].turn
        labels[start] = f"── {roles} prompt ──" if turn == 0 else f"── {roles} (turn {turn}) ──"
    covered_until = 0
    for start, end in sorted(spans):
        if start > covered_until and covered_until not in labels:
            labels[covered_until] = "── template ──"
        covered_until = max(covered_until, end)
    if covered_until < length and covered_until not in labels and spans:
        labels[covered_until] = "── template ──"
    return {k: v for k, v in labels.items() if k < length}


def tool_error_tokens(messages: Iterable[Message], length: int) -> dict[int, str]:
    """Token position -> marker text for each assistant message with a tool error and a token span
    (its first token): "✘ tool error: kind — message (turn k)", one line."""
    out: dict[int, str] = {}
    for m in messages:
        if m.role == "assistant" and m.tool_error is not None and m.token_start is not None \
                and 0 <= m.token_start < length:
            detail = _inline(m.tool_error.message)
            detail = detail if len(detail) <= 80 else detail[:79] + "…"
            out.setdefault(m.token_start, f"{ERROR_MARK}: {_inline(m.tool_error.kind)} — {detail} (turn {m.turn})")
    return out


def message_spans(messages: Iterable[Message]) -> list[tuple[int, int, str]]:
    """(token_start, token_end, "role, turn k") for each span of messages, sorted by start; messages
    sharing a span share one entry ("system + user, turn 0")."""
    spans: dict[tuple[int, int], list[Message]] = {}
    for m in messages:
        if m.token_start is not None and m.token_end is not None:
            spans.setdefault((m.token_start, m.token_end), []).append(m)
    return [(start, end, f"{' + '.join(dict.fromkeys(_inline(m.role) for m in group))}, turn {group[0].turn}")
            for (start, end), group in sorted(spans.items())]


def token_info(index: int, tokens: TokenSequence, piece: str | None, part: tuple[int, int, str] | None,
               owner: str | None, advantage: float | None = None) -> Text:
    """The cursor's line: position, id, the piece made visible (repr), mask, logprob and p; for a
    trained token of a training step the trainer's logprob, the gap (trainer - rollout, nats) and
    the importance ratio exp(gap), and the advantage; then the owner.

    part is (k, n, text) when the token is the k-th of n byte-level tokens that decode to `text`
    together; owner is the message span's label ("assistant, turn 2") or None (template tokens).
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"#{index:,}", style="bold")
    text.append(f"  id {tokens.ids[index]}  ")
    if piece is not None:
        text.append(visible(repr(piece)), style="bold")
    else:
        text.append("(no tokenizer)", style="italic")
    if part is not None:
        k, n, joined = part
        text.append(f"  (byte token {k} of {n} of {visible(repr(joined))})", style="italic")
    trained = bool(tokens.mask[index])
    text.append("  ")
    text.append("trained" if trained else "masked", style=TRAINED if trained else MASKED_ALT)
    logprob = tokens.logprobs[index] if index < len(tokens.logprobs) else math.nan
    if logprob is None or math.isnan(logprob):
        text.append("  logprob –  p –")
    else:
        text.append(f"  logprob {logprob:.4f}  p={math.exp(logprob):.4f}")
    trainer = tokens.trainer_logprobs
    if trainer is not None and index < len(trainer) and math.isfinite(trainer[index]) and trained:
        gap = trainer[index] - logprob if logprob is not None and math.isfinite(logprob) else math.nan
        text.append(f"  trainer {trainer[index]:.4f}")
        if math.isfinite(gap):
            text.append(f"  gap {gap:+.2e}  ratio {math.exp(gap):.4f}")
    if advantage is not None and trained:
        text.append(f"  advantage {advantage:+.3f}")
    text.append(f"  · {owner}" if owner else "  · template (no message)", style="dim" if not owner else "")
    return text


class TokenLayout:
    """The token view as one document of logical lines (split at newline tokens and labels).

    `doc` holds every line joined by "\\n"; token i covers doc[token_start[i]:token_stop[i]]
    (newline tokens include the "\\n" that ends their line). Lines are built into `Text` or
    segments only when asked for (`line`, `segments`), so laying out 100k tokens costs a few
    joins and numpy passes, not a Text per line. Folding to a width is by terminal cells
    (`rows`, `cuts`), so the row of every token is known exactly.
    """

    def __init__(self, doc: str, token_start: np.ndarray, token_stop: np.ndarray,
                 marks: list[tuple[int, int, Style]], own_lines: list[int], flags: np.ndarray,
                 mask: Sequence[int], logprobs: Sequence[float], mode: TokenMode,
                 advantage: float | None = None, trainer_logprobs: Sequence[float] | None = None) -> None:
        self.doc = doc
        self.token_start: np.ndarray = token_start
        """Offset in `doc` of each token's first character (int64, shape (n,), increasing)."""
        self.token_stop: np.ndarray = token_stop
        """Offset in `doc` just past each token (int64, shape (n,), increasing)."""
        self._mark_start = [m[0] for m in marks]
        self._mark_stop = [m[1] for m in marks]
        self._mark_style = [m[2] for m in marks]
        arr = np.frombuffer(doc.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        newlines = np.flatnonzero(arr == 10)
        starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
        stops = np.concatenate((newlines, [len(doc)])).astype(np.int64)
        if doc.endswith("\n"):  # a newline token ends the text: no empty line after it
            starts, stops = starts[:-1], stops[:-1]
        self._starts, self._lens = starts, stops - starts
        self.line_start: list[int] = starts.tolist()
        self.line_stop: list[int] = stops.tolist()
        line = np.searchsorted(starts, token_start, side="right") - 1
        self.token_line: np.ndarray = line
        """The line each token begins on (int64, shape (n,))."""
        self.token_col: np.ndarray = token_start - starts[line] if len(token_start) else line
        """Character offset of each token's first character in its line (int64, shape (n,))."""
        self.label_lines: set[int] = set((np.searchsorted(starts, np.asarray(own_lines, dtype=np.int64),
                                                          side="right") - 1).tolist())
        """Lines that hold no token: message labels and tool-error markers."""
        self._measure(arr, starts)
        self._flags = flags
        self._mask = np.frombuffer(bytes(mask), dtype=np.uint8)  # bytes(): far faster than numpy on a list
        self._logprobs = np.frombuffer(array("d", logprobs), dtype=np.float64)
        self._advantage = advantage
        self._trainer = None if trainer_logprobs is None else np.asarray(trainer_logprobs, dtype=np.float64)
        self.set_mode(mode)

    # ------------------------------------------------------------------ styles
    def set_mode(self, mode: TokenMode) -> None:
        """Colour trained tokens as TOKEN_MODES says; the text and rows do not change.
        ValueError for a mode not in TOKEN_MODES."""
        _check_mode(mode)
        self.mode = mode
        n = len(self.token_start)
        self.codes: list[int] = token_codes(self._mask, self._logprobs, self._flags[:n] & _SPECIAL != 0,
                                            self._flags[:n] & _PARTIAL != 0, mode, self._advantage,
                                            self._trainer).tolist()

    def segments(self, lo: int, hi: int, cursor: int | None = None) -> list[tuple[str, Style]]:
        """(text, style) pieces covering doc[lo:hi] (inside one line); token `cursor` reversed."""
        out: list[tuple[str, Style]] = []
        j0, j1 = self.tokens_in(lo, hi)
        doc, j, pos = self.doc, 0, lo
        starts, stops = self.token_start[j0:j1 + 1].tolist(), self.token_stop[j0:j1 + 1].tolist()
        codes, n = self.codes[j0:j1 + 1], max(0, j1 + 1 - j0)
        cursor = cursor - j0 if cursor is not None else None
        while pos < hi:
            if j < n and starts[j] <= pos:
                end = min(stops[j], hi)
                style = token_style(codes[j])
                out.append((doc[pos:end], style + CURSOR if j == cursor else style))
                pos, j = end, j + 1
                continue
            gap_end = min(starts[j], hi) if j < n else hi
            while pos < gap_end:  # not a token: a label, a marker, or plain text
                k = bisect_right(self._mark_start, pos) - 1
                if k >= 0 and self._mark_stop[k] > pos:
                    end, style = min(self._mark_stop[k], gap_end), self._mark_style[k]
                else:
                    nxt = self._mark_start[k + 1] if k + 1 < len(self._mark_start) else gap_end
                    end, style = min(nxt, gap_end), _NULL
                out.append((doc[pos:end], style))
                pos = end
        return out

    def tokens_in(self, lo: int, hi: int) -> tuple[int, int]:
        """(first, last) tokens that overlap doc[lo:hi]; last < first when none does."""
        first = int(np.searchsorted(self.token_stop, lo, side="right"))
        last = int(np.searchsorted(self.token_start, hi, side="left")) - 1
        return first, last

    def token_at_offset(self, pos: int) -> int:
        """The last token that begins at or before doc offset `pos` (-1 if none)."""
        return int(np.searchsorted(self.token_start, pos, side="right")) - 1

    def line(self, index: int, cursor: int | None = None) -> Text:
        """Logical line `index` as a Text (for tests and one-off rendering; the widget uses segments)."""
        text = Text(overflow="fold")
        for part, style in self.segments(self.line_start[index], self.line_stop[index], cursor):
            text.append(part, style)
        return text

    @property
    def lines(self) -> "_Lines":
        """The logical lines as a lazy sequence of Text."""
        return _Lines(self)

    def text(self) -> Text:
        joined = Text("\n").join(self.line(i) for i in range(len(self.line_start)))
        joined.overflow = "fold"
        return joined

    # ------------------------------------------------------------------ folding
    def _measure(self, arr: np.ndarray, starts: np.ndarray) -> None:
        """Find the lines whose cells are not one per character (wide, zero-width, joined emoji)."""
        self._cum_np: np.ndarray | None = None
        self._cells: np.ndarray | None = None
        self._kind: dict[int, int] = {}
        """line -> 1: cells per character differ from 1; 2: emoji joiners, measured by grapheme."""
        wide = np.flatnonzero(arr > 126)
        if not len(wide):
            return
        uniq, inverse = np.unique(arr[wide], return_inverse=True)
        widths = np.array([get_character_cell_size(chr(c)) for c in uniq.tolist()], dtype=np.int64)
        odd = widths[inverse] != 1
        if odd.any():
            cells = np.ones(len(arr), dtype=np.int64)
            cells[wide] = widths[inverse]
            self._cells = cells
            for line in np.unique(np.searchsorted(starts, wide[odd], side="right") - 1).tolist():
                self._kind[line] = 1
        joiners = np.isin(uniq, (0x200D, 0xFE0F))[inverse]
        for line in np.unique(np.searchsorted(starts, wide[joiners], side="right") - 1).tolist():
            self._kind[line] = 2

    def rows(self, width: int) -> list[int]:
        """Rows each logical line takes when folded to `width` cells (list of len(line_start)).

        One cell per character: ceil(length / width). Lines with wide or zero-width characters
        fold greedily on cumulative cells, all such lines at once, one numpy step per row.
        """
        width = max(1, width)
        rows = np.maximum(1, -(-self._lens // width))
        wide = np.array([line for line, kind in self._kind.items() if kind == 1], dtype=np.int64)
        if len(wide):
            cum = self._cum_cells()
            pos, stop = self._starts[wide], self._starts[wide] + self._lens[wide]
            count = np.ones(len(wide), dtype=np.int64)
            active = np.flatnonzero(pos < stop)
            while len(active):
                s = pos[active]
                base = np.where(s > 0, cum[np.maximum(s - 1, 0)], 0)
                k = np.minimum(np.maximum(np.searchsorted(cum, base + width, side="right"), s + 1), stop[active])
                pos[active] = k
                more = k < stop[active]
                count[active[more]] += 1
                active = active[more]
            rows[wide] = count
        for line, kind in self._kind.items():
            if kind == 2:
                rows[line] = len(self.cuts(line, width))
        return rows.tolist()

    def _cum_cells(self) -> np.ndarray:
        """Cells of doc[:k + 1] at k (int64, shape (len(doc),))."""
        if self._cum_np is None:
            self._cum_np = np.cumsum(self._cells)
        return self._cum_np

    def cuts(self, line: int, width: int) -> list[int]:
        """Character offsets (from the line's start) where each folded row of `line` begins: [0, ...]."""
        width = max(1, width)
        lo, hi = self.line_start[line], self.line_stop[line]
        kind = self._kind.get(line)
        if kind is None:
            return list(range(0, hi - lo, width)) or [0]
        if kind == 2:
            return _grapheme_cuts(self.doc[lo:hi], width)
        everything = self._cum_cells()
        cum = (everything[lo:hi] - (everything[lo - 1] if lo else 0)).tolist()  # cells from the line's start
        cuts, s, size = [0], 0, hi - lo
        while True:  # greedy: a row ends before the first character that would pass `width`
            base = cum[s - 1] if s else 0
            s = max(bisect_right(cum, base + width, s), s + 1)
            if s >= size:
                return cuts
            cuts.append(s)

    def cell_len(self, lo: int, hi: int) -> int:
        """Cells that doc[lo:hi] takes."""
        if self._cells is None:
            return hi - lo
        return cell_len(self.doc[lo:hi])


_NULL = Style()


class _Lines(SequenceABC):
    """TokenLayout's lines, each built into a Text when indexed."""

    def __init__(self, layout: TokenLayout) -> None:
        self._layout = layout

    def __len__(self) -> int:
        return len(self._layout.line_start)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._layout.line(index)


def _grapheme_cuts(plain: str, width: int) -> list[int]:
    """Fold cuts of a line with emoji joiners, grapheme by grapheme as Rich measures them."""
    cuts, used = [0], 0
    if split_graphemes is not None:
        graphemes = [(start, size) for start, _end, size in split_graphemes(plain)[0]]
    else:  # pragma: no cover - Rich < 14.1
        graphemes = [(i, get_character_cell_size(ch)) for i, ch in enumerate(plain)]
    for start, size in graphemes:
        if used + size > width and used:
            cuts.append(start)
            used = 0
        used += size
    return cuts


def _check_mode(mode: str) -> None:
    if mode not in TOKEN_MODES:
        raise ValueError(f"token view mode must be one of {', '.join(TOKEN_MODES)}, not {mode!r}")


def token_layout(tokens: TokenSequence, pieces: list[str] | None, messages: list[Message],
                 drift_at: int | None, mode: TokenMode = "mask",
                 special: set[int] | frozenset[int] = frozenset(),
                 parts: dict[int, tuple[int, int, str]] | None = None,
                 advantage: float | None = None) -> TokenLayout:
    """Every token, trained ones set apart from masked ones; boundaries, template tokens, drift, errors.

    pieces[i] is the decoded text of token i; without pieces (or for an empty piece) the id is
    shown as ⟨id⟩. parts maps a token to (k, n, text) when it is the k-th of n byte-level tokens
    that decode to `text` together: the first shows the text (its piece), the others a `PARTIAL_MARK`.
    mode "mask": trained tokens bright on a green tint, masked ones dim. mode "logprob": trained
    tokens on the heat scale of exp(logprob); "advantage" and "gap" as `token_codes` says
    (advantage: the trajectory's; the gap uses tokens.trainer_logprobs). Template tokens (ids in
    `special`, or pieces shaped like <|...|>) keep their mask or scale background and take a
    magenta underlined foreground. ValueError for a mode not in TOKEN_MODES.
    """
    _check_mode(mode)
    ids, n = tokens.ids, len(tokens.ids)
    parts = parts or {}
    flags = np.zeros(n, dtype=np.int64)
    if special and n:
        flags[np.isin(np.frombuffer(array("q", ids), dtype=np.int64), np.fromiter(special, dtype=np.int64))] = _SPECIAL
    if pieces is None:
        shown = [NO_PIECE.format(tok) for tok in ids]
    else:
        # Per distinct piece, not per token: a long trajectory repeats a few thousand pieces.
        pieces = list(pieces[:n]) + [None] * (n - len(pieces))
        distinct = list(set(pieces))
        number = {piece: k for k, piece in enumerate(distinct)}
        which = list(map(number.__getitem__, pieces))
        texts = [token_text(piece) if piece else None for piece in distinct]
        shown = list(map(texts.__getitem__, which))
        which_np = np.array(which, dtype=np.int64)
        templates = np.array([bool(piece) and _SPECIAL_PIECE.fullmatch(piece) is not None for piece in distinct])
        flags[templates[which_np]] |= _SPECIAL
        empty = np.array([text is None for text in texts])
        for i in np.flatnonzero(empty[which_np]).tolist():  # no text: the id, or a split character
            if i in parts and parts[i][0] > 1:
                shown[i] = PARTIAL_MARK
                flags[i] |= _PARTIAL
            else:
                shown[i] = NO_PIECE.format(ids[i])
    # What stands before token p that is not a token: error markers and labels on their own
    # lines, then the drift marker inline.
    errors, labels = tool_error_tokens(messages, n), boundary_labels(messages, n)
    events = sorted(set(errors) | set(labels) | ({drift_at} if drift_at is not None and 0 <= drift_at < n else set()))
    chunks: list[str] = []
    extra = np.zeros(n, dtype=np.int64)
    pending: list[tuple[int, int, int, Style]] = []  # (token, offset in its event text, length, style)
    own: list[tuple[int, int]] = []  # (token, offset in its event text) of each line holding no token
    prev = 0
    for p in events:
        chunks.append("".join(shown[prev:p]))
        at_line_start = p == 0 or shown[p - 1].endswith("\n")
        event = "" if at_line_start or (p not in errors and p not in labels) else "\n"
        for text, style in ((errors.get(p), ERROR_LABEL), (labels.get(p), LABEL)):
            if text:
                pending.append((p, len(event), len(text), style))
                own.append((p, len(event)))
                event += text + "\n"
        if p == drift_at:
            pending.append((p, len(event), len(DRIFT_MARK), DRIFT))
            event += DRIFT_MARK
        chunks.append(event)
        extra[p] = len(event)
        prev = p
    chunks.append("".join(shown[prev:]))
    lens = np.fromiter(map(len, shown), dtype=np.int64, count=n)
    starts = np.cumsum(lens + extra) - lens
    marks = [(int(starts[p] - extra[p]) + off, int(starts[p] - extra[p]) + off + length, style)
             for p, off, length, style in pending]
    own_lines = [int(starts[p] - extra[p]) + off for p, off in own]
    doc = "".join(chunks)
    if drift_at is not None and drift_at >= n:
        tail = f"{DRIFT_MARK} (past the last token: the canonical rendering is longer)"
        marks.append((len(doc), len(doc) + len(tail), DRIFT))
        doc += tail
    return TokenLayout(doc, starts, starts + lens, marks, own_lines, flags,
                       tokens.mask, tokens.logprobs, mode, advantage, tokens.trainer_logprobs)


def token_view(tokens: TokenSequence, pieces: list[str] | None, messages: list[Message],
               drift_at: int | None, mode: TokenMode = "mask",
               special: set[int] | frozenset[int] = frozenset()) -> Text:
    """The token view as one `Text` (see `token_layout`)."""
    return token_layout(tokens, pieces, messages, drift_at, mode, special).text()
