"""sign-test-payload, send-test and verify: the CLI playing Avasam."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from avasam_cli.webhooks.verify import verify
from tests.conftest import Cli
from tests.helpers import TOKEN, ListenProcess, signed_body, store_rows

TAMPER_MODES = ["signature", "request-id", "expired", "alg-none", "wrong-token"]


@pytest.fixture(autouse=True)
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ListenProcess]:
    """One real `avasam listen` for the module's end-to-end tests."""
    home = tmp_path_factory.mktemp("listen-home")
    process = ListenProcess(home, env={"AVASAM_VERIFICATION_TOKEN": TOKEN})
    yield process
    process.stop()


def test_sign_test_payload_prints_only_json(cli: Cli) -> None:
    """stdout is one JSON document and nothing else; it verifies."""
    result = cli("sign-test-payload")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert list(body) == ["requestId", "on", "token", "data"]
    assert body["data"][0]["sku"] == "AVS-TEST-0001" and body["data"][0]["quantity"] == 10
    assert result.stderr == ""
    assert verify(result.stdout_bytes.strip(), "stock", TOKEN).request_id == body["requestId"]


def test_deterministic_output(cli: Cli) -> None:
    """With --request-id, --on, --no-iat and --expires-in 0 the output never changes."""
    args = (
        "sign-test-payload",
        "price",
        "--sku",
        "A-1",
        "--price",
        "12.5",
        "--request-id",
        "r-1",
        "--on",
        "2026-01-01T00:00:00Z",
        "--no-iat",
        "--expires-in",
        "0",
    )
    first, second = cli(*args), cli(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    body = json.loads(first.stdout)
    assert body["data"] == [{"sku": "A-1", "price": 12.5, "updatedOn": "2026-01-01T00:00:00Z"}]


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_algorithm_option(cli: Cli, alg: str) -> None:
    """--alg signs with the chosen HMAC algorithm."""
    result = cli("sign-test-payload", "--alg", alg)
    assert verify(result.stdout_bytes.strip(), "stock", TOKEN).algorithm == alg


def test_generated_items_and_pretty(cli: Cli) -> None:
    """--items N makes N distinct plausible items; --pretty indents."""
    result = cli("sign-test-payload", "--items", "50", "--pretty")
    body = json.loads(result.stdout)
    assert len({item["sku"] for item in body["data"]}) == 50
    assert result.stdout.startswith("{\n  ")


def test_data_file_and_stdin(cli: Cli, tmp_path: Path) -> None:
    """--data-file sends items as they are, from a file or standard input."""
    items = [{"sku": "X", "quantity": 1, "updatedOn": "2026-01-01T00:00:00Z", "extra": True}]
    path = tmp_path / "items.json"
    path.write_text(json.dumps(items))
    assert json.loads(cli("sign-test-payload", "--data-file", str(path)).stdout)["data"] == items
    piped = cli("sign-test-payload", "--data-file", "-", input=json.dumps(items))
    assert json.loads(piped.stdout)["data"] == items


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-file", "/no/such/file.json"], "cannot read --data-file"),
        (["--data-file", "-"], "not valid JSON"),
        (["--price", "3"], "--price is for price updates"),
        (["--sku", "A", "--items", "3"], "give items one way"),
    ],
)
def test_item_option_errors(cli: Cli, args: list[str], message: str) -> None:
    """Bad item options are usage errors (exit 2) naming the fix; stdout stays empty."""
    result = cli("sign-test-payload", *args, input="{not json")
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_no_token_is_configuration_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a verification token anywhere, signing says how to set one (exit 2)."""
    monkeypatch.delenv("AVASAM_VERIFICATION_TOKEN")
    result = cli("sign-test-payload")
    assert result.exit_code == 2
    assert "avasam configure" in result.stderr


def test_verify_valid_and_invalid(cli: Cli, tmp_path: Path) -> None:
    """verify: exit 0 with the items for a valid body, 1 with the reason for a bad one."""
    good = tmp_path / "good.json"
    good.write_bytes(signed_body("price", count=2))
    result = cli("verify", str(good))
    assert result.exit_code == 0, result.output
    assert "VALID price update" in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_bytes(signed_body(key="another-key-another-key-another-key-0000"))
    result = cli("verify", str(bad), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "kind": "stock",
        "reason": "bad_signature",
        "detail": json.loads(result.stdout)["detail"],
    }


def test_verify_from_stdin_and_token_from_stdin(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Body on stdin; or the token on stdin (--verification-token -) with the body in a file."""
    assert cli("verify", input=signed_body().decode()).exit_code == 0
    monkeypatch.delenv("AVASAM_VERIFICATION_TOKEN")
    path = tmp_path / "body.json"
    path.write_bytes(signed_body())
    assert cli("verify", str(path), "--verification-token", "-", input=TOKEN + "\n").exit_code == 0
    assert cli("verify", str(path)).exit_code == 2
    assert cli("verify", "-", "--verification-token", "-").exit_code == 2
    assert (
        cli("verify", str(tmp_path / "missing.json"), "--verification-token", TOKEN).exit_code == 2
    )


