"""What a chat template can carry, decided before the model loads; refusals in one line.

rl-inspect's chats are stored as plain messages: system, user, then per turn an assistant reply
(the model's text, the tool call written inside it in the seed's JSON format) and a `tool` message
with the search results. `check_template` renders a few probe chats through the tokenizer's
template and returns the `ChatFormat` that maps those stored messages onto what the template
accepts, or raises `TemplateError` saying why the template cannot run the agent:

- it drops assistant content, or tool-message content (Phi-3/3.5-mini, Gemma 4 v1, Cohere 2:
  the model would never see the search results);
- it needs a tools list (Hermes-style tool-use templates loop over `tools` unguarded);
- it rejects the roles the run needs even after the adaptations below.

Adaptations, each recorded in `ChatFormat.notes` and stored with the run's configuration:
- no system role (Gemma, Gemma 3): the system prompt is folded into the first user message,
  separated by a blank line, as Gemma 3's own template does with a system message;
- a template that rejects a `tool` message (roles must alternate: Gemma 3, Cohere; or a tool
  result without a structured call before it: gpt-oss) gets the results as `ipython` messages if
  it renders those, else as `user` messages (Google's Gemma function-calling guide returns tool
  output in a user turn);
- tool-call ids that must be 9 alphanumerics (Mistral Nemo, Mistral Small 3.x:
  "Tool call IDs should be alphanumeric strings with length 9!"): each tool message gets one,
  `call00001`, `call00002`, ... in order;
- templates that print today's date (Llama 3.1/3.2 `strftime_now`, gpt-oss) get a fixed
  `date_string`, so a trajectory that runs past midnight is rendered the same at every turn.

With `tool_format="native"` (or "auto" where supported) the tool's schema goes through the
template (`tools=`), a reply's parsed call is rendered as structured `tool_calls` (the template
writes it in its own syntax; the model's own ids stay as generated) and each result is a `tool`
message carrying the call's id. `native_tool_support` refuses a template that does not render
the tools list, a structured call or its result, or whose call syntax core.rollout.toolcalls does not
parse (Gemma 4's `call:name{...}`, LFM2's pythonic calls, GLM's `<arg_key>`, gpt-oss harmony).
transformers' `tokenizer.parse_response` is not used: it needs a per-family response schema,
which TRL attaches with `add_response_schema` (the same 10-second import), and core.rollout.toolcalls
already parses the JSON, `<tool_call>` and `<function=...>` forms with specific error kinds.

TRL's `trl.chat_template_utils` has `supports_tool_calling` and `is_chat_template_prefix_preserving`.
They are not called here: importing that module costs ~10 s (it imports transformers' modeling
code, torch.distributed and datasets through `trl.data_utils`), and they answer other questions.
`supports_tool_calling` requires structured `tool_calls` to render (Llama 3's basic template
fails it, yet renders our tool messages intact), so it decides native tool calling, not whether
our seed-format chats work; `is_chat_template_prefix_preserving` tokenises one fixed chat, while
whether a template extends its earlier rendering depends on the content (Qwen3 renders a reply
with reasoning differently from one without), so `core.rollout.chat` checks that at every turn instead.
`renders_native_tool_results` makes TRL's tool-result probe without the import, to tell a user
when a refused template would work with native tool calling; a slow test checks it against TRL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import date as _date
from pathlib import Path
from typing import Any, Sequence

from core.rollout.prompts import SEARCH_TOOL, SEARCH_TOOL_NAME
from core.data.records import InputError

SENTINEL_TOOL = "RLINSPECT_TOOL_RESULT_7c1e"
_SENTINEL_ASSISTANT = "RLINSPECT_ASSISTANT_REPLY_4b2d"
_SENTINEL_SYSTEM = "RLINSPECT_SYSTEM_PROMPT_9a3f"
_SENTINEL_USER = "RLINSPECT_USER_QUESTION_5e8c"
_PROBE_CALL = '{"name": "search_corpus", "parameters": {"query": "probe"}}'

MAX_SANE_CONTEXT = 10**8
"""tokenizer.model_max_length above this is transformers' "no limit" placeholder (1e30)."""


