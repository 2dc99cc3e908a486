"""Template renderings reused across trajectories and turns, for templates proven content-linear.

A chat template is *content-linear* when every message's `content` reaches the rendering only
by being written out verbatim (`{{ message['content'] }}`, or joined with `+`/`~` inside such an
output) and never decides anything: no test of its value, no filter, no method call, no
assignment. For such a template, rendering a chat whose contents are replaced by unique
placeholders and then putting each real content back where its placeholder stands gives the
same text as rendering the real chat (Jinja writes the value it is given; everything else the
template writes depends only on what the placeholder chat has too: roles, other fields, message
count, the template's variables). The placeholder rendering depends only on the chat's
*structure*, which every trajectory of a pool shares at a given turn, so it is rendered once per
structure and reused; a turn's new text costs time in its own size, not the chat's.

`content_linear` decides this by reading the template's syntax tree (jinja2's parser, the
environment transformers compiles chat templates with) and refuses anything it cannot prove:
a content used anywhere but in an output, a message passed to a filter other than `length` or
to a call, `loop.previtem`/`nextitem`, macros, call blocks, `{% set %}` blocks, `with`, filter
blocks, includes. Qwen3's template (it splits replies on `</think>`) and Llama 3's (`| trim`) are
refused and take the full rendering path in core.rollout.chat; ChatML-style templates pass.
Each placeholder rendering is also checked to hold every placeholder exactly once.

Why not a library: transformers renders whole chats only, and jinja2 has no notion of a value
that flows through unchanged; the check is the small tree walk below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

_PLACEHOLDER = "\x00RLINSPECT{}\x00"
_PLACEHOLDER_RE = re.compile("\x00RLINSPECT(\\d+)\x00")
_SAFE_TESTS = frozenset({"defined", "undefined", "none", "string", "mapping", "sequence", "iterable"})
"""Tests whose answer depends on a value's type or presence only: the same for a placeholder and
any real content (both are str)."""
_REFUSED_NODES = ("Macro", "CallBlock", "AssignBlock", "FilterBlock", "With", "Include", "Import", "FromImport",
                  "Extends", "Block", "Scope", "OverlayScope", "EvalContextModifier", "ScopedEvalContextModifier")
_METHODS = frozenset({"items", "keys", "values", "get", "pop", "update", "copy", "setdefault", "append", "extend",
                      "index", "count", "insert", "remove", "sort", "reverse", "clear"})


def content_linear(template: str) -> str | None:
    """None when `template` (Jinja chat-template source) is provably content-linear, else why not.

    The rule is in the module docstring. Conservative: a template it cannot read, or a construct
    it does not model, is refused with the reason, never accepted. Never raises.
    """
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
        from jinja2 import nodes
        env = _compile_jinja_template(template).environment
        tree = env.parse(template)
    except Exception as exc:  # noqa: BLE001  (any failure means: not proven)
        return f"cannot parse the template ({exc.__class__.__name__})"
    return _Walk(nodes).check(tree)


class _Walk:
    """One pass over a Jinja syntax tree, with each node's parent, to prove content-linearity."""

    def __init__(self, nodes: Any):
        self.nodes = nodes
        self.parent: dict[int, Any] = {}

    def check(self, tree: Any) -> str | None:
        n = self.nodes
        everything = [tree]
        for node in everything:
            for child in node.iter_child_nodes():
                self.parent[id(child)] = node
                everything.append(child)
        for node in everything:
            kind = type(node).__name__
            if kind in _REFUSED_NODES:
                return f"uses {{% {kind.lower()} %}}"
            if isinstance(node, n.Getattr) and node.attr in ("previtem", "nextitem"):
                return f"reads loop.{node.attr}"
        # Names bound to messages (or lists of them): `messages`, loop targets over them, aliases.
        bound = {"messages"}
        while True:
            grown = set(bound)
            for node in everything:
                if isinstance(node, n.For) and self._is_message_expr(node.iter, bound):
                    targets = [node.target, *node.target.find_all(n.Name)]
                    grown.update(t.name for t in targets if isinstance(t, n.Name))
                elif isinstance(node, n.Assign) and isinstance(node.target, n.Name) and \
                        self._is_message_expr(node.node, bound):
                    grown.add(node.target.name)
            if grown == bound:
                break
            bound = grown
        for node in everything:
            if isinstance(node, n.Name) and node.name in bound and node.ctx == "load":
                reason = self._message_use(node, bound)
                if reason:
                    return reason
        return None

    def _is_message_expr(self, expr: Any, bound: set[str]) -> bool:
        """Whether expr evaluates to a message or a list of messages (a bound name, indexed or sliced)."""
        n = self.nodes
        while True:
            if isinstance(expr, n.Name):
                return expr.name in bound
            if isinstance(expr, n.Getitem) and not (isinstance(expr.arg, n.Const) and isinstance(expr.arg.value, str)):
                expr = expr.node
                continue
            return False

    def _message_use(self, node: Any, bound: set[str]) -> str | None:
        """None when this load of a message-valued name is harmless; else the reason."""
        n = self.nodes
        expr = node
        while True:
            up = self.parent.get(id(expr))
            if isinstance(up, (n.Getitem, n.Getattr)) and up.node is expr:
                key = up.attr if isinstance(up, n.Getattr) else (
                    up.arg.value if isinstance(up.arg, n.Const) and isinstance(up.arg.value, str) else None)
                if key is None:  # messages[i], messages[1:]: still a message (or messages)
                    expr = up
                    continue
                if key in _METHODS or key.startswith("_"):
                    return f"calls a message's {key!r}"
                if key == "content":
                    return self._content_use(up)
                return None  # a structural field (role, name, tool_call_id...): the same in both chats
            if isinstance(up, n.For) and up.iter is expr:
                return None
            if isinstance(up, n.Assign) and up.node is expr and isinstance(up.target, n.Name):
                return None
            if isinstance(up, n.Filter) and up.node is expr and up.name in ("length", "count"):
                return None
            if isinstance(up, n.Test) and up.node is expr and up.name in _SAFE_TESTS:
                return None
            return f"passes a message to {type(up).__name__ if up is not None else 'nothing'}"

    def _content_use(self, expr: Any) -> str | None:
        """None when the content node only flows into an output through + or ~; else the reason."""
        n = self.nodes
        while True:
            up = self.parent.get(id(expr))
            if isinstance(up, n.Output):
                return None
            if isinstance(up, (n.Add, n.Concat)):
                expr = up
                continue
            if isinstance(up, n.Test) and up.node is expr and up.name in _SAFE_TESTS and expr is not None:
                return None
            return f"uses a message's content in {type(up).__name__ if up is not None else 'nothing'}"


