"""Reading OpenAI chat messages: the text of the prompt, whatever shape its content takes."""

from __future__ import annotations

from typing import Any


def prompt_text(messages: Any) -> str:
    """The text of the last user message (text parts joined), or '' if there is none."""
    if not isinstance(messages, list):
        return ""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        ]
        return "\n".join(parts)
    return ""
