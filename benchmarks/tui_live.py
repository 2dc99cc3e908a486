"""The TUI while an eval writes 50 trajectories a second: key press → frame, commit → screen.

The real viewer (`python -m inspector.cli view DB`) runs in a pseudo-terminal (120x40,
TERM=xterm-256color, truecolor). This script is its terminal: it answers Textual's query for
synchronized output, so every frame arrives between `ESC[?2026h` and `ESC[?2026l` and the end of
a frame is exact (no "no new bytes for N ms" guess). In one run, on the same database:

1. no writer: N key presses on the runs screen, Enter, N on the live run's trajectories;
2. a writer process claims that run and adds finished trajectories at --rate a second (default
   50; ~1,500 tokens, 9 messages and 4 rewards each, written as an eval writes: a pool of 10 per
   0.2 s, one transaction to start them, one per turn, one to finish them); N presses on the
   trajectories screen, Esc, N on the runs screen, while the screen follows the run.

A key is ↓ or ↑ (alternating, so the cursor moves between two rows); it is sent at a random
moment (40–200 ms after the previous key's frame), not timed around the refreshes. Its frame is
the first frame after the write that draws the cursor on the row the key moved it to (the row
is drawn in the cursor's background colour, learnt from the first press of each screen); a
refresh frame drawn before the key was handled does not count. Reported: key → start and → end
of that frame (ms), median, p95 and max. Refresh: the writer logs each commit's time and the
run's done count; every frame's text is searched for the run's "done/planned" figure; the
latency of trajectory k is the end of the first frame showing a count ≥ k minus the commit of k.
The interval between frames that show a new count tells how often the display follows.
Clocks: time.monotonic, the same clock in every process (CLOCK_MONOTONIC).

    .venv/bin/python benchmarks/tui_live.py [--presses 120] [--seconds 30] [--rate 50]
    .venv/bin/python benchmarks/tui_live.py --profile /tmp/tui.prof   # the viewer under cProfile
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.records import Message, Question, RewardResult, ToolCall
from core.rollout.tokens import TokenSequence
from core.store import Store, TrajectoryOutcome
from core.store.bulk import FinishedTrajectory

ROOT = Path(__file__).resolve().parents[1]
COLS, ROWS = 120, 40
PLANNED = 100_000
"""The live run's planned count: its "done/100,000" figure is what the script looks for on screen."""
POOL = 10
"""Trajectories the writer starts, advances turn by turn and finishes together (an eval's pool)."""
SYNC_START, SYNC_END = b"\x1b[?2026h", b"\x1b[?2026l"
SYNC_QUERY, SYNC_REPLY = b"\x1b[?2026$p", b"\x1b[?2026;2$y"
"""Textual asks whether the terminal has synchronized output (DECRQM 2026); we say it has."""
KEYS = {"down": b"\x1b[B", "up": b"\x1b[A", "enter": b"\r", "escape": b"\x1b", "quit": b"q"}
_MOVE = re.compile(rb"\x1b\[(\d+);(\d+)H")
_CSI = re.compile(r"\x1b\[[0-9;?<>=$]*[ -/]*[@-~]")
_SGR = re.compile(rb"\x1b\[([0-9;]*)m")
WORDS = ("observatory island founded telescope Qoruna Maribel year director the of in was by search result "
         "Veltran 1873 north coast astronomer station built").split()


# ------------------------------------------------------------------ the frames the viewer draws
@dataclass
class Frame:
    """One synchronized update: when its first and last bytes arrived, and what it drew per row."""

    start: float
    end: float
    rows: dict[int, bytes]
    """Screen row (1-based, as the terminal counts) → the bytes drawn on it (escape codes kept)."""

    def text(self, row: int) -> str:
        return _CSI.sub("", self.rows.get(row, b"").decode("utf-8", "replace"))

    def all_text(self) -> str:
        return "\n".join(self.text(r) for r in sorted(self.rows))


