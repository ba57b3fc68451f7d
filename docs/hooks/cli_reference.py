"""MkDocs hook: the CLI reference page, written at build time from the click tree that
`avasam --help` prints, so it cannot drift from the code."""

from __future__ import annotations

from typing import Any

import typer.main

MARKER = "<!-- cli-reference -->"


def _sections(command: Any, path: list[str]) -> list[str]:
    """The help of `command` and of every command below it.  Typer brings its own copy of
    click, so the command's own context class is used, and groups are known by shape."""
    name = " ".join(path)
    with command.context_class(command, info_name=name, terminal_width=100) as ctx:
        text = command.get_help(ctx)
    out = [f"{'#' * min(len(path) + 1, 4)} `{name}`", "", "```text", text, "```", ""]
    if hasattr(command, "list_commands"):
        for sub in sorted(command.list_commands(ctx)):
            child = command.get_command(ctx, sub)
            if child is not None and not child.hidden:
                out += _sections(child, [*path, sub])
    return out


def reference() -> str:
    from avasam_cli.cli import app

    return "\n".join(_sections(typer.main.get_command(app), ["avasam"]))


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
