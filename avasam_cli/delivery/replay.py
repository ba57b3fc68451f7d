"""Sending a stored request again: as it was, or its items signed afresh as a new update.

Shared by `avasam events replay` and the inspector's actions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from avasam_cli.delivery.forward import passed_on
from avasam_cli.store.events import REDACTED, StoredEvent
from avasam_cli.webhooks import keys
from avasam_cli.webhooks import sign as signing


def replay_headers(event: StoredEvent) -> list[tuple[str, str]]:
    """The stored headers that may be sent again (no connection's own, no credentials,
    nothing redacted)."""
    return [(name, value) for name, value in passed_on(event.headers) if value != REDACTED]


def stored_items(event: StoredEvent) -> list[Any] | None:
    """The update's items (keys in their canonical casing), or None when the body holds no
    list of them."""
    return keys.stored_items(event.body, event.kind)


def resigned(items: list[Any], verification_token: str) -> tuple[bytes, str]:
    """`items` in a new envelope: a new request id, signed now. (body, request id)"""
    body = signing.build_body(items, verification_token, now=datetime.now(UTC))
    return signing.encode(body), body["requestId"]


ReplayOutcome = Literal["duplicate", "expired"]


def replay_outcome(answer_text: str) -> ReplayOutcome | None:
    """Why the receiver answered a plain replay as it did, when re-signing is the way on:
    it has this request id already (duplicate), or the stored token's lifetime is over
    (expired). None for any other answer."""
    try:
        answer = json.loads(answer_text)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    if answer.get("status") == "duplicate":
        return "duplicate"
    if answer.get("error") == "expired":
        return "expired"
    return None
