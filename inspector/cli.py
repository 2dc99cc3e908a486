"""The `rl-inspect` command.

    rl-inspect DB                  open a database in the TUI (read-only)
    rl-inspect eval [options]      run an evaluation headless (progress on stderr); in a
                                   terminal it then opens the TUI on the new run
    rl-inspect runs DB             list the runs of a database, headless
    rl-inspect train [options]     GRPO training through TRL with the agent loop, every step
                                   stored (progress on stderr)
    rl-inspect lint DB [--run N]   check every trajectory's mask, logprobs and token counts
                                   (core.lint); exit 1 when any error-severity finding
    rl-inspect compare DB A B      two runs side by side by question: flips, reward and
                                   tool-call differences (core.store.compare)
    rl-inspect export DB --run N [--format jsonl|parquet] [--out FILE]
                                   one record per trajectory (messages, rewards, tokens,
                                   mask, logprobs), streamed (core.store.export)
    rl-inspect import PATH... --db DB [--format auto|jsonl|verl|verifiers|inspect] [--name NAME]
                                   convert rollouts other tools wrote (the export's JSONL,
                                   verl rollout dumps, verifiers results, v1 traces and
                                   prime-rl folders, Inspect logs) into runs (core.importers)
    rl-inspect merge OUT IN...     combine the databases of several writers into OUT,
                                   idempotently (core.store.merge)
    rl-inspect DB --trajectory ID  open one trajectory straight away
    rl-inspect LOG [--no-follow] [--format F]
                                   a log another tool wrote (a file or folder) imported into a
                                   cache database and opened (core.importers.cache); a folder
                                   (a training run's step files) is imported again every 5 s
                                   while the TUI is open

Exit codes: 0 done; 1 the run failed (model, backend or internal error); 2 bad input (options,
files, database); 130 cancelled with Ctrl-C or SIGTERM (finished trajectories are kept; finish
with `--resume RUN`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from inspector.literal import one_line

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    from core.config import EvalConfig

    d = EvalConfig()
    p = sub.add_parser("eval", help="run an evaluation headless", description="Run the search agent over a "
                       "question set, score it and store every chat state in an SQLite database.")
    a = p.add_argument
    a("--db", default="runs.db", help="database to write (created if missing; default: %(default)s)")
    a("--model", default=d.model, help="embedded:smollm2-135m (default), a local model folder or a hub id")
    a("--backend", default=d.backend, choices=["hf", "openai", "vllm"], help="generation backend: hf (transformers, "
      "default), openai (an OpenAI-compatible server at --base-url; --model names its local tokenizer) or vllm "
      "(vllm.LLM on GPUs: pip install 'rl-inspect[vllm]')")
    a("--tensor-parallel-size", type=int, default=d.tensor_parallel_size, help="--backend vllm: GPUs one engine "
      "spans (default: %(default)s)")
    a("--gpu-memory-utilization", type=float, default=d.gpu_memory_utilization, help="--backend vllm: fraction "
      "of GPU memory the engine takes (default: %(default)s)")
    a("--max-model-len", type=int, help="--backend vllm: the engine's context length (default: the model's)")
    a("--lora", metavar="DIR", help="--backend vllm: a peft LoRA adapter folder applied to every request")
    a("--base-url", help="--backend openai: the server's address, e.g. http://127.0.0.1:8000 (vllm serve, "
      "llama-server, SGLang or a hosted endpoint)")
    a("--api-key-env", metavar="NAME", help="environment variable holding the server's API key (default: "
      "OPENAI_API_KEY when set); keys are never taken from the command line nor stored")
    a("--server-model", metavar="NAME", help="the model's name at the server (default: --model)")
    a("--max-concurrency", type=int, default=d.max_concurrency, help="server requests in flight at once "
      "(default: %(default)s)")
    a("--request-timeout", type=float, default=d.request_timeout, metavar="SECONDS", help="time one server "
      "request may take (default: %(default)s)")
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
    a("--judge", default=d.judge, choices=["auto", "llm", "exact", "f1", "contains"], help="how correctness is "
      "decided: auto (default) is the LLM judge when --judge-model names a model, else f1 (token F1 >= 0.5); "
      "llm without --judge-model asks the evaluated model itself, as the seed did")
    a("--judge-model", help="model for the LLM judge (implies --judge llm under auto)")
    a("--judge-max-tokens", type=int, default=d.judge_max_tokens, help="reply budget of the LLM judge, room for a "
      "thinking model to reason (default: %(default)s)")
    a("--judge-backend", choices=["hf", "openai", "vllm"], help="backend of --judge-model (default: --backend); "
      "openai asks it over the chat-completions endpoint (/v1/chat/completions), no local tokenizer needed, "
      "so a hosted chat model can judge")
    a("--judge-base-url", help="server of --judge-model under --judge-backend openai (default: --base-url); "
      "the served name is --judge-model, the key the same --api-key-env")
    a("--reward-weights", default="", help="e.g. correctness=1,formatting=0.5,retry_behavior=1,chunk_hit=1")
    a("--reward", action="append", default=[], metavar="MODULE:FUNCTION", help="an extra reward function "
      "(repeatable): package.module:function or path/to/file.py:function; it returns a number or "
      "(number, dict), and a failure is counted in the summary")
    a("--on-tool-error", default=d.on_tool_error, choices=["stop", "continue"],
      help="stop the trajectory on a tool error (the seed) or show the error to the model")
    a("--prompt-template", help="JSON file with 'system' and 'user' texts ({date}, {question}, {tool_definition})")
    a("--chat-template", metavar="FILE", help="Jinja chat template replacing the model's own (as vLLM's and "
      "TRL's --chat-template)")
    a("--tool-format", default=d.tool_format, choices=["auto", "seed", "native"], help="auto: native tool calling "
      "where the chat template supports tools, else the seed's format (default: %(default)s)")
    a("--no-drift-check", action="store_true", help="skip re-tokenising each finished chat to detect drift")
    a("--no-kv-reuse", action="store_true", help="--backend hf: prefill every turn's whole chat instead of "
      "reusing the keys and values earlier turns and other rows computed")
    a("--name", help="run name (default: model, split and time)")
    a("--shard", type=_shard, metavar="I/N", help="evaluate only the questions i with i %% N == I (0 <= I < N): "
      "N processes, one per GPU or host, each with its own --db, split one evaluation; `rl-inspect merge OUT "
      "DB...` combines their runs into one")
    a("--job", metavar="NAME", help="with --shard: names the evaluation the shards belong to (default: a digest "
      "of the other options, the same in every shard of one command)")
    a("--json", action="store_true", help="print the summary as JSON on stdout")
    a("--resume", type=int, metavar="RUN", help="finish an interrupted run of --db instead of starting one")
    a("--no-open", action="store_true", help="do not open the TUI afterwards (it opens only in a terminal anyway)")


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from core.train.config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="GRPO training through TRL, every step stored",
                       description="Train the search agent with TRL's GRPOTrainer, this project's agent loop as "
                       "rollout_func; every trajectory (with step, group and advantage) and every step's metrics "
                       "are stored in an SQLite database.")
    a = p.add_argument
    a("--db", default="runs.db", help="database to write (created if missing; default: %(default)s)")
    a("--model", default=d.model, help="embedded:smollm2-135m (default), a local model folder or a hub id")
    a("--device", default=d.device, help="auto, cpu or cuda (default: %(default)s)")
    a("--corpus", help="corpus: a .md/.txt file or folder, or a .jsonl/.csv of chunks (default: built-in demo)")
    a("--demo-chunks", type=int, default=d.demo_chunks, help="size of the built-in demo corpus")
    a("--questions", help="questions: .jsonl, .json or .csv with question and answer (default: the demo's)")
    a("--split", default=d.split, choices=["train", "test", "all"], help="question split (default: %(default)s)")
    a("--steps", type=int, default=d.steps, help="optimizer steps (default: %(default)s)")
    a("--questions-per-step", type=int, default=d.questions_per_step, help="questions per step (default: %(default)s)")
    a("--num-generations", type=int, default=d.num_generations, help="samples per question, one GRPO group "
      "(default: %(default)s)")
    a("--batch-size", type=int, help="samples per forward/backward pass; must divide questions x generations "
      "(default: all of them)")
    a("--learning-rate", type=float, default=d.learning_rate, help="(default: %(default)s)")
    a("--max-grad-norm", type=float, default=d.max_grad_norm, help="(default: %(default)s, as the seed)")
    a("--beta", type=float, default=d.beta, help="KL coefficient (default: %(default)s, TRL's)")
    a("--temperature", type=float, default=d.temperature, help="sampling temperature, > 0 (default: %(default)s)")
    a("--top-p", type=float, default=d.top_p)
    a("--max-generations", type=int, default=d.max_generations, help="generation turns per trajectory")
    a("--max-new-tokens", type=int, default=d.max_new_tokens, help="token budget after the prompt, per trajectory")
    a("--max-tokens-per-turn", type=int, default=d.max_tokens_per_turn, help="tokens per generation turn")
    a("--top-k", type=int, default=d.top_k, help="search results per tool call")
    a("--judge", default=d.judge, choices=["exact", "f1", "contains", "llm"], help="how correctness is decided "
      "(default: %(default)s; llm needs --judge-model)")
    a("--judge-model", help="model for --judge llm, apart from the policy and never trained")
    a("--judge-max-tokens", type=int, default=d.judge_max_tokens, help="reply budget of --judge llm, room for a "
      "thinking model to reason (default: %(default)s)")
    a("--reward-weights", default="", help="e.g. correctness=1,formatting=0.5,retry_behavior=1,chunk_hit=1")
    a("--prompt-template", help="JSON file with 'system' and 'user' texts ({date}, {question}, {tool_definition})")
    a("--reward", action="append", default=[], metavar="MODULE:FUNCTION", help="an extra reward function "
      "(repeatable), as eval takes them")
    a("--lora-r", type=int, help="train a LoRA adapter of this rank (needs peft)")
    a("--lora-alpha", type=int, help="LoRA alpha (needs peft)")
    a("--seed", type=int, default=d.seed)
    a("--eval-every", type=int, metavar="N", help="evaluate on held-out (test split) questions every N steps, "
      "stored as eval runs linked to this run")
    a("--eval-questions", type=int, default=d.eval_questions, help="held-out questions per evaluation "
      "(default: %(default)s)")
    a("--save-every", type=int, metavar="N", help="checkpoint every N steps, beside --db (needed by --resume)")
    a("--use-vllm", action="store_true", help="generate rollouts with TRL's vLLM integration (GPU; pip install "
      "'rl-inspect[vllm]'): weights synced each step, the same agent loop")
    a("--vllm-mode", choices=["colocate", "server"], default=d.vllm_mode, help="--use-vllm: vLLM in this process "
      "(colocate, default) or a `trl vllm-serve` server")
    a("--vllm-server-url", metavar="URL", help="--vllm-mode server: the server's base URL")
    a("--vllm-gpu-memory-utilization", type=float, default=d.vllm_gpu_memory_utilization,
      help="--vllm-mode colocate: GPU memory fraction for vLLM (default: %(default)s)")
    a("--resume", type=int, metavar="RUN", help="continue train run RUN of --db from its last checkpoint, "
      "with its stored options")
    a("--name", help="run name (default: model, grpo and time)")
    a("--json", action="store_true", help="print the summary as JSON on stdout")


IMPORT_FORMATS = ("auto", "jsonl", "verl", "verifiers", "inspect")
"""--format's choices for `import` and for a log opened in the TUI (core.importers.FORMATS, not
imported here so that the parser stays cheap to build)."""

_IMPORT_HELP = """\
Import runs other tools wrote into --db (core.importers). Formats (--format; auto detects them):
  jsonl      the documented JSONL (what `rl-inspect export` writes); a folder: each .jsonl file
  verl       verl rollout dumps: a folder of {step}.jsonl files, one train run
  verifiers  a vf-eval 0.3 results folder (results.jsonl, metadata.json); a verifiers v1
             traces.jsonl, or its run folder; a prime-rl output folder (rollouts/step_N/,
             one train run, its held-out evals as eval runs)
  inspect    Inspect eval logs (.eval, .json), or a folder of Inspect logs, one run per log
             (needs pip install 'rl-inspect[inspect]')
