"""core/ is the engine: it must import and run without Textual (the TUI is optional to it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_core_imports_and_runs_without_textual(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["textual"] = None  # any import of textual now fails loudly
        import core.evaluate, core.rollout.agent, core.store, core.retrieval, core.scoring.rewards, core.backends.hf
        from core.store import Store
        from core.data.records import Question
        with Store.open({str(tmp_path / 'runs.db')!r}) as store:
            run = store.create_run("eval", "r", "m", {{}})
            store.start_trajectory(run, 0, Question("q", "why?", "because"))
        assert not any(name == "textual" or name.startswith("textual.") for name in sys.modules if sys.modules[name])
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=".")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
