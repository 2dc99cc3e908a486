"""The `rl-inspect` command.

    rl-inspect DB                  open a database in the TUI (read-only)
    rl-inspect eval [options]      run an evaluation headless (progress on stderr); in a
                                   terminal it then opens the TUI on the new run
    rl-inspect runs DB             list the runs of a database, headless

Exit codes: 0 done; 1 the run failed (model, backend or internal error); 2 bad input (options,
files, database); 130 cancelled with Ctrl-C or SIGTERM (finished trajectories are kept; finish
with `--resume RUN`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    from core.config import EvalConfig

    d = EvalConfig()
    p = sub.add_parser("eval", help="run an evaluation headless", description="Run the search agent over a "
                       "question set, score it and store every chat state in an SQLite database.")
    a = p.add_argument
    a("--db", default="runs.db", help="database to write (created if missing; default: %(default)s)")
    a("--model", default=d.model, help="embedded:smollm2-135m (default), a local model folder or a hub id")
    a("--backend", default=d.backend, choices=["hf"], help="generation backend (default: %(default)s)")
    a("--device", default=d.device, help="auto, cpu or cuda (default: %(default)s)")
    a("--corpus", help="corpus: a .md/.txt file or folder, or a .jsonl/.csv of chunks (default: built-in demo)")
    a("--demo-chunks", type=int, default=d.demo_chunks, help="size of the built-in demo corpus (default: %(default)s)")
    a("--questions", help="questions: .jsonl, .json or .csv with question and answer (default: the demo's)")
    a("--split", default=d.split, choices=["train", "test", "all"], help="question split, 90/10 with seed 42 "
      "(default: %(default)s)")
    a("--limit", type=int, help="evaluate at most this many questions")
    a("--chunk-size", type=int, default=d.chunk_size, help="characters per chunk for text corpora")
    a("--chunk-overlap", type=int, default=d.chunk_overlap, help="overlap between chunks, in characters")
    a("--retriever", default=d.retriever, choices=["bm25", "dense"], help="search index (default: %(default)s)")
    a("--top-k", type=int, default=d.top_k, help="search results per tool call (default: %(default)s)")
    a("--max-generations", type=int, default=d.max_generations, help="generation turns per question")
    a("--max-new-tokens", type=int, default=d.max_new_tokens, help="token budget after the prompt, per trajectory")
    a("--max-tokens-per-turn", type=int, default=d.max_tokens_per_turn, help="tokens per generation turn")
    a("--temperature", type=float, default=d.temperature, help="0 for greedy decoding (default: %(default)s)")
    a("--top-p", type=float, default=d.top_p)
    a("--seed", type=int, default=d.seed)
    a("--batch-size", type=int, default=d.batch_size, help="trajectories generated together")
    a("--judge", default=d.judge, choices=["llm", "exact", "f1", "contains"], help="how correctness is decided")
    a("--judge-model", help="model for --judge llm (default: the evaluated model, as the seed)")
    a("--reward-weights", default="", help="e.g. correctness=1,formatting=0.5,retry_behavior=1,chunk_hit=1")
    a("--reward", action="append", default=[], metavar="MODULE:FUNCTION", help="an extra reward function")
    a("--on-tool-error", default=d.on_tool_error, choices=["stop", "continue"],
      help="stop the trajectory on a tool error (the seed) or show the error to the model")
    a("--prompt-template", help="JSON file with 'system' and 'user' texts ({date}, {question}, {tool_definition})")
    a("--no-drift-check", action="store_true", help="skip re-tokenising each finished chat to detect drift")
    a("--name", help="run name (default: model, split and time)")
    a("--json", action="store_true", help="print the summary as JSON on stdout")
    a("--resume", type=int, metavar="RUN", help="finish an interrupted run of --db instead of starting one")
    a("--no-open", action="store_true", help="do not open the TUI afterwards (it opens only in a terminal anyway)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rl-inspect", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _eval_parser(sub)
    runs = sub.add_parser("runs", help="list the runs of a database")
    runs.add_argument("db")
    runs.add_argument("--json", action="store_true")
    view = sub.add_parser("view", help="open a database in the TUI (the default command)")
    view.add_argument("db")
    view.add_argument("--run", type=int, help="open this run straight away")
    return parser


def _config_from_args(args: argparse.Namespace):
    from core.config import EvalConfig
    from core.rewards import parse_weights

    return EvalConfig(
        model=args.model, backend=args.backend, device=args.device, corpus=args.corpus,
        demo_chunks=args.demo_chunks, questions=args.questions, split=args.split, limit=args.limit,
        chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap, retriever=args.retriever, top_k=args.top_k,
        max_generations=args.max_generations, max_new_tokens=args.max_new_tokens,
        max_tokens_per_turn=args.max_tokens_per_turn, temperature=args.temperature, top_p=args.top_p,
        seed=args.seed, batch_size=args.batch_size, judge=args.judge, judge_model=args.judge_model,
        reward_weights=parse_weights(args.reward_weights) if args.reward_weights else {},
        extra_rewards=list(args.reward), on_tool_error=args.on_tool_error, prompt_template=args.prompt_template,
        check_drift=not args.no_drift_check, name=args.name,
    )


def _print_summary(summary: dict, stream) -> None:
    def pct(x):
        return "–" if x is None else f"{x:.1%}"

    print(f"run {summary['run_id']} ({summary['name']}): {summary['trajectories']}/{summary['planned']} trajectories",
          file=stream)
    print(f"  accuracy {pct(summary['accuracy'])}   mean reward "
          f"{'–' if summary['mean_reward'] is None else format(summary['mean_reward'], '.3f')}   "
          f"tool-error rate {pct(summary['tool_error_rate'])}", file=stream)
    for name, value in summary["reward_means"].items():
        print(f"  {name:<16} {value:.3f}", file=stream)
    reasons = ", ".join(f"{k} {v}" for k, v in summary["finish_reasons"].items())
    tps = summary["tokens_per_second"]
    print(f"  finish: {reasons or '–'}   {summary['generated_tokens']} tokens generated"
          f"{'' if tps is None else f' at {tps:.1f} tok/s'}   drift in {summary['drifted_trajectories']}",
          file=stream)


def _quiet_libraries() -> None:
    """transformers' own progress bars and warnings would break the progress line."""
    from transformers.utils import logging as hf_logging

    os.environ["TQDM_DISABLE"] = "1"  # the GGUF de-quantiser uses tqdm directly
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _run_eval(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate, resume
    from core.logs import log_to_file
    from core.models import embedded_model_folder, is_embedded
    from inspector.progress import ProgressLine

    log_path = log_to_file("eval")
    _quiet_libraries()
    progress = ProgressLine()
    if args.resume is None and is_embedded(args.model) and not embedded_model_folder().exists():
        print("rl-inspect: preparing the embedded model (once, about 30 s)…", file=sys.stderr)
    # SIGTERM (a TUI cancelling, a scheduler stopping us) takes the same path as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.resume is not None:
            summary = resume(args.db, args.resume, progress)
        else:
            summary = evaluate(_config_from_args(args), args.db, progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    _print_summary(summary, sys.stderr)
    print(f"  stored in {args.db}; log: {log_path}", file=sys.stderr)
    if not args.no_open and not args.json and _interactive():
        return _run_view(args.db, summary["run_id"])
    return EXIT_OK


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("CI")


def _run_view(db: str, run_id: int | None = None) -> int:
    from inspector.tui.app import create_app

    if not Path(db).exists():
        print(f"rl-inspect: {db}: no such database (make one with: rl-inspect eval --db {db})", file=sys.stderr)
        return EXIT_BAD_INPUT
    app = create_app(db, open_run=run_id)
    app.run()
    if app.failure:
        print(f"rl-inspect: {app.failure}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _run_list(db: str, as_json: bool) -> int:
    from dataclasses import asdict

    from core.store import Store
    from core.store.queries import run_rows

    with Store.open_readonly(db) as store:
        runs = run_rows(store)
    if as_json:
        print(json.dumps([asdict(r) for r in runs], indent=2, default=str))
        return EXIT_OK
    if not runs:
        print(f"{db}: no runs yet (start one with: rl-inspect eval --db {db})")
        return EXIT_OK
    print(f"{'id':>4}  {'kind':<5} {'status':<11} {'done':>13}  {'acc':>6}  {'reward':>6}  name")
    for r in runs:
        acc = "–" if r.accuracy is None else f"{r.accuracy:.1%}"
        reward = "–" if r.mean_reward is None else f"{r.mean_reward:.3f}"
        print(f"{r.id:>4}  {r.kind:<5} {r.status:<11} {r.n_done:>6}/{r.n_planned:<6}  {acc:>6}  {reward:>6}  {r.name}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("eval", "runs", "view", "-h", "--help") and not argv[0].startswith("-"):
        argv = ["view", *argv]  # `rl-inspect runs.db`
    parser = build_parser()
    args = parser.parse_args(argv)
    from loguru import logger

    from core.logs import current_log
    from core.models import ModelError
    from core.records import InputError
    from core.store import StoreError

    try:
        if args.command == "eval":
            return _run_eval(args)
        if args.command == "view":
            return _run_view(args.db, args.run)
        return _run_list(args.db, args.json)
    except KeyboardInterrupt:
        print("rl-inspect: cancelled; finished trajectories are kept (continue with --resume RUN)", file=sys.stderr)
        return EXIT_CANCELLED
    except (InputError, StoreError, ValueError) as exc:
        logger.opt(exception=exc).debug("bad input")
        print(f"rl-inspect: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as exc:
        print(f"rl-inspect: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # anything else: one line here, the traceback in the log
        logger.opt(exception=exc).error("rl-inspect failed")
        print(f"rl-inspect: failed: {exc.__class__.__name__}: {exc} (details in {current_log() or 'the log'})",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
