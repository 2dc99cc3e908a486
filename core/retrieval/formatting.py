"""Search results as the model reads them in a tool message."""

from __future__ import annotations

from core.retrieval.base import Hit

NO_RESULTS = "No results found."


def format_results(hits: list[Hit]) -> str:
    """The seed's layout: "Result i:", the chunk text, and a "------" line, for each hit from 1.

    Kept byte-compatible with the seed so chats, prompts and the chunk-hit reward trained on it
    read the same; an empty list gets an explicit sentence instead of an empty tool message.
    """
    if not hits:
        return NO_RESULTS
    return "\n".join(f"Result {i}:\n{hit.chunk.text}\n------\n" for i, hit in enumerate(hits, start=1))