A folder holding both .jsonl files and Inspect logs is refused: pass --format.
Each source is written in one transaction; importing it again adds nothing (a grown verl or
prime-rl folder adds its new steps). Exit 0, or 2 for bad input: nothing is written (a database
this import created is removed).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rl-inspect", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _eval_parser(sub)
    _train_parser(sub)
    runs = sub.add_parser("runs", help="list the runs of a database")
    runs.add_argument("db")
    runs.add_argument("--json", action="store_true")
    lint = sub.add_parser("lint", help="check every trajectory's mask, logprobs and token counts",
                          description="Mask lint: every trajectory checked for loss-mask faults (kinds in "
                          "core.lint.findings.KINDS). Exit 0 when no finding is an error, 1 when one is, 2 for "
                          "bad input.")
    lint.add_argument("db")
    lint.add_argument("--run", type=int, help="lint this run only (default: every run)")
    lint.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    lint.add_argument("--examples", type=int, default=5, help="example trajectory ids per kind (default: %(default)s)")
    lint.add_argument("--no-tokenizer", action="store_true", help="do not look for the model's local tokenizer "
                      "(skips special_trained)")
    compare = sub.add_parser("compare", help="compare two runs question by question",
                             description="Two runs side by side by question (matched by text): which flipped "
                             "from wrong to right and back, reward and tool-call differences (core.store.compare). "
                             "Exit 0, or 2 for bad input.")
    compare.add_argument("db")
    compare.add_argument("run_a", type=int, metavar="RUN_A", help="the run to compare from (e.g. the base model)")
    compare.add_argument("run_b", type=int, metavar="RUN_B", help="the run to compare to (e.g. a checkpoint)")
    compare.add_argument("--json", action="store_true", help="print every question's row as JSON on stdout")
    compare.add_argument("--rows", type=int, default=30, help="questions shown per list, 0 for all "
                         "(default: %(default)s)")
    export = sub.add_parser("export", help="write a run's trajectories as JSONL or Parquet",
                            description="One record per trajectory with its messages, rewards, tokens, mask "
                            "and logprobs (core.store.export), streamed in id order: an SFT/RL data set that "
                            "datasets.load_dataset('json'|'parquet', data_files=FILE) loads.")
    export.add_argument("db")
    export.add_argument("--run", type=int, required=True, help="the run to export")
    export.add_argument("--format", choices=["jsonl", "parquet"], help="default: parquet when --out ends in "
                        ".parquet, else jsonl")
    export.add_argument("--out", metavar="FILE", help="file to write (default: JSONL on stdout); written under a "
                        "hidden partial name and renamed when complete")
    export.add_argument("--force", action="store_true", help="replace an existing --out file")
    export.add_argument("--limit", type=int, help="export at most this many trajectories (the first by id)")
    merge = sub.add_parser("merge", help="combine the databases of several writers into one",
                           description="Copy every run of the IN databases into OUT (created when missing): "
                           "runs are matched by identity (kind, name, model, configuration, creation time, host, "
                           "pid), so merging again changes nothing and a copy further along replaces an older "
                           "one whole; runs still being written are skipped and named (core.store.merge). "
                           "Exit 0, or 2 for bad input (nothing written).")
    merge.add_argument("out", metavar="OUT", help="the database to write")
    merge.add_argument("inputs", nargs="+", metavar="IN", help="databases to read (never written)")
    merge.add_argument("--json", action="store_true", help="print what was done as JSON on stdout")
    imp = sub.add_parser("import", help="convert rollouts other tools wrote into runs",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description=_IMPORT_HELP)
    imp.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or glob patterns")
    imp.add_argument("--db", required=True, help="database to write (created if missing)")
    imp.add_argument("--format", default="auto", choices=IMPORT_FORMATS,
                     help="default: auto, detected from a folder's files, the extension and the first record")
    imp.add_argument("--name", help="run name (default: the run_name in the records, else the file or folder name)")
    view = sub.add_parser("view", help="open a database in the TUI (the default command)")
    view.add_argument("db")
    view.add_argument("--run", type=int, help="open this run straight away")
    view.add_argument("--trajectory", type=int, metavar="ID", help="open this trajectory straight away (on top "
                      "of its run's list): the id `rl-inspect lint`, `compare --json` and exports name")
    view.add_argument("--format", default="auto", choices=IMPORT_FORMATS,
                      help="a log's format when PATH is one (default: detected, as `rl-inspect import` does)")
    view.add_argument("--no-follow", action="store_true", help="a log folder (a training run's step files) is "
                      "imported again every 5 s while the viewer is open, so a running job can be followed; "
                      "this imports it once")
    return parser


