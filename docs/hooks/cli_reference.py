"""MkDocs hook: the CLI reference page, written at build time from the click tree that
`avasam --help` prints, so it cannot drift from the code."""

from __future__ import annotations

from typing import Any

import click
import typer.main

MARKER = "<!-- cli-reference -->"


def _sections(command: click.Command, path: list[str]) -> list[str]:
    name = " ".join(path)
    with click.Context(command, info_name=name, terminal_width=100) as ctx:
        text = command.get_help(ctx)
    out = [f"{'#' * min(len(path) + 1, 4)} `{name}`", "", "```text", text, "```", ""]
    if isinstance(command, click.Group):
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
