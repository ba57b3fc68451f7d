"""`avasam doctor --public-url URL`: one signed test update through the URL pasted into
Avasam, looked for at the running listener (#28).  A real local reverse proxy stands in
for the public URL; another answers 404, as a proxy with the wrong path would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import TOKEN, ListenProcess, Proxy, RecordingShop, free_port, store_rows

KEYS = {"AVASAM_CONSUMER_KEY": "ck-go-live", "AVASAM_SECRET_KEY": "sk-go-live"}


def _doctor(home: Path, port: int, public_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AVASAM_HOME": str(home), "AVASAM_VERIFICATION_TOKEN": TOKEN,
           "AVASAM_LISTEN_PORT": str(port), "NO_COLOR": "1", **KEYS}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "avasam_cli", "doctor", "--offline", "--public-url", public_url],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_the_public_url_reaches_the_listener_or_says_what_answered(isolated_home: Path) -> None:
    shop = RecordingShop()
    listener = ListenProcess(isolated_home, "--forward-to", shop.url, "--auto-ack",
                             env={"AVASAM_VERIFICATION_TOKEN": TOKEN, **KEYS})  # fmt: skip
    good, wrong_path = Proxy(listener.url), Proxy(None)
    try:
        reached = _doctor(isolated_home, listener.port, good.url)
        refused = _doctor(isolated_home, listener.port, wrong_path.url + "/")
        nobody = _doctor(isolated_home, listener.port, f"http://127.0.0.1:{free_port()}")
    finally:
        listener.stop()
        good.close()
        wrong_path.close()
        shop.close()
    said = f"public URL reaches the listener: {good.url}/webhooks/stock reaches this listener"
    assert said in reached.stdout and "answered 200 in" in reached.stdout, reached.stdout
    assert reached.returncode == 0, reached.stdout  # the other checks pass (the port is held)

    assert refused.returncode == 1
    assert (f"{wrong_path.url}/webhooks/stock answered 404 '<html>404 Not Found</html>' "
            "(server: standin-proxy), but the test update never reached this listener: a proxy "
            "or tunnel with the wrong path?") in refused.stdout  # fmt: skip
    assert nobody.returncode == 1 and "does not reach this listener: nothing answered" in (
        nobody.stdout)  # fmt: skip
    assert "Traceback" not in refused.stderr + nobody.stderr

    (probe,) = store_rows(isolated_home / "data" / "events.sqlite3", "request_id LIKE 'go-live-%'")
    assert probe["status"] == "verified" and "x-avasam-cli-probe" in probe["headers"]
    assert shop.received == [], "a probe is never forwarded"
    jobs = _jobs(isolated_home / "data" / "events.sqlite3")
    assert jobs == 0, "nor acknowledged"


def _jobs(path: Path) -> int:
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()
        return int(count)


def test_without_a_running_listener_it_says_to_start_one(isolated_home: Path) -> None:
    port = free_port()
    ran = _doctor(isolated_home, port, "https://shop.example.com")
    assert ran.returncode == 1
    assert f"no `avasam listen` answers on 127.0.0.1:{port}" in ran.stdout
