"""`reconcile --fix`: updates carrying Avasam's current values, queued to the shop through
the outbox, so a shop that missed webhooks (downtime, a lost job) catches up.

Each is stored as a verified update of its kind, signed with the verification token
like any test update, and marked as made by avasam-cli (send-test's marker, so it is
never acknowledged and never counted by `reconcile`) and as coming from reconcile.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from avasam_cli.api.reconcile import Line
from avasam_cli.delivery.replay import resigned
from avasam_cli.store.base import EventStore
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import TEST_MARKER, Plan
from avasam_cli.webhooks import sign as signing

SOURCE_HEADER = "x-avasam-cli-source"
SOURCE = "reconcile"


def catch_up_event(kind: str, lines: Sequence[Line], verification_token: str) -> Event:
    """One update of `kind` holding each line's SKU at Avasam's value, updated now."""
    now = datetime.now(UTC)
    updated_on = signing.iso_utc(now)
    items = [signing.make_item(kind, line.sku, updated_on, line.avasam) for line in lines]
    body, request_id = resigned(items, verification_token)
    headers = [("content-type", "application/json"), (TEST_MARKER, "1"), (SOURCE_HEADER, SOURCE)]
    return Event(
        received_at=now.isoformat(timespec="milliseconds"),
        kind=kind,
        status="verified",
        http_status=200,
        headers_json=json.dumps(headers),
        body=body,
        request_id=request_id,
        item_count=len(items),
        client="avasam reconcile --fix",
    )


def queue_catch_up(
    store: EventStore, lines: Iterable[Line], target: str, verification_token: str
) -> list[Event]:
    """Store one catch-up update per kind with a forward job to `target`; the events."""
    by_kind: dict[str, list[Line]] = {}
    for line in lines:
        by_kind.setdefault(line.kind, []).append(line)
    events = [catch_up_event(kind, kind_lines, verification_token)
              for kind, kind_lines in by_kind.items()]  # fmt: skip
    for event in events:
        store.insert([event], Plan({event.kind: target}))
    return events


def is_catch_up(headers_json: str) -> bool:
    """Whether stored headers mark an update made by `reconcile --fix`."""
    return f'["{SOURCE_HEADER}", "{SOURCE}"]' in headers_json
