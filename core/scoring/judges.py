"""Deciding whether a final answer is correct.

Judges are batched (`judge(items)` takes a whole batch) so an LLM judge costs one generation
call per batch, as the seed's `check_student_answers` did. Deterministic judges need no model
and are what CI and quick local runs use. Every verdict carries a `detail` saying what was
compared, so a reader of the database can see why an answer was marked right or wrong.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from core.rollout.toolcalls import strip_reasoning

Complete = Callable[[list[str]], "Sequence[str | Reply]"]
"""Plain user-message texts -> replies (the caller applies the chat template): reply texts, or
objects with `text` and `finish_reason` ("length": cut at the token limit), such as
core.backends.Generation, so a verdict can say that its reply was cut."""

JUDGE_NAMES = ("llm", "exact", "f1", "contains")
"""The judges build_judge makes."""
JUDGE_CHOICES = ("auto", *JUDGE_NAMES)
"""What --judge accepts: "auto" is resolved by effective_judge before a run starts."""
DEFAULT_JUDGE = "f1"
"""The judge "auto" means without a judge model. A small policy asked to grade itself says "Yes"
to nonsense (issue 13: SmolLM2-135M passed 45% of its own answers, "To call the function, y…"
among them), so without a separate judge model the default is deterministic: token F1 >= 0.5,
the SQuAD-style metric short-answer QA and search-agent RL (Search-R1, ReSearch) report."""
JUDGE_MAX_TOKENS = 1024
"""Reply budget of the LLM judge. A one-word verdict needs a handful of tokens, but a thinking
model (Qwen3, DeepSeek-R1) reasons first; cut at 8 tokens its reply was "<think>\nOkay, let me
compare the" and read as "no" (issue 13)."""
UNPARSEABLE = "unparseable"
"""The verdict of an LLM judge reply with no yes or no: not judged (correct None), not wrong."""


@dataclass(frozen=True)
class JudgeItem:
    """One answer to grade."""

    question: str
    gold: str
    answer: str


class Reply(Protocol):
    """A judge model's reply with how it ended (core.backends.Generation has these)."""

    text: str
    finish_reason: str


@dataclass
class Verdict:
    """A judge's decision on one answer: correct or not, a score in [0, 1], and why.

    `correct` is None when the judge gave no verdict (an LLM judge's reply with no yes or no):
    such an answer is counted as not judged, neither right nor wrong, and its score is 0.0 (a
    reward must be a number).
    """

    correct: bool | None
    score: float
    detail: dict[str, Any] = field(default_factory=dict)


