"""`listen --metrics-port`: a real listener scraped over HTTP and read with
prometheus_client's own parser; the figures agree with what was sent and with the store,
with one receiver process and with two (#26)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from avasam_cli.metrics.counts import METRICS, Counts, read_published
from avasam_cli.metrics.exposition import _cumulative
from tests.helpers import JSON_HEADERS, TOKEN, ListenProcess, RecordingShop, free_port, signed_body
from tests.helpers import store_rows as rows_of
from tests.test_rotation import wait_for

RECEIVED = "avasam_webhooks_received_total"


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics: (name, sorted labels) -> value."""
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _sum(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        value
        for (found, pairs), value in samples.items()
        if found == name and labels.items() <= dict(pairs).items()
    )


def _post(url: str, body: bytes, content_type: str = "application/json") -> int:
    headers = {"content-type": content_type}
    answer = httpx.post(f"{url}/webhooks/stock", content=body, headers=headers, timeout=10)
    return answer.status_code


def _listen(home: Path, port: int, *args: str) -> ListenProcess:
    return ListenProcess(home, "--metrics-port", str(port), *args,
                         env={"AVASAM_VERIFICATION_TOKEN": TOKEN})  # fmt: skip


def test_a_scraped_listener_agrees_with_what_was_sent_and_the_store(isolated_home: Path) -> None:
    """5 verified, 1 duplicate, 2 rejected, forwarded to a real shop: the counters say
    so, by verdict and reason; the histograms count every request and every commit; the
    outbox gauges match the store; /metrics is not on the webhook port."""
    shop, port = RecordingShop(), free_port()
    listener = _listen(isolated_home, port, "--forward-to", shop.url)
    try:
        statuses = [_post(listener.url, signed_body(request_id=f"m-{n}")) for n in range(5)]
        statuses.append(_post(listener.url, signed_body(request_id="m-0")))  # a duplicate
        statuses.append(_post(listener.url, b"{}"))
        statuses.append(_post(listener.url, b"{}", "text/plain"))
        assert statuses == [200] * 6 + [400, 415]
        wait_for(lambda: len(shop.received) == 5, 20, "five forwards")

        def settled() -> bool:  # each process publishes its totals about once a second
            samples = _scrape(port)
            return (_sum(samples, RECEIVED) == 8
                    and _sum(samples, "avasam_delivery_attempts_total") == 5)  # fmt: skip

        wait_for(settled, 15, "every request and forward counted")
        samples = _scrape(port)
        on_webhook_port = httpx.get(f"{listener.url}/metrics", timeout=5)
    finally:
        _, _, err = listener.stop()
        shop.close()
    assert f"Metrics                http://127.0.0.1:{port}/metrics" in err
    assert _sum(samples, RECEIVED, kind="stock", verdict="verified", reason="") == 5
    assert _sum(samples, RECEIVED, verdict="duplicate") == 1
    assert _sum(samples, RECEIVED, verdict="rejected", reason="invalid_payload") == 1
    assert _sum(samples, RECEIVED, verdict="rejected", reason="unsupported_media_type") == 1
    assert _sum(samples, "avasam_request_duration_seconds_count", kind="stock") == 8
    assert _sum(samples, "avasam_request_duration_seconds_bucket", le="+Inf") == 8
    assert _sum(samples, "avasam_store_commit_seconds_count") >= 1
    assert _sum(samples, "avasam_delivery_attempts_total", job="forward", outcome="delivered") == 5
    assert _sum(samples, "avasam_deliveries", state="delivered", job="forward") == 5
    assert _sum(samples, "avasam_oldest_pending_seconds") == 0
    assert _sum(samples, "avasam_store_up") == 1
    # The store agrees with the counters (the GET of /metrics above is a stray of its own).
    stored = rows_of(isolated_home / "data" / "events.sqlite3", "kind = 'stock'")
    by_status = {s: sum(1 for row in stored if row["status"] == s) for s in ("verified",
                 "duplicate", "rejected")}  # fmt: skip
    assert by_status == {"verified": 5, "duplicate": 1, "rejected": 2}
    assert on_webhook_port.status_code == 404 and "avasam_" not in on_webhook_port.text


