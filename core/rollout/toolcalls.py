"""Finding the tool call in an assistant message, in the shapes models actually write.

The seed treated any JSON object in a reply as a function call and a reply without one as the
final answer. That contract is kept: `parse_tool_call` returns None when the model answered.
What changes is how objects are found and how failures are reported:

- reasoning is removed first, so JSON the model only thought about is not a call;
- objects are decoded with `json.JSONDecoder.raw_decode`, so a brace inside a string (a query
  such as "set {x}") does not derail the scan the way the seed's brace counter did;
- Qwen/Hermes `<tool_call>...</tool_call>` tags (holding JSON, the `<function=NAME>` XML form of
  Qwen3-Coder/Qwen3.5 and Nemotron 3 templates, or GLM-4.5's `<arg_key>` form), Gemma 4's
  `<|tool_call>call:NAME{...}<tool_call|>`, LFM2's `<|tool_call_start|>[name(k=v)]<|tool_call_end|>`
  and ```json fences are understood, and broken
  JSON inside them is reported as a call that failed (the intent to call is unambiguous),
  whereas broken JSON in plain prose is ignored, since prose with braces is an answer;
- every failure becomes a `ToolError` with a specific kind and a one-line message, instead of
  the seed's generic exception text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from core.data.records import ToolCall, ToolError

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)

# Explicit call regions. An unclosed region runs to the end of the text: a reply cut off by the
# token limit mid-call is still an attempted call.
_REGIONS = re.compile(
    r"<tool_call>(?P<tag>.*?)(?:</tool_call>|\Z)"
    r"|<\|tool_call>(?P<gemma>.*?)(?:<tool_call\|>|\Z)"
    r"|<\|tool_call_start\|>(?P<pythonic>.*?)(?:<\|tool_call_end\|>|\Z)"
    r"|```[ \t]*json(?![A-Za-z0-9])[ \t]*\n?(?P<fence>.*?)(?:```|\Z)",
    re.DOTALL | re.IGNORECASE,
)

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
    """Offset of the candidate in the reasoning-free text, to keep candidates in order."""

    @property
    def ok(self) -> bool:
        return self.error is None


def strip_reasoning(text: str) -> str:
    """Remove reasoning so that only what the model said to the outside world remains.

    Removes every <think>...</think> block, then everything before a leftover </think> (chat
    templates such as Qwen3's and DeepSeek-R1's put the opening <think> in the prompt, so the
    generated text starts inside the reasoning), then an unclosed trailing <think>... (a reply
    cut off while thinking).
    """
    text = _THINK_BLOCK.sub("", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opened = _THINK_OPEN.search(text)
    if opened:
        text = text[: opened.start()]
    return text


def find_call_candidates(text: str) -> list[Candidate]:
    """Every attempted tool call in a reply, in order of appearance (reasoning excluded)."""
    text = strip_reasoning(text)
    found: list[Candidate] = []
    pos = 0
    for region in _REGIONS.finditer(text):
        found += _bare_objects(text, pos, region.start())
        if region.group("tag") is not None:
            found += _block(region.group("tag"), region.start("tag"), "tag", keep_non_objects=True)
        elif region.group("gemma") is not None:
            found.append(_gemma_call(region.group("gemma"), region.start("gemma")))
        elif region.group("pythonic") is not None:
            found += _pythonic_calls(region.group("pythonic"), region.start("pythonic"))
        else:
            found += _block(region.group("fence"), region.start("fence"), "fence", keep_non_objects=False)
        pos = region.end()
    found += _bare_objects(text, pos, len(text))
    return found


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
        except json.JSONDecodeError as exc:
            return ToolError("invalid_json", f"{name} '{key}' string is not valid JSON: {_describe(exc)}")
    if not isinstance(args, dict):
        return ToolError("malformed_call", f"{name} '{key}' must be an object, not {_json_type(args)}")
    return args


def _bare_objects(text: str, start: int, end: int) -> list[Candidate]:
    """Valid top-level JSON objects in text[start:end]; anything else with braces is prose."""
    decoder = json.JSONDecoder()
    segment = text[:end]
    found: list[Candidate] = []
    i = segment.find("{", start)
    while i != -1:
        try:
            value, stop = decoder.raw_decode(segment, i)
        except json.JSONDecodeError:
            i = segment.find("{", i + 1)
            continue
        if isinstance(value, dict):
            found.append(Candidate(raw=segment[i:stop], value=value, source="text", start=i))
        # Objects nested in this one belong to it: resume after it.
        i = segment.find("{", stop)
    return found


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
            except json.JSONDecodeError:
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
    except json.JSONDecodeError:
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
    except json.JSONDecodeError as exc:
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
        except json.JSONDecodeError as exc:
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


def _describe(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at line {exc.lineno} column {exc.colno}"


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
