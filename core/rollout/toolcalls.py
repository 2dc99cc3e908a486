"""Finding the tool call in an assistant message, in the shapes models actually write.

The seed treated any JSON object in a reply as a function call and a reply without one as the
final answer. That contract is kept: `parse_tool_call` returns None when the model answered.
What changes is how objects are found and how failures are reported:

- reasoning is left out, so JSON the model only thought about is not a call;
- objects are decoded with `json.JSONDecoder.raw_decode`, so a brace inside a string (a query
  such as "set {x}") does not derail the scan the way the seed's brace counter did;
- Qwen/Hermes `<tool_call>...</tool_call>` tags (holding JSON, the `<function=NAME>` XML form of
  Qwen3-Coder/Qwen3.5 and Nemotron 3 templates, or GLM-4.5's `<arg_key>` form), Gemma 4's
  `<|tool_call>call:NAME{...}<tool_call|>`, LFM2's `<|tool_call_start|>[name(k=v)]<|tool_call_end|>`
  and ```json fences are understood, and broken
  JSON inside them is reported as a call that failed (the intent to call is unambiguous),
  whereas broken JSON in plain prose is ignored, since prose with braces is an answer (except a
  JSON object left open at the end of the reply: a call cut off mid-way, counted like a cut
  region, so the retry reward does not depend on the shape of a cut call);
- tags and think blocks are recognised only outside the string literals of a call: a query
  about "</tool_call>" or "</think>" is data, and a region ends at its end tag outside strings;
  a tag mentioned in prose, not followed by a call ("Qwen marks calls with a <tool_call> tag."),
  is part of the answer;
- every failure becomes a `ToolError` with a specific kind and a one-line message, instead of
  the seed's generic exception text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from core.data.records import ToolCall, ToolError

# Why a scanner of our own: the parsers of the field (vLLM's hermes/qwen3 parsers, verifiers' XML
# parser, Qwen's own template) cut regions with `<tool_call>(.*?)</tool_call>` and reasoning with
# `.partition("</think>")`, which reads a tag inside a JSON string (a query about the tag itself)
# as the end of the call. No maintained library scans model text for tags while skipping the string
# literals of the JSON, Gemma and Python syntaxes used inside them, so this module does: every
# region's end is found with a regex that consumes whole string literals before it can match a tag.

# What the scan looks for in prose (outside reasoning, call regions and JSON values).
_OPENERS = re.compile(
    r"(?P<think_open><think>)|(?P<think_close></think>)|(?P<tag><tool_call>)|(?P<gemma><\|tool_call>)"
    r"|(?P<pythonic><\|tool_call_start\|>)|(?P<fence>```[ \t]*json(?![A-Za-z0-9])[ \t]*\n?)|(?P<brace>\{)",
    re.IGNORECASE,
)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# A JSON string literal; an unterminated one stops at the end of its line (JSON strings hold no raw
# newline), so one missing quote does not hide every tag after it.
_JSON_STRING = r'"(?:[^"\\\n]|\\.)*"?'
_JSON_LEX = re.compile(_JSON_STRING + r"|(?P<close></think>)|[{}\[\]]", re.IGNORECASE)
"""Tokens of a JSON value in prose: strings (skipped whole), brackets, and a </think> outside strings."""
_TAG_JSON_END = re.compile(_JSON_STRING + r"|(?P<close></think>)|(?P<end></tool_call>)", re.IGNORECASE)
_FENCE_END = re.compile(_JSON_STRING + r"|(?P<close></think>)|(?P<end>```)", re.IGNORECASE)
_GEMMA_END = re.compile(r'<\|"\|>.*?(?:<\|"\|>|\Z)|(?P<close></think>)|(?P<end><tool_call\|>)',
                        re.DOTALL | re.IGNORECASE)
_PYTHONIC_END = re.compile(r"'(?:[^'\\\n]|\\.)*'?|\"(?:[^\"\\\n]|\\.)*\"?|(?P<close></think>)"
                           r"|(?P<end><\|tool_call_end\|>)", re.IGNORECASE)
_XML_END = re.compile(r"</function>\s*(?P<end></tool_call>)", re.IGNORECASE)
_PLAIN_END = {"tag": re.compile(r"</tool_call>", re.IGNORECASE), "gemma": re.compile(r"<tool_call\|>", re.IGNORECASE),
              "pythonic": re.compile(r"<\|tool_call_end\|>", re.IGNORECASE), "fence": re.compile(r"```")}
_NAMED_CALL = re.compile(r"[\w.\-]+(?:[(\[{]|\s*<arg_key>)")
"""A name followed by its arguments: GLM's `name<arg_key>`, `name(...)`, `name{...}` (no space
before a bracket: "with {" is prose)."""
_JSON_ERRORS = (json.JSONDecodeError, RecursionError)
"""What decoding model text can raise: the json module recurses per nesting level, so a reply of
thousands of nested brackets raises RecursionError; it is broken JSON like any other."""

_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number",
                    bool: "a boolean", type(None): "null", dict: "an object"}


@dataclass(frozen=True)
class Candidate:
    """One attempted tool call: a JSON object found in a reply, or a broken one in a call region.

    Exactly one of `value` and `error` is set. `value` is the decoded JSON (a dict, except inside
    <tool_call> tags, where any JSON value the model wrote is kept so it can be reported).
    """

    raw: str
    """The text the candidate was decoded from."""
    value: Any = None
    error: str | None = None
    """Why the text is not valid JSON, e.g. "Expecting ',' delimiter at line 1 column 30"."""
    source: str = "text"
    """Where it was found: "text" (bare), "fence" (```json block) or "tag" (<tool_call>)."""
    start: int = 0
    """Offset of the candidate in the reply's text, to keep candidates in order."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Layout:
    """A reply cut into reasoning and attempted calls (everything else is prose)."""

    reasoning: list[tuple[int, int]]
    candidates: list[Candidate]


def reasoning_spans(text: str) -> list[tuple[int, int]]:
    """Half-open character spans of `text` that are reasoning, in order, not overlapping.

    Reasoning is every <think>...</think> block (up to the first </think> after its <think>: what a
    model thinks is free text, read as chat templates read it), everything before a </think> with
    no <think> before it (templates such as Qwen3's and DeepSeek-R1's put the opening <think> in
    the prompt, so the reply starts inside the reasoning; the last such </think> counts), and an
    unclosed trailing <think>... (a reply cut off while thinking). Think tags are recognised only
    in prose: inside the string literals of a call (a query about the tag itself) they are data.
    """
    return _layout(text).reasoning


def strip_reasoning(text: str) -> str:
    """Remove reasoning so that only what the model said to the outside world remains.

    The spans removed are `reasoning_spans(text)`.
    """
    kept, pos = [], 0
    for start, end in reasoning_spans(text):
        kept.append(text[pos:start])
        pos = end
    kept.append(text[pos:])
    return "".join(kept)


def find_call_candidates(text: str) -> list[Candidate]:
    """Every attempted tool call in a reply, in order of appearance (reasoning excluded).

    Attempts are: each call region (<tool_call>, Gemma 4's <|tool_call>, LFM2's
    <|tool_call_start|>, a ```json fence) whose content starts like a call (JSON, the XML function
    form, `name<arg_key>`, `name(...)`; a Gemma or LFM2 region closed by its end token); each
    top-level JSON object in prose; and a JSON object in prose left open at the end of the reply
    (a call cut off mid-way, as an unclosed region is). A tag followed by prose is a mention, not a
    call. Tags inside string literals of a call are data, never the end of a region.
    """
    return _layout(text).candidates


def _layout(text: str) -> _Layout:
    """One left-to-right scan of a reply (see reasoning_spans and find_call_candidates)."""
    reasoning: list[tuple[int, int]] = []
    found: list[Candidate] = []
    pos = 0

    def orphan_close(end: int) -> None:
        # Everything before a </think> without its <think> is reasoning; what was found there is not.
        reasoning[:] = [(0, end)]
        found.clear()

    while True:
        m = _OPENERS.search(text, pos)
        if m is None:
            break
        kind = m.lastgroup
        if kind == "think_open":
            close = _THINK_CLOSE.search(text, m.end())
            end = close.end() if close else len(text)
            reasoning.append((m.start(), end))
            pos = end
        elif kind == "think_close":
            orphan_close(m.end())
            pos = m.end()
        elif kind == "brace":
            pos = _prose_json(text, m.start(), found, orphan_close)
        else:
            pos = _region(text, kind, m, found, orphan_close)
    return _Layout(reasoning, found)


def _prose_json(text: str, i: int, found: list[Candidate], orphan_close) -> int:
    """Read the JSON value at text[i] == "{" in prose; returns where the scan goes on.

    A valid object is a candidate (objects nested in it belong to it). Broken JSON in prose is
    prose, except that valid objects nested in it are still candidates (a model that dropped the
    outer object's last brace) and an object left open at the end of the reply is a cut-off call.
    """
    decoder = json.JSONDecoder()
    try:
        value, stop = decoder.raw_decode(text, i)
    except _JSON_ERRORS:
        pass
    else:
        if isinstance(value, dict):
            found.append(Candidate(raw=text[i:stop], value=value, source="text", start=i))
        return stop
    if not re.match(r"\{\s*\"", text[i:i + 64]):
        return i + 1  # a brace in prose ("the set {a, b}")
    depth, end, closed, nested = 0, len(text), False, []
    j = i
    for tok in _JSON_LEX.finditer(text, i):
        if tok.lastgroup == "close":  # JSON never holds </think> outside a string: reasoning ended
            orphan_close(tok.end())
            return tok.end()
        if tok.start() < j:
            continue  # inside a nested object already taken
        c = tok.group()
        if c in "{[":
            if c == "{" and depth >= 1:
                try:
                    value, stop = decoder.raw_decode(text, tok.start())
                except _JSON_ERRORS:
                    pass
                else:
                    if isinstance(value, dict):
                        nested.append(Candidate(raw=text[tok.start():stop], value=value, source="text",
                                                start=tok.start()))
                        j = stop
                        continue
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                end, closed = tok.end(), True
                break
    found.extend(nested)
    if not closed and not nested:
        try:
            json.loads(text[i:])
        except _JSON_ERRORS as exc:
            found.append(Candidate(raw=text[i:].strip(), error=_describe(exc), source="text", start=i))
    return end


def _region(text: str, kind: str, opener: re.Match, found: list[Candidate], orphan_close) -> int:
    """Read a call region opened at `opener`; returns where the scan goes on.

    The region ends at its end tag outside string literals (or runs to the end of the reply: a
    call cut off mid-way is still an attempt). An opener followed by prose is a mention of the
    tag, and the scan goes on right after it.
    """
    body_start = opener.end()
    plain = _PLAIN_END[kind].search(text, body_start)
    lead = text[body_start:plain.start() if plain else len(text)].lstrip()
    if kind == "tag":
        looks = (not lead or lead[0] in '{["' or lead.startswith("<function=") or bool(_NAMED_CALL.match(lead)))
    elif kind == "fence":
        looks = bool(lead) and lead[0] in '{["'
    else:  # Gemma's and LFM2's call tokens are special tokens: a closed region is an attempt
        looks = (not lead or plain is not None or lead.startswith("call:") or lead[0] == "["
                 or bool(_NAMED_CALL.match(lead)))
    if not looks:
        return body_start
    if kind == "tag" and lead.startswith("<function="):
        end = _XML_END.search(text, body_start) or plain
        body_end, resume = (end.start("end") if end.re is _XML_END else end.start(), end.end()) if end else (
            len(text), len(text))
    elif kind == "tag" and not (lead and lead[0] in '{["'):
        body_end, resume = (plain.start(), plain.end()) if plain else (len(text), len(text))
    else:
        pattern = {"tag": _TAG_JSON_END, "fence": _FENCE_END, "gemma": _GEMMA_END, "pythonic": _PYTHONIC_END}[kind]
        body_end, resume = len(text), len(text)
        for tok in pattern.finditer(text, body_start):
            if tok.lastgroup == "close":  # outside any string: the reply started inside reasoning
                orphan_close(tok.end())
                return tok.end()
            if tok.lastgroup == "end":
                body_end, resume = tok.start(), tok.end()
                break
    body = text[body_start:body_end]
    if kind == "tag":
        found += _block(body, body_start, "tag", keep_non_objects=True)
    elif kind == "gemma":
        found.append(_gemma_call(body, body_start))
    elif kind == "pythonic":
        found += _pythonic_calls(body, body_start)
    else:
        found += _block(body, body_start, "fence", keep_non_objects=False)
    return resume


def count_call_attempts(text: str) -> int:
    """How many tool calls a reply attempted (what the retry reward counts)."""
    return len(find_call_candidates(text))


def parse_tool_call(text: str, tools: Sequence[str] = ("search_corpus",)) -> ToolCall | ToolError | None:
    """The one tool call of a reply, the reason it cannot be run, or None if the model answered.

    Recognised shapes, with the arguments under "parameters" or "arguments" (an object, or a
    JSON-encoded object as OpenAI writes it):
        {"type": "function", "function": {"name": ..., "parameters": {...}}}   (the seed's)
        {"name": ..., "parameters": {...}}
    Every tool takes a non-empty string "query"; other arguments are kept as they are.
    """
    candidates = find_call_candidates(text)
    if not candidates:
        return None
    if len(candidates) > 1:
        return ToolError("multiple_calls", f"expected one tool call, found {len(candidates)}")
    cand = candidates[0]
    if cand.error is not None:
        where = {"tag": " in <tool_call>", "fence": " in ```json block"}.get(cand.source, "")
        return ToolError("invalid_json", f"invalid JSON{where}: {cand.error}")
    return _interpret(cand, tools)


def _interpret(cand: Candidate, tools: Sequence[str]) -> ToolCall | ToolError:
    obj = cand.value
    if not isinstance(obj, dict):
        return ToolError("malformed_call", f"expected a JSON object, found {_json_type(obj)}")
    if isinstance(obj.get("function"), dict):
        body = obj["function"]
    elif "name" in obj:
        body = obj
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:5]) or "none"
        return ToolError("malformed_call",
                         f"JSON object is not a tool call: expected 'name' and 'parameters' (keys: {keys})")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return ToolError("malformed_call", "tool call has no 'name' string")
    if name not in tools:
        return ToolError("unknown_tool", f"unknown tool {name!r} (known: {', '.join(tools)})")
    args = _arguments(body, name)
    if isinstance(args, ToolError):
        return args
    query = args.get("query")
    if query is None:
        return ToolError("missing_query", f"{name} call has no 'query' argument")
    if not isinstance(query, str):
        return ToolError("missing_query", f"{name} 'query' must be a string, not {_json_type(query)}")
    if not query.strip():
        return ToolError("missing_query", f"{name} 'query' is empty")
    return ToolCall(name=name, arguments=args, raw=cand.raw)


def _arguments(body: dict[str, Any], name: str) -> dict[str, Any] | ToolError:
    key = "parameters" if "parameters" in body else "arguments"
    args = body.get(key)
    if args is None:
        return ToolError("malformed_call", f"{name} call has no 'parameters' or 'arguments' object")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except _JSON_ERRORS as exc:
            return ToolError("invalid_json", f"{name} '{key}' string is not valid JSON: {_describe(exc)}")
    if not isinstance(args, dict):
        return ToolError("malformed_call", f"{name} '{key}' must be an object, not {_json_type(args)}")
    return args


_FUNCTION_FORM = re.compile(r"<function=(?P<name>[^>\n]*)>(?P<body>.*?)(?:</function>|\Z)", re.DOTALL)
_PARAMETER_FORM = re.compile(r"<parameter=(?P<name>[^>\n]*)>\n?(?P<value>.*?)\n?(?:</parameter>|\Z)", re.DOTALL)


def _function_form(body: str, offset: int) -> list[Candidate] | None:
    """Calls written in the XML form of Qwen3-Coder, Qwen3.5+ and Nemotron 3 templates, inside
    <tool_call> tags: <function=NAME><parameter=KEY>VALUE</parameter>...</function>. Values are
    kept as text (a query "1873" stays a string), except JSON objects and arrays, which are
    decoded, as those templates render them with tojson. None when the region is not in that form.
    """
    if not body.lstrip().startswith("<function="):
        return None
    found = []
    for fn in _FUNCTION_FORM.finditer(body):
        args: dict[str, Any] = {}
        for param in _PARAMETER_FORM.finditer(fn.group("body")):
            value = param.group("value")
            try:
                decoded = json.loads(value)
            except _JSON_ERRORS:
                decoded = None
            args[param.group("name")] = decoded if isinstance(decoded, (dict, list)) else value
        found.append(Candidate(raw=fn.group(0), value={"name": fn.group("name").strip(), "arguments": args},
                               source="tag", start=offset + fn.start()))
    return found


_GLM_FORM = re.compile(r"^\s*(?P<name>[^\s<{]+)\s*(?P<args>(?:<arg_key>.*?</arg_key>\s*<arg_value>.*?</arg_value>\s*)*)$",
                       re.DOTALL)
_GLM_ARG = re.compile(r"<arg_key>(?P<key>.*?)</arg_key>\s*<arg_value>(?P<value>.*?)</arg_value>", re.DOTALL)


def _glm_form(body: str, offset: int) -> list[Candidate] | None:
    """GLM-4.5's call inside <tool_call> tags: NAME then <arg_key>K</arg_key><arg_value>V</arg_value>
    pairs (values as text unless a JSON object or array). None when the region is not in that form."""
    match = _GLM_FORM.match(body)
    if match is None or "<arg_key>" not in body:
        return None
    args = {m.group("key").strip(): _text_or_json(m.group("value")) for m in _GLM_ARG.finditer(match.group("args"))}
    return [Candidate(raw=body.strip(), value={"name": match.group("name"), "arguments": args}, source="tag",
                      start=offset)]


def _text_or_json(value: str) -> Any:
    try:
        decoded = json.loads(value)
    except _JSON_ERRORS:
        return value
    return decoded if isinstance(decoded, (dict, list)) else value


_GEMMA_STRING = re.compile(r'<\|"\|>(.*?)<\|"\|>', re.DOTALL)
_GEMMA_KEY = re.compile(r'([{,])\s*([A-Za-z_][\w.-]*)\s*:')


def _gemma_call(body: str, offset: int) -> Candidate:
    """Gemma 4's `<|tool_call>call:NAME{key:<|"|>text<|"|>,n:3}<tool_call|>`: keys bare, strings
    between <|"|> marks, other values JSON. A body not in that form is a failed call."""
    match = re.match(r"\s*call:(?P<name>[^{\s]+)\s*(?P<args>\{.*\})\s*$", body, re.DOTALL)
    if match is None:
        return Candidate(raw=body.strip(), error="expected call:NAME{...}", source="tag", start=offset)
    strings: list[str] = []

    def keep(m: re.Match) -> str:
        strings.append(m.group(1))
        return f"\x00{len(strings) - 1}\x00"

    text = _GEMMA_KEY.sub(r'\1"\2":', _GEMMA_STRING.sub(keep, match.group("args")))
    text = re.sub(r"\x00(\d+)\x00", lambda m: json.dumps(strings[int(m.group(1))]), text)
    try:
        args = json.loads(text)
    except _JSON_ERRORS as exc:
        return Candidate(raw=body.strip(), error=_describe(exc), source="tag", start=offset)
    return Candidate(raw=body.strip(), value={"name": match.group("name"), "arguments": args}, source="tag",
                     start=offset)


def _pythonic_calls(body: str, offset: int) -> list[Candidate]:
    """LFM2's `<|tool_call_start|>[name(key='text', n=3), ...]<|tool_call_end|>`: Python call
    syntax with literal keyword arguments, read with `ast` (never evaluated)."""
    import ast

    try:
        tree = ast.parse(body.strip(), mode="eval").body
    except SyntaxError as exc:
        return [Candidate(raw=body.strip(), error=f"not a Python call list ({exc.msg})", source="tag", start=offset)]
    calls = tree.elts if isinstance(tree, ast.List) else [tree]
    source = body.strip()
    found = []
    for call in calls:
        if not isinstance(call, ast.Call) or not isinstance(call.func, (ast.Name, ast.Attribute)):
            found.append(Candidate(raw=body.strip(), error="expected name(key=value, ...)", source="tag",
                                   start=offset))
            continue
        try:
            args = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
        except ValueError:
            found.append(Candidate(raw=ast.get_source_segment(source, call) or source,
                                   error="arguments must be literals", source="tag", start=offset))
            continue
        found.append(Candidate(raw=ast.get_source_segment(source, call) or source,
                               value={"name": ast.unparse(call.func), "arguments": args}, source="tag", start=offset))
    return found


def _block(body: str, offset: int, source: str, keep_non_objects: bool) -> list[Candidate]:
    """The JSON values written back to back in a call region (or calls in the XML function form).

    Trailing text after at least one value is ignored (models often add a stray brace); a region
    with no decodable value is one candidate carrying the JSON error.
    """
    if source == "tag":
        for form in (_function_form, _glm_form):
            calls = form(body, offset)
            if calls is not None:
                return calls
    decoder = json.JSONDecoder()
    found: list[Candidate] = []
    decoded = 0
    i = _skip_space(body, 0)
    while i < len(body):
        try:
            value, stop = decoder.raw_decode(body, i)
        except _JSON_ERRORS as exc:
            if not decoded:
                return [Candidate(raw=body.strip(), error=_describe(exc), source=source, start=offset + i)]
            break
        decoded += 1
        if isinstance(value, dict) or keep_non_objects:
            found.append(Candidate(raw=body[i:stop], value=value, source=source, start=offset + i))
        i = _skip_space(body, stop)
    if not decoded and source == "tag":
        return [Candidate(raw="", error="no JSON value", source=source, start=offset)]
    return found


def _skip_space(s: str, i: int) -> int:
    while i < len(s) and s[i].isspace():
        i += 1
    return i


def _describe(exc: Exception) -> str:
    if not isinstance(exc, json.JSONDecodeError):
        return "JSON nested too deeply to decode"
    return f"{exc.msg} at line {exc.lineno} column {exc.colno}"


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
