"""How soon a webhook shows on an open inspector page: from its 200 to its row.

Usage: python bench/inspector.py [--count 100]

A real `avasam listen` with its inspector; Debian's Chromium (Playwright) with the
page open.  Each signed update is sent alone (50 ms apart); the page records, with a
MutationObserver, the wall-clock time each row appears, and this script the time
each 200 arrived.  Target: p95 <= 250 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from listener import TOKEN, free_port  # noqa: E402

from avasam_cli.webhooks import sign as signing  # noqa: E402

PAGE_TOKEN = "bench-inspector-page"  # noqa: S105 - a scratch page's token
TARGET_MS = 250
WATCH_ROWS = """
window.seen = {};
new MutationObserver(() => {
  for (const row of document.querySelectorAll('#list tbody tr')) {
    const id = row.children[4].textContent;
    if (!(id in window.seen)) window.seen[id] = Date.now();
  }
}).observe(document.querySelector('#list tbody'), {childList: true});
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100)
    options = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    port, page_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AVASAM_HOME": home, "AVASAM_VERIFICATION_TOKEN": TOKEN,
               "AVASAM_INSPECTOR_TOKEN": PAGE_TOKEN}  # fmt: skip
        listen = subprocess.Popen(
            [sys.executable, "-m", "avasam_cli", "listen", "--port", str(port), "--json",
             "--inspect-port", str(page_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/webhooks/stock"
            for _ in range(100):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            answered: dict[str, float] = {}
            with sync_playwright() as playwright, httpx.Client() as client:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{page_port}/?token={PAGE_TOKEN}")
                page.wait_for_timeout(500)  # the page has loaded and opened its stream
                page.evaluate(WATCH_ROWS)
                for index in range(options.count):
                    request_id = f"lat-{index:04d}"
                    items = signing.generate_items("stock", 1, datetime.now(UTC))
                    body = signing.build_body(
                        items, TOKEN, now=datetime.now(UTC), request_id=request_id
                    )
                    answer = client.post(url, content=signing.encode(body),
                                         headers={"content-type": "application/json"})  # fmt: skip
                    answered[request_id] = time.time() * 1000
                    assert answer.status_code == 200
                    time.sleep(0.05)
                page.wait_for_timeout(1000)
                seen: dict[str, float] = page.evaluate("window.seen")
                browser.close()
        finally:
            listen.terminate()
            listen.wait(30)
    latencies = sorted(seen[rid] - at for rid, at in answered.items() if rid in seen)
    missing = len(answered) - len(latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(f"{len(latencies)} of {options.count} rows shown ({missing} never appeared)")
    print(f"from the 200 to the row: median {statistics.median(latencies):.0f} ms, "
          f"p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms")  # fmt: skip
    ok = p95 <= TARGET_MS and not missing
    print(f"target: p95 <= {TARGET_MS} ms: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
