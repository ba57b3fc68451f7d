"""What `avasam listen` tells the seller: the banner with the endpoints to paste into
Avasam, a new public URL, a rotated token, readiness, and what the outbox holds."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

    from avasam_cli.cli._serve import ListenOptions
    from avasam_cli.config import Settings
    from avasam_cli.paths import Locations
    from avasam_cli.rotation import Rolling


def outbox_line(counts: Mapping[str, int]) -> str | None:
    """How many jobs wait or gave up, with the commands for them; None when none."""
    pending, dead = counts.get("pending", 0), counts.get("dead", 0)
    if not pending and not dead:
        return None
    parts = []
    if pending:
        parts.append(f"{pending:,} pending (`avasam deliveries run` delivers them)")
    if dead:
        parts.append(f"{dead:,} dead (`avasam deliveries retry --dead` tries them again)")
    return "Outbox: " + "; ".join(parts) + "."


WEBHOOK_SETTINGS = "Settings > User management > your API user > webhook section"


def endpoints(paths: Mapping[str, str], base: str, indent: str = "  ") -> list[str]:
    from rich.markup import escape

    return [
        f"{indent}{kind.capitalize() + ' update endpoint':21}  [cyan]{escape(base + path)}[/]"
        for kind, path in paths.items()
    ]


def banner(
    options: ListenOptions,
    sock: socket.socket,
    resolved: Settings,
    where: Locations,
    public_url: str | None = None,
    inspector_url: str | None = None,
    metrics_url: str | None = None,
) -> None:
    from rich.markup import escape
    from rich.padding import Padding
    from rich.text import Text

    from avasam_cli import output
    from avasam_cli.logs import json_logs, record
    from avasam_cli.net import shown_base_url

    if json_logs():  # the same facts, as one record
        base = shown_base_url(sock)
        urls = {kind: base + path for kind, path in options.paths.items()}
        print(record(f"listening on {base}", "listening", profile=resolved.profile,
                     endpoints=urls, store=str(where.store_file), workers=options.workers,
                     inspector=inspector_url, metrics=metrics_url, public_url=public_url,
                     public_endpoints={kind: public_url + path for kind, path in
                                       options.paths.items()} if public_url else None),
              file=sys.stderr, flush=True)  # fmt: skip
        return
    console = output.make_console(stderr=True)
    console.print(f"[bold]avasam listen[/] · profile [bold]{escape(resolved.profile)}[/]")
    for line in endpoints(options.paths, shown_base_url(sock)):
        console.print(line)
    console.print(f"  {'Event store':21}  {escape(str(where.store_file))}")
    if options.workers > 1:
        console.print(f"  {'Receiver processes':21}  {options.workers}, on the one port")
    if inspector_url is not None:
        console.print(f"  {'Inspector':21}  [cyan]{escape(inspector_url)}[/]", soft_wrap=True)
    if metrics_url is not None:
        console.print(f"  {'Metrics':21}  {escape(metrics_url)}")
    if public_url is None:
        note = (
            f"Paste the endpoints into Avasam ({WEBHOOK_SETTINGS}). Avasam must reach them "
            "from the internet: `--tunnel cloudflared` (or ngrok) gives them a public URL, or "
            "put your own HTTPS proxy in front and paste its URL with the same paths."
        )
        console.print(Padding(Text(note), (0, 0, 0, 2), expand=False))
    else:
        console.print(f"  {'Public URL':21}  [cyan]{escape(public_url)}[/] ({options.tunnel})")
        console.print(
            Padding(
                Text(f"Paste these into Avasam ({WEBHOOK_SETTINGS}):"), (0, 0, 0, 2), expand=False
            )
        )
        for line in endpoints(options.paths, public_url, indent="    "):
            console.print(line)


def announce_new_url(options: ListenOptions, url: str) -> None:
    """A restarted quick tunnel comes back with a new URL: Avasam must be told."""
    from avasam_cli import output

    console = output.make_console(stderr=True)
    console.print(
        f"[bold yellow]The {options.tunnel} tunnel restarted with a new public URL: "
        f"paste these into Avasam again ({WEBHOOK_SETTINGS}):[/]"
    )
    for line in endpoints(options.paths, url):
        console.print(line)


def say_token_changed(profile: str, tokens: Rolling) -> None:
    """A rotation (or an edit) of the profile's token, taken up while running."""
    import time

    from avasam_cli import output
    from avasam_cli.rotation import until_text

    if tokens.previous_counts(time.time()):
        assert tokens.previous_until is not None
        after = (
            f"; the previous one still counts until {until_text(tokens.previous_until)}, so "
            "paste the new one into Avasam before then"
        )
    else:
        after = "; the previous one no longer counts"
    output.info(
        f"The verification token of profile '{profile}' changed: webhooks signed with the "
        f"new one are accepted now{after}."
    )


def say_ready() -> None:
    """Once the receiver has started, forward checks included: only then is it ready."""
    from avasam_cli import output
    from avasam_cli.logs import json_logs, record

    if json_logs():
        print(record("ready", "ready"), file=sys.stderr, flush=True)
        return
    output.make_console(stderr=True).print("[green]Ready.[/] Press Ctrl-C to stop.")


def say_outbox_left(where: Locations) -> None:
    from avasam_cli import output
    from avasam_cli.store.base import open_store

    with open_store(where.store_file, read_only=True) as store:
        said = outbox_line(store.delivery_counts())
    if said:
        output.info(said)
