"""One small database whose every text field is hostile to a terminal or to markup.

Every string a run, a model, a question file, a judge or a reward can put in the database is
written here with Rich markup (`[/INST]`, `[/]`, `[bold red]`, links), ANSI escapes (colour,
screen clearing, an OSC 52 clipboard write), carriage returns and backspaces, bidi overrides,
zero-width joiners, wide CJK and emoji, tabs and newlines, and one 20,000-character line. Each
string also holds a plain marker word (HX...) so a test can find it on screen and check that the
text around it is shown literally.

Two runs: an eval run of 11 trajectories (one per hostile final answer) and a train run of one
GRPO group of 4. Every trajectory has tokens; two have drift. The train run's tokens are real ids
of `tests.local_tokenizers.chatml_tokenizer()` (so the token view decodes hostile pieces when
a test hands that tokenizer to the app for TRAIN_MODEL); the eval run's model has no tokenizer,
so its tokens show as ids.
"""

from __future__ import annotations

from pathlib import Path

from core.data.records import Message, Question, RewardResult, ToolCall, ToolError
from core.store import Store, TrajectoryOutcome
from core.rollout.tokens import TokenSequence

T0 = 1_790_000_000.0

# ------------------------------------------------------------------ hostile pieces
ESC = "\x1b"
ANSI_RED = f"{ESC}[31mRED{ESC}[0m"
OSC52 = f"{ESC}]52;c;SGVsbG8gd29ybGQ={ESC}\\"  # writes "Hello world" to the clipboard (ST-terminated)
OSC52_BEL = f"{ESC}]52;c;cHduZWQ=\x07"  # the same with a BEL terminator
CLEAR = f"{ESC}[2J{ESC}[H"
CR_BS = "over\rwrite\b\b\bxx"
BIDI = "\u202eevil\u202c"
ZWJ = "a\u200db 👩\u200d🔬 👨\u200d👩\u200d👧"
WIDE = "観測所 全角 🔭"
C1 = "\x9b31m"  # an 8-bit CSI
PAYLOAD = (f"[/INST] [/] [bold red]x[/] [link=http://evil]y[/link] {ANSI_RED} {OSC52_BEL} {CLEAR} {CR_BS} "
           f"{BIDI} {ZWJ} {WIDE} {C1} tab\there\nnext line")
"""Every hostile piece at once, for fields that show one string."""

# What the product promises to show instead of each control character (inspector.tui.render.visible).
SHOWN_ANSI_RED = "␛[31mRED␛[0m"
SHOWN_OSC52_BEL = "␛]52;c;cHduZWQ=\\x07"
SHOWN_OSC52 = "␛]52;c;SGVsbG8gd29ybGQ=␛\\"
SHOWN_CR_BS = "over\\x0dwrite\\x08\\x08\\x08xx"
SHOWN_BIDI = "\\u202eevil\\u202c"
SHOWN_C1 = "\\x9b31m"


def hostile(marker: str) -> str:
    """The marker first (so it survives clipping), then every hostile piece."""
    return f"{marker} {PAYLOAD}"


# ------------------------------------------------------------------ the fields
RUN_NAME_EVAL = "HXRUNE [/INST] [bold red]x[/] " + ANSI_RED + " " + OSC52_BEL + " " + BIDI + " " + WIDE + " tab\there\nnl"
RUN_NAME_TRAIN = "HXRUNT [/] [link=http://evil]y[/link] " + CLEAR + CR_BS + " " + ZWJ
MODEL_EVAL = "HXMODE[/]" + ANSI_RED + "\n\tembedded:x"
MODEL_TRAIN = "HXMODT[/INST]" + OSC52_BEL + BIDI
CONFIG = {"judge": hostile("HXCFG"), "nested": {"k" + ESC + "[/]": [ANSI_RED, BIDI]}, ESC + "key": OSC52}
CHUNK = "HXCHUNK [/] the gold " + ANSI_RED + " chunk " + BIDI + " " + WIDE
SYSTEM = "HXSYS [/INST] You are " + CLEAR + " a helper [bold]x[/]\nsecond line\twith tab " + OSC52
FINISH_HOSTILE = "HXFIN[/]" + ANSI_RED