def _config_from_args(args: argparse.Namespace):
    from core.config import EvalConfig
    from core.scoring.rewards import parse_weights

    return EvalConfig(
        model=args.model, backend=args.backend, device=args.device, corpus=_absolute(args.corpus),
        demo_chunks=args.demo_chunks, questions=_absolute(args.questions), split=args.split, limit=args.limit,
        chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap, retriever=args.retriever, top_k=args.top_k,
        max_generations=args.max_generations, max_new_tokens=args.max_new_tokens,
        max_tokens_per_turn=args.max_tokens_per_turn, temperature=args.temperature, top_p=args.top_p,
        seed=args.seed, batch_size=args.batch_size, judge=args.judge, judge_model=args.judge_model,
        judge_max_tokens=args.judge_max_tokens, reward_weights=parse_weights(args.reward_weights) if args.reward_weights else {},
        extra_rewards=[_absolute_reward(r) for r in args.reward], on_tool_error=args.on_tool_error,
        prompt_template=_absolute(args.prompt_template),
        check_drift=not args.no_drift_check, kv_reuse=not args.no_kv_reuse, name=args.name, chat_template=_absolute(args.chat_template),
        tool_format=args.tool_format,
        base_url=args.base_url, api_key_env=args.api_key_env, server_model=args.server_model,
        max_concurrency=args.max_concurrency, request_timeout=args.request_timeout,
        judge_backend=args.judge_backend, judge_base_url=args.judge_base_url,
        tensor_parallel_size=args.tensor_parallel_size, gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len, lora=_absolute(args.lora), shard=args.shard, job=args.job,
    )


