"""SQL both store backends speak word for word: column lists and conditions with no
parameter in them (each backend keeps its own placeholders and dialect)."""

from __future__ import annotations

# An event as `StoredEvent` takes it.
STORED_COLUMNS = (
    "id, received_at, kind, status, http_status, headers AS headers_json, body, reason, detail, "
    "request_id, item_count, client, ack_status, ack_at, ack_detail, forward_status, "
    "forward_detail"
)
# What an INSERT of an event writes, in the order of its values.
INSERTED_COLUMNS = (
    "received_at, kind, status, http_status, reason, detail, request_id, item_count, client, "
    "headers, body"
)
# A claimed job with its update (`DeliveryJob`), from deliveries d JOIN events e.
JOB_COLUMNS = (
    "d.id, d.event_id, d.job, d.target, d.attempts, d.queued_at, e.kind, e.request_id, "
    "e.headers, e.body, e.received_at, d.headers_needed"
)
# A job as listed (`DeliveryRow`), from deliveries d JOIN events e.
ROW_COLUMNS = (
    "d.id, d.event_id, e.kind, e.request_id, d.job, d.target, d.state, d.attempts, "
    "d.queued_at, d.next_attempt_at, d.last_result, "
    "(d.job = 'acknowledge' AND d.state = 'pending' AND EXISTS (SELECT 1 FROM deliveries f "
    "WHERE f.event_id = d.event_id AND f.job = 'forward' AND f.state != 'delivered'))"
)
# An acknowledgement waits until every forward of its update is delivered: Avasam is
# told an update was handled only once the shop has it.
FORWARDS_DONE = (
    "NOT EXISTS (SELECT 1 FROM deliveries f WHERE f.event_id = d.event_id "
    "AND f.job = 'forward' AND f.state != 'delivered')"
)


# A stored update's headers carry send-test's marker (`store.events.TEST_MARKER`).
IS_TEST = """headers LIKE '%"x-avasam-cli-test"%'"""


def listed_columns(empty_body: str) -> str:
    """STORED_COLUMNS without the headers and body (what a listing shows), but for the
    test marker, so a listing can say which are test events; `empty_body` is the
    dialect's empty BLOB."""
    marked = f"""CASE WHEN {IS_TEST} THEN '[["x-avasam-cli-test", "1"]]' ELSE '[]' END"""
    return STORED_COLUMNS.replace(
        "headers AS headers_json, body", f"{marked} AS headers_json, {empty_body} AS body"
    )