def backgrounds(payload: bytes) -> set[str]:
    """The background colours set by the SGR codes in `payload` ("48;2;r;g;b", "48;5;n", "4n")."""
    found = set()
    for match in _SGR.finditer(payload):
        codes = match.group(1).decode().split(";")
        i = 0
        while i < len(codes):
            code = codes[i]
            if code in ("38", "48", "58"):
                width = 5 if codes[i + 1: i + 2] == ["2"] else 3
                if code == "48":
                    found.add(";".join(codes[i: i + width]))
                i += width
                continue
            if len(code) == 2 and code[0] in "4" or code.startswith("10") and len(code) == 3:
                found.add(code)
            i += 1
    return found


def split_rows(body: bytes) -> dict[int, bytes]:
    """Textual starts every line (or piece of one) it draws with an absolute move, ESC[row;colH.

    Why not a terminal emulator (pyte): it is not a dependency of this project, and the two
    things measured here (which rows a frame drew, and a figure's digits) need only this."""
    rows: dict[int, bytes] = {}
    marks = list(_MOVE.finditer(body))
    for n, mark in enumerate(marks):
        end = marks[n + 1].start() if n + 1 < len(marks) else len(body)
        payload = body[mark.end(): end].rstrip(b"\r\n")
        if payload:  # an empty one is where the frame leaves the terminal's cursor
            row = int(mark.group(1))
            rows[row] = rows.get(row, b"") + payload
    return rows


