"""Text from elsewhere, shaped for messages and the store (no terminal, no I/O)."""

from __future__ import annotations


def excerpt(text: str, limit: int) -> str:
    """A one-line excerpt of an answer: whitespace folded, cut at `limit` characters."""
    folded = " ".join(text.split())
    return folded if len(folded) <= limit else folded[:limit] + "..."
