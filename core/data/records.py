"""Plain records shared by every part of the engine.

These are the nouns of rl-inspect: a corpus is a list of `Chunk`, a question file a list of
`Question`, a trajectory a list of `Message` plus its tokens. They carry no behaviour beyond
small conveniences, so any module (and the store) can use them without importing the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class InputError(ValueError):
    """Bad user input: names the file, the line (when there is one) and the field.

    The CLI prints `str(error)` as one line and exits non-zero; nothing has been written yet
    when it is raised.
    """

    def __init__(self, path: str, message: str, *, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.detail = message
        where = self.path if line is None else f"{self.path}:{line}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage of the knowledge corpus."""

    id: str
    text: str
    source: str = ""
    """Where the chunk came from: a file path, a document id, or '' for generated corpora."""


@dataclass(frozen=True)
class Question:
    """A question with its gold answer and, when known, the chunk that supports it."""

    id: str
    question: str
    answer: str
    chunk_content: str | None = None
    """Text of the gold chunk (the chunk-hit reward looks for it in search results)."""
    supporting: tuple[str, ...] = ()
    """Further supporting paragraphs, when a question file gives them."""

    @property
    def gold_text(self) -> str | None:
        """The text a search result must hold to be a chunk hit, and the text to highlight there.

        chunk_content when given (the seed's rule); else the last supporting paragraph that is not
        blank (the seed's later versions reward the result holding the last one); else None.
        core.scoring.rewards.chunk_hit says how each is matched.
        """
        if self.chunk_content:
            return self.chunk_content
        return next((p for p in reversed(self.supporting) if p.strip()), None)


@dataclass(frozen=True)
class ToolCall:
    """A tool call parsed out of an assistant message."""

    name: str
    arguments: dict[str, Any]
    raw: str = ""
    """The exact text the call was parsed from."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "raw": self.raw}


@dataclass(frozen=True)
class ToolError:
    """Why an assistant's tool call could not be run.

    kind is one of: invalid_json, malformed_call, multiple_calls, unknown_tool, missing_query,
    search_failed.
    """

    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


@dataclass
class Message:
    """One message of a chat, as the model saw it.

    turn is the generation turn the message belongs to: 0 for the system and user prompt,
    k >= 1 for the k-th assistant message and the tool result that answers it.
    token_start/token_end locate the message in the trajectory's full token sequence
    (half-open, scaffolding of the chat template included), when tokens were recorded.
    """

    role: str
    content: str
    turn: int
    tool_call: ToolCall | None = None
    tool_error: ToolError | None = None
    token_start: int | None = None
    token_end: int | None = None

    def chat_dict(self) -> dict[str, str]:
        """The message as a chat template expects it."""
        return {"role": self.role, "content": self.content}


@dataclass
class RewardResult:
    """One reward of one trajectory: its value, its weight in the total, and why."""

    name: str
    value: float
    weight: float = 1.0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
