"""`avasam ack`: acknowledge stock updates through the Avasam API."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.cli._context import client_for, settings
from avasam_cli.cli._options import BaseUrlOption
from avasam_cli.defaults import DEFAULT_ACK_MAX_WAIT
from avasam_cli.errors import OperationFailed, UsageError

# Above this many, `ack --pending` asks first on a terminal (each one is an API call).
CONFIRM_ABOVE = 1000

if TYPE_CHECKING:
    from avasam_cli.api.client import AvasamClient
    from avasam_cli.delivery.acknowledge import AckOutcome
    from avasam_cli.store.base import EventStore


def ack(
    ctx: typer.Context,
    request_ids: Annotated[
        list[str] | None, typer.Argument(help="Request ids of stock updates to acknowledge.")
    ] = None,
    pending: Annotated[
        bool, typer.Option(help="Acknowledge every stored stock update not acknowledged yet.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="With --pending: only updates received since (24h, 7d, a date)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="With --pending: at most this many, oldest first.", min=1)
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help=f"Do not ask before acknowledging over {CONFIRM_ABOVE:,}."
        ),
    ] = False,
    max_wait: Annotated[
        float,
        typer.Option(
            help="Seconds spent in all waiting for retries (Avasam's rate limit) before the "
            "run stops; what is left stays pending.",
            min=0,
        ),
    ] = DEFAULT_ACK_MAX_WAIT,
    base_url: BaseUrlOption = None,
) -> None:
    """Acknowledge stock updates through the Avasam API (AcknowledgeStockUpdate)."""
    from avasam_cli import output
    from avasam_cli.api.client import WaitBudget
    from avasam_cli.delivery.acknowledge import acknowledge_one
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store

    if pending and request_ids:
        raise UsageError("give request ids or --pending, not both")
    if not pending and not request_ids:
        raise UsageError("give the request ids to acknowledge, or --pending for all pending ones")
    if not pending and (since is not None or limit is not None):
        raise UsageError("--since and --limit go with --pending")
    where = locations()
    client = client_for(settings(ctx, base_url=base_url), where)
    with open_store(where.store_file) as store, client:
        if pending:
            _ack_pending(store, client, since, limit, yes, max_wait)
            return
        ids = list(request_ids or [])
        _refuse_test_events(store, ids)
        if len(ids) > 1:
            output.info(
                f"Acknowledging {output.plural(len(ids), 'stock update')}; retries wait at "
                f"most {max_wait:g} s in all (--max-wait), then the rest stays pending."
            )
        run = _AckRun(ids)
        client.sleep = WaitBudget(max_wait, run.waiting).sleep
        run.go(lambda request_id: acknowledge_one(client.acknowledge, request_id, store))
    run.finish(max_wait)


def _refuse_test_events(store: "EventStore", request_ids: list[str]) -> None:
    """Avasam never sent a test event (`send-test`'s): acknowledging it is a mistake."""
    from avasam_cli.store.events import is_test_event

    found = {rid: store.find(rid) for rid in request_ids}
    tests = [rid for rid, event in found.items() if event and is_test_event(event.headers_json)]
    if tests:
        raise UsageError(
            f"{', '.join(tests)}: a test event (from `avasam send-test`), which Avasam did not "
            "send, so it is never acknowledged; give the request ids of updates Avasam sent"
        )


def _ack_pending(
    store: "EventStore",
    client: "AvasamClient",
    since: str | None,
    limit: int | None,
    yes: bool,
    max_wait: float,
) -> None:
    """Through the outbox (`delivery.acknowledge.claim_pending`): none can go twice,
    even beside a listener, and none before its forward."""
    import sys

    from avasam_cli import output
    from avasam_cli.api.client import WaitBudget
    from avasam_cli.cli._options import since_time
    from avasam_cli.delivery.acknowledge import claim_pending

    claimed = claim_pending(store, since_time(since), limit)
    jobs = {job.request_id: job for job in claimed.jobs}
    if claimed.tests:
        output.info(
            f"Left out {output.plural(claimed.tests, 'test event')} (from `avasam send-test`): "
            "Avasam did not send them, so they are never acknowledged."
        )
    try:
        if not jobs:
            from_avasam = " from Avasam" if claimed.tests else ""
            output.info(
                f"Nothing to acknowledge: every verified stock update{from_avasam} is acknowledged."
            )
            return
        if len(jobs) > CONFIRM_ABOVE and sys.stdin.isatty() and not yes:
            question = f"Acknowledge {len(jobs):,} stock updates (one API call each)?"
            if not typer.confirm(question, default=False, err=True):
                raise OperationFailed("nothing was acknowledged")
        output.info(
            f"Acknowledging {output.plural(len(jobs), 'stock update')}; retries wait at "
            f"most {max_wait:g} s in all (--max-wait), then the rest stays pending."
        )
        run = _AckRun(list(jobs))
        client.sleep = WaitBudget(max_wait, run.waiting).sleep
        run.go(lambda request_id: claimed.acknowledge(client.acknowledge, jobs[request_id]))
    finally:
        claimed.release()  # those not attempted
    if claimed.waiting > 0:
        output.info(
            f"{output.plural(claimed.waiting, 'other job')} in the outbox wait for a retry or "
            "for their forward to the shop: `avasam deliveries list --state pending`."
        )
    run.finish(max_wait)


class _AckRun:
    """One `ack` run: its progress on a terminal, a line per id, and the summary."""

    def __init__(self, ids: list[str]) -> None:
        from rich.progress import Progress

        from avasam_cli import output

        self.ids = ids
        self.done = self.failed = 0
        self.stopped_by: str | None = None
        console = output.make_console(stderr=True)
        self.progress = Progress(console=console, transient=True, disable=not console.is_terminal)
        self.task = self.progress.add_task("acknowledging", total=len(ids))

    def waiting(self, seconds: float) -> None:
        self.progress.update(self.task, description=f"rate limited: waiting {seconds:g} s")

    def go(self, acknowledge_one: "Callable[[str], AckOutcome]") -> None:
        """`acknowledge_one` each id in turn (it writes the outcome down)."""
        from avasam_cli import output
        from avasam_cli.api.client import WaitBudgetSpent
        from avasam_cli.errors import CredentialsRefused

        with self.progress:
            for request_id in self.ids:
                try:
                    outcome = acknowledge_one(request_id)
                except WaitBudgetSpent:
                    self.stopped_by = "budget"
                    return
                except KeyboardInterrupt:
                    self.stopped_by = "interrupt"
                    return
                if isinstance(outcome.error, CredentialsRefused):
                    raise outcome.error  # no later acknowledgement can succeed
                self.done += 1
                if outcome.acknowledged:
                    output.out(f"acknowledged  {request_id}  {outcome.detail}")
                else:
                    self.failed += 1
                    output.out(f"FAILED        {request_id}  {outcome.detail}")
                self.progress.update(self.task, completed=self.done, description="acknowledging")

    def finish(self, max_wait: float) -> None:
        from avasam_cli import output

        left = len(self.ids) - self.done
        if self.stopped_by == "interrupt":
            output.info(
                f"Interrupted: {self.done - self.failed} acknowledged, {self.failed} failed, "
                f"{left} left pending."
            )
            raise typer.Exit(130)
        if self.stopped_by == "budget":
            raise OperationFailed(
                f"stopped after waiting {max_wait:g} s in all for Avasam's rate limit: "
                f"{self.done - self.failed} acknowledged, {self.failed} failed, {left} left "
                "pending; run `avasam ack --pending` again later, or give --max-wait more"
            )
        if self.failed:
            raise OperationFailed(f"{self.failed} of {len(self.ids)} acknowledgements failed")


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n"
        "  avasam ack 6f1c0a52-2d4e-4d7c-9a51-0c1d2e3f4a5b\n\n"
        "  avasam ack --pending\n\n"
        "  avasam ack --pending --base-url http://127.0.0.1:9000",
    )(ack)
