"""The README's picture of the inspector: a real listener, a few requests, Chromium.

Usage: python scripts/inspector_screenshot.py [docs/inspector.png]

Starts `avasam listen` (with its inspector) in a scratch AVASAM_HOME, sends a
verified stock update, a price update, a duplicate and a forgery with
`avasam send-test`, opens the page in Debian's Chromium through Playwright,
opens the first stock update, and saves the screenshot.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

TOKEN = "screenshot-verification-token-" + "0123456789" * 3
PAGE_TOKEN = "screenshot-page-token"  # noqa: S105 - a scratch page's token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/inspector.png")
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    port, page_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AVASAM_HOME": home, "AVASAM_VERIFICATION_TOKEN": TOKEN,
               "AVASAM_INSPECTOR_TOKEN": PAGE_TOKEN, "NO_COLOR": "1"}  # fmt: skip
        avasam = [sys.executable, "-m", "avasam_cli"]
        listen = subprocess.Popen(  # noqa: S603 - our own CLI
            [*avasam, "listen", "--port", str(port), "--inspect-port", str(page_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(100):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            send = [*avasam, "send-test", "--port", str(port)]
            requests = [
                "--sku MUG-RED --sku MUG-BLUE --quantity 7 --request-id 7f3c-demo",
                "price --sku MUG-RED --price 12.5",
                "--sku MUG-RED --request-id 7f3c-demo",  # answered: duplicate
                "--tamper signature",  # refused: 401
            ]
            for args in (line.split() for line in requests):
                subprocess.run([*send, *args], env=env, capture_output=True, check=False)  # noqa: S603
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1400, "height": 800})
                page.goto(f"http://127.0.0.1:{page_port}/?token={PAGE_TOKEN}")
                page.locator("#list tbody tr").nth(3).wait_for()
                page.locator("#list tbody tr", has_text="7f3c-demo").last.click()
                page.locator("#detail h2").wait_for()
                page.screenshot(path=str(out))
                browser.close()
        finally:
            listen.terminate()
            listen.wait(30)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