def test_nothing_listening(cli: Cli) -> None:
    """No receiver: one line naming the URL and `avasam listen`, exit 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/webhooks/stock"
    result = cli("send-test", "--url", url)
    assert result.exit_code == 1
    assert url in result.stderr and "avasam listen" in result.stderr
    assert "Traceback" not in result.output


def test_timeout_is_reported(cli: Cli) -> None:
    """A receiver that never answers: reported as a timeout, exit 1."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/webhooks/stock"
        result = cli("send-test", "--url", url, "--timeout", "0.5")
    assert result.exit_code == 1
    assert "timed out after 0.5 s" in result.stderr


def test_send_one_to_real_listener(cli: Cli, listener: ListenProcess) -> None:
    """One signed request: status, latency and the answer; exit 0."""
    result = cli(
        "send-test", "price", "--url", f"{listener.url}/webhooks/price", "--request-id", "one-shot"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("200 OK")
    assert '"requestId":"one-shot"' in result.stdout


def test_default_url_follows_profile_port(cli: Cli, listener: ListenProcess) -> None:
    """Without --url, send-test targets the profile's listener host and port."""
    assert cli("configure", "--listen-port", str(listener.port)).exit_code == 0
    result = cli("send-test")
    assert result.exit_code == 0, result.output
    assert f"127.0.0.1:{listener.port}/webhooks/stock" in result.stdout


@pytest.mark.parametrize("mode", TAMPER_MODES)
def test_every_tamper_mode_is_refused(cli: Cli, listener: ListenProcess, mode: str) -> None:
    """Each forgery is refused by the real listener with 401, so send-test exits 0."""
    result = cli("send-test", "--url", f"{listener.url}/webhooks/stock", "--tamper", mode)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("401")


def test_tamper_reports_an_accepting_receiver(cli: Cli) -> None:
    """A receiver that accepts forgeries makes --tamper fail (exit 1)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class AcceptAll(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), AcceptAll)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        result = cli("send-test", "--url", url, "--tamper", "alg-none")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    assert "ACCEPTED a forged request" in result.stderr


def test_load_run_stores_what_it_reports(cli: Cli, listener: ListenProcess) -> None:
    """--count N: the listener stores exactly the distinct request ids reported 2xx."""
    home = listener.home
    store = home / "data" / "events.sqlite3"
    before = {row["request_id"] for row in store_rows(store, "status = 'verified'")}
    result = cli(
        "send-test",
        "--url",
        f"{listener.url}/webhooks/stock",
        "--count",
        "200",
        "--concurrency",
        "8",
        "--items",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert "by answer: 200 ok: 200" in result.stdout
    assert "answered requests/s" in result.stdout and "p99" in result.stdout
    after = {row["request_id"] for row in store_rows(store, "status = 'verified'")}
    assert len(after - before) == 200


def test_load_run_against_nothing_fails(cli: Cli) -> None:
    """A load run where nothing answers exits 1 with the reason."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = cli("send-test", "--url", f"http://127.0.0.1:{port}/x", "--count", "20000")
    assert result.exit_code == 1
    assert "nothing is listening" in result.stderr
    assert "none answered, so no rate" in result.stdout  # and no requests/s figure
    assert "requests/s" not in result.stdout
    sent = int(result.stdout.split(" of 20000")[0])
    assert sent < 100  # it gave up early, instead of trying all 20,000


def test_load_run_counts_duplicates_apart(cli: Cli, listener: ListenProcess) -> None:
    """The summary counts by the receiver's answer: one ok, the rest duplicates."""
    result = cli(
        "send-test", "--url", f"{listener.url}/webhooks/stock", "--count", "5",
        "--concurrency", "1", "--request-id", "same-id-5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "by answer: 200 duplicate: 4, 200 ok: 1" in result.stdout


class _OldServer(BaseHTTPRequestHandler):
    """HTTP/1.0, no Content-Length, a new connection for every request; or chunked."""

    chunked = False

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        if self.chunked:
            self.protocol_version = "HTTP/1.1"
            self.send_response(202)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n0\r\n\r\n")
            return
        self.send_response(201)
        self.end_headers()
        self.wfile.write(b"created")

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("chunked", [False, True])
def test_load_run_reads_any_answer_framing(cli: Cli, chunked: bool) -> None:
    """Answers ended by closing the connection, or chunked, are read whole; the next
    request goes out on a new connection when the server closed the last one."""
    handler = type("Handler", (_OldServer,), {"chunked": chunked})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        result = cli("send-test", "--url", url, "--count", "30", "--concurrency", "3")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert f"by answer: {202 if chunked else 201}: 30" in result.stdout


def test_load_runs_attempt_no_import_per_request(listener: ListenProcess) -> None:
    """httpx looked up `sniffio` on every request (about 22,000 failed imports in a
    2,000-request run); the load generator imports nothing once it runs."""
    import asyncio
    import itertools
    import sys

    from avasam_cli.loadgen import LoadResult, run_load

    attempts: list[str] = []

    class Spy:
        def find_spec(self, name: str, *_: object) -> None:
            attempts.append(name)

    def bodies(prefix: str) -> Iterator[bytes]:
        for n in itertools.count():
            yield signed_body(request_id=f"{prefix}-{n}")

    url = f"{listener.url}/webhooks/stock"
    warm = LoadResult()
    asyncio.run(run_load(url, bodies("warm"), 5, 2, 10, warm))  # first use may import
    result = LoadResult()
    sys.meta_path.insert(0, Spy())  # type: ignore[arg-type]
    try:
        asyncio.run(run_load(url, bodies("run"), 300, 4, 10, result))
    finally:
        del sys.meta_path[0]
    assert result.statuses == {"200 ok": 300}
    assert attempts == []


def test_send_test_and_replay_take_the_listener_port(
    cli: Cli, listener: ListenProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--port reaches a listener on another port than the profile's; the error for an
    empty port names it and suggests --port."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    sent = cli("send-test", "--port", str(listener.port), "--request-id", "port-flag-1")
    assert sent.exit_code == 0, sent.output
    monkeypatch.setenv("AVASAM_HOME", str(listener.home))
    replayed = cli("events", "replay", "port-flag-1", "--port", str(listener.port))
    assert replayed.exit_code == 0, replayed.output
    assert "duplicate" in replayed.stdout
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        empty = sock.getsockname()[1]
    missing = cli("send-test", "--port", str(empty))
    assert missing.exit_code == 1
    assert f"(port {empty})" in missing.stderr and "--port" in missing.stderr
    both = cli("send-test", "--port", "1", "--url", "http://127.0.0.1:1/webhooks/stock")
    assert both.exit_code == 2


def test_the_kind_follows_the_url(
    cli: Cli, listener: ListenProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--url .../webhooks/price sends a price update unless a kind is given."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    result = cli("send-test", "--url", f"{listener.url}/webhooks/price", "--request-id", "k-1")
    assert result.exit_code == 0, result.output
    forced = cli("send-test", "stock", "--url", f"{listener.url}/webhooks/price")
    assert forced.exit_code == 1  # a stock body on the price endpoint: refused, as asked


def test_verify_says_how_much_leeway_an_old_body_needs(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An expired body with a good signature: said so, with the --leeway that accepts it."""
    import re
    from datetime import UTC, datetime, timedelta

    from avasam_cli.webhooks import sign

    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    body = json.loads(signed_body(request_id="old-1"))
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    body["token"] = sign.sign_token("old-1", TOKEN, now=two_hours_ago)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(body))
    refused = cli("verify", str(path))
    assert refused.exit_code == 1
    assert "The signature itself is valid" in refused.stdout
    needed = re.search(r"--leeway (\d+)", refused.stdout)
    assert needed is not None and 6900 < int(needed[1]) < 7000
    assert cli("verify", str(path), "--leeway", needed[1]).exit_code == 0
    forged = dict(body, token=sign.sign_token("old-1", "another" * 6, now=two_hours_ago))
    path.write_text(json.dumps(forged))
    assert "--leeway" not in cli("verify", str(path)).stdout  # a bad signature is not a time


def test_single_send_times_the_request_not_the_client(
    cli: Cli, listener: ListenProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latency shown runs from the request being written to the answer: a client that
    takes 1 s to make (TLS context, pools) does not show as 1 s."""
    import time

    import httpx

    made = httpx.Client.__init__

    def slow_to_make(self: httpx.Client, *args: object, **kwargs: object) -> None:
        time.sleep(1.0)
        made(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.Client, "__init__", slow_to_make)
    result = cli("send-test", "--url", f"{listener.url}/webhooks/stock")
    assert result.exit_code == 0, result.output
    status, _, milliseconds = result.stdout.split()[:3]
    assert status == "200"
    assert float(milliseconds) < 1000, result.stdout