@pytest.mark.skipif(sys.platform != "linux", reason="--workers needs Linux")
def test_with_workers_2_a_scrape_is_the_sum_of_both(isolated_home: Path) -> None:
    """40 requests on fresh connections, spread by the kernel over two receiver
    processes: the scrape counts all 40 (each process published its own share)."""
    port = free_port()
    listener = _listen(isolated_home, port, "--workers", "2")
    folder: list[Path] = []
    try:
        for n in range(40):
            body = signed_body(request_id=f"w-{n}")
            with httpx.Client() as fresh:  # a new connection each: the kernel chooses
                answer = fresh.post(f"{listener.url}/webhooks/stock", content=body,
                                    headers=JSON_HEADERS, timeout=10)  # fmt: skip
                assert answer.status_code == 200
        wait_for(lambda: _sum(_scrape(port), RECEIVED, verdict="verified") == 40, 15,
                 "all 40 counted")  # fmt: skip
        folder.extend((isolated_home / "cache").glob("metrics-*"))
        sharing = [c for c in read_published(folder[0]) if any(
            name == "avasam_webhooks_received" for name, _ in c.counters)]  # fmt: skip
    finally:
        listener.stop()
    assert len(stored := rows_of(isolated_home / "data" / "events.sqlite3")) == 40, stored
    assert len(sharing) == 2, "both receiver processes published what they answered"
    assert not folder[0].exists(), "the metrics folder goes with its listener"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_restarted_child_is_counted(isolated_home: Path) -> None:
    from tests.test_supervise import _one_child

    shop, port = RecordingShop(), free_port()
    listener = _listen(isolated_home, port, "--forward-to", shop.url)
    try:
        os.kill(_one_child(listener, "_children runner"), signal.SIGKILL)
        wait_for(lambda: b"delivery runner is back" in listener.captured["err"], 15, "restart")
        restarts = "avasam_child_restarts_total"
        wait_for(lambda: _sum(_scrape(port), restarts, child="delivery runner") == 1, 10,
                 "the restart counted")  # fmt: skip
    finally:
        listener.stop()
        shop.close()


def test_a_busy_metrics_port_a_bad_log_format_and_durability_are_clear_errors(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = cli("listen", "--port", "0", "--no-inspect", "--metrics-port", str(busy))
    assert result.exit_code == 2
    assert f"port {busy} on 127.0.0.1 is already in use" in result.output
    assert "--metrics-port" in result.output and "Traceback" not in result.output
    result = cli("listen", "--durability", "fsync")
    assert result.exit_code == 2
    assert "invalid durability 'fsync': use normal, full (for example --durability full)" in (
        result.output
    )
    result = cli("listen", "--log-format", "yaml")
    assert result.exit_code == 2
    assert "invalid log format 'yaml': use human, json (for example --log-format" in result.output


def test_counts_publish_and_sum_as_prometheus_buckets(tmp_path: Path) -> None:
    """Each bucket counted on its own, published, read back, and shown cumulative."""
    counts = Counts(tmp_path / "1.json")
    bounds = METRICS["avasam_store_commit_seconds"].buckets
    for seconds in (0.0001, bounds[0], bounds[1], 99.0):  # on a bound counts in that bucket
        counts.observe("avasam_store_commit_seconds", (), seconds)
    counts.count("avasam_child_restarts", ("printer",))
    counts.publish()
    (read,) = read_published(tmp_path)
    assert read.counters == {("avasam_child_restarts", ("printer",)): 1}
    slots = read.histograms[("avasam_store_commit_seconds", ())]
    cumulative = dict(_cumulative(bounds, slots))
    assert cumulative[repr(bounds[0])] == 2 and cumulative[repr(bounds[1])] == 3
    assert cumulative["+Inf"] == 4 and slots[-1] == pytest.approx(0.0001 + 0.0005 + 0.001 + 99)
    assert json.loads((tmp_path / "1.json").read_text())["counters"]