class Terminal:
    """A pseudo-terminal running `argv`; a thread reads its output and cuts it into Frames."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.fd = master
        self.frames: list[Frame] = []
        self.changed = threading.Condition()
        self.synced = False
        self.raw_bytes = 0
        threading.Thread(target=self._read, daemon=True, name="pty-reader").start()

    def _read(self) -> None:
        buf, start = b"", None
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except OSError:
                break
            if not data:
                break
            now = time.monotonic()
            self.raw_bytes += len(data)
            if SYNC_QUERY in buf[-16:] + data:
                os.write(self.fd, SYNC_REPLY)
            buf += data
            while True:
                if start is None:
                    i = buf.find(SYNC_START)
                    if i < 0:
                        buf = buf[-(len(SYNC_START) - 1):]
                        break
                    buf, start = buf[i + len(SYNC_START):], now
                    self.synced = True
                j = buf.find(SYNC_END)
                if j < 0:
                    break
                frame = Frame(start, now, split_rows(buf[:j]))
                buf, start = buf[j + len(SYNC_END):], None
                with self.changed:
                    self.frames.append(frame)
                    self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def press(self, key: str) -> tuple[float, int]:
        """Write the key; (the time it was written, the number of frames before it)."""
        with self.changed:
            index = len(self.frames)
        t = time.monotonic()
        os.write(self.fd, KEYS[key])
        return t, index

    def wait_frame(self, index: int, test, timeout: float) -> Frame | None:
        """The first frame from `index` on for which `test(frame)` holds; None after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for frame in self.frames[index:]:
                    if test(frame):
                        return frame
                index = len(self.frames)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.changed.wait(left)

    def settle(self, quiet: float = 0.5, timeout: float = 20.0) -> None:
        """Wait until no frame came for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.changed:
                last = self.frames[-1].end if self.frames else 0.0
            if self.frames and time.monotonic() - last >= quiet:
                return
            time.sleep(0.05)

    def idle(self, share: float = 0.1, window: float = 0.5, timeout: float = 120.0) -> None:
        """Wait until the viewer uses less than `share` of a core over `window` seconds (the run's
        mask lint, started as its trajectories open, must not run into a no-writer case)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c0 = self.cpu_seconds()
            time.sleep(window)
            if self.cpu_seconds() - c0 < share * window:
                return

    def cpu_seconds(self) -> float:
        """User + system CPU the viewer process has used so far (from /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.write(self.fd, KEYS["quit"])
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                _kill(self.proc)
        os.close(self.fd)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ------------------------------------------------------------------ trajectories and the writer
def templates(n: int, seed: int = 0) -> list[tuple[list[Message], TokenSequence]]:
    """`n` chats of a search agent: prompt, 3 search turns with results, an answer; ~1,500 tokens."""
    rng = np.random.default_rng(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS, k))

    def ids(k: int) -> list[int]:
        return rng.integers(0, 49152, k).tolist()

    out = []
    for _ in range(n):
        t = TokenSequence()
        s, e = t.add_prompt(ids(int(rng.integers(250, 350))))
        msgs = [Message("system", text(60), 0, token_start=s, token_end=e),
                Message("user", "In which year was the Veltran Observatory founded? " + text(20), 0,
                        token_start=s, token_end=e)]
        for turn in (1, 2, 3):
            k = int(rng.integers(60, 200))
            s, e = t.add_generated(ids(k), (-rng.exponential(0.3, k)).tolist())
            msgs.append(Message("assistant", text(k // 2), turn, tool_call=ToolCall("search_corpus", {"query": text(4)}),
                                token_start=s, token_end=e))
            s, e = t.add_scaffold(ids(int(rng.integers(200, 350))))
            msgs.append(Message("tool", text(200), turn, token_start=s, token_end=e))
        k = int(rng.integers(20, 60))
        s, e = t.add_generated(ids(k), (-rng.exponential(0.3, k)).tolist())
        msgs.append(Message("assistant", "1873 " + text(k // 2), 4, token_start=s, token_end=e))
        out.append((msgs, t))
    return out


def outcome(qidx: int, tokens: TokenSequence) -> TrajectoryOutcome:
    correct = qidx % 3 != 0
    rewards = [RewardResult("correctness", float(correct), 1.0, {"judge": "exact", "reply": ""}),
               RewardResult("formatting", 0.7), RewardResult("retry_behavior", 0.5, 1.0, {"tool_calls": 3}),
               RewardResult("chunk_hit", 1.0, 1.0, {"hit_turn": 2})]
    return TrajectoryOutcome("done", "answered", "1873", 4, 3, 0, tokens, rewards,
                             sum(r.value for r in rewards), correct, generation_seconds=1.0)


def question(qidx: int) -> Question:
    return Question(f"q{qidx}", f"In which year was observatory {qidx} founded?", "1873")


def build_db(path: Path, runs: int = 20, per_run: int = 200, live_done: int = 2_000) -> int:
    """Finished runs to browse, then the live run (newest, so at the top) with `live_done`
    trajectories, left 'cancelled' for the writer to claim. Returns the live run's id."""
    chats = templates(16)
    with Store.open(path) as store:
        for r in range(runs + 1):
            live = r == runs
            n = live_done if live else per_run
            run = store.create_run("eval", "live-eval" if live else f"eval-{r:02d}", "embedded:smollm2-135m",
                                   {"judge": "exact"}, n_planned=PLANNED if live else per_run)
            for lo in range(0, n, 500):
                store.bulk_write(run, [FinishedTrajectory(q, question(q), chats[q % 16][0], outcome(q, chats[q % 16][1]))
                                       for q in range(lo, min(n, lo + 500))])
            store.finish_run(run, "cancelled" if live else "done")
    return run