def _shard(text: str) -> list[int]:
    """--shard I/N as [I, N]; argparse's error (exit 2) for anything else."""
    index, sep, count = text.partition("/")
    try:
        pair = [int(index), int(count)]
    except ValueError:
        pair = None
    if not sep or pair is None or not (pair[1] >= 1 and 0 <= pair[0] < pair[1]):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N (shard 0/4 is the first of four), "
                                         f"not {text!r}")
    return pair


_RESUME_OWN = {"command", "db", "resume", "json", "no_open"}
"""eval options that --resume uses; every other one comes from the run's stored configuration."""


def _ignored_on_resume(args: argparse.Namespace) -> list[str]:
    """The eval options given with --resume that differ from their defaults (and so are ignored),
    as the user typed them (--limit)."""
    defaults = vars(build_parser().parse_args(["eval"]))
    return [f"--{k.replace('_', '-')}" for k, v in vars(args).items()
            if k not in _RESUME_OWN and k in defaults and v != defaults[k]]


def _absolute(path: str | None) -> str | None:
    """An existing file or folder's absolute path, so the run's stored configuration still finds
    it when `--resume` runs from another directory; anything else as given (the loader names it)."""
    if not path:
        return path
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() else path


def _absolute_reward(spec: str) -> str:
    """A `path/to/file.py:function` reward spec with its file made absolute (see _absolute)."""
    head, sep, attr = spec.rpartition(":")
    if sep and head.endswith(".py"):
        return f"{_absolute(head)}:{attr}"
    return spec


def _print_reward_failures(summary: dict, stream) -> None:
    """A line per user reward that failed (core.scoring.rewards.reward_failure_lines), so a failure
    is seen where the results are, not only in the log."""
    from core.scoring.rewards import reward_failure_lines

    for line in reward_failure_lines(summary.get("reward_failures") or {}):
        print(f"  {line}", file=stream)


def _print_summary(summary: dict, stream, db: str = "DB") -> None:
    def pct(x):
        return "–" if x is None else f"{x:.1%}"

    print(f"run {summary['run_id']} ({summary['name']}): {summary['trajectories']}/{summary['planned']} trajectories",
          file=stream)
    print(f"  accuracy {pct(summary['accuracy'])}   mean reward "
          f"{'–' if summary['mean_reward'] is None else format(summary['mean_reward'], '.3f')}   "
          f"tool-error rate {pct(summary['tool_error_rate'])}", file=stream)
    print(f"  {judge_line(summary)}", file=stream)
    for name, value in summary["reward_means"].items():
        print(f"  {name:<16} {value:.3f}", file=stream)
    _print_reward_failures(summary, stream)
    reasons = ", ".join(f"{k} {v}" for k, v in summary["finish_reasons"].items())
    tps = summary["tokens_per_second"]
    print(f"  finish: {reasons or '–'}   {summary['generated_tokens']} tokens generated"
          f"{'' if tps is None else f' at {tps:.1f} tok/s'}   drift in {summary['drifted_trajectories']}"
          f"{_drift_kinds(summary.get('drift_kinds'))}",
          file=stream)
    if summary.get("not_token_exact"):
        print(f"  not token-exact: {summary['not_token_exact']} trajectories (the server returned text, not ids: "
              "their ids are the local tokenizer's reading, their mask and logprobs not the model's)", file=stream)
    if "lint" in summary:
        from core.lint.summary import lint_line

        print(f"  {lint_line(summary['lint'], db, summary['run_id'])}", file=stream)


def judge_line(summary: dict) -> str:
    """'judge f1   judged 17   unparseable 3': which judge decided (core.scoring.judges.judge_label,
    shown literally and clipped: it may hold a model path) and how many answers it gave a verdict
    on; "unparseable" replies (no yes or no) are left out of accuracy, which is correct / judged."""
    judge = summary.get("judge")
    line = f"judge {'–' if judge is None else one_line(str(judge), 48)}"
    if summary.get("judged") is not None:
        line += f"   judged {summary['judged']}   unparseable {summary.get('judge_unparseable') or 0}"
    return line


def _drift_kinds(kinds: dict | None) -> str:
    """' (template_rewrite 3, stop_token 1)': drift by kind (core.rollout.chat.DRIFT_KINDS), '' without any."""
    return f" ({', '.join(f'{k} {n}' for k, n in kinds.items())})" if kinds else ""


def _quiet_libraries() -> None:
    """transformers' own progress bars and warnings would break the progress line."""
    from transformers.utils import logging as hf_logging

    os.environ["TQDM_DISABLE"] = "1"  # the GGUF de-quantiser uses tqdm directly
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


PREPARING_NOTICE = "rl-inspect: preparing the embedded model (once, about 30 s)…"


def _check_db_for_writing(db: str) -> None:
    """Refuse a --db that eval could not write, before any model is loaded (that takes a while).

    A missing file (in an existing folder) or an empty one becomes a new database, and an older
    rl-inspect database is migrated by the writer; anything else unreadable is a StoreError.
    """
    import sqlite3

    from core.store import Store, StoreError
    from core.store.schema import SCHEMA_VERSION, read_version

    path = Path(db)
    if not path.exists():
        if not path.parent.is_dir():
            raise StoreError(f"{path}: no folder {path.parent} to create the database in")
        return
    if path.is_file() and path.stat().st_size == 0:
        return
    try:
        Store.open_readonly(path).close()
    except StoreError:
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                version = read_version(conn)
            finally:
                conn.close()
        except sqlite3.Error:
            version = None
        if version is not None and 0 < version < SCHEMA_VERSION:
            return  # an older schema: Store.open migrates it
        raise


