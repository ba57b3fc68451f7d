"""Comparing Avasam's stock list with the last stock level each webhook reported.

The answer to "did we miss a webhook?": pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from avasam_cli.api.client import StockRow
from avasam_cli.store.events import StockSighting

AGREES, DIFFERS, NEVER_RECEIVED, NOT_IN_AVASAM = (
    "agrees",
    "differs",
    "never_received",
    "not_in_avasam",
)


def newest_by_sku(sightings: Iterable[StockSighting]) -> dict[str, StockSighting]:
    """Each SKU's latest reported level: the newest `updatedOn` wins, then the latest arrival."""
    newest: dict[str, tuple[tuple[datetime, str], StockSighting]] = {}
    for sighting in sightings:
        key = (datetime.fromisoformat(sighting.updated_on), sighting.received_at)
        known = newest.get(sighting.sku)
        if known is None or key >= known[0]:
            newest[sighting.sku] = (key, sighting)
    return {sku: sighting for sku, (_, sighting) in newest.items()}


@dataclass(frozen=True)
class Line:
    sku: str
    status: str
    avasam_stock: int | float | None
    webhook: StockSighting | None

    def as_json(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "status": self.status,
            "avasam_stock": self.avasam_stock,
            "webhook_quantity": self.webhook.quantity if self.webhook else None,
            "updatedOn": self.webhook.updated_on if self.webhook else None,
            "received_at": self.webhook.received_at if self.webhook else None,
            "requestId": self.webhook.request_id if self.webhook else None,
        }


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)

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


def reconcile(api_rows: Iterable[StockRow], sightings: Iterable[StockSighting]) -> Report:
    """One line per SKU known to either side, in SKU order."""
    latest = newest_by_sku(sightings)
    report = Report()
    listed: set[str] = set()
    for row in sorted(api_rows, key=lambda r: r.sku):
        listed.add(row.sku)
        webhook = latest.get(row.sku)
        if webhook is None:
            status = NEVER_RECEIVED
        else:
            status = AGREES if webhook.quantity == row.stock else DIFFERS
        report.lines.append(Line(row.sku, status, row.stock, webhook))
    for sku in sorted(set(latest) - listed):
        report.lines.append(Line(sku, NOT_IN_AVASAM, None, latest[sku]))
    return report
