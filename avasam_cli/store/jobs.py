"""The outbox's model, below the store: the job types, what each means for the update it
follows, the test marker, and the `Plan` of jobs a new verified update gets.

`store/` and `delivery/` both import it; it imports neither.  A delivery job is what
follows a 200: forwarding the update to the seller's shop, or acknowledging it to
Avasam.  Jobs are written in the transaction that stores the update, so once the 200
is sent they survive any stop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from avasam_cli.store.events import TEST_MARKER, is_probe, is_test_event
from avasam_cli.webhooks.kinds import KINDS

FORWARD = "forward"
ACKNOWLEDGE = "acknowledge"
# The target of acknowledgement jobs: Avasam's API, with the keys of whoever runs them.
AVASAM_API = "avasam-api"
STATES = ("pending", "delivered", "dead", "cancelled")
__all__ = ["TEST_MARKER", "is_test_event"]


@dataclass(frozen=True)
class JobType:
    """What the store does with a job of this type."""

    name: str
    # Claimed one target at a time, oldest first: a shop gets its updates in order.
    in_order_per_target: bool
    # Not claimed before every forward of its update is delivered (or given up).
    waits_for_forwards: bool
    # The event's columns its attempts show in (`events list`, `ack --pending`).
    status_column: str
    detail_column: str
    at_column: str | None = None
    # Set in the status column once delivered (a failure is then "failed", and never
    # overwrites it); None: the status column holds each attempt's answer.
    delivered_status: str | None = None


JOB_TYPES = {
    job.name: job
    for job in (
        JobType(FORWARD, True, False, "forward_status", "forward_detail"),
        JobType(ACKNOWLEDGE, False, True, "ack_status", "ack_detail", "ack_at", "acknowledged"),
    )
}


@dataclass(frozen=True)
class Plan:
    """The jobs a new verified update gets: the listener's --forward-*-to and --auto-ack."""

    forward_to: Mapping[str, str] = field(default_factory=dict)  # kind -> URL
    acknowledge: bool = False
    # The names of the headers its forwards carry (--forward-header, the profile's): a
    # runner without one of them leaves the job pending rather than send it without.
    header_names: tuple[str, ...] = ()

    def jobs_for(self, kind: str, headers_json: str = "[]") -> list[tuple[str, str]]:
        """(job, target) for an update of `kind` with these stored headers; the forward
        first: an acknowledgement waits until the shop has the update.  A test update is
        not acknowledged; a probe (doctor --public-url) gets no job at all."""
        if is_probe(headers_json):
            return []
        test = is_test_event(headers_json)
        jobs = []
        if kind in self.forward_to:
            jobs.append((FORWARD, self.forward_to[kind]))
        if self.acknowledge and not test and kind in KINDS and KINDS[kind].acknowledged:
            jobs.append((ACKNOWLEDGE, AVASAM_API))
        return jobs

    @property
    def headers_needed(self) -> str | None:
        """What a forward job keeps of `header_names` (lower case, comma-separated)."""
        return ",".join(sorted({name.lower() for name in self.header_names})) or None

    def to_json(self) -> str:
        return json.dumps(
            {
                "forward_to": dict(self.forward_to),
                "acknowledge": self.acknowledge,
                "header_names": list(self.header_names),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        names = tuple(data.get("header_names", ()))
        return cls(dict(data["forward_to"]), bool(data["acknowledge"]), names)

    def __bool__(self) -> bool:
        return bool(self.forward_to) or self.acknowledge