def _run_eval(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate, load_inputs, resume
    from core.logs import log_to_file
    from core import models
    from inspector.progress import ProgressLine

    log_path = log_to_file("eval")
    _quiet_libraries()
    config = None
    if args.resume is None:
        config = _config_from_args(args)
        _check_db_for_writing(args.db)
        if models.is_embedded(config.model) and not models.embedded_model_folder().exists():
            # Bad input gets its one line before the notice. The inputs are read again by
            # evaluate(): a second read only on the run that converts the model.
            load_inputs(config)
            print(PREPARING_NOTICE, file=sys.stderr, flush=True)
            # transformers' GGUF de-quantiser draws a tqdm bar whose TQDM_DISABLE was read when
            # tqdm was imported: keep it off the terminal (errors still propagate).
            with contextlib.redirect_stderr(io.StringIO()):
                models.embedded_model_dir()
    if args.resume is not None:
        ignored = _ignored_on_resume(args)
        if ignored:
            print(f"rl-inspect: --resume {args.resume} continues the run with its stored configuration; "
                  f"ignored: {', '.join(ignored)}", file=sys.stderr)
    progress = ProgressLine()
    try:
        if config is None:
            summary = resume(args.db, args.resume, progress)
        else:
            summary = evaluate(config, args.db, progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    _print_summary(summary, sys.stderr, args.db)
    print(f"  stored in {args.db}; log: {log_path}", file=sys.stderr)
    if not args.no_open and not args.json and _interactive():
        return _run_view(args.db, summary["run_id"])
    return EXIT_OK


def _train_config_from_args(args: argparse.Namespace):
    from core.scoring.rewards import parse_weights
    from core.train.config import TrainConfig

    return TrainConfig(
        model=args.model, device=args.device, corpus=_absolute(args.corpus), demo_chunks=args.demo_chunks,
        questions=_absolute(args.questions), split=args.split, steps=args.steps, questions_per_step=args.questions_per_step,
        num_generations=args.num_generations, batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_grad_norm=args.max_grad_norm, beta=args.beta, temperature=args.temperature, top_p=args.top_p,
        max_generations=args.max_generations, max_new_tokens=args.max_new_tokens,
        max_tokens_per_turn=args.max_tokens_per_turn, top_k=args.top_k, judge=args.judge,
        judge_model=args.judge_model, reward_weights=parse_weights(args.reward_weights) if args.reward_weights else {},
        judge_max_tokens=args.judge_max_tokens, lora_r=args.lora_r, lora_alpha=args.lora_alpha, seed=args.seed, name=args.name,
        save_every=args.save_every, eval_every=args.eval_every, eval_questions=args.eval_questions,
        prompt_template=_absolute(args.prompt_template), extra_rewards=[_absolute_reward(r) for r in args.reward],
        use_vllm=args.use_vllm, vllm_mode=args.vllm_mode, vllm_server_url=args.vllm_server_url,
        vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization)


def _train_progress_line(p) -> str:
    """'step 2/4  reward 0.512  loss 0.0123  kl –  31.2 s/step  ETA 1m02s' for one StepProgress."""
    m = p.metrics

    def num(key, fmt):
        return "–" if m.get(key) is None else format(m[key], fmt)

    eta = int(round(p.eta))
    return (f"step {p.step}/{p.steps}  reward {num('reward', '.3f')}  loss {num('loss', '.4f')}  "
            f"kl {num('kl', '.4f')}  {num('step_seconds', '.1f')} s/step  ETA {eta // 60}m{eta % 60:02d}s")


def _run_train(args: argparse.Namespace) -> int:
    from core.logs import log_to_file
    from core import models
    from core.train import train
    from core.train.config import check_ranks, load_train_inputs, process_ranks

    log_path = log_to_file("train")
    _quiet_libraries()
    if args.resume is not None:
        from core.train.trainer import resume_config

        config = resume_config(args.db, args.resume)
    else:
        config = _train_config_from_args(args)
    # Everything that can be refused is refused here, before any model loads.
    load_train_inputs(config)
    check_ranks(config, process_ranks()[1], resume=args.resume is not None)
    _check_db_for_writing(args.db)
    if models.is_embedded(config.model) and not models.embedded_model_folder().exists():
        print(PREPARING_NOTICE, file=sys.stderr, flush=True)
        with contextlib.redirect_stderr(io.StringIO()):
            models.embedded_model_dir()

    def progress(p) -> None:
        print(_train_progress_line(p), file=sys.stderr, flush=True)

    rank, world = process_ranks()
    summary = train(config, args.db, progress if rank == 0 else None, resume_run=args.resume)
    if world > 1:
        return _merge_ranks(args, summary, rank, world, log_path)
    if args.json:
        print(json.dumps(summary, indent=2))
    last = "–" if summary["last_reward"] is None else f"{summary['last_reward']:.3f}"
    first = "–" if summary["first_reward"] is None else f"{summary['first_reward']:.3f}"
    per_step = "–" if summary["mean_step_seconds"] is None else f"{summary['mean_step_seconds']:.1f} s"
    print(f"train run {summary['run_id']} ({summary['name']}): {summary['steps']} steps, "
          f"{summary['trajectories']} trajectories; reward {first} -> {last}; {per_step} per step", file=sys.stderr)
    _print_reward_failures(summary, sys.stderr)
    from core.lint.summary import lint_line

    print(f"  {lint_line(summary.get('lint'), args.db, summary['run_id'])}", file=sys.stderr)
    print(f"  stored in {args.db}; log: {log_path}", file=sys.stderr)
    return EXIT_OK


def summary_of_kind(store: Any, run_id: int) -> dict:
    """The summary a run of its kind gets when it ends: core.train.store.train_summary for a train
    run, core.evaluate.run_summary for an eval (merge rewrites merged runs' summaries with it)."""
    from core.evaluate import run_summary
    from core.train.store import train_summary

    return (train_summary if store.run(run_id)["kind"] == "train" else run_summary)(store, run_id)


def _merge_ranks(args: argparse.Namespace, summary: dict, rank: int, world: int, log_path: Any,
                 wait_seconds: float = 600.0) -> int:
    """After a multi-process training: rank 0 waits (up to `wait_seconds`) for every rank's run to
    end, then merges the rank databases into --db as one train run (core.store.merge) and reports
    it; the other ranks say where their part is. A rank still running at the deadline is named
    with the merge command to run later."""
    from core.lint.summary import lint_line
    from core.store import Store
    from core.store.liveness import effective_status
    from core.store.merge import merge_databases, merged_run
    from core.train.config import rank_database

    own = rank_database(args.db, rank)
    if rank != 0:
        print(f"rl-inspect: rank {rank} stored its part in {one_line(str(own))} (run {summary['run_id']}); rank 0 "
              f"merges the ranks into {one_line(str(args.db))}", file=sys.stderr)
        return EXIT_OK
    paths = [rank_database(args.db, r) for r in range(world)]
    deadline = time.monotonic() + wait_seconds
    waiting = list(paths)
    while waiting and time.monotonic() < deadline:
        still = []
        for path in waiting:
            try:
                with Store.open_readonly(path) as store:
                    running = [r for r in store.runs() if effective_status(r) == "running"]
            except Exception:  # noqa: BLE001 - not written yet: wait for it
                running = [path]
            if running:
                still.append(path)
        waiting = still
        if waiting:
            time.sleep(1.0)
    command = f"rl-inspect merge {args.db} " + " ".join(str(p) for p in paths)
    if waiting:
        print(f"rl-inspect: ranks still running after {wait_seconds:.0f} s ({', '.join(map(str, waiting))}); when "
              f"they end: {command}", file=sys.stderr)
        return EXIT_OK
    merge_databases(args.db, paths, summarise=summary_of_kind)
    with Store.open_readonly(paths[0]) as store:
        job = store.run(summary["run_id"])["config"].get("job")
    with Store.open_readonly(args.db) as store:
        merged = merged_run(store, "train", job)
    if merged is None:
        print(f"rl-inspect: nothing merged into {one_line(str(args.db))}; run {command}", file=sys.stderr)
        return EXIT_FAILED
    with Store.open_readonly(args.db) as store:
        total, steps = store.run(merged), len(store.train_steps(merged))
    whole = total.get("summary") or {}
    print(f"train run {merged} ({total['name']}): {world} ranks merged, {total['n_done']} trajectories, "
          f"{steps} steps; status {total['status']}", file=sys.stderr)
    print(f"  {lint_line(whole.get('lint'), args.db, merged)}", file=sys.stderr)
    print(f"  stored in {args.db} (the ranks' own parts: {', '.join(p.name for p in paths)}); log: {log_path}",
          file=sys.stderr)
    if args.json:
        print(json.dumps(whole, indent=2))
    return EXIT_OK


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("CI")


def _readable(db: str, run_id: int | None, trajectory_id: int | None = None) -> None:
    """Check `db` opens read-only and holds `run_id` and `trajectory_id` (if given, the one of
    the other); StoreError names what is wrong."""
    import sqlite3

    from core.store import Store, StoreError

    with Store.open_readonly(db) as store:
        try:
            if run_id is not None:
                store.run(run_id)
            if trajectory_id is not None:
                owner = store.trajectory(trajectory_id)["run_id"]
                if run_id is not None and owner != run_id:
                    raise StoreError(f"{db}: trajectory {trajectory_id} is of run {owner}, not run {run_id}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{db}: the database cannot be read ({exc})") from None


def _run_view(db: str, run_id: int | None = None, trajectory_id: int | None = None, title: str | None = None,
              follow: Path | None = None, follow_format: str = "auto") -> int:
    """Open `db` in the TUI; `follow`: the log folder it was imported from, re-imported while the
    viewer is open as `follow_format` (inspector.tui.app.create_app)."""
    import asyncio

    from core.logs import current_log, log_to_file

    # A file not there yet, in a folder that is, opens in a terminal on an empty runs screen from
    # which `e` launches the eval that creates it (nothing is written before that); elsewhere
    # (a script, a pipe, CI) it stays the one-line refusal.
    missing = not Path(db).exists()
    if missing and (run_id is not None or trajectory_id is not None or not Path(db).parent.is_dir()
                    or not _interactive()):
        print(f"rl-inspect: {db}: no such database (make one with: rl-inspect eval --db {db})", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not missing:
        # A missing run or trajectory is refused here, before the TUI takes the terminal.
        _readable(db, run_id, trajectory_id)
    from inspector.tui import app as tui

    app = tui.create_app(db, missing_ok=True) if missing else tui.create_app(db, open_run=run_id,
                                                                              open_trajectory=trajectory_id,
                                                                              title=title, follow=follow,
                                                                              follow_format=follow_format)
    log = current_log() or log_to_file("view")

    def cancel(signum, frame) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise KeyboardInterrupt from None
        # Let the app close the way it always does, so the terminal is restored.
        loop.call_soon_threadsafe(lambda: app.exit(return_code=EXIT_CANCELLED))

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        app.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if getattr(app, "failure", None):
        print(f"rl-inspect: {app.failure}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if app.return_code == EXIT_CANCELLED:
        raise KeyboardInterrupt
    if app.return_code:  # an unhandled exception: the app logged it (see RLInspectApp._handle_exception)
        error = getattr(app, "crash", None) or getattr(app, "_exception", None)
        what = f"{error.__class__.__name__}: {one_line(str(error), 200)}" if error else f"exit code {app.return_code}"
        print(f"rl-inspect: the viewer failed: {what} (details in {log})", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


_MODEL_CELLS = 24
_JUDGE_CELLS = 10
"""Room for "contains" and for "llm:" with the start of the judge model's name."""
_NAME_CELLS_MIN = 40


def _cells(text: str, width: int, align: str = "<") -> str:
    from rich.cells import cell_len

    text = one_line(text, width)
    pad = " " * max(0, width - cell_len(text))
    return text + pad if align == "<" else pad + text


RUNS_HEADER = f"{'id':>4}  {'kind':<5} {'status':<11} {'done':>13} {'failed':>6}  {'acc':>6}  " \
              f"{'judge':<{_JUDGE_CELLS}}  {'reward':>6}  {'model':<{_MODEL_CELLS}}  name"
"""The first line of `rl-inspect runs`; run_row_line's columns line up under it."""


def run_row_line(r, *, name_cells: int | None = 60) -> str:
    """One run of `rl-inspect runs` as one terminal line, every database string shown literally.

    `r` is a `core.store.queries.RunRow`. Columns have fixed widths in terminal cells, so a
    hostile or wide kind, status, judge or model cannot shift the ones after it; the name comes
    last, clipped to `name_cells` (None: never clipped). "judge" says which judge decided the
    accuracy beside it (core.scoring.judges.judge_label; – when the run's configuration names none);
    "failed" counts the trajectories that ended failed (RunRow.n_failed; – for none).
    """
    acc = "–" if r.accuracy is None else f"{r.accuracy:.1%}"
    reward = "–" if r.mean_reward is None else f"{r.mean_reward:.3f}"
    judge = _cells("–" if r.judge is None else r.judge, _JUDGE_CELLS)
    failed = r.n_failed or "–"
    return (f"{r.id:>4}  {_cells(r.kind, 5)} {_cells(r.status, 11)} {r.n_done:>6}/{r.n_planned:<6} {failed:>6}  "
            f"{acc:>6}  {judge}  {reward:>6}  {_cells(r.model, _MODEL_CELLS)}  {one_line(r.name, name_cells)}")


def _run_list(db: str, as_json: bool) -> int:
    import shutil
    import sqlite3
    from dataclasses import asdict

    from core.store import Store, StoreError
    from core.store import queries

    with Store.open_readonly(db) as store:
        try:
            runs = queries.run_rows(store)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{db}: the database cannot be read ({exc})") from None
    if as_json:
        print(json.dumps([asdict(r) for r in runs], indent=2, default=str))
        return EXIT_OK
    if not runs:
        print(f"{one_line(db)}: no runs yet (start one with: rl-inspect eval --db {one_line(db)})")
        return EXIT_OK
    prefix = len(RUNS_HEADER) - len("name")
    name_cells = max(_NAME_CELLS_MIN, shutil.get_terminal_size((120, 24)).columns - prefix - 1)
    print(RUNS_HEADER)
    for r in runs:
        print(run_row_line(r, name_cells=name_cells))
    return EXIT_OK


def _run_compare(db: str, run_a: int, run_b: int, as_json: bool, rows: int) -> int:
    """`rl-inspect compare`: counts, means and the changed questions of run B against run A
    (inspector.compare_text), or --json with every question (core.store.compare.Comparison.to_dict)."""
    from core.store import Store
    from core.store.compare import compare_runs

    if rows < 0:
        raise ValueError(f"--rows {rows}: must be 0 (all) or more")
    with Store.open_readonly(db) as store:
        comparison = compare_runs(store, run_a, run_b)
    if as_json:
        print(json.dumps({"db": db, **comparison.to_dict()}, indent=2))
        return EXIT_OK
    from inspector.compare_text import comparison_lines

    print("\n".join(comparison_lines(comparison, rows=rows or None)))
    return EXIT_OK


def _run_export(args: argparse.Namespace) -> int:
    """`rl-inspect export`: stream a run's records to --out or stdout; one line on stderr says what
    was written. A missing database, an unknown run or an existing --out (without --force) is bad
    input (exit 2)."""
    from core.store import Store
    from core.store.export import export_run

    fmt = args.format or ("parquet" if args.out and args.out.lower().endswith(".parquet") else "jsonl")
    if args.limit is not None and args.limit < 0:
        raise ValueError(f"--limit {args.limit}: must be 0 or more")
    with Store.open_readonly(args.db) as store:
        stats = export_run(store, args.run, fmt, args.out, stream=sys.stdout, force=args.force, limit=args.limit)
    where = one_line(str(stats.path)) if stats.path else "stdout"
    print(f"rl-inspect: exported {stats.trajectories:,} trajectories of run {args.run} as {fmt} to {where} "
          f"({stats.bytes / 1e6:,.1f} MB in {stats.seconds:.1f} s)", file=sys.stderr)
    return EXIT_OK


def _run_import(args: argparse.Namespace) -> int:
    """`rl-inspect import PATH... --db DB`: one line per source on stderr (runs written, or why it
    was skipped, and notes). Bad input (a malformed line, an unknown format) is exit 2, with
    nothing of that source written; when --db did not exist before, the database the import
    created is removed (core.importers.removed_on_failure), so a failure leaves no file behind."""
    from core.importers import import_paths, removed_on_failure

    with removed_on_failure(args.db):
        results = import_paths(args.db, args.paths, fmt=args.format, name=args.name)
    _report_imports(results, args.db)
    return EXIT_OK


def _report_imports(results, db: str) -> None:
    """One stderr line per note, skip and run written of each SourceResult."""
    for result in results:
        source = one_line(result.source)
        for note in result.notes:
            print(f"rl-inspect: {source}: {one_line(note)}", file=sys.stderr)
        if result.skipped:
            print(f"rl-inspect: {source}: {one_line(result.skipped)}", file=sys.stderr)
        for run_id, name, n in result.runs:
            what = (f"imported {n:,} {'trajectory' if n == 1 else 'trajectories'} into" if n
                    else "updated")  # a followed run's steps, from its metric log
            print(f"rl-inspect: {source}: {what} run {run_id} ({one_line(name, 60)}) of {one_line(db)}",
                  file=sys.stderr)


def _view_target(path: str, fmt: str = "auto") -> str:
    """The database `rl-inspect PATH` opens: PATH itself, or for a log another tool wrote (a
    folder, or a file with a log's extension that is not SQLite) the cache database it is imported into
    as `fmt` (core.importers.cache; InputError for a malformed log)."""
    from core.importers.cache import LOG_SUFFIXES, cached_import, is_database

    target = Path(path)
    if is_database(target) or not (target.is_dir() or target.suffix.lower() in LOG_SUFFIXES):
        return path  # a database, or what the viewer's own checks name (missing, corrupt)
    db, results = cached_import(path, fmt)
    _report_imports(results, str(db))
    return str(db)


def _run_merge(out: str, inputs: list[str], as_json: bool) -> int:
    """`rl-inspect merge OUT IN...`: one line per input on stderr (runs copied, replaced,
    unchanged, skipped because still running), or the report as JSON on stdout."""
    from core.store.merge import merge_databases

    report = merge_databases(out, inputs, summarise=summary_of_kind)
    if as_json:
        print(json.dumps({"out": out, "copied": report.copied, "parts": report.parts, "replaced": report.replaced,
                          "unchanged": report.unchanged, "skipped_running": report.skipped_running,
                          "trajectories": report.trajectories}, indent=2))
    for path in inputs:
        copied = [c for c in report.copied if c[0] == str(path)]
        unchanged = [u for u in report.unchanged if u[0] == str(path)]
        running = [r for r in report.skipped_running if r[0] == str(path)]
        parts = {(src, dst): index for p, src, index, dst in report.parts if p == str(path)}
        line = f"{one_line(path)}: {len(copied)} run{'s' if len(copied) != 1 else ''} copied"
        if copied:
            line += " (" + ", ".join(f"{src}→{dst}" + (f" as shard {parts[src, dst]}" if (src, dst) in parts else "")
                                     for _, src, dst in copied) + ")"
        line += f", {len(unchanged)} already in {one_line(out)}"
        if running:
            line += "; still running, merge again when they end: " + ", ".join(
                f"run {rid} ({one_line(who)})" for _, rid, who in running)
        print(f"rl-inspect: {line}", file=sys.stderr)
    print(f"rl-inspect: {report.trajectories:,} trajectories copied into {one_line(out)}"
          f"{f', {report.replaced} older copies replaced' if report.replaced else ''}", file=sys.stderr)
    return EXIT_OK


LINT_HEADER = f"{'kind':<26} {'severity':<8} {'count':>8}  examples"


def _run_lint(db: str, run_id: int | None, as_json: bool, examples: int, tokenizer: bool) -> int:
    """`rl-inspect lint`: a table of findings by kind per run (or --json); EXIT_FAILED when any
    finding has error severity, so a pipeline can gate on it."""
    from core.lint import lint_store
    from core.store import Store

    if not Path(db).exists():
        print(f"rl-inspect: {db}: no such database", file=sys.stderr)
        return EXIT_BAD_INPUT
    _readable(db, run_id)
    with Store.open_readonly(db) as store:
        reports = lint_store(store, run_id, tokenizer=tokenizer)
    errors = sum(r.errors for r in reports)
    if as_json:
        print(json.dumps({"db": db, "errors": errors, "runs": [r.summary(examples) for r in reports]}, indent=2))
        return EXIT_FAILED if errors else EXIT_OK
    if not reports:
        print(f"{one_line(db)}: no runs to lint")
    for r in reports:
        print(f"run {r.run_id} ({one_line(r.run_kind, 10)}, {one_line(r.model, 60)}): {r.checked:,} trajectories "
              f"checked, {r.without_tokens:,} without tokens"
              f"{f', {r.not_token_exact:,} not token-exact (not checked)' if r.not_token_exact else ''}, "
              f"{r.seconds:.1f} s")
        summary = r.summary(examples)
        if summary["findings"]:
            print("  " + LINT_HEADER)
        for kind, entry in summary["findings"].items():
            shown = ", ".join(str(e) for e in entry["examples"])
            print(f"  {kind:<26} {entry['severity']:<8} {entry['count']:>8}  {shown}")
        if not summary["findings"]:
            print("  no findings")
        for kind, why in r.skipped.items():
            print(f"  skipped {kind}: {one_line(why, 200)}")
    print(f"{errors} error finding{'s' if errors != 1 else ''}" if errors else "no error findings")
    return EXIT_FAILED if errors else EXIT_OK


def _quiet_stdout() -> None:
    """After a reader closed our stdout (`| head`): point it at /dev/null so the interpreter's
    last flush does not raise again (the recipe in Python's signal docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # not a real file (a test's capture): nothing will flush it


COMMANDS = ("eval", "train", "runs", "view", "lint", "compare", "export", "merge", "import")
VIEW_FLAGS = ("--run", "--trajectory", "--no-follow", "--format")
"""The view command's options: given first, they too mean the view command (the default)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module's docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and (not argv[0].startswith("-") or argv[0].split("=")[0] in VIEW_FLAGS):
        argv = ["view", *argv]  # `rl-inspect runs.db`, `rl-inspect --run 3 runs.db`
    parser = build_parser()
    args = parser.parse_args(argv)
    from loguru import logger

    from core.logs import current_log, log_nowhere, log_to_file

    log_nowhere()  # the terminal belongs to our one-line messages, the progress line and the TUI
    from core.models import ModelError
    from core.data.records import InputError
    from core.store import StoreError

    # SIGTERM (a TUI cancelling an eval, a scheduler stopping us) takes the same path as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "eval":
            return _run_eval(args)
        if args.command == "train":
            return _run_train(args)
        if args.command == "view":
            from core.importers.cache import follows

            target = _view_target(args.db, args.format)
            title = None if target == args.db else f"{Path(args.db).name} (imported)"
            # A folder keyed by its path grows (a training run writing step files): keep importing it.
            follow = Path(args.db) if target != args.db and not args.no_follow and follows(args.db) else None
            return _run_view(target, args.run, args.trajectory, title, follow, follow_format=args.format)
        if args.command == "compare":
            return _run_compare(args.db, args.run_a, args.run_b, args.json, args.rows)
        if args.command == "export":
            return _run_export(args)
        if args.command == "import":
            return _run_import(args)
        if args.command == "merge":
            return _run_merge(args.out, args.inputs, args.json)
        if args.command == "lint":
            return _run_lint(args.db, args.run, args.json, args.examples, not args.no_tokenizer)
        return _run_list(args.db, args.json)
    except KeyboardInterrupt:
        kept = ("; finished trajectories are kept (continue with --resume RUN)" if args.command == "eval"
                else "; finished steps are kept (continue from the last checkpoint with --resume RUN)"
                if args.command == "train" else "")
        print(f"rl-inspect: cancelled{kept}", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:
        _quiet_stdout()
        return 128 + signal.SIGPIPE  # what a shell reports for a writer stopped by a closed pipe
    except (InputError, StoreError, ValueError) as exc:
        logger.opt(exception=exc).debug("bad input")
        print(f"rl-inspect: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as exc:
        logger.opt(exception=exc).debug("model error")
        print(f"rl-inspect: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # anything else: one line here, the traceback in the log
        log = current_log() or log_to_file(args.command)
        logger.opt(exception=exc).error("rl-inspect failed")
        print(f"rl-inspect: failed: {exc.__class__.__name__}: {one_line(str(exc), 300)} (details in {log})",
              file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
