"""The API client and `avasam ack` against a real local stand-in for Avasam;
error mapping through an injected transport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from avasam_cli.api.client import REFUSED_CREDENTIALS, AvasamClient, TokenCache, parse_expiry
from avasam_cli.errors import ApiError, NetworkError
from avasam_cli.paths import locations
from avasam_cli.store.base import open_store
from tests.conftest import Cli
from tests.helpers import at_terminal, store_event
from tests.standin import Avasam

ACK = "/api-seller/Product/AcknowledgeStockUpdate"
TOKEN_PATH = "/api/auth/request-token"


def store_update(request_id: str, kind: str = "stock", status: str = "verified") -> None:
    store_event(locations().store_file, request_id, kind, status)


def test_expiry_in_avasams_format_parses() -> None:
    """Seven fractional digits and an offset, as Avasam writes them."""
    assert parse_expiry("2021-12-22T17:36:19.8066912+00:00") == pytest.approx(1640194579.806691)


def test_ack_sends_the_documented_requests(cli: Cli, avasam: Avasam) -> None:
    """Exact paths, JSON bodies, the raw token (auto's first form) and User-Agent."""
    result = cli("ack", "req-1", "req-2")
    assert result.exit_code == 0, result.output
    assert avasam.paths() == [TOKEN_PATH, ACK, ACK]
    token_call, first, second = avasam.received
    assert token_call.body == {"consumer_key": avasam.consumer_key, "secret_key": avasam.secret_key}
    assert first.body == {"requestId": "req-1"} and second.body == {"requestId": "req-2"}
    assert first.headers["Authorization"] == "access-0001"
    assert first.headers["User-Agent"].startswith("avasam-cli/")
    assert "acknowledged  req-1" in result.stdout


def test_token_is_cached_across_runs(cli: Cli, avasam: Avasam) -> None:
    """Two ack runs share one access token, cached at mode 0600."""
    cli("ack", "a")
    cli("ack", "b")
    assert avasam.paths().count(TOKEN_PATH) == 1
    cache = locations().cache_dir / "tokens.json"
    assert cache.stat().st_mode & 0o777 == 0o600
    assert avasam.secret_key not in cache.read_text()


def test_too_open_token_cache_is_warned_about_and_tightened(cli: Cli, avasam: Avasam) -> None:
    """A token cache readable by others: a warning on read, mode 0600 after the next write."""
    cli("ack", "a")
    cache = locations().cache_dir / "tokens.json"
    cache.chmod(0o644)
    avasam.revoked.add("access-0001")  # forces a new token, hence a write
    result = cli("ack", "b")
    assert "readable by other users" in result.stderr
    assert cache.stat().st_mode & 0o777 == 0o600


def test_new_token_after_expiry(cli: Cli, avasam: Avasam) -> None:
    """A token within the safety margin of its expiry is requested again."""
    avasam.token_lifetime = timedelta(seconds=30)
    cli("ack", "a")
    cli("ack", "b")
    assert avasam.paths().count(TOKEN_PATH) == 2


def test_new_token_after_401(cli: Cli, avasam: Avasam) -> None:
    """A 401 clears the cached token and retries once with a new one."""
    cli("ack", "a")
    avasam.revoked.add("access-0001")
    result = cli("ack", "b")
    assert result.exit_code == 0, result.output
    assert avasam.paths()[-3:] == [ACK, TOKEN_PATH, ACK]
    assert avasam.received[-1].headers["Authorization"] == "access-0002"


@pytest.mark.parametrize("failure", [503, "drop", 429])
def test_retries_transient_failures(cli: Cli, avasam: Avasam, failure: int | str) -> None:
    """503, 429 and a dropped connection are retried; the ack then succeeds."""
    avasam.ack_script = [failure]
    result = cli("ack", "a")
    assert result.exit_code == 0, result.output
    assert avasam.paths().count(ACK) == 2


def test_gives_up_after_three_tries(cli: Cli, avasam: Avasam) -> None:
    """Three 503s: the id is reported failed, exit 1, and the failure is stored."""
    store_update("a")
    avasam.ack_script = [503, 503, 503]
    result = cli("ack", "a")
    assert result.exit_code == 1
    assert avasam.paths().count(ACK) == 3
    assert "FAILED" in result.stdout and "503" in result.stdout
    with open_store(locations().store_file) as store:
        row = store.find("a")
        assert row is not None and row.ack_status == "failed"


def test_ack_of_a_test_event_is_refused(cli: Cli, avasam: Avasam) -> None:
    """send-test's updates are never acknowledged, by id either: Avasam did not send them."""
    store_event(locations().store_file, "t-1", headers_json='[["x-avasam-cli-test", "1"]]')
    result = cli("ack", "t-1")
    assert result.exit_code == 2
    assert "t-1: a test event (from `avasam send-test`)" in result.stderr
    assert ACK not in avasam.paths()


def test_ack_pending(cli: Cli, avasam: Avasam) -> None:
    """--pending acknowledges stored verified stock updates once, and records it."""
    store_update("s-1")
    store_update("s-2")
    store_update("p-1", kind="price")
    store_update("r-1", status="rejected")
    result = cli("ack", "--pending")
    assert result.exit_code == 0, result.output
    assert [r.body for r in avasam.received if r.path == ACK] == [
        {"requestId": "s-1"},
        {"requestId": "s-2"},
    ]
    with open_store(locations().store_file) as store:
        row = store.find("s-1")
        assert row is not None and row.ack_status == "acknowledged" and row.ack_at
    again = cli("ack", "--pending")
    assert "Nothing to acknowledge" in again.stderr


def test_refused_credentials(cli: Cli, avasam: Avasam, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong keys: the message says where to check them; the secret is never shown."""
    monkeypatch.setenv("AVASAM_SECRET_KEY", "sk-wrong-secret-9999")
    result = cli("ack", "a")
    assert result.exit_code == 1
    assert "Settings > User management > API keys" in result.stderr
    assert "sk-wrong-secret-9999" not in result.output


def test_missing_keys_is_configuration_error(cli: Cli) -> None:
    """No consumer key: exit 2 naming `avasam configure`."""
    result = cli("ack", "a")
    assert result.exit_code == 2
    assert "avasam configure" in result.stderr


def test_base_url_flag_wins(cli: Cli, avasam: Avasam, monkeypatch: pytest.MonkeyPatch) -> None:
    """--base-url points ack at any server."""
    monkeypatch.setenv("AVASAM_BASE_URL", "http://127.0.0.1:9/unused")
    assert cli("ack", "a", "--base-url", avasam.url).exit_code == 0


# --- Error mapping, through an injected transport ------------------------------------
def client(tmp_path: Path, handler: object) -> AvasamClient:
    return AvasamClient(
        "https://avasam.test",
        "ck",
        "sk-secret-value",
        TokenCache(tmp_path / "t.json"),
        "p",
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        sleep=lambda _: None,
    )


def token_answer() -> httpx.Response:
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return httpx.Response(200, json={"access_token": "tok-123456", "expires_at": expires})


def test_error_mapping(tmp_path: Path) -> None:
    """Timeouts, unreachable hosts, refused keys and odd answers become our errors."""

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": "no"})

    def odd(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return token_answer()
        return httpx.Response(418, text="I am a teapot " * 40)

    cases = [
        (timeout, NetworkError, "did not answer in time"),
        (unreachable, NetworkError, "cannot reach"),
        (refused, ApiError, REFUSED_CREDENTIALS),
        (odd, ApiError, "unexpected answer"),
    ]
    for handler, kind, message in cases:
        with pytest.raises(kind) as caught:
            client(tmp_path, handler).acknowledge("r")
        assert message in caught.value.message
        assert "sk-secret-value" not in caught.value.message
        assert "tok-123456" not in caught.value.message
        assert len(caught.value.message) < 400


@pytest.mark.parametrize(
    ("value", "wait"),
    # Plain ASCII seconds are honoured; anything else ("\u00b2" passes isdigit) is back-off.
    [("7", 7.0), ("\u00b2", 0.5), ("1.5", 0.5), ("-3", 0.5), ("soon", 0.5), ("", 0.5)],
)
def test_retry_after(tmp_path: Path, value: str, wait: float) -> None:
    """A 429 with Retry-After waits that long before the next try, if it is seconds."""
    waits: list[float] = []
    header = [(b"retry-after", value.encode("latin-1"))]
    answers = iter([httpx.Response(429, headers=header), httpx.Response(200)])

    def handler(request: httpx.Request) -> httpx.Response:
        return token_answer() if request.url.path == TOKEN_PATH else next(answers)

    api = client(tmp_path, handler)
    api.sleep = waits.append
    api.acknowledge("r")
    assert waits == [wait]


def test_unexpected_token_answer(tmp_path: Path) -> None:
    """A token endpoint answering something else than a token is a clear ApiError."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    with pytest.raises(ApiError) as caught:
        client(tmp_path, handler).access_token()
    assert "unexpected answer" in caught.value.message


def test_ack_pending_under_429_is_bounded(
    cli: Cli, avasam: Avasam, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rate-limited run says its bound up front, stops there, and leaves the rest pending."""
    monkeypatch.setattr("avasam_cli.api.client.MAX_RETRY_AFTER", 30.0)
    waits: list[float] = []
    monkeypatch.setattr("avasam_cli.api.client.WaitBudget.pause", waits.append)
    for n in range(6):
        store_update(f"s-{n}")
    avasam.ack_script = [429] * 100  # each answer says Retry-After: 1
    result = cli("ack", "--pending", "--max-wait", "3")
    assert result.exit_code == 1
    assert "Acknowledging 6 stock updates; retries wait at most 3 s in all" in result.stderr
    assert waits == [1.0, 1.0, 1.0]
    assert "0 acknowledged, 1 failed, 5 left pending" in result.stderr
    assert "avasam ack --pending" in result.stderr
    with open_store(locations().store_file) as store:
        assert store.pending_acknowledgements() == [f"s-{n}" for n in range(6)]
        second = store.find("s-1")
        assert second is not None and second.ack_status is None  # not marked failed


def test_ack_pending_goes_through_the_outbox_with_limit_and_since(cli: Cli, avasam: Avasam) -> None:
    """`ack --pending --limit N` acknowledges the oldest N through outbox jobs (shown by
    `deliveries list`); an update received before --since is left alone."""
    for n in range(4):
        store_update(f"o-{n}")
    result = cli("ack", "--pending", "--limit", "2")
    assert result.exit_code == 0, result.output
    acked = [r.body["requestId"] for r in avasam.received if "Acknowledge" in r.path]
    assert acked == ["o-0", "o-1"]
    with open_store(locations().store_file) as store:
        jobs = {row.request_id: row.state for row in store.deliveries(limit=10)}
    assert jobs == {"o-0": "delivered", "o-1": "delivered", "o-2": "pending", "o-3": "pending"}
    assert "2 other jobs in the outbox wait" in result.stderr
    later = cli("ack", "--pending", "--since", "1h")  # the stored updates are older
    assert later.exit_code == 0 and "Nothing to acknowledge" in later.stderr
    rest = cli("ack", "--pending")
    assert rest.exit_code == 0
    acked = [r.body["requestId"] for r in avasam.received if "Acknowledge" in r.path]
    assert acked == ["o-0", "o-1", "o-2", "o-3"]
    assert cli("ack", "x", "--limit", "2").exit_code == 2


def test_ack_pending_asks_before_a_big_run_on_a_terminal(
    isolated_home: Path, avasam: Avasam
) -> None:
    """Over 1,000 to send, at a terminal: asked first; "n" sends nothing, exit 1."""
    import os

    from avasam_cli.store.events import Event

    with open_store(locations().store_file) as store:
        store.insert([
            Event("2026-11-27T10:00:00+00:00", "stock", "verified", 200, "[]", b"{}",
                  request_id=f"big-{n}", item_count=1)
            for n in range(1001)
        ])  # fmt: skip
    run = at_terminal(["ack", "--pending"], os.environ.copy(), b"[y/N]", b"n\n")
    assert b"Acknowledge 1,001 stock updates (one API call each)?" in run.prompt
    assert run.code == 1 and b"nothing was acknowledged" in run.err
    assert not [r for r in avasam.received if "Acknowledge" in r.path]
    with open_store(locations().store_file) as store:
        assert store.delivery_counts() == {"pending": 1001}  # queued, released, not sent
