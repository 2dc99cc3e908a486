"""What inspect_ai's reader itself holds for an .eval log, before a sample is read: peak RSS after
importing inspect_ai, after reading the log's header, and after parsing its zip central directory
(the two things core.importers.inspect_log keeps for a whole import; samples are streamed).

    .venv/bin/python benchmarks/inspect_reader_memory.py /tmp/import-sources/inspect-100000/run.eval

Each log in its own process (peak RSS only grows). Figures in benchmarks/README.md.
"""

from __future__ import annotations

import resource
import subprocess
import sys


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: str) -> None:
    """Print one row for `path`: peak RSS (MiB) after each stage, and the central directory's entries."""
    import inspect_ai.log  # noqa: F401 - the import is the first stage measured
    from inspect_ai._util._async import run_coroutine
    from inspect_ai._util.async_zip import AsyncZipReader
    from inspect_ai._util.asyncfiles import get_async_filesystem
    from inspect_ai.log import read_eval_log

    imported = _peak_mib()
    header = read_eval_log(path, header_only=True)
    after_header = _peak_mib()

    async def entries():
        return await AsyncZipReader(get_async_filesystem(), path).entries()

    central = run_coroutine(entries())
    after_directory = _peak_mib()
    samples = len(header.eval.dataset.sample_ids or [])
    print(f"{samples:>9,} {len(central.entries):>9,} {imported:>9.0f} {after_header:>9.0f} {after_directory:>9.0f}  {path}")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        measure(sys.argv[2])
        return
    print(f"{'samples':>9} {'entries':>9} {'import':>9} {'header':>9} {'directory':>9}  (peak RSS, MiB)")
    for path in sys.argv[1:]:
        subprocess.run([sys.executable, __file__, "--child", path], check=True)


if __name__ == "__main__":
    main()
