"""The outbox's delivery rules: when a failed job is tried again, and what an answer
means.  Which jobs an update gets, and the job types, are the outbox's model, below the
store (`store.jobs`).

A delivery job is what follows a 200: forwarding the update to the seller's shop,
or acknowledging it to Avasam.  Jobs are written in the transaction that stores
the update, so once the 200 is sent they survive any stop; a runner (inside
`avasam listen`, or `avasam deliveries run`) delivers them.  Pure: no I/O here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# About 1 s, 5 s, 30 s, 2 min, 10 min, 30 min, then hourly (see the README).
DEFAULT_SCHEDULE: tuple[float, ...] = (1, 5, 30, 120, 600, 1800, 3600)
DEFAULT_MAX_ATTEMPTS = 5  # for a target that answers with an error
DEFAULT_MAX_AGE = 24 * 3600.0  # for a target that cannot be reached
MAX_RETRY_AFTER = 3600.0  # a 429's Retry-After is honoured up to this
JITTER = 0.2  # each wait is the schedule's, give or take 20%


Verdict = Literal["delivered", "retry", "unreachable", "dead"]


def judge(status: int | None) -> Verdict:
    """What an answer means for a job: `None` is no answer at all (refused, timed out)."""
    if status is None:
        return "unreachable"  # retried until the job is too old; later jobs wait behind it
    if 200 <= status < 300:
        return "delivered"
    if status >= 500 or status in (408, 429):
        return "retry"  # a few times, then dead: one poisoned update must not block the rest
    return "dead"  # any other 4xx (and 3xx: redirects are not followed) will not change


@dataclass(frozen=True)
class RetryRules:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_age: float = DEFAULT_MAX_AGE

    def next_state(
        self,
        verdict: Verdict,
        attempts: int,
        age: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> tuple[str, float]:
        """(state, seconds until the next attempt) after attempt number `attempts` (from
        1) of a job first queued `age` seconds ago."""
        if verdict == "delivered":
            return "delivered", 0.0
        if verdict == "dead":
            return "dead", 0.0
        if verdict == "retry" and attempts >= self.max_attempts:
            return "dead", 0.0
        wait = self.schedule[min(attempts - 1, len(self.schedule) - 1)]
        wait *= 1 + (rng or random).uniform(-JITTER, JITTER)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        if verdict == "unreachable":  # a last try when the job reaches its maximum age
            if age >= self.max_age:
                return "dead", 0.0
            wait = min(wait, self.max_age - age)
        return "pending", wait


def parse_schedule(text: str) -> tuple[float, ...] | None:
    """`1s,5s,30s,2m,10m,30m,1h` as seconds; None when malformed."""
    from avasam_cli.text import duration

    waits = [duration(part, bare_seconds=True) for part in text.split(",")]
    if not waits or any(wait is None or wait <= 0 for wait in waits):
        return None
    return tuple(wait for wait in waits if wait is not None)


def describe_schedule(schedule: Sequence[float]) -> str:
    def one(seconds: float) -> str:
        for unit, size in (("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"{seconds / size:g}{unit}"
        return f"{seconds:g}s"

    return ",".join(one(wait) for wait in schedule)
