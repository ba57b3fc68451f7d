"""`avasam ack`: acknowledge stock updates through the Avasam API."""

from __future__ import annotations

from typing import Annotated

import typer

from avasam_cli.cli._context import client_for, settings
from avasam_cli.cli._options import BaseUrlOption
from avasam_cli.errors import OperationFailed, UsageError


def ack(
    ctx: typer.Context,
    request_ids: Annotated[
        list[str] | None, typer.Argument(help="Request ids of stock updates to acknowledge.")
    ] = None,
    pending: Annotated[
        bool, typer.Option(help="Acknowledge every stored stock update not acknowledged yet.")
    ] = False,
    base_url: BaseUrlOption = None,
) -> None:
    """Acknowledge stock updates through the Avasam API (AcknowledgeStockUpdate)."""
    from avasam_cli import output
    from avasam_cli.delivery.acknowledge import acknowledge_one
    from avasam_cli.errors import CredentialsRefused
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store

    if pending and request_ids:
        raise UsageError("give request ids or --pending, not both")
    if not pending and not request_ids:
        raise UsageError("give the request ids to acknowledge, or --pending for all pending ones")
    where = locations()
    client = client_for(settings(ctx, base_url=base_url), where)
    failed = 0
    with open_store(where.store_file) as store, client:
        ids = store.pending_acknowledgements() if pending else list(request_ids or [])
        if not ids:
            output.info("Nothing to acknowledge: every verified stock update is acknowledged.")
            return
        for request_id in ids:
            outcome = acknowledge_one(client.acknowledge, request_id, store)
            if isinstance(outcome.error, CredentialsRefused):
                raise outcome.error  # no later acknowledgement can succeed
            if outcome.acknowledged:
                output.out(f"acknowledged  {request_id}  {outcome.detail}")
            else:
                failed += 1
                output.out(f"FAILED        {request_id}  {outcome.detail}")
    if failed:
        raise OperationFailed(f"{failed} of {len(ids)} acknowledgements failed")


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n"
        "  avasam ack 6f1c0a52-2d4e-4d7c-9a51-0c1d2e3f4a5b\n\n"
        "  avasam ack --pending\n\n"
        "  avasam ack --pending --base-url http://127.0.0.1:9000",
    )(ack)
