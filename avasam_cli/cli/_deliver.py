"""The delivery options `listen` and `deliveries run` share, and running a runner with them.

`listen` runs its runner as `avasam deliveries run --watch` in a process of its
own (off the request path), handing it these options as arguments.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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

    def as_args(self) -> list[str]:
        """The `deliveries run` options that give a runner this configuration."""
        args = [
            "--retry-schedule", describe_schedule(self.rules.schedule),
            "--max-attempts", str(self.rules.max_attempts),
            "--delivery-max-age", f"{self.rules.max_age:.0f}s",
            "--forward-timeout", f"{self.timeout:g}",
        ]  # fmt: skip
        for name, value in self.headers:
            args += ["--forward-header", f"{name}: {value}"]
        if self.verify is False:
            args.append("--forward-insecure")
        elif isinstance(self.verify, str):
            args += ["--forward-ca", self.verify]
        return args


def delivery_config(
    retry_schedule: str,
    max_attempts: int,
    delivery_max_age: str,
    forward_timeout: float,
    forward_header: list[str] | None,
    forward_ca: Path | None,
    forward_insecure: bool,
    saved_headers: list[str] | tuple[str, ...] = (),
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
    return DeliveryConfig(rules, forward_timeout, tuple(headers.values()), verify)


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