FINAL_ANSWERS = [
    "[/INST] HXA00 the answer",
    "[/] HXA01",
    "[bold red]x[/] HXA02",
    "[link=http://evil]y[/link] HXA03",
    f"{ANSI_RED} HXA04 {OSC52_BEL} {OSC52}",
    f"HXA05 {CR_BS}",
    f"HXA06 {BIDI} reversed",
    f"HXA07 {ZWJ}",
    f"HXA08 {WIDE}",
    "HXA09 " + "W" * 20_000,
    "HXA10 line1\nline2\tTabbed\n\n" + C1,
]
"""One hostile final answer per eval trajectory, marker HXA<i>."""

SHOWN_ANSWER_PIECES = {
    0: "[/INST] HXA00", 1: "[/] HXA01", 2: "[bold red]x[/] HXA02", 3: "[link=http://evil]y[/link] HXA03",
    4: SHOWN_ANSI_RED + " HXA04", 5: "HXA05 " + SHOWN_CR_BS, 6: "HXA06 " + SHOWN_BIDI, 8: "HXA08 観測所",
}
"""A piece of each final answer as every widget must show it (on one line: no whitespace inside)."""


def question(i: int) -> Question:
    return Question(f"q{i}\x1b[0m", f"HXQ{i:02d} [bold]where[/bold] is {ANSI_RED} [/INST]?\n\t{BIDI} {WIDE}",
                    f"HXG{i:02d} [/] gold {ESC}[1mbold? {CR_BS}", chunk_content=CHUNK)


def tool_call(i: int) -> ToolCall:
    return ToolCall("HXTOOL[/]" + ANSI_RED, {"query": f"HXARG{i:02d} [/INST] " + OSC52_BEL,
                                             "k[/]" + ESC: ["[bold]" + ESC + "[1m", 3, BIDI]},
                    raw='{"name": "' + ESC + '[31m"}')


TOOL_ERROR = ToolError("HXERK[/]" + ANSI_RED, "HXERM [bold]unknown[/] " + OSC52_BEL + " tool\n\tx " + BIDI)
HOSTILE_ROLE = "HXROLE[/]" + ANSI_RED


def rewards(i: int, correct: bool) -> list[RewardResult]:
    out = [
        RewardResult("correctness", float(correct), 1.0,
                     {"judge": "HXJUDGE[/]" + ANSI_RED,
                      "reply": f"HXREPLY{i:02d} [/INST] {OSC52_BEL} yes\nno\tmaybe {BIDI} [bold red]x[/]"}),
        RewardResult("formatting", 0.5, 1.0, {"tool_errors": ["HXFMT[/]" + ANSI_RED, CR_BS]}),
        RewardResult("HXRWN[bold]x[/]" + ANSI_RED, 0.25, 0.5, {"why": "HXRWD [/] " + CLEAR + " " + BIDI}),
    ]
    if i % 2:
        out.append(RewardResult("chunk_hit", 0.0, 1.0, {"error": "HXRWE [/] " + ANSI_RED + " " + OSC52}))
    return out


# ------------------------------------------------------------------ messages and tokens
def messages(i: int, answer: str, *, error: bool = False, odd_role: bool = False) -> list[Message]:
    """System, user, assistant (reasoning + call), tool result (gold chunk), final assistant;
    with `error` the call fails (a tool error on the assistant and on the tool message)."""
    q = question(i)
    msgs = [Message("system", SYSTEM, 0),
            Message("user", f"HXUSR{i:02d} [/] {q.question}", 0)]
    think = f"<think>HXTHINK{i:02d} [/] {ANSI_RED} reason {BIDI} {CR_BS}</think>"
    if error:
        msgs += [Message("assistant", think + "HXAST [bold red]call[/] " + OSC52_BEL, 1, tool_error=TOOL_ERROR),
                 Message("tool", f"Error: {TOOL_ERROR.kind}: {TOOL_ERROR.message} HXTERR", 1, tool_error=TOOL_ERROR)]
    else:
        msgs += [Message("assistant", think + "HXAST [bold red]call[/] " + OSC52_BEL, 1, tool_call=tool_call(i)),
                 Message(HOSTILE_ROLE if odd_role else "tool",
                         f"HXRES Result 1:\n{CHUNK}\n------\n{ANSI_RED} Result 2 [/]\r\b {WIDE}\n", 1)]
    msgs.append(Message("assistant", answer, 2))
    return msgs


