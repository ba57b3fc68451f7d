"""`avasam deliveries list|run|retry|cancel`: the outbox of forwards and acknowledgements."""

import contextlib
import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.cli._context import group
from avasam_cli.cli._deliver import (
    DEFAULT_MAX_AGE_TEXT,
    DEFAULT_SCHEDULE_TEXT,
    AlertCommandOption,
    AlertUrlOption,
    DeliveryMaxAgeOption,
    ForwardCaOption,
    ForwardHeaderOption,
    ForwardInsecureOption,
    ForwardTimeoutOption,
    MaxAttemptsOption,
    RetryScheduleOption,
    alert_config,
    delivery_config,
    delivery_runner,
    run_once,
    saved_forward_headers,
    watch_deliveries,
)
from avasam_cli.cli._options import LogFormatOption
from avasam_cli.defaults import DEFAULT_FORWARD_TIMEOUT
from avasam_cli.delivery.outbox import DEFAULT_MAX_ATTEMPTS
from avasam_cli.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    pass


class State(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"
    cancelled = "cancelled"


def _span(seconds: float) -> str:
    """ "42 s", "5 min", "3 h", "2 d"."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _next_try(unix: float) -> str:
    """When a pending job is tried next, from now: "due now", "in 42 s", "in 5 min"."""
    import time

    seconds = unix - time.time()
    return "due now" if seconds < 1 else f"in {_span(seconds)}"


def list_deliveries(
    state: Annotated[State | None, typer.Option(help="Only jobs in this state.")] = None,
    target: Annotated[
        str | None, typer.Option(help="Only jobs for this target URL (or avasam-api).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List delivery jobs, newest first: attempts, state and the next attempt's time."""
    from avasam_cli import output
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store

    with open_store(locations().store_file, read_only=True) as store:
        rows = store.deliveries(state.value if state else None, target, limit)
        counts = store.delivery_counts()
    if as_json:
        for row in rows:
            output.out(json.dumps(row._asdict()))
        return
    if not rows:
        makes = "`avasam listen --forward-to URL` or `--auto-ack` makes them"
        output.info("No delivery jobs match." if state or target else f"No jobs yet: {makes}.")
        return
    table = [("id", "event", "job", "target", "request id", "state", "tries", "next / last")]
    for row in rows:
        if row.state == "pending":
            waiting = (
                "after the forward" if row.waits_for_forward else _next_try(row.next_attempt_at)
            )
        else:
            waiting = row.last_result or ""
        table.append((str(row.id), str(row.event_id), row.job, row.target, row.request_id,
                      row.state, str(row.attempts), waiting))  # fmt: skip
    if output.table(table, shrink=((7, 12), (4, 9), (3, 19))):  # a URL keeps host and end
        output.info(output.CUT_NOTE)
    output.info(_counts_line(counts))


def _counts_line(counts: dict[str, int]) -> str:
    shown = ", ".join(f"{counts.get(s, 0):,} {s}" for s in ("pending", "dead", "delivered"))
    return f"Outbox: {shown}."


def run(
    ctx: typer.Context,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Keep running, delivering jobs as they become due, until stopped."
        ),
    ] = False,
    retry_schedule: RetryScheduleOption = DEFAULT_SCHEDULE_TEXT,
    max_attempts: MaxAttemptsOption = DEFAULT_MAX_ATTEMPTS,
    delivery_max_age: DeliveryMaxAgeOption = DEFAULT_MAX_AGE_TEXT,
    forward_timeout: ForwardTimeoutOption = DEFAULT_FORWARD_TIMEOUT,
    forward_header: ForwardHeaderOption = None,
    forward_ca: ForwardCaOption = None,
    forward_insecure: ForwardInsecureOption = False,
    alert_url: AlertUrlOption = None,
    alert_command: AlertCommandOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Deliver every pending job now (forwards, acknowledgements), then exit.

    Needs no listener: from cron, or after the listener died or the shop came back.
    The retry schedule's waits are skipped; each target still gets its updates in
    the order received, and a job that fails again stays pending.
    """
    import asyncio

    from avasam_cli import output
    from avasam_cli.cli._context import logging_settings
    from avasam_cli.paths import locations

    resolved = logging_settings(ctx, log_format=log_format)
    config = delivery_config(
        retry_schedule, max_attempts, delivery_max_age, forward_timeout, forward_header,
        forward_ca, forward_insecure, saved_forward_headers(resolved),
        alert_config(resolved, alert_url, alert_command),
    )  # fmt: skip
    with contextlib.ExitStack() as resources:
        runner = delivery_runner(resources, resolved, config, locations())
        if watch:
            asyncio.run(watch_deliveries(runner))
            return
        tally = run_once(runner, runner.store.delivery_counts().get("pending", 0))
        left = runner.store.delivery_counts()
    summary = (
        f"Delivered {tally.delivered:,}; {tally.retrying:,} failed and will be retried, "
        f"{tally.dead:,} went dead. {_counts_line(left)}"
    )
    output.info(summary)
    if tally.dead:
        raise OperationFailed(
            f"{tally.dead:,} {'job' if tally.dead == 1 else 'jobs'} went dead: "
            "`avasam deliveries list --state dead` shows why, and "
            "`avasam deliveries retry --dead` tries again"
        )


def retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Ids of dead jobs.")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead job.")] = False,
) -> None:
    """Put dead jobs back to pending: tried again now, with their attempts counted afresh."""
    _change("pending", ("dead",), ids, None, dead, "put back to pending", "--dead")


def cancel(
    ids: Annotated[list[int] | None, typer.Argument(help="Ids of pending or dead jobs.")] = None,
    target: Annotated[
        str | None, typer.Option(help="Every pending or dead job for this target URL.")
    ] = None,
) -> None:
    """Drop jobs (recorded as cancelled): when a target was wrong."""
    _change("cancelled", ("pending", "dead"), ids, target, False, "cancelled", "--target URL")


def _change(
    to: str,
    from_states: tuple[str, ...],
    ids: list[int] | None,
    target: str | None,
    every: bool,
    done: str,
    selector: str,
) -> None:
    from avasam_cli import output
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store

    if sum((bool(ids), target is not None, every)) != 1:
        raise UsageError(f"give job ids (see `avasam deliveries list`) or {selector}")
    with open_store(locations().store_file) as store:
        moved = store.change_deliveries(to, from_states, ids or (), target, every)
    if ids and moved < len(ids):
        left = len(ids) - moved
        output.warn(
            f"{left} of the ids given {'is' if left == 1 else 'are'} not "
            f"{' or '.join(from_states)} {'a job' if left == 1 else 'jobs'}: left as "
            f"{'it was' if left == 1 else 'they were'}"
        )
    output.info(f"{moved:,} {'job' if moved == 1 else 'jobs'} {done}.")
    if to == "pending" and moved:
        output.info("`avasam deliveries run` (or a running listener) delivers them.")


DEFAULT_CHECK_AGE = "15m"


def check(
    max_age: Annotated[
        str,
        typer.Option(
            help="Pending jobs queued longer ago than this (e.g. 15m, 2h) fail the check."
        ),
    ] = DEFAULT_CHECK_AGE,
) -> None:
    """Exit 0 when no job is dead and none pending is older than --max-age; else exit 1
    with a one-line summary.  For cron and monitoring."""
    import time

    from avasam_cli import output
    from avasam_cli.cli._options import duration_seconds
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store

    seconds = duration_seconds(max_age)
    if not seconds:
        raise UsageError(
            f"--max-age {max_age!r} is not a duration: for example --max-age {DEFAULT_CHECK_AGE}"
        )
    now = time.time()
    with open_store(locations().store_file, read_only=True) as store:
        counts = store.delivery_counts()
        late, oldest, target = store.overdue(now - seconds)
    dead, pending = counts.get("dead", 0), counts.get("pending", 0)
    problems = []
    if dead:
        problems.append(
            f"{output.plural(dead, 'dead job')} (`avasam deliveries list --state dead` shows "
            "why; `avasam deliveries retry --dead` tries them again)"
        )
    if late:
        problems.append(
            f"{output.plural(late, 'pending job')} older than {max_age} (the oldest "
            f"{_span(now - (oldest or now))} old, for {target})"
        )
    if problems:
        raise OperationFailed("the outbox needs attention: " + "; ".join(problems))
    waiting = (
        f"{pending:,} pending, the oldest {_span(now - oldest)} old"
        if oldest is not None
        else "nothing pending"
    )
    output.out(f"Outbox OK: {waiting}; none dead.")


def register(app: typer.Typer) -> None:
    deliveries_app = group("The outbox: forwards and acknowledgements that follow each 200.")
    deliveries_app.command(
        "list",
        epilog="Examples:\n\n  avasam deliveries list\n\n"
        "  avasam deliveries list --state dead --json",
    )(list_deliveries)
    deliveries_app.command(
        "run",
        epilog="Examples:\n\n  avasam deliveries run\n\n  avasam deliveries run --watch",
    )(run)
    deliveries_app.command(
        "retry",
        epilog="Examples:\n\n  avasam deliveries retry 12 13\n\n  avasam deliveries retry --dead",
    )(retry)
    deliveries_app.command(
        "check",
        epilog="Examples:\n\n  avasam deliveries check\n\n"
        "  avasam deliveries check --max-age 1h || notify-the-team",
    )(check)
    deliveries_app.command(
        "cancel",
        epilog="Examples:\n\n  avasam deliveries cancel 12\n\n"
        "  avasam deliveries cancel --target http://127.0.0.1:3000/wrong",
    )(cancel)
    app.add_typer(deliveries_app, name="deliveries")