class Judge(Protocol):
    """Grades a batch of answers; `name` is stored with each correctness reward."""

    name: str

    def judge(self, items: list[JudgeItem]) -> list[Verdict]: ...


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD-style normalisation: lowercase, drop punctuation and articles, collapse whitespace.

    Punctuation is deleted (not replaced by a space) as in SQuAD, so "U.S." becomes "us" and
    "1,000" becomes "1000"; Unicode punctuation (curly quotes, dashes) is deleted too.
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in string.punctuation and not unicodedata.category(ch).startswith("P"))
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def token_f1(answer: str, gold: str) -> float:
    """Token-overlap F1 of two already normalised strings (0.0 if either is empty)."""
    a, g = answer.split(), gold.split()
    if not a or not g:
        return 0.0
    same = sum((Counter(a) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(a), same / len(g)
    return 2 * precision * recall / (precision + recall)


class _PerItemJudge:
    """Base for judges that grade each answer on its own."""

    name = "base"

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        return [self.judge_one(item) for item in items]

    def judge_one(self, item: JudgeItem) -> Verdict:
        raise NotImplementedError


class ExactMatchJudge(_PerItemJudge):
    """Correct when the normalised answer equals the normalised gold answer.

    The seed's `verify()` compared `strip().lower()`; normalising punctuation, articles and
    whitespace as well is stricter about what counts as "the same text" and fairer to answers
    such as "The Eiffel Tower." for gold "Eiffel Tower". An empty answer is never correct.
    """

    name = "exact"

    def judge_one(self, item: JudgeItem) -> Verdict:
        answer, gold = normalize_answer(item.answer), normalize_answer(item.gold)
        correct = bool(answer) and answer == gold
        return Verdict(correct, 1.0 if correct else 0.0, {"answer": answer, "gold": gold})


class F1Judge(_PerItemJudge):
    """Correct when the token F1 of answer and gold reaches `threshold`; the score is the F1.

    Useful for gold answers that are phrases, where a verbose but right answer should count.
    """

    name = "f1"

    def __init__(self, threshold: float = 0.5):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"F1 threshold must be in [0, 1], not {threshold}")
        self.threshold = threshold

    def judge_one(self, item: JudgeItem) -> Verdict:
        answer, gold = normalize_answer(item.answer), normalize_answer(item.gold)
        f1 = token_f1(answer, gold)
        correct = bool(answer) and f1 >= self.threshold
        return Verdict(correct, f1, {"answer": answer, "gold": gold, "f1": round(f1, 6),
                                     "threshold": self.threshold})


class ContainsJudge(_PerItemJudge):
    """Correct when the normalised gold appears as whole, consecutive tokens in the answer.

    "Paris" is found in "It is Paris, France" but not in "Parisian"; an empty gold matches nothing.
    """

    name = "contains"

    def judge_one(self, item: JudgeItem) -> Verdict:
        answer, gold = normalize_answer(item.answer), normalize_answer(item.gold)
        correct = _contains_tokens(answer.split(), gold.split())
        return Verdict(correct, 1.0 if correct else 0.0, {"answer": answer, "gold": gold})


def _contains_tokens(haystack: list[str], needle: list[str]) -> bool:
    if not needle:
        return False
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


_JUDGE_PROMPT = """You are checking an answer against a reference.

Question: {question}
Reference answer: {gold}
Given answer: {answer}

Does the given answer state the same thing as the reference answer? Extra detail is fine; a different or missing fact is not.
Reply with exactly one word: Yes or No."""

_EDGE = "*_`\"'“”‘’#>"
_TRAILING = _EDGE + ".,!:;)]"


def read_yes_no(reply: str) -> str:
    """'yes', 'no' or 'unparseable': the first word of a reply, read strictly.

    Reasoning is stripped first (core.rollout.toolcalls.strip_reasoning: every <think>...</think>
    block, everything before a stray </think>, and an unclosed <think> to the end, so a reply cut
    while thinking has nothing left and is unparseable). Surrounding whitespace, markdown emphasis
    and quotes are ignored, and trailing punctuation is allowed ("**Yes.**"); any other first word
    ("Answer: yes", "Yes-ish") is unparseable. The seed instead accepted any reply containing
    "yes", so "No, yes-men..." passed.
    """
    words = strip_reasoning(reply).strip().lstrip(_EDGE).split()
    if not words:
        return "unparseable"
    first = words[0].rstrip(_TRAILING).lower()
    return first if first in ("yes", "no") else UNPARSEABLE


class LLMJudge:
    """Asks a language model whether each answer matches the gold answer.

    `complete` is called once per batch with every prompt. `max_tokens` is the reply budget the
    caller gives `complete` (JUDGE_MAX_TOKENS by default: room for a thinking model's reasoning);
    it is recorded in each verdict's detail, with "cut": True when a reply says it stopped at that
    limit. A reply with no yes or no once its reasoning is stripped is UNPARSEABLE: correct None
    (not judged), never read as "no". An empty answer is marked wrong without asking the model,
    because small judges readily say "Yes" to nothing.
    """

    name = "llm"

    def __init__(self, complete: Complete, max_tokens: int = JUDGE_MAX_TOKENS):
        if max_tokens < 1:
            raise ValueError(f"judge max_tokens must be at least 1, not {max_tokens}")
        self.complete = complete
        self.max_tokens = max_tokens

    def prompt(self, item: JudgeItem) -> str:
        return _JUDGE_PROMPT.format(question=item.question.strip(), gold=item.gold.strip(),
                                    answer=item.answer.strip())

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        """One verdict per item; ValueError when the model returns another number of replies."""
        asked = [i for i, item in enumerate(items) if item.answer.strip()]
        replies = list(self.complete([self.prompt(items[i]) for i in asked])) if asked else []
        if len(replies) != len(asked):
            raise ValueError(f"LLM judge got {len(replies)} replies for {len(asked)} prompts")
        verdicts = [Verdict(False, 0.0, {"reply": "", "verdict": "empty_answer"}) for _ in items]
        for i, reply in zip(asked, replies):
            text = reply if isinstance(reply, str) else str(reply.text)
            verdict = read_yes_no(text)
            correct = None if verdict == UNPARSEABLE else verdict == "yes"
            detail: dict[str, Any] = {"reply": text, "verdict": verdict, "max_tokens": self.max_tokens}
            if getattr(reply, "finish_reason", None) == "length":
                detail["cut"] = True
            verdicts[i] = Verdict(correct, 1.0 if correct else 0.0, detail)
        return verdicts


def build_judge(name: str, complete: Complete | None = None, max_tokens: int = JUDGE_MAX_TOKENS) -> Judge:
    """The judge called `name` (one of JUDGE_NAMES; resolve "auto" with effective_judge first).

    "llm" needs a `complete` function to ask the model, called with a reply budget of
    `max_tokens`. ValueError for an unknown name or an "llm" judge without `complete`.
    """
    if name == "llm":
        if complete is None:
            raise ValueError("the 'llm' judge needs a model to ask (no complete function given)")
        return LLMJudge(complete, max_tokens)
    deterministic: dict[str, Callable[[], Judge]] = {
        "exact": ExactMatchJudge, "f1": F1Judge, "contains": ContainsJudge}
    if name not in deterministic:
        raise ValueError(f"unknown judge {name!r} (valid: {', '.join(JUDGE_NAMES)})")
    return deterministic[name]()


def effective_judge(judge: str, judge_model: str | None, default: str = DEFAULT_JUDGE) -> str:
    """The judge a run uses: `judge` itself, or for "auto" the LLM judge when a judge model is
    named (`--judge-model`) and `default` (a deterministic judge) when none is.

    The rule is issue 13's: the policy never grades itself unless asked (`--judge llm`), since a
    small policy says "Yes" to nonsense. ValueError for a name outside JUDGE_CHOICES.
    """
    if judge not in JUDGE_CHOICES:
        raise ValueError(f"--judge must be one of {', '.join(JUDGE_CHOICES)}, not {judge!r}")
    if judge != "auto":
        return judge
    return "llm" if judge_model else default


def judge_label(config: Mapping[str, Any] | str | None) -> str | None:
    """Which judge decided a run, from its stored configuration (runs.config, as a mapping or as
    its JSON text): "exact", "f1", "contains", or "llm:<model>" naming the model asked
    (`judge_model`, else the policy `model`: the seed's default, a policy grading itself). None
    when the configuration names no judge (runs of other tools, or text that is not a JSON object).

    Runs stored before issue 13 hold the judge they ran ("llm" by default then); a stored "auto"
    (never written by this version) is resolved as effective_judge does.
    """
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return None
    if not isinstance(config, Mapping) or not isinstance(config.get("judge"), str) or not config["judge"]:
        return None
    judge, judge_model = config["judge"], config.get("judge_model")
    if judge == "auto":
        judge = "llm" if judge_model else DEFAULT_JUDGE
    if judge != "llm":
        return judge
    model = judge_model or config.get("model")
    return f"llm:{model}" if model else "llm"


def verdict_correct(result: Any) -> bool | None:
    """trajectories.correct for a trajectory's correctness reward (a core.data.records.RewardResult):
    None without one or when the judge gave no verdict (detail "verdict" UNPARSEABLE), else
    whether the value is 1.0. Accuracy is correct / judged; the unjudged are counted apart."""
    if result is None:
        return None
    detail = result.detail if isinstance(result.detail, dict) else {}
    if detail.get("verdict") == UNPARSEABLE:
        return None
    return result.value >= 1.0
