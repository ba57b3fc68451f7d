"""`avasam ack`: acknowledge stock updates through the Avasam API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from avasam_cli import output
from avasam_cli.config import Settings
from avasam_cli.errors import ApiError, NetworkError, OperationFailed, UsageError
from avasam_cli.paths import Locations


def run(request_ids: Sequence[str], pending: bool, settings: Settings, where: Locations) -> None:
    from avasam_cli.api import REFUSED_CREDENTIALS, client_for
    from avasam_cli.store import EventStore

    if pending and request_ids:
        raise UsageError("give request ids or --pending, not both")
    if not pending and not request_ids:
        raise UsageError("give the request ids to acknowledge, or --pending for all pending ones")
    client = client_for(settings, where)
    failed = 0
    with EventStore(where.store_file) as store, client:
        ids = store.pending_acknowledgements() if pending else list(request_ids)
        if not ids:
            output.info("Nothing to acknowledge: every verified stock update is acknowledged.")
            return
        for request_id in ids:
            at = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                answer = client.acknowledge(request_id)
            except (ApiError, NetworkError) as error:
                if error.message == REFUSED_CREDENTIALS:
                    raise
                failed += 1
                store.record_acknowledgement(request_id, "failed", error.message, at)
                output.out(f"FAILED        {request_id}  {error.message}")
                continue
            store.record_acknowledgement(request_id, "acknowledged", answer, at)
            output.out(f"acknowledged  {request_id}  {answer}")
    if failed:
        raise OperationFailed(f"{failed} of {len(ids)} acknowledgements failed")