class TemplateError(ValueError):
    """A chat template that cannot run the agent; str() is one line naming the template and why.

    A ValueError, so the CLI reports it in one line with exit code 2, before the model loads.
    """


@dataclass(frozen=True)
class ChatFormat:
    """How stored messages are rendered through one chat template (see the module docstring)."""

    fold_system: bool = False
    """Fold the system prompt into the first user message (template has no system role)."""
    tool_role: str = "tool"
    """Role the template renders tool results under: "tool", "ipython" or "user"."""
    tool_call_ids: bool = False
    """Give each tool message a 9-character alphanumeric tool_call_id (Mistral)."""
    date_string: str = ""
    """Passed to the template as `date_string` (Llama 3.1's variable), fixed per trajectory."""
    native_tools: bool = False
    """Native tool calling: the tool schema goes through the template (`tools=`), a reply's call is
    rendered as structured `tool_calls` (the template writes it in its own syntax), results as
    `tool` messages with the call's id. False: the seed's format (tool in the user prompt)."""
    notes: tuple[str, ...] = field(default=())
    """One line per adaptation made, for logs and the run's stored configuration."""

    def with_date(self, day: _date) -> "ChatFormat":
        """The same format with `date_string` set to `day` as Llama 3.1 prints it ("26 Jul 2024")."""
        return replace(self, date_string=day.strftime("%d %b %Y"))

    def adapt(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stored chat dicts (role, content; an assistant's parsed call under "tool_call", a
        core.data.records.ToolCall) -> the messages handed to the template."""
        out: list[dict[str, Any]] = []
        calls = 0
        for m in messages:
            m = dict(m)
            call = m.pop("tool_call", None)
            if self.native_tools and m["role"] == "assistant" and call is not None:
                m["content"] = strip_call_text(m["content"], call.raw)
                m["tool_calls"] = [{"id": f"call{calls + 1:05d}", "type": "function",
                                    "function": {"name": call.name, "arguments": dict(call.arguments)}}]
            if m["role"] == "tool":
                calls += 1
                m["role"] = self.tool_role
                if self.tool_call_ids or self.native_tools:
                    m["tool_call_id"] = f"call{calls:05d}"
                if self.native_tools:
                    m["name"] = SEARCH_TOOL_NAME
            out.append(m)
        if self.fold_system and len(out) >= 2 and out[0]["role"] == "system" and out[1]["role"] == "user":
            first = dict(out[1], content=f"{out[0]['content']}\n\n{out[1]['content']}")
            out = [first] + out[2:]
        return out

    def template_kwargs(self) -> dict[str, Any]:
        """Extra variables for apply_chat_template: a fixed date for date-printing templates, the
        tool schema in native mode."""
        kwargs: dict[str, Any] = {"date_string": self.date_string} if self.date_string else {}
        if self.native_tools:
            kwargs["tools"] = [SEARCH_TOOL]
        return kwargs


_CALL_WRAPPERS = (re.compile(r"<tool_call>\s*</tool_call>", re.DOTALL), re.compile(r"```[ \t]*json\s*```"),
                  re.compile(r"<\|python_tag\|>"), re.compile(r"\[TOOL_CALLS\]\s*\[\s*\]"),
                  re.compile(r"<\|tool_call>\s*<tool_call\|>"),
                  re.compile(r"<\|tool_call_start\|>\s*\[\s*\]\s*<\|tool_call_end\|>"))


def strip_call_text(content: str, raw: str) -> str:
    """A reply's text without its tool call (native mode renders the call from tool_calls).

    Removes the call's raw text and the wrapper left empty around it (<tool_call></tool_call>,
    a ```json fence, Llama's <|python_tag|>, Mistral's [TOOL_CALLS][], Gemma 4's
    <|tool_call><tool_call|>, LFM2's <|tool_call_start|>[]<|tool_call_end|>), then outer whitespace.
    """
    if raw:
        at = content.rfind(raw)
        if at >= 0:
            content = content[:at] + content[at + len(raw):]
    for wrapper in _CALL_WRAPPERS:
        content = wrapper.sub("", content)
    return content.strip()


def load_chat_template(path: str | Path) -> str:
    """Read a `--chat-template FILE` (a Jinja chat template, as vLLM and TRL take it).

    Raises InputError naming the file when it is missing, unreadable, not UTF-8, empty or not a
    Jinja template that renders a message.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "no such chat template file") from None
    except IsADirectoryError:
        raise InputError(str(path), "is a folder, not a chat template file") from None
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read the chat template ({exc.strerror})") from None
    if not text.strip():
        raise InputError(str(path), "the chat template file is empty")
    if "{{" not in text and "{%" not in text:
        raise InputError(str(path), "not a Jinja chat template (no {{ ... }} or {% ... %})")
    try:
        from jinja2 import Environment, TemplateSyntaxError
        from jinja2.ext import loopcontrols

        Environment(extensions=[loopcontrols]).parse(text)
    except TemplateSyntaxError as exc:
        raise InputError(str(path), f"Jinja syntax error: {exc.message}", line=exc.lineno) from None
    return text


def _render(tokenizer: Any, messages: Sequence[dict], generation_prompt: bool, **kwargs: Any) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt,
                                         **kwargs)


def _attempt(tokenizer: Any, messages: Sequence[dict], **kwargs: Any) -> tuple[str | None, str | None]:
    """(rendering, None) or (None, the template's error in one line)."""
    try:
        return _render(tokenizer, messages, True, **kwargs), None
    except Exception as exc:  # jinja2 raises TemplateError, UndefinedError, TypeError, ...
        return None, f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def renders_assistant_content(tokenizer: Any) -> str | None:
    """None if the template writes an assistant message's content; else the reason it does not.

    Rule: token-exact chats keep the model's own ids, so the template must put the reply's text
    in the chat (a template without it cannot describe what the model saw).
    """
    chat = [{"role": "user", "content": "U"}, {"role": "assistant", "content": _SENTINEL_ASSISTANT}]
    text, error = _attempt(tokenizer, chat)
    if text is None:
        return f"cannot render a user message and a reply ({error})"
    if _SENTINEL_ASSISTANT not in text:
        return "drops the assistant's reply text"
    return None


def needs_tools_list(tokenizer: Any) -> str | None:
    """None, or why the template fails without a `tools` list but renders with one.

    Hermes-style tool-use templates loop over `tools` without checking it is defined. The seed
    format puts the tool definition in the user prompt and passes no tools, so such a template
    is refused until native tool calling passes `tools=` (issue 12, phase 2).
    """
    chat = [{"role": "user", "content": "U"}]
    text, error = _attempt(tokenizer, chat)
    if text is not None:
        return None
    with_tools, _ = _attempt(tokenizer, chat, tools=[SEARCH_TOOL])
    if with_tools is not None:
        return f"needs a tools list (a tool-use template; without tools it fails: {error})"
    return None


def system_mode(tokenizer: Any) -> tuple[bool, str | None]:
    """(fold_system, reason to refuse or None): whether the system prompt must go into the user turn.

    Folded when the template raises on a system message ("System role not supported": Gemma) or
    renders the chat without the system text; refused when even the folded chat fails.
    """
    chat = [{"role": "system", "content": _SENTINEL_SYSTEM}, {"role": "user", "content": _SENTINEL_USER}]
    text, error = _attempt(tokenizer, chat)
    if text is not None and _SENTINEL_SYSTEM in text:
        return False, None
    folded, folded_error = _attempt(tokenizer, ChatFormat(fold_system=True).adapt(chat))
    if folded is None or _SENTINEL_SYSTEM not in folded or _SENTINEL_USER not in folded:
        why = error or "drops the system prompt"
        return True, f"rejects the system prompt ({why}) and the user turn too ({folded_error or 'text dropped'})"
    return True, None


def tool_result_format(tokenizer: Any, fold_system: bool) -> tuple[str, bool, str | None]:
    """(tool_role, tool_call_ids, reason to refuse or None) for rendering search results.

    Tries a `tool` message, also with a 9-character tool_call_id (Mistral), then `ipython`
    (Llama 3.1's name); accepts the first whose rendering holds the result's text. A template
    that accepts a tool message and silently drops its content (Phi-3/3.5, Gemma 4 v1, Cohere 2)
    is refused: the model would never see the search results. Only when every tool role is
    rejected with an error (Gemma 3's and Cohere's role alternation) are results rendered as
    `user` messages, as Google's Gemma function-calling guide does.
    """
    base = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
            {"role": "assistant", "content": _PROBE_CALL}, {"role": "tool", "content": SENTINEL_TOOL},
            {"role": "assistant", "content": _PROBE_CALL}, {"role": "tool", "content": SENTINEL_TOOL + "2"}]
    errors = []
    for role in ("tool", "ipython"):
        for ids in (False, True):
            fmt = ChatFormat(fold_system=fold_system, tool_role=role, tool_call_ids=ids)
            text, error = _attempt(tokenizer, fmt.adapt(base))
            if text is None:
                errors.append(error)
                continue
            if SENTINEL_TOOL in text and SENTINEL_TOOL + "2" in text:
                return role, ids, None
            rejected = f" and rejects a tool message ({errors[0]})" if errors else ""
            return "tool", False, (f"renders {role!r} messages without their content{rejected}: the model would "
                                   "never see the search results")
    text, error = _attempt(tokenizer, ChatFormat(fold_system=fold_system, tool_role="user").adapt(base))
    if text is not None and SENTINEL_TOOL in text and SENTINEL_TOOL + "2" in text:
        return "user", False, None
    return "tool", False, f"rejects tool results as tool, ipython and user messages ({errors[0]})"


def renders_native_tool_results(tokenizer: Any) -> bool:
    """Whether the template shows a tool result that follows a structured tool call (native tool
    calling: an assistant message with `tool_calls`, a `tool` message with its id), the shape
    TRL's `supports_tool_calling` probes. Used to say why a template is refused in seed format."""
    call = {"id": "call00001", "type": "function",
            "function": {"name": "search_corpus", "arguments": {"query": "probe"}}}
    chat = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "name": "search_corpus", "tool_call_id": "call00001", "content": SENTINEL_TOOL}]
    text, _ = _attempt(tokenizer, chat)
    return text is not None and SENTINEL_TOOL in text


def native_tool_support(tokenizer: Any) -> str | None:
    """None when the template can carry native tool calling; else why not.

    Native needs, rendered: the tool schema passed as `tools=` (its name in the text), an
    assistant's structured call (name and argument), and the tool result after it. This is the
    exchange TRL's `supports_tool_calling` probes, plus the tools list.
    """
    text, error = _attempt(tokenizer, [{"role": "user", "content": "U"}], tools=[SEARCH_TOOL])
    if text is None:
        return f"fails with a tools list ({error})"
    if SEARCH_TOOL_NAME not in text:
        return "does not render the tools list"
    call = {"id": "call00001", "type": "function",
            "function": {"name": SEARCH_TOOL_NAME, "arguments": {"query": _SENTINEL_USER}}}
    chat = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "name": SEARCH_TOOL_NAME, "tool_call_id": "call00001", "content": SENTINEL_TOOL}]
    text, error = _attempt(tokenizer, chat, tools=[SEARCH_TOOL])
    if text is None:
        return f"cannot render a structured tool call and its result ({error})"
    if _SENTINEL_USER not in text:
        return "drops a structured tool call's arguments"
    if SENTINEL_TOOL not in text:
        return "drops the tool result after a structured tool call"
    return _call_syntax_parsed(tokenizer, chat[:2])


def _call_syntax_parsed(tokenizer: Any, chat: list[dict]) -> str | None:
    """None when core.rollout.toolcalls parses the call as the template writes it (what a model trained
    on the template generates); else the reason, quoting the template's syntax."""
    from core.rollout.toolcalls import parse_tool_call
    from core.data.records import ToolCall

    try:
        plain = _render(tokenizer, chat[:1], False, tools=[SEARCH_TOOL])
        full = _render(tokenizer, chat, False, tools=[SEARCH_TOOL])
    except Exception as exc:
        return f"cannot render a structured tool call ({exc.__class__.__name__})"
    written = full[len(plain):] if full.startswith(plain) else full
    parsed = parse_tool_call(written, tools=(SEARCH_TOOL_NAME,))
    if isinstance(parsed, ToolCall) and parsed.arguments.get("query") == _SENTINEL_USER:
        return None
    at = written.find(SEARCH_TOOL_NAME)
    snippet = written[max(0, at - 20): at + 60] if at >= 0 else written[:80]
    return f"writes tool calls as {snippet.strip()!r}, a syntax rl-inspect does not parse yet"


TOOL_FORMATS = ("seed", "native", "auto")
"""--tool-format: the seed's (tool in the user prompt, calls as JSON text), native (the template's
tools and tool_calls), auto (native where the template supports it, else the seed's)."""


def check_template(tokenizer: Any, name: str = "", tool_format: str = "seed") -> ChatFormat:
    """The ChatFormat this tokenizer's chat template needs, or TemplateError saying why none works.

    Cheap (a dozen renderings of tiny chats, no model), so it runs before the model loads.
    `name` labels the template in the error ("Qwen/Qwen3-0.6B", "my_template.jinja");
    tool_format is one of TOOL_FORMATS.
    """
    if tool_format not in TOOL_FORMATS:
        raise ValueError(f"--tool-format must be one of {', '.join(TOOL_FORMATS)}, not {tool_format!r}")
    label = f"chat template of {name}" if name else "chat template"
    if tool_format != "seed" and getattr(tokenizer, "chat_template", None) is not None:
        reason = native_tool_support(tokenizer)
        if reason is None:
            fold, why = system_mode(tokenizer)
            if why:
                raise TemplateError(f"{label}: {why}")
            notes = ("native tool calling: the tool schema and calls go through the template",)
            if fold:
                notes += ("no system role: the system prompt is folded into the first user message",)
            return ChatFormat(fold_system=fold, native_tools=True, notes=notes)
        if tool_format == "native":
            raise TemplateError(f"{label}: no native tool calling: it {reason}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise TemplateError(f"{name or 'the tokenizer'}: no chat template; use an instruct model or --chat-template")
    for check in (needs_tools_list, renders_assistant_content):
        reason = check(tokenizer)
        if reason:
            raise TemplateError(f"{label}: {reason}")
    fold, reason = system_mode(tokenizer)
    if reason:
        raise TemplateError(f"{label}: {reason}")
    role, ids, reason = tool_result_format(tokenizer, fold)
    if reason:
        if renders_native_tool_results(tokenizer):
            native = native_tool_support(tokenizer)
            reason += ("; it shows tool results after a structured tool call: use native tool calling "
                       "(--tool-format native or auto)" if native is None else
                       f"; it shows tool results after a structured tool call, but native tool calling "
                       f"fails too: it {native}")
        raise TemplateError(f"{label}: {reason}")
    notes = []
    if fold:
        notes.append("no system role: the system prompt is folded into the first user message")
    if role != "tool":
        notes.append(f"the template rejects tool messages: search results are rendered as {role!r} messages")
    if ids:
        notes.append("tool messages carry 9-character tool_call_ids (call00001, ...)")
    return ChatFormat(fold_system=fold, tool_role=role, tool_call_ids=ids, notes=tuple(notes))


def context_window(tokenizer: Any, model_config: Any = None) -> int | None:
    """The model's context in tokens: max_position_embeddings of the model config, else the
    tokenizer's model_max_length (when it is not transformers' 1e30 "unset"); None if unknown."""
    for source in (model_config, getattr(model_config, "text_config", None) if model_config else None):
        value = getattr(source, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, (int, float)) and 0 < value < MAX_SANE_CONTEXT and not math.isinf(value):
        return int(value)
    return None