def write_live(db: str, run_id: int, rate: float, log_path: str) -> None:
    """The writer process: claim `run_id` and finish POOL trajectories every POOL/rate seconds
    as core.evaluate writes them, until killed; after each finishing commit, log
    "<monotonic time> <run's done count>"."""
    chats = templates(32, seed=1)
    store = Store.open(db)
    store.claim_run(run_id)
    done = store.conn.execute("SELECT n_done FROM runs WHERE id=?", (run_id,)).fetchone()[0]
    period = POOL / rate
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(log_path, "w", buffering=1) as log:
        began = time.monotonic()
        for batch in range(1 << 40):
            pause = began + batch * period - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            pool = [(done + i, *chats[(done + i) % len(chats)]) for i in range(POOL)]
            with store.transaction():
                ids = [store.start_trajectory(run_id, q, question(q)) for q, _, _ in pool]
            for turn in range(5):
                with store.transaction():
                    for tid, (_, msgs, _) in zip(ids, pool):
                        store.add_messages(tid, [(p, m) for p, m in enumerate(msgs) if m.turn == turn])
            with store.transaction():
                for tid, (q, _, tokens) in zip(ids, pool):
                    store.finish_trajectory(run_id, tid, outcome(q, tokens))
            done += POOL
            log.write(f"{time.monotonic():.6f} {done}\n")


# ------------------------------------------------------------------ measuring
@dataclass
class Screen:
    """Where one screen's table cursor is: its home row, the row it is on, and its colour."""

    home: int
    """The screen row (1-based) the cursor starts on; keys move it between here and the next row."""
    cursor_bg: set[str]
    """The background colour(s) only the cursor's row is drawn in."""
    at: int = 0
    """The row it is on now."""

    def __post_init__(self) -> None:
        self.at = self.at or self.home

    def find(self, frames: list[Frame]) -> None:
        """Set `at` from the last frame that drew the cursor's colour (after a key went missing)."""
        for frame in reversed(frames):
            rows = [r for r in frame.rows if on_row(frame, r, self.cursor_bg)]
            if rows:
                self.at = rows[0]
                return


def on_row(frame: Frame, row: int, bg: set[str]) -> bool:
    return row in frame.rows and bool(backgrounds(frame.rows[row]) & bg)


def calibrate(term: Terminal) -> Screen:
    """Press down and up once: the down frame draws two adjacent rows, the lower one gaining a
    background colour the upper one loses; up must give it back."""
    for _ in range(5):
        t, index = term.press("down")
        frame = term.wait_frame(index, lambda f: len(f.rows) >= 2, 5.0)
        if frame is None:
            continue
        for row in sorted(frame.rows):
            if row + 1 in frame.rows:
                gained = backgrounds(frame.rows[row + 1]) - backgrounds(frame.rows[row])
                if gained:
                    t, index = term.press("up")
                    if term.wait_frame(index, lambda f, r=row, g=gained: on_row(f, r, g), 5.0):
                        term.settle(0.3)
                        return Screen(row, gained)
        term.press("up")
        term.settle(0.3)
    raise RuntimeError("could not find the table cursor on screen (no frame moved it one row)")


def presses(term: Terminal, screen: Screen, n: int, seconds: float, rng: random.Random) -> dict[str, list[float]]:
    """Press down (cursor on its home row) or up (on the next) at random moments until `n` presses
    and `seconds` have passed. Returns ms from the key's write to the start and to the end of the
    frame that drew the cursor where the key moved it, and one entry in "lost" for each key whose
    frame never came within 2 s (the cursor is then looked for; more than n/4 lost ends the case)."""
    out: dict[str, list[float]] = {"start": [], "end": [], "lost": []}
    began = time.monotonic()
    while (len(out["end"]) < n or time.monotonic() - began < seconds) and len(out["lost"]) <= n // 4:
        time.sleep(rng.uniform(0.04, 0.2))
        target = screen.home + 1 if screen.at == screen.home else screen.home
        t, index = term.press("down" if target > screen.at else "up")
        frame = term.wait_frame(index, lambda f: on_row(f, target, screen.cursor_bg), 2.0)
        if frame is None:
            out["lost"].append(1.0)
            term.settle(0.3, timeout=3.0)
            with term.changed:
                screen.find(term.frames)
            continue
        screen.at = target
        out["start"].append((frame.start - t) * 1e3)
        out["end"].append((frame.end - t) * 1e3)
    return out


