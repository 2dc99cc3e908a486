"""The prompts an agent starts from, and the search tool's definition.

The user can replace both texts with `--prompt-template FILE` (JSON with "system" and "user"
keys). Placeholders are `{date}`, `{question}` and `{tool_definition}`; they are replaced
literally, so templates may contain other braces (JSON examples) freely.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date as _date
from pathlib import Path

from core.data.records import InputError

SEARCH_TOOL_NAME = "search_corpus"

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": SEARCH_TOOL_NAME,
        "description": "Look up passages of the knowledge corpus that match a query",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for in the knowledge corpus"},
            },
            "required": ["query"],
        },
    },
}

DEFAULT_SYSTEM = """Knowledge cutoff: December 2023
Today's date: {date}

You are an assistant that can call tools. When a tool returns its output, use that output to answer the user's original question.
"""

DEFAULT_USER = """You are a research assistant. Answer the question below by searching the knowledge corpus with the search_corpus tool.
To call the tool, reply with a JSON object describing the function call and its arguments.

You may think step by step in any message; put that reasoning between <think> and </think> tags.

{tool_definition}

Question: {question}
"""


DEFAULT_USER_NATIVE = """You are a research assistant. Answer the question below by searching the knowledge corpus with the search_corpus tool.

You may think step by step in any message; put that reasoning between <think> and </think> tags.

Question: {question}
"""
"""The default user text with native tool calling: the chat template shows the tool's schema."""


@dataclass(frozen=True)
class PromptTemplate:
    """The system and user texts of a new chat."""

    system: str = DEFAULT_SYSTEM
    user: str = DEFAULT_USER

    @classmethod
    def load(cls, path: str | Path) -> "PromptTemplate":
        """Read a JSON template file; errors name the file and the field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(str(path), "no such prompt template file") from None
        except IsADirectoryError:
            raise InputError(str(path), "is a folder, not a prompt template file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(str(path), f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(str(path), "expected a JSON object with 'system' and 'user'")
        for key in ("system", "user"):
            if not isinstance(data.get(key), str):
                raise InputError(str(path), "missing or not a string", field=key)
        if "{question}" not in data["user"]:
            raise InputError(str(path), "must contain the {question} placeholder", field="user")
        return cls(system=data["system"], user=data["user"])

    def messages(self, question: str, today: _date | None = None,
                 tool_definition: bool = True) -> list[dict[str, str]]:
        """The first two messages of a chat about `question`.

        tool_definition False leaves {tool_definition} empty (native tool calling, where the chat
        template shows the tool's schema itself).
        """
        today = today or _date.today()
        fill = {
            "{date}": today.strftime("%d %b %Y"),
            "{question}": question,
            "{tool_definition}": json.dumps(SEARCH_TOOL, indent=2) if tool_definition else "",
        }
        return [
            {"role": "system", "content": _fill(self.system, fill)},
            {"role": "user", "content": _fill(self.user, fill)},
        ]


def _fill(text: str, values: dict[str, str]) -> str:
    # One pass, so a question that itself contains "{date}" stays as written.
    pattern = re.compile("|".join(re.escape(key) for key in values))
    return pattern.sub(lambda m: values[m.group(0)], text)
