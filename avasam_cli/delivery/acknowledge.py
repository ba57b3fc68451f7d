"""Acknowledging one stock update and writing down the outcome: `ack` and `--auto-ack` alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from avasam_cli.errors import ApiError, NetworkError
from avasam_cli.store.base import ResultLog


class AckOutcome(NamedTuple):
    acknowledged: bool
    detail: str  # Avasam's answer, or why it failed
    error: ApiError | NetworkError | None


def acknowledge_one(
    acknowledge: Callable[[str], str], request_id: str, log: ResultLog
) -> AckOutcome:
    """Call the API client's `acknowledge` for `request_id` and record the outcome in `log`."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        answer = acknowledge(request_id)
    except (ApiError, NetworkError) as error:
        log.record_acknowledgement(request_id, "failed", error.message, at)
        return AckOutcome(False, error.message, error)
    log.record_acknowledgement(request_id, "acknowledged", answer, at)
    return AckOutcome(True, answer, None)