def shown_counts(frames: list[Frame], since: float, until: float) -> list[tuple[float, int]]:
    """(end time, done count) of each frame in [since, until] that shows a new, larger count."""
    pattern = re.compile(r"(\d[\d,]*)/" + re.escape(f"{PLANNED:,}"))
    out: list[tuple[float, int]] = []
    for frame in frames:
        if not since <= frame.end <= until:
            continue
        counts = [int(m.group(1).replace(",", "")) for m in pattern.finditer(frame.all_text())]
        if counts and (not out or max(counts) > out[-1][1]):
            out.append((frame.end, max(counts)))
    return out


def refresh_latency(shown: list[tuple[float, int]], commits: list[tuple[float, int]]) -> tuple[list[float], list[float]]:
    """Per committed trajectory: seconds from its commit to the first frame showing it; and the
    seconds between successive frames that showed a new count."""
    latencies = []
    for when, count in commits:
        if when < shown[0][0] - 1.0:
            continue  # committed before this screen was watched
        first = next((t for t, c in shown if c >= count), None)
        if first is None:
            break
        latencies += [first - when] * POOL
    intervals = [b[0] - a[0] for a, b in zip(shown, shown[1:])]
    return latencies, intervals


def stats(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    a = np.asarray(values)
    return float(np.median(a)), float(np.percentile(a, 95)), float(a.max())


def read_commits(path: Path) -> list[tuple[float, int]]:
    out = []
    for line in path.read_text().splitlines():
        t, n = line.split()
        out.append((float(t), int(n)))
    return out


def measure(args: argparse.Namespace, tmp: Path) -> None:
    db = tmp / "live.db"
    t = time.monotonic()
    run_id = build_db(db)
    print(f"database: {time.monotonic() - t:.1f} s to build (20 runs of 200 trajectories, live run {run_id} of 2,000)",
          flush=True)
    env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor", RL_INSPECT_LOG_DIR=str(tmp / "logs"),
               RL_INSPECT_CACHE=str(tmp / "cache"))
    env.pop("TEXTUAL", None)
    argv = [sys.executable, "-m", "inspector.cli", "view", str(db)]
    if args.profile:
        argv[1:3] = ["-m", "cProfile", "-o", args.profile, "-m", "inspector.cli"]
    rng = random.Random(7)
    term = Terminal(argv, env)
    writer = None
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    cpu: dict[tuple[str, str], float] = {}
    try:
        if term.wait_frame(0, lambda f: "live-eval" in f.all_text(), 30.0) is None:
            raise RuntimeError("the viewer drew no runs screen in 30 s "
                               f"(synchronized output {'on' if term.synced else 'never seen'})")
        term.settle()
        term.idle()

        def case(name: str, screen_name: str, screen: Screen) -> None:
            c0, w0 = term.cpu_seconds(), time.monotonic()
            results[(name, screen_name)] = presses(term, screen, args.presses, args.min_seconds, rng)
            cpu[(name, screen_name)] = (term.cpu_seconds() - c0) / (time.monotonic() - w0)
            print(f"  {name:<10} {screen_name:<13} {len(results[(name, screen_name)]['end'])} presses", flush=True)

        runs = calibrate(term)
        case("no writer", "runs", runs)
        if runs.at != runs.home:  # the cursor back on the live run, then open it
            t, index = term.press("up")
            term.wait_frame(index, lambda f: on_row(f, runs.home, runs.cursor_bg), 5.0)
            runs.at = runs.home
        t, index = term.press("enter")
        if term.wait_frame(index, lambda f: f"live-eval · cancelled · {2_000:,}/{PLANNED:,} done" in f.all_text(),
                           10.0) is None:
            raise RuntimeError("Enter on the runs screen did not open the live run")
        term.settle()
        term.idle()
        trajectories = calibrate(term)
        case("no writer", "trajectories", trajectories)

        log = tmp / "commits.log"
        writer = subprocess.Popen([sys.executable, __file__, "--writer", str(db), str(run_id), str(args.rate), str(log)],
                                  cwd=ROOT, start_new_session=True)
        time.sleep(2.0)  # the writer's first commits, the screen's first refreshes
        watched = {}
        w0 = time.monotonic()
        case("writer", "trajectories", trajectories)
        watched["trajectories"] = (w0, time.monotonic())
        term.press("escape")
        term.settle(0.2, timeout=3.0)
        time.sleep(1.5)
        w0 = time.monotonic()
        case("writer", "runs", runs)
        watched["runs"] = (w0, time.monotonic())
        _kill(writer)
        commits = read_commits(log)
    finally:
        if writer is not None:
            _kill(writer)
        term.close()
    report(args, results, cpu, commits, watched, term.frames)


