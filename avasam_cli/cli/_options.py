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
AudienceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--audience",
        help="Require the token's `aud` to be this value (repeatable: any of them); "
        "by default any audience is accepted (Avasam documents none).",
        show_default=False,
    ),
]


LogFormatOption = Annotated[
    str | None,
    typer.Option(
        help="human, or json: every line on stderr one JSON object (ts, level, event, its "
        "fields), for journald, Loki or Vector (default: profile, else human).",
        show_default=False,
    ),
]


ListenerHostOption = Annotated[
    str | None,
    typer.Option(
        "--host", help="The local listener's host (default: the profile's, else 127.0.0.1)."
    ),
]
ListenerPortOption = Annotated[
    int | None,
    typer.Option(
        "--port", help="The local listener's port (default: the profile's, else 8787).", min=1,
        max=65535,
    ),
]  # fmt: skip


def duration_seconds(value: str) -> int | None:
    """`30m`, `24h`, `7d`, `2w` in whole seconds; None for anything else."""
    from avasam_cli.text import duration

    seconds = duration(value)
    return int(seconds) if seconds is not None and seconds == int(seconds) else None


def since_time(value: str | None, option: str = "--since") -> str | None:
    """`--since 30m|24h|7d|2026-11-01[T10:00]` as an ISO time in UTC (as the store writes)."""
    from datetime import UTC, datetime, timedelta

    from avasam_cli.errors import UsageError

    if value is None:
        return None
    seconds = duration_seconds(value)
    if seconds is not None:
        moment = datetime.now(UTC) - timedelta(seconds=seconds)
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UsageError(
                f"{option} {value!r} is neither a duration nor a date: use for example "
                f"{option} 24h, {option} 7d or {option} 2026-11-01"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
