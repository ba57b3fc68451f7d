"""What each process counts, and the file it publishes its totals in.

A process counts only when its listener serves metrics: the listener names its
metrics folder in METRICS_DIR_ENV before it starts any child, and `here()` is None
in a process without it, so counting costs one `is not None` test otherwise.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

METRICS_DIR_ENV = "AVASAM_METRICS_DIR"
PUBLISH_INTERVAL = 1.0  # seconds between a process's writes of its totals

# Seconds; receipt to answer is well under a millisecond when all is well.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)  # fmt: skip


@dataclass(frozen=True)
class Metric:
    kind: str  # "counter" or "histogram"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


# The metrics counted by the processes (the outbox's gauges are read from the store at
# each scrape: see `exposition`).  Counter names leave out `_total`, which the
# exposition adds.
METRICS: dict[str, Metric] = {
    "avasam_webhooks_received": Metric(
        "counter",
        "Webhook requests answered, by kind, verdict (verified, duplicate, rejected, or "
        "unstored: answered 503 because the store could not take it) and reason.",
        ("kind", "verdict", "reason"),
    ),
    "avasam_request_duration_seconds": Metric(
        "histogram", "Seconds from a webhook request's receipt to its answer.", ("kind",),
        _LATENCY_BUCKETS,
    ),
    "avasam_store_commit_seconds": Metric(
        "histogram", "Seconds the store writer took to commit one batch of requests.", (),
        _LATENCY_BUCKETS,
    ),
    "avasam_delivery_attempts": Metric(
        "counter",
        "Delivery attempts (forwards, acknowledgements), by job type and outcome "
        "(delivered, failed: tried again later, dead: given up).",
        ("job", "outcome"),
    ),
    "avasam_child_restarts": Metric(
        "counter", "Child processes of the listener restarted after they died.", ("child",)
    ),
}  # fmt: skip


class Counts:
    """One process's totals: counters by label values, histograms as bucket counts."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        # (name, labels) -> [count per bucket..., count above the last, sum]
        self.histograms: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        self._changes = 0
        self._published = 0

    def count(self, name: str, labels: tuple[str, ...], amount: float = 1) -> None:
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0) + amount
        self._changes += 1

    def observe(self, name: str, labels: tuple[str, ...], seconds: float) -> None:
        key = (name, labels)
        buckets = METRICS[name].buckets
        slots = self.histograms.get(key)
        if slots is None:
            slots = self.histograms[key] = [0.0] * (len(buckets) + 2)
        slots[bisect.bisect_left(buckets, seconds)] += 1
        slots[-1] += seconds
        self._changes += 1

    def answered(self, kind: str, verdict: str, reason: str, seconds: float) -> None:
        """One webhook request answered (the receiver's one call per request)."""
        self.count("avasam_webhooks_received", (kind, verdict, reason))
        self.observe("avasam_request_duration_seconds", (kind,), seconds)

    def snapshot(self) -> dict[str, list[list[object]]]:
        """The totals as JSON can carry them: [name, labels, value] rows."""
        # Copies first: another thread of this process may be counting meanwhile.
        counters, histograms = dict(self.counters), dict(self.histograms)
        return {
            "counters": [[name, list(labels), value] for (name, labels), value in counters.items()],
            "histograms": [
                [name, list(labels), list(slots)] for (name, labels), slots in histograms.items()
            ],
        }

    def publish(self) -> None:
        """Write the totals to this process's file (atomically), if they changed."""
        changes = self._changes
        if self.path is None or changes == self._published:
            return
        temporary = self.path.with_suffix(".tmp")
        with contextlib.suppress(OSError):  # the folder went with its listener: nothing to do
            temporary.write_text(json.dumps(self.snapshot()), encoding="utf-8")
            os.replace(temporary, self.path)
            self._published = changes

    def publish_regularly(self) -> None:
        """Publish every PUBLISH_INTERVAL on a thread, and once more at exit."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(PUBLISH_INTERVAL):
                self.publish()

        threading.Thread(target=run, name="avasam-metrics", daemon=True).start()

        def last() -> None:
            stop.set()
            self.publish()

        atexit.register(last)


_HERE: list[Counts | None] = []


def here() -> Counts | None:
    """This process's counts, publishing to the folder METRICS_DIR_ENV names; None when
    no metrics are served."""
    if not _HERE:
        folder = os.environ.get(METRICS_DIR_ENV)
        counts = Counts(Path(folder) / f"{os.getpid()}.json") if folder else None
        if counts is not None:
            counts.publish_regularly()
        _HERE.append(counts)
    return _HERE[0]


def count_for(folder: Path) -> Counts:
    """Count in this process, and in every child started from now on (it inherits the
    environment), publishing to `folder`."""
    os.environ[METRICS_DIR_ENV] = str(folder)
    _HERE.clear()
    counts = here()
    assert counts is not None
    return counts


def stop_counting() -> None:
    os.environ.pop(METRICS_DIR_ENV, None)
    _HERE[:] = [None]


def read_published(folder: Path, leave_out: Path | None = None) -> list[Counts]:
    """The totals every process of the listener published (but `leave_out`'s)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        if path == leave_out:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # removed meanwhile; a half-written file is never seen (os.replace)
        counts = Counts()
        for name, labels, value in data.get("counters", []):
            counts.counters[(name, tuple(labels))] = value
        for name, labels, slots in data.get("histograms", []):
            counts.histograms[(name, tuple(labels))] = slots
        found.append(counts)
    return found