@dataclass(frozen=True)
class Structure:
    """A placeholder rendering: literal text and, between, the index of the message whose content
    stands there. parts alternates str, int, str, ..., str (len odd)."""

    parts: tuple

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else _PLACEHOLDER.format(p) for p in self.parts)

    def fill(self, contents: Sequence[str], start: int = 0) -> str:
        """The real rendering from parts[start:] (start even, at a literal)."""
        parts = self.parts
        out = [parts[start]]
        for i in range(start + 1, len(parts), 2):
            out.append(contents[parts[i]])
            out.append(parts[i + 1])
        return "".join(out)


def structure_key(chat: Sequence[dict]) -> tuple | None:
    """What a content-linear rendering of `chat` depends on besides contents; None when a message
    carries a field that is not a plain str: such chats are not reused.

    A stored chat's "tool_call" (the parsed call riding along an assistant message) is left out:
    ChatFormat.adapt drops it unless the format is native, and native formats are never reused
    (core.rollout.chat)."""
    key = []
    for m in chat:
        fields = []
        for k, v in m.items():
            if k == "tool_call":
                continue
            if k == "content":
                if not isinstance(v, str):
                    return None
                continue
            if not isinstance(v, str):
                return None
            fields.append((k, v))
        key.append(tuple(fields))
    return tuple(key)


def split_rendering(text: str, count: int) -> Structure | None:
    """The Structure of a placeholder rendering of `count` messages, or None unless every
    placeholder 0..count-1 appears exactly once (a template that drops, repeats or escapes a
    content is not reused)."""
    pieces = _PLACEHOLDER_RE.split(text)
    indices = [int(p) for p in pieces[1::2]]
    if sorted(indices) != list(range(count)):
        return None
    return Structure(tuple(p if i % 2 == 0 else int(p) for i, p in enumerate(pieces)))


def placeholder_chat(chat: Sequence[dict]) -> list[dict]:
    """`chat` with each content replaced by its placeholder (message i gets placeholder i)."""
    return [dict(m, content=_PLACEHOLDER.format(i)) for i, m in enumerate(chat)]


@lru_cache(maxsize=64)
def cached_content_linear(template: str) -> str | None:
    """content_linear, once per template source."""
    return content_linear(template)
