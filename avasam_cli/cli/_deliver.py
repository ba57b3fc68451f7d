"""The delivery options `listen` and `deliveries run` share, and running a runner with them.

`listen` runs its runner in a process of its own (off the request path), handing it
the profile's settings and a `DeliveryConfig` as data (`cli._children`); `deliveries
run` builds the same runner from its options.
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.alerts import NO_ALERTS, AlertConfig
from avasam_cli.defaults import DEFAULT_SHUTDOWN_WAIT
from avasam_cli.delivery.outbox import (
    DEFAULT_MAX_AGE,
    DEFAULT_SCHEDULE,
    RetryRules,
    describe_schedule,
    parse_schedule,
)
from avasam_cli.errors import UsageError

if TYPE_CHECKING:
    from avasam_cli.config import Settings
    from avasam_cli.delivery.runner import DeliveryRunner, Tally
    from avasam_cli.paths import Locations

RetryScheduleOption = Annotated[
    str,
    typer.Option(help="Waits between a failed job's attempts; the last repeats."),
]
MaxAttemptsOption = Annotated[
    int,
    typer.Option(
        help="Attempts at a job whose target answers with an error (5xx, 429, 408) "
        "before it is dead.",
        min=1,
    ),
]
DeliveryMaxAgeOption = Annotated[
    str,
    typer.Option(
        "--delivery-max-age",
        help="How long a job whose target cannot be reached is retried before it is dead.",
    ),
]
ForwardTimeoutOption = Annotated[
    float,
    typer.Option(help="Seconds to wait for the forward target.", min=0.1),
]
ForwardHeaderOption = Annotated[
    list[str] | None,
    typer.Option(
        "--forward-header",
        help="A header for every forwarded request, 'Name: value' (repeatable).",
        show_default=False,
    ),
]
ForwardCaOption = Annotated[
    Path | None,
    typer.Option(
        "--forward-ca",
        help="A CA bundle (PEM) to trust for HTTPS forward targets (a self-signed local app).",
        show_default=False,
    ),
]
AlertUrlOption = Annotated[
    str | None,
    typer.Option(
        help="POST an alert (JSON with a 'text', Slack-style) here when a person is needed: "
        "a delivery went dead, a child process is left down, the store keeps refusing, "
        "Avasam refused the keys (profile: alert_url)."
    ),
]
AlertCommandOption = Annotated[
    str | None,
    typer.Option(help="Run this command with the alert's JSON on stdin (profile: alert_command)."),
]
ForwardInsecureOption = Annotated[
    bool,
    typer.Option(
        "--forward-insecure",
        help="Do not verify HTTPS forward targets' certificates (this machine only!).",
    ),
]
DEFAULT_SCHEDULE_TEXT = describe_schedule(DEFAULT_SCHEDULE)
DEFAULT_MAX_AGE_TEXT = f"{DEFAULT_MAX_AGE / 3600:g}h"


@dataclass(frozen=True)
class DeliveryConfig:
    rules: RetryRules
    timeout: float
    headers: tuple[tuple[str, str], ...]
    verify: bool | str
    alerts: AlertConfig = NO_ALERTS


def delivery_config(
    retry_schedule: str,
    max_attempts: int,
    delivery_max_age: str,
    forward_timeout: float,
    forward_header: list[str] | None,
    forward_ca: Path | None,
    forward_insecure: bool,
    saved_headers: list[str] | tuple[str, ...] = (),
    alerts: AlertConfig = NO_ALERTS,
) -> DeliveryConfig:
    """Check the delivery options; UsageError naming the option and a good value.  The
    forward headers are the profile's (`saved_headers`), then --forward-header's."""
    from avasam_cli.cli._options import duration_seconds
    from avasam_cli.delivery.forward import split_header

    schedule = parse_schedule(retry_schedule)
    if schedule is None:
        raise UsageError(
            f"--retry-schedule {retry_schedule!r}: give waits separated by commas, for "
            f"example --retry-schedule {DEFAULT_SCHEDULE_TEXT}"
        )
    max_age = duration_seconds(delivery_max_age)
    if not max_age:
        raise UsageError(
            f"--delivery-max-age {delivery_max_age!r} is not a duration: for example "
            f"--delivery-max-age {DEFAULT_MAX_AGE_TEXT}"
        )
    headers: dict[str, tuple[str, str]] = {}  # by lower-case name: a flag replaces the saved
    for header in [*saved_headers, *(forward_header or [])]:
        split = split_header(header)
        if split is None:
            raise UsageError(
                f"--forward-header {header!r}: write it as one line 'Name: value', for example "
                "--forward-header 'X-Shop-Key: abc123'"
            )
        headers[split[0].lower()] = split
    if forward_insecure and forward_ca is not None:
        raise UsageError("give --forward-ca or --forward-insecure, not both")
    verify: bool | str = not forward_insecure
    if forward_ca is not None:
        if not forward_ca.is_file():
            raise UsageError(f"--forward-ca {str(forward_ca)!r}: no such file (a PEM CA bundle)")
        verify = str(forward_ca.resolve())
    rules = RetryRules(schedule, max_attempts, float(max_age))
    return DeliveryConfig(rules, forward_timeout, tuple(headers.values()), verify, alerts)


def alert_config(resolved: "Settings", url: str | None, command: str | None) -> AlertConfig:
    """--alert-url and --alert-command, else the profile's (or the environment's)."""
    from avasam_cli.config import BY_NAME

    normalize = BY_NAME["alert_url"].normalize
    if url is not None and normalize is not None:
        try:
            url = normalize(url)
        except Exception as error:  # ConfigError: the flag's value, said as a usage error
            raise UsageError(str(getattr(error, "message", error))) from None
    return AlertConfig(url or resolved.get("alert_url"), command or resolved.get("alert_command"))


def saved_forward_headers(resolved: "Settings") -> list[str]:
    """The profile's forward headers (or AVASAM_FORWARD_HEADERS'), one 'Name: value' each."""
    value = resolved.get("forward_headers")
    return [line for line in value.splitlines() if line.strip()] if value else []


def run_once(runner: "DeliveryRunner", due: int) -> "Tally":
    """One pass over what is due, with a progress bar on a terminal."""
    import asyncio

    from rich.progress import Progress

    from avasam_cli import output

    console = output.make_console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("delivering", total=due or None)
        runner.on_attempt = lambda _: progress.advance(task)

        async def go() -> "Tally":
            async with runner:
                return await runner.run_due(everything=True)

        try:
            return asyncio.run(go())
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def delivery_runner(
    resources: contextlib.ExitStack,
    resolved: "Settings",
    config: DeliveryConfig,
    where: "Locations",
) -> "DeliveryRunner":
    """A runner on the store, acknowledging with the profile's keys when it has them;
    the store and the API client are closed with `resources`."""
    from avasam_cli import output
    from avasam_cli.alerts import Alerts
    from avasam_cli.delivery.runner import DeliveryRunner
    from avasam_cli.delivery.signature import secrets_for_run
    from avasam_cli.store.base import open_store
    from avasam_cli.store.deliveries import runner_name

    acknowledge = None
    if resolved.get("consumer_key") and resolved.get("secret_key"):
        from avasam_cli.cli._context import client_for

        acknowledge = resources.enter_context(client_for(resolved, where)).acknowledge
    store = resources.enter_context(open_store(where.store_file))
    alerts = Alerts(config.alerts, output.info)
    resources.callback(alerts.wait)  # the alerts in flight go out before we exit
    return DeliveryRunner(
        store,
        runner_name(),
        output.info,  # stderr is line-buffered: each line leaves whole
        acknowledge=acknowledge,
        rules=config.rules,
        timeout=config.timeout,
        extra_headers=config.headers,
        verify=config.verify,
        forward_secrets=secrets_for_run(resolved, where.config_file),
        alerts=alerts,
    )


async def watch_deliveries(
    runner: "DeliveryRunner", stop_on_eof: bool = False, orphan_wait: float = DEFAULT_SHUTDOWN_WAIT
) -> None:
    """Deliver until SIGTERM or Ctrl-C (or, with `stop_on_eof`, until standard input
    closes: the listener that started us is gone, even by kill -9); what is in flight
    finishes first (once the listener is gone, within `orphan_wait` seconds, as the
    listener itself would have waited), and the rest waits in the outbox."""
    import asyncio
    import signal
    import sys

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop_soon(*_: object) -> None:
        # From a signal or the lifeline's thread, which may come after the loop closed (a
        # SIGTERM stopped us first, and our lifeline closed as we were ending): then the
        # runner has stopped already, and nothing is left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)

    for signum in (signal.SIGTERM, signal.SIGINT):
        if sys.platform == "win32":  # no loop signal handlers there
            signal.signal(signum, stop_soon)
        else:
            loop.add_signal_handler(signum, stop.set)
    if stop_on_eof:
        from avasam_cli.lifeline import exit_when_stdin_closes

        def parent_gone() -> None:
            import os
            import threading

            stop_soon()
            threading.Timer(orphan_wait, os._exit, (0,)).start()  # nobody else will end us

        exit_when_stdin_closes(parent_gone)
    async with runner:
        await runner.watch(stop)
