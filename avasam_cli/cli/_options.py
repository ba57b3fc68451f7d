"""Options shared by several commands, declared once."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.webhooks.kinds import KIND_NAMES

if TYPE_CHECKING:

    class Kind(StrEnum):
        """The webhook kinds (members made from the registry at run time)."""

else:
    # The choices come from the kinds registry: a new kind appears here by itself.
    Kind = StrEnum("Kind", [(name, name) for name in KIND_NAMES])
DEFAULT_KIND = Kind(KIND_NAMES[0])
KIND_CHOICES = " or ".join(KIND_NAMES)

STDIN_HELP = "Use - to read it from standard input (keeps it out of argv and shell history)."

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TokenOption = Annotated[
    str | None,
    typer.Option(help=f"Verification token (default: env, then profile). {STDIN_HELP}"),
]
BaseUrlOption = Annotated[
    str | None, typer.Option(help="API base URL (default: env, then profile, then Avasam's).")
]
LeewayOption = Annotated[
    float, typer.Option(help="Seconds of clock drift allowed for exp/nbf/iat.", min=0)
]
