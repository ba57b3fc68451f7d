"""Comparing what Avasam reports now (stock, prices) with the last value each webhook said.

The answer to "did we miss a webhook?": pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from avasam_cli.store.events import Sighting, StoredEvent
from avasam_cli.store.jobs import is_test_event
from avasam_cli.webhooks.keys import stored_items
from avasam_cli.webhooks.kinds import KINDS

AGREES, DIFFERS, NEVER_RECEIVED, NOT_IN_AVASAM = (
    "agrees",
    "differs",
    "never_received",
    "not_in_avasam",
)


def sightings(events: Iterable[StoredEvent], kind: str) -> Iterator[Sighting]:
    """Each item of each verified update of `kind`, keys in any casing.  Updates made by
    avasam-cli itself (`send-test`, `reconcile --fix`) never count: Avasam did not send
    them."""
    value_field = KINDS[kind].value_field
    for event in events:
        if is_test_event(event.headers_json) or event.request_id is None:
            continue
        for item in stored_items(event.body, kind) or ():
            if isinstance(item, dict):  # verified on arrival: sku, value, updatedOn
                yield Sighting(
                    item["sku"],
                    item[value_field],
                    item["updatedOn"],
                    event.received_at,
                    event.request_id,
                )


def newest_by_sku(seen: Iterable[Sighting]) -> dict[str, Sighting]:
    """Each SKU's latest reported value: the newest `updatedOn` wins, then the latest arrival."""
    newest: dict[str, tuple[tuple[datetime, str], Sighting]] = {}
    for sighting in seen:
        key = (datetime.fromisoformat(sighting.updated_on), sighting.received_at)
        known = newest.get(sighting.sku)
        if known is None or key >= known[0]:
            newest[sighting.sku] = (key, sighting)
    return {sku: sighting for sku, (_, sighting) in newest.items()}


@dataclass(frozen=True)
class Line:
    sku: str
    status: str
    avasam: float | None  # Avasam's stock or price now
    webhook: Sighting | None
    kind: str = "stock"

    def as_json(self) -> dict[str, Any]:
        value = KINDS[self.kind].value_field
        return {
            "kind": self.kind,
            "sku": self.sku,
            "status": self.status,
            f"avasam_{self.kind}": self.avasam,  # avasam_stock, avasam_price
            f"webhook_{value}": self.webhook.value if self.webhook else None,
            "updatedOn": self.webhook.updated_on if self.webhook else None,
            "received_at": self.webhook.received_at if self.webhook else None,
            "requestId": self.webhook.request_id if self.webhook else None,
        }

    @property
    def behind(self) -> bool:
        """Whether a shop fed by webhooks lacks Avasam's current value for this SKU."""
        return self.status in (DIFFERS, NEVER_RECEIVED) and self.avasam is not None


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    kind: str = "stock"

    def count(self, status: str) -> int:
        return sum(1 for line in self.lines if line.status == status)

    def of(self, status: str) -> list[Line]:
        return [line for line in self.lines if line.status == status]

    @property
    def compared(self) -> int:
        return self.count(AGREES) + self.count(DIFFERS)

    def summary(self) -> dict[str, int]:
        return {
            "skus": len(self.lines) - self.count(NOT_IN_AVASAM),
            "compared": self.compared,
            AGREES: self.count(AGREES),
            DIFFERS: self.count(DIFFERS),
            NEVER_RECEIVED: self.count(NEVER_RECEIVED),
            NOT_IN_AVASAM: self.count(NOT_IN_AVASAM),
        }


def _same(avasam: float | None, webhook: float) -> bool:
    """Equal values; prices compared to the cent's hundredth (12.5 and 12.50 agree)."""
    if avasam is None:
        return False
    return abs(float(avasam) - float(webhook)) < 1e-6


def reconcile(
    avasam: Mapping[str, float | None], seen: Iterable[Sighting], kind: str = "stock"
) -> Report:
    """One line per SKU known to either side, in SKU order; `avasam` is SKU -> value."""
    latest = newest_by_sku(seen)
    report = Report(kind=kind)
    for sku in sorted(avasam):
        webhook = latest.get(sku)
        if webhook is None:
            status = NEVER_RECEIVED
        else:
            status = AGREES if _same(avasam[sku], webhook.value) else DIFFERS
        report.lines.append(Line(sku, status, avasam[sku], webhook, kind))
    for sku in sorted(set(latest) - set(avasam)):
        report.lines.append(Line(sku, NOT_IN_AVASAM, None, latest[sku], kind))
    return report
