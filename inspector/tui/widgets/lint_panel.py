"""The mask-lint findings of the open trajectory (core.lint), for the trajectory's side panel."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from core.lint.findings import ERROR, WARNING, Finding
from inspector.literal import visible

_MARK = {ERROR: ("✘", "bold red"), WARNING: ("!", "bold yellow")}


def lint_text(findings: list[Finding] | None, error: str | None = None, unchecked: str | None = None) -> Text:
    """'Mask lint' and one entry per finding: severity mark, kind, token span(s), message; or
    '✔ no mask faults'; or, with no finding and `unchecked` given, why there was nothing to
    check (a running trajectory has no tokens yet). Messages are data (shown literally)."""
    text = Text(overflow="fold")
    text.append("Mask lint\n", style="bold")
    if error is not None:
        return text.append(f"cannot check: {visible(error)}", style="italic red")
    if findings is None:
        return text.append("checking…", style="dim italic")
    if not findings and unchecked:
        return text.append(unchecked, style="dim italic")
    if not findings:
        return text.append("✔ no mask faults", style="green")
    for f in findings:
        mark, style = _MARK.get(f.severity, ("·", "bold blue"))
        text.append(f"{mark} ", style=style)
        text.append(f.kind, style="bold")
        if f.spans:
            shown = ", ".join(f"{a:,}" if b - a == 1 else f"{a:,}–{b - 1:,}" for a, b in f.spans[:3])
            more = f" +{len(f.spans) - 3} more" if len(f.spans) > 3 else ""
            text.append(f"  tokens {shown}{more}", style="dim")
        text.append(f"\n  {visible(f.message)}\n", style="italic")
    return text


class LintPanel(Static):
    """Findings of one trajectory; `f` in the token view visits their tokens."""

    DEFAULT_CSS = """
    LintPanel { height: auto; margin-top: 1; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(lint_text(None), name=name, id=id, classes=classes)
        self.findings: list[Finding] | None = None

    def show(self, findings: list[Finding] | None, error: str | None = None, unchecked: str | None = None) -> None:
        """None: still checking; error: the check could not run (why); unchecked: why a
        trajectory without findings had nothing to check."""
        self.findings = findings
        self.update(lint_text(findings, error, unchecked))
