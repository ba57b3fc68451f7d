"""`GET /metrics` on a socket of its own: the sum of what every process of the listener
published, this process's own totals as they are now, and the outbox read from the
store at each scrape.

Never on the webhook port: a tunnel publishes that one, and the figures are for the
seller's own monitoring.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from avasam_cli.metrics.counts import METRICS, Counts, read_published, stop_counting

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from avasam_cli.paths import StoreLocation

METRICS_PATH = "/metrics"


class ListenerCollector:
    """prometheus_client's custom collector: the processes' totals and the store's
    outbox, gathered afresh at each scrape."""

    def __init__(self, folder: Path, own: Counts, store: StoreLocation) -> None:
        self.folder = folder
        self.own = own
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counters: dict[tuple[str, tuple[str, ...]], float] = {}
        histograms: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        for counts in [self.own, *read_published(self.folder, leave_out=self.own.path)]:
            for key, value in list(counts.counters.items()):
                counters[key] = counters.get(key, 0) + value
            for key, slots in list(counts.histograms.items()):
                summed = histograms.setdefault(key, [0.0] * len(slots))
                for index, value in enumerate(slots):
                    summed[index] += value
        for name, metric in METRICS.items():
            if metric.kind == "counter":
                family: Any = CounterMetricFamily(name, metric.help, labels=metric.labels)
                for (counted, labels), value in sorted(counters.items()):
                    if counted == name:
                        family.add_metric(labels, value)
            else:
                family = HistogramMetricFamily(name, metric.help, labels=metric.labels)
                for (counted, labels), slots in sorted(histograms.items()):
                    if counted == name:
                        family.add_metric(labels, _cumulative(metric.buckets, slots), slots[-1])
            yield family
        yield from self._outbox()

    def _outbox(self) -> Iterator[Metric]:
        from avasam_cli.errors import StoreError
        from avasam_cli.store.base import open_store

        jobs = GaugeMetricFamily(
            "avasam_deliveries",
            "Jobs in the outbox (forwards, acknowledgements), by state and job type.",
            labels=("state", "job"),
        )
        oldest = GaugeMetricFamily(
            "avasam_oldest_pending_seconds",
            "Age of the oldest pending job in the outbox, in seconds (0 when none waits).",
        )
        up = GaugeMetricFamily(
            "avasam_store_up", "1 when the store answered this scrape's questions, else 0."
        )
        try:
            with open_store(self.store, read_only=True) as store:
                counts = store.delivery_counts_by_job()
                _, queued_at, _ = store.overdue(0)
        except StoreError:
            up.add_metric((), 0)
            yield up
            return
        for (state, job), count in sorted(counts.items()):
            jobs.add_metric((state, job), count)
        oldest.add_metric((), max(0.0, time.time() - queued_at) if queued_at else 0.0)
        up.add_metric((), 1)
        yield from (jobs, oldest, up)


def _cumulative(bounds: tuple[float, ...], slots: list[float]) -> list[tuple[str, float]]:
    """Bucket counts (each on its own) as Prometheus's cumulative `le` buckets."""
    rows, total = [], 0.0
    for bound, count in zip(bounds, slots, strict=False):
        total += count
        rows.append((repr(float(bound)), total))
    rows.append(("+Inf", total + slots[len(bounds)]))
    return rows


class MetricsServer:
    """An HTTP server on its own thread answering GET /metrics (404 elsewhere)."""

    def __init__(self, sock: socket.socket, registry: CollectorRegistry, folder: Path) -> None:
        serving = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != METRICS_PATH:
                    self._answer(404, b"metrics are at /metrics\n", "text/plain")
                    return
                self._answer(200, generate_latest(serving.registry), CONTENT_TYPE_LATEST)

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass  # a scrape every 15 s is no news

        self.registry = registry
        self.folder = folder
        self.httpd = http.server.ThreadingHTTPServer(
            sock.getsockname()[:2], Handler, bind_and_activate=False
        )
        self.httpd.socket.close()
        self.httpd.socket = sock
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="avasam-metrics-server", daemon=True
        )

    @property
    def url(self) -> str:
        from avasam_cli.net import local_base_url

        return local_base_url(*self.httpd.socket.getsockname()[:2]) + METRICS_PATH

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop serving, and counting: once the children have stopped, their files go."""
        with contextlib.suppress(Exception):
            self.httpd.shutdown()
        self.httpd.server_close()
        stop_counting()
        shutil.rmtree(self.folder, ignore_errors=True)


def metrics_server(
    sock: socket.socket, folder: Path, own: Counts, store: StoreLocation
) -> MetricsServer:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ListenerCollector(folder, own, store))
    return MetricsServer(sock, registry, folder)
