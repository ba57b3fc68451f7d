"""Every console example in README.md and docs/ runs as shown (#28): against a real
listener, a stand-in Avasam API and a recording shop, in a home folder of its own."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.examples import PORTS, examples_in, run_page, sandbox
from tests.helpers import Proxy, RecordingShop, free_port
from tests.standin import running_avasam
from tests.tunnel_stubs import stub_env

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The keys the examples type (their masks show their last four characters).
CONSUMER_KEY, SECRET_KEY = "ck-demo-3f9a", "sk-demo-c0de"


def _two_free_ports() -> int:
    """A free port whose next one is free too (the listener's, and its inspector's)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.mark.parametrize("page", [p for p in PAGES if examples_in(p)], ids=lambda p: p.name)
def test_the_examples_of_a_page_run_as_shown(page: Path, tmp_path: Path) -> None:
    shop = RecordingShop()
    listener = _two_free_ports()
    proxy = Proxy(f"http://127.0.0.1:{listener}")
    ports = {PORTS["listener"]: listener, PORTS["inspector"]: listener + 1,
             PORTS["shop"]: shop.port, PORTS["metrics"]: free_port(),
             PORTS["proxy"]: proxy.port}  # fmt: skip
    stubs = stub_env(tmp_path / "tunnel")  # cloudflared and ngrok stand-ins on PATH
    with running_avasam() as avasam:
        avasam.consumer_key, avasam.secret_key = CONSUMER_KEY, SECRET_KEY
        avasam.stock = {"MUG-RED": 12, "MUG-BLUE": 0}
        avasam.products = {"MUG-RED": 7.5, "MUG-BLUE": 7.5}
        env = {
            "AVASAM_BASE_URL": avasam.url, "AVASAM_ALLOW_INSECURE_BASE_URL": "true",
            "AVASAM_LISTEN_PORT": str(listener), "CK": CONSUMER_KEY,
            "STUB_STATE": stubs["STUB_STATE"], "STUB_MODE": "ok",
            "STUB_PATH": stubs["PATH"].split(os.pathsep)[0],
        }  # fmt: skip
        with sandbox(tmp_path / "run", env) as (home, run_env):
            (home / "secret-key.txt").write_text(SECRET_KEY + "\n")
            try:
                problems = run_page(examples_in(page), home, run_env, ports)
            finally:
                shop.close()
                proxy.close()
    assert not problems, "\n\n".join(problems)