def report(args, results, cpu, commits, watched, frames) -> None:
    first, last = commits[0], commits[-1]
    rate = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else float("nan")
    print(f"\nviewer in a pty {COLS}x{ROWS}, synchronized frames; keys ↓/↑ alternating at random moments; "
          f"{args.presses}+ presses a case")
    print(f"writer: {rate:.1f} trajectories/s achieved (asked {args.rate:g}; {len(commits)} commits of {POOL}, "
          f"~1,500 tokens each)")
    head = f"{'screen':<13} {'measure (ms)':<24} {'no writer: med':>14} {'p95':>6} {'max':>6}   " \
           f"{'writer: med':>11} {'p95':>6} {'max':>6}   {'ratio med':>9} {'lost':>5}"
    print(head)
    for screen in ("runs", "trajectories"):
        for what, label in (("start", "key → frame start"), ("end", "key → frame end")):
            a = stats(results[("no writer", screen)][what])
            b = stats(results[("writer", screen)][what])
            lost = len(results[("writer", screen)]["lost"]) + len(results[("no writer", screen)]["lost"])
            print(f"{screen:<13} {label:<24} {a[0]:>14.1f} {a[1]:>6.1f} {a[2]:>6.1f}   "
                  f"{b[0]:>11.1f} {b[1]:>6.1f} {b[2]:>6.1f}   {b[0] / a[0]:>8.2f}x {lost:>5}")
    for screen in ("runs", "trajectories"):
        print(f"{screen:<13} {'viewer CPU, % of a core':<24} {cpu[('no writer', screen)] * 100:>14.0f} {'':>6} {'':>6}   "
              f"{cpu[('writer', screen)] * 100:>11.0f}")
    print("\nrefresh while writing: commit of a trajectory → its done count on screen (s); "
          "interval between frames showing a new count (s)")
    print(f"{'screen':<13} {'latency med':>11} {'p95':>6} {'max':>6}   {'interval med':>12} {'max':>6} {'updates':>8}")
    for screen, (since, until) in watched.items():
        shown = shown_counts(frames, since, until)
        if not shown:
            print(f"{screen:<13} the count never changed on screen")
            continue
        latencies, intervals = refresh_latency(shown, [c for c in commits if c[0] <= until])
        lat, gap = stats(latencies), stats(intervals)
        print(f"{screen:<13} {lat[0]:>11.2f} {lat[1]:>6.2f} {lat[2]:>6.2f}   {gap[0]:>12.2f} {gap[2]:>6.2f} "
              f"{len(shown):>8}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        db, run_id, rate, log = sys.argv[2:6]
        write_live(db, int(run_id), float(rate), log)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=120, help="key presses per screen and case (default 120)")
    parser.add_argument("--seconds", dest="min_seconds", type=float, default=30.0,
                        help="each writing case lasts at least this long (default 30; no-writer cases too)")
    parser.add_argument("--rate", type=float, default=50.0, help="trajectories a second the writer adds (default 50)")
    parser.add_argument("--profile", help="run the viewer under cProfile, writing its stats to this file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` ends the children
    tmp = Path(tempfile.mkdtemp(prefix="rl-inspect-tui-live-"))
    try:
        measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
