"""The store's schema, described once: every table's columns and every index, as both
databases' migrations must leave them (SQLite's in `migrations`, PostgreSQL's in
`postgres.MIGRATIONS`; a test reads each database back and compares it with this).
A schema change is a step at the end of each, and its line here."""

from __future__ import annotations

from typing import NamedTuple


class Index(NamedTuple):
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None  # a partial index's condition


TABLES: dict[str, tuple[str, ...]] = {
    "events": (
        "id", "received_at", "kind", "status", "http_status", "reason", "detail",
        "request_id", "item_count", "client", "headers", "body", "ack_status", "ack_at",
        "ack_detail", "forward_status", "forward_detail",
    ),
    "deliveries": (
        "id", "event_id", "job", "target", "state", "attempts", "queued_at",
        "next_attempt_at", "claimed_by", "claimed_until", "last_result", "headers_needed",
    ),
    "delivery_attempts": ("id", "delivery_id", "at", "status", "latency_ms", "excerpt"),
}  # fmt: skip

INDEXES: dict[str, Index] = {
    # Duplicates are decided by this index, so the rule holds across processes and hosts.
    "events_verified_once": Index("events", ("request_id", "kind"), True, "status = 'verified'"),
    "events_request_id": Index("events", ("request_id",)),
    "events_received_at": Index("events", ("received_at",)),  # prune, --since
    "deliveries_pending": Index("deliveries", ("target", "id"), where="state = 'pending'"),
    "deliveries_event": Index("deliveries", ("event_id",)),
    # The earliest due time among pending jobs, in one step: a runner's cheap look.
    "deliveries_due": Index("deliveries", ("next_attempt_at",), where="state = 'pending'"),
    "delivery_attempts_job": Index("delivery_attempts", ("delivery_id",)),
}
