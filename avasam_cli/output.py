"""All terminal output is made here.

Quick commands write plain lines (importing rich costs start-up time they
cannot afford); long-running ones get rich consoles from `make_console`, which
the renderers take as a parameter so tests can hand in a `StringIO` console.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

_STYLES = {"red": "31", "yellow": "33", "green": "32", "bold": "1", "dim": "2"}


def colour_enabled(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def styled(text: str, style: str, stream: TextIO) -> str:
    if not colour_enabled(stream):
        return text
    return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"


def error(message: str) -> None:
    print(styled("Error:", "red", sys.stderr), message, file=sys.stderr)


def warn(message: str) -> None:
    print(styled("Warning:", "yellow", sys.stderr), message, file=sys.stderr)


def info(message: str) -> None:
    """A human note on stderr, so stdout stays clean for data."""
    print(message, file=sys.stderr)


def out(message: str = "") -> None:
    print(message)


def table(rows: Sequence[Sequence[str]], stream: TextIO | None = None) -> None:
    """Columns aligned with spaces; the first row is the header."""
    target = stream or sys.stdout
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(styled(line.rstrip(), "bold", target) if index == 0 else line.rstrip(), file=target)


def make_console(stderr: bool = False) -> Console:
    """A rich console; colour and markup follow the terminal and NO_COLOR."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)
