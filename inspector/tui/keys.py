"""Every key a screen answers to, for the help screen and the command palette.

Textual's active bindings only cover the focused widget's chain, so the transcript's `r`/`s` or
the token view's `l` were missing from help while the table had focus. Here the bindings of the
screen and of every widget on it that this project defines are collected, each with the node
whose action it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen


@dataclass(frozen=True)
class ScreenKey:
    """One binding, where it lives (`owner` runs its action) and a heading for help."""

    binding: Binding
    owner: DOMNode
    heading: str


def _own_bindings(node: DOMNode) -> list[Binding]:
    """Bindings declared by this project's classes in the node's MRO (not Textual's scroll keys)."""
    out: list[Binding] = []
    for cls in type(node).__mro__:
        if not cls.__module__.startswith("inspector."):
            continue
        for binding in cls.__dict__.get("BINDINGS", []):
            if isinstance(binding, Binding) and binding.description:
                out.append(binding)
    return out


def heading_of(node: DOMNode) -> str:
    """A reader's name for the node: its HELP_HEADING, else its class name in words."""
    explicit = getattr(node, "HELP_HEADING", None)
    if explicit:
        return explicit
    name = type(node).__name__.removesuffix("Screen")
    return "".join(f" {c.lower()}" if c.isupper() and i else c for i, c in enumerate(name))


def screen_keys(screen: Screen) -> list[ScreenKey]:
    """The screen's own keys, then each widget's (in DOM order), then the app's; first binding of
    an (owner, action) pair only."""
    keys: list[ScreenKey] = []
    seen: set[tuple[int, str]] = set()
    nodes: list[DOMNode] = [screen, *screen.walk_children(with_self=False), screen.app]
    for node in nodes:
        for binding in _own_bindings(node):
            marker = (id(type(node)) if node is not screen.app else 0, binding.action)
            if marker in seen:
                continue
            seen.add(marker)
            keys.append(ScreenKey(binding, node, "Everywhere" if node is screen.app else heading_of(node)))
    return keys