def _encode(tokenizer, text: str) -> list[int]:
    if tokenizer is None:  # stand-in ids, about one per 4 characters
        return list(range(1000, 1000 + max(1, len(text) // 4)))
    return list(tokenizer.encode(text, add_special_tokens=False))


def tokens_for(msgs: list[Message], tokenizer) -> TokenSequence:
    """A ChatML-shaped token sequence for `msgs`; sets each message's token span."""
    t = TokenSequence()
    prompt = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in msgs[:2]) + "<|im_start|>assistant\n"
    start, end = t.add_prompt(_encode(tokenizer, prompt))
    for m in msgs[:2]:
        m.token_start, m.token_end = start, end
    for m in msgs[2:]:
        if m.role == "assistant":
            ids = _encode(tokenizer, m.content + "<|im_end|>")
            m.token_start, m.token_end = t.add_generated(ids, [-0.03 * (k % 40) for k in range(len(ids))])
        else:
            m.token_start, m.token_end = t.add_scaffold(
                _encode(tokenizer, f"\n<|im_start|>{m.role}\n{m.content}<|im_end|>\n<|im_start|>assistant\n"))
    return t


# ------------------------------------------------------------------ the database
def build_hostile(path: Path, tokenizer=None) -> Path:
    """Write the hostile database at `path`. `tokenizer`: what encodes the train run's tokens
    (default: tests.local_tokenizers.chatml_tokenizer())."""
    if tokenizer is None:
        from tests.local_tokenizers import chatml_tokenizer

        tokenizer = chatml_tokenizer()
    path = Path(path)
    with Store.open(path) as store:
        run = store.create_run("eval", RUN_NAME_EVAL, MODEL_EVAL, CONFIG, n_planned=len(FINAL_ANSWERS))
        qs = [question(i) for i in range(len(FINAL_ANSWERS))]
        store.add_questions(run, qs)
        for i, answer in enumerate(FINAL_ANSWERS):
            error = i == 4
            finish = FINISH_HOSTILE if i in (1, 7) else "tool_error" if error else "answered"
            _write(store, run, i, qs[i], messages(i, answer, error=error, odd_role=i == 6), None,
                   correct=i % 3 == 0, finish=finish, drift_at=30 if i == 2 else None)
        train = store.create_run("train", RUN_NAME_TRAIN, MODEL_TRAIN, CONFIG, n_planned=4)
        store.add_questions(train, qs[:1])
        for sample in range(4):
            answer = FINAL_ANSWERS[sample * 2]
            _write(store, train, 0, qs[0], messages(0, answer, error=sample == 3), tokenizer,
                   correct=sample % 2 == 0, finish=FINISH_HOSTILE if sample == 1 else "answered",
                   drift_at=50 if sample == 0 else None, step=1, group=0, sample=sample,
                   advantage=1.0 if sample % 2 == 0 else -1.0)
        store.finish_run(run, "done")
        store.finish_run(train, "done")
        store.conn.execute("UPDATE runs SET created_at=?, updated_at=?, finished_at=?, pid=NULL",
                           (T0, T0 + 95, T0 + 95))
        store.conn.execute("UPDATE trajectories SET started_at=?, finished_at=?", (T0, T0 + 3))
    return path


def _write(store: Store, run: int, qidx: int, q: Question, msgs: list[Message], tokenizer, *, correct: bool,
           finish: str, drift_at: int | None, step=None, group=None, sample=0, advantage=None) -> int:
    tid = store.start_trajectory(run, qidx, q, sample=sample, step=step, group_id=group)
    tokens = tokens_for(msgs, tokenizer)
    store.add_messages(tid, list(enumerate(msgs)))
    rs = rewards(qidx + sample, correct)
    error = any(m.tool_error for m in msgs)
    store.finish_trajectory(run, tid, TrajectoryOutcome(
        status="done", finish_reason=finish, final_answer=msgs[-1].content, turns=2, tool_calls=1,
        tool_errors=int(error), tokens=tokens, rewards=rs, reward=sum(r.value * r.weight for r in rs),
        correct=correct, advantage=advantage, drift_at=drift_at))
    return tid
