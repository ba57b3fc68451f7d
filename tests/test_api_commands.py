"""The token sent either way (`auth_scheme`), `avasam api`, `stock list` and `reconcile`,
against a real local stand-in for Avasam that can be made strict."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from avasam_cli.api.reconcile import newest_by_sku
from avasam_cli.paths import locations
from avasam_cli.store.base import open_store
from avasam_cli.store.events import Event, Sighting
from avasam_cli.webhooks import sign
from tests.conftest import Cli
from tests.helpers import TOKEN
from tests.standin import ACK_PATH, STOCK_PATH, TOKEN_PATH, Avasam


def cached_tokens() -> dict[str, dict[str, object]]:
    document: dict[str, dict[str, object]] = json.loads(
        (locations().cache_dir / "tokens.json").read_text()
    )
    return document


# --- How the token is sent ------------------------------------------------------------
@pytest.mark.parametrize("strict", ["bearer", "raw"])
def test_auto_scheme_is_learned_and_reused(cli: Cli, avasam: Avasam, strict: str) -> None:
    """With either strict server, `ack` succeeds; the next run sends the learned form first."""
    avasam.scheme = strict
    first = cli("ack", "req-1")
    assert first.exit_code == 0, first.output
    assert avasam.refused_calls() == (1 if strict == "bearer" else 0)  # raw is tried first
    assert next(iter(cached_tokens().values()))["scheme"] == strict
    refused_before = avasam.refused_calls()
    second = cli("ack", "req-2")
    assert second.exit_code == 0, second.output
    assert avasam.refused_calls() == refused_before  # no failed call first
    assert avasam.paths()[-1] == ACK_PATH and avasam.paths().count(TOKEN_PATH) == 1
    expected = "Bearer access-0001" if strict == "bearer" else "access-0001"
    assert avasam.received[-1].headers["Authorization"] == expected


@pytest.mark.parametrize("strict", ["bearer", "raw"])
def test_api_learns_the_scheme_too(cli: Cli, avasam: Avasam, strict: str) -> None:
    """`avasam api` goes through the same client: it succeeds and teaches the next run."""
    avasam.scheme = strict
    avasam.stock = {"A": 1}
    assert cli("api", STOCK_PATH, "-F", "limit=1", "-F", "page=0").exit_code == 0
    refused = avasam.refused_calls()
    result = cli("api", STOCK_PATH, "-F", "limit=1", "-F", "page=0")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"SKU": "A", "Stock": 1}]
    assert avasam.refused_calls() == refused


def test_forced_scheme_sends_only_that_form(
    cli: Cli, avasam: Avasam, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AVASAM_AUTH_SCHEME=raw sends the raw token at once; a forced wrong form fails clearly."""
    avasam.scheme = "raw"
    monkeypatch.setenv("AVASAM_AUTH_SCHEME", "raw")
    assert cli("ack", "a").exit_code == 0
    assert avasam.refused_calls() == 0
    monkeypatch.setenv("AVASAM_AUTH_SCHEME", "bearer")
    failed = cli("ack", "b")
    assert failed.exit_code == 1
    assert "401" in failed.stdout


def test_neither_form_accepted_is_reported(cli: Cli, avasam: Avasam) -> None:
    """When a new token is refused both ways, the error names both forms and what to do."""
    avasam.scheme = "neither"
    result = cli("api", STOCK_PATH, "-F", "limit=1")
    assert result.exit_code == 1
    assert "in both forms" in result.stderr and "--auth-scheme" in result.stderr
    assert "Traceback" not in result.output


def test_bad_auth_scheme_is_a_configuration_error(cli: Cli) -> None:
    """configure --auth-scheme takes auto, bearer or raw only."""
    result = cli("configure", "--auth-scheme", "basic")
    assert result.exit_code == 2
    assert "auto, bearer, raw" in result.stderr


def test_doctor_shows_scheme_and_customer_id(cli: Cli, avasam: Avasam) -> None:
    """doctor says which form Avasam accepted (with a read-only call) and the customer id."""
    avasam.scheme = "raw"
    avasam.customer_id = 4242
    cli("configure", "--verification-token", TOKEN)
    result = cli("doctor")
    assert "credentials accepted: accepted by" in result.stdout
    assert "(customer id 4242)" in result.stdout
    assert (
        "PASS  API accepts the access token: Authorization: <token> accepted (auth_scheme auto "
        "learned it on " in result.stdout
    )
    assert next(iter(cached_tokens().values()))["customer_id"] == "4242"
    stock_calls = [r for r in avasam.received if r.path == STOCK_PATH]
    assert stock_calls[-1].body == {"limit": 1, "page": 0}


# --- avasam api ---------------------------------------------------------------------
def test_api_get_and_post(cli: Cli, avasam: Avasam) -> None:
    """GET without a body, POST with one; the JSON answer on stdout, compact in a pipe."""
    got = cli("api", "/apiseeker/ProductModule/GetInventoryListWithFilter")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["method"] == "GET"
    posted = cli("api", "apiseeker/Products/GetSellerProductList", "--data", '{"Page": 0}')
    assert posted.exit_code == 0, posted.output
    assert posted.stdout.count("\n") == 1  # compact: one line
    answer = json.loads(posted.stdout)
    assert (answer["method"], answer["received"]) == ("POST", {"Page": 0})


def test_api_data_from_file_and_stdin_and_fields(cli: Cli, avasam: Avasam, tmp_path: Path) -> None:
    """--data @FILE, --data -, typed --field and string --raw-field all make the body."""
    body = tmp_path / "body.json"
    body.write_text('{"from": "file"}')
    assert json.loads(cli("api", "/apiseeker/x", "-d", f"@{body}").stdout)["received"] == {
        "from": "file"
    }
    from_stdin = cli("api", "/apiseeker/x", "-d", "-", input='{"from": "stdin"}')
    assert json.loads(from_stdin.stdout)["received"] == {"from": "stdin"}
    fields = cli("api", "/apiseeker/x", "-F", "limit=10", "-F", "on=true", "-f", "page=0")
    assert json.loads(fields.stdout)["received"] == {"limit": 10, "on": True, "page": "0"}
    query = cli("api", "/apiseeker/x", "-X", "GET", "-F", "limit=10")
    assert json.loads(query.stdout)["path"] == "/apiseeker/x?limit=10"


def test_api_http_errors(cli: Cli, avasam: Avasam) -> None:
    """A 4xx: exit 1 with the answer's excerpt; a 5xx is retried by the client."""
    avasam.data_script = [404]
    missing = cli("api", "/apiseeker/nope", "--include")
    assert missing.exit_code == 1
    assert "answered 404" in missing.stderr and "HTTP/1.1 404" in missing.stderr
    avasam.data_script = [503]
    retried = cli("api", "/apiseeker/flaky")
    assert retried.exit_code == 0, retried.output
    assert avasam.paths().count("/apiseeker/flaky") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/apiseeker/x", "-d", "{nope"], "not valid JSON"),
        (["https://app.avasam.com/apiseeker/x"], "not a URL"),
        (["/apiseeker/x", "-d", "{}", "-F", "a=1"], "not both"),
        (["/apiseeker/x", "-F", "novalue"], "key=value"),
        (["/apiseeker/x", "-d", "@/no/such/file.json"], "cannot read"),
    ],
)
def test_api_usage_errors(cli: Cli, args: list[str], message: str) -> None:
    """Bad input is exit 2 with a message naming the fix, before any call."""
    result = cli("api", *args)
    assert result.exit_code == 2
    assert message in result.stderr


# --- avasam stock list --------------------------------------------------------------
def stock_of(count: int) -> dict[str, int]:
    return {f"SKU-{index:05d}": index % 50 for index in range(count)}


def test_stock_list_follows_every_page(cli: Cli, avasam: Avasam) -> None:
    """2,500 SKUs over pages of 1,000: every row, pages 0, 1 and 2, as JSON lines."""
    avasam.stock = stock_of(2500)
    result = cli("stock", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2500 and {r["sku"]: r["stock"] for r in rows} == avasam.stock
    pages = [r.body["page"] for r in avasam.received if r.path == STOCK_PATH]
    assert pages == [0, 1, 2]


def test_stock_list_filters_and_csv(cli: Cli, avasam: Avasam) -> None:
    """--sku filters (a SKU not listed is exit 1, named, after the rows); --csv has a
    header row."""
    avasam.stock = stock_of(30)
    result = cli("stock", "list", "--sku", "SKU-00003", "--sku", "GONE", "--csv")
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == ["sku,stock", "SKU-00003,3"]
    assert "not in Avasam's stock list: GONE" in result.stderr


# --- avasam reconcile ---------------------------------------------------------------
def store_stock_update(items: dict[str, int], updated_on: datetime, received: str) -> None:
    """A verified stock update in the store, as the listener would have stored it."""
    on = sign.iso_utc(updated_on)
    data = [sign.make_item("stock", sku, on, quantity) for sku, quantity in items.items()]
    body = sign.encode(sign.build_body(data, TOKEN, now=updated_on))
    with open_store(locations().store_file) as store:
        store.insert(
            [
                Event(
                    received_at=received,
                    kind="stock",
                    status="verified",
                    http_status=200,
                    headers_json="[]",
                    body=body,
                    request_id=json.loads(body)["requestId"],
                    item_count=len(data),
                )
            ]
        )


NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_reconcile_agrees(cli: Cli, avasam: Avasam) -> None:
    """Every SKU's last webhook matches Avasam's stock: exit 0."""
    avasam.stock = {"A": 5, "B": 7}
    store_stock_update({"A": 5, "B": 7}, NOW, "2026-11-28T09:00:01.000+00:00")
    result = cli("reconcile")
    assert result.exit_code == 0, result.output
    assert "2 compared" in result.stderr and "2 agree, 0 differ" in result.stderr


def test_reconcile_reports_changes_behind_the_stores_back(cli: Cli, avasam: Avasam) -> None:
    """Exactly the SKUs changed at Avasam are reported, plus the SKUs never received; exit 1."""
    avasam.stock = {"A": 5, "B": 7, "C": 1}
    store_stock_update({"A": 5, "B": 7, "C": 1}, NOW, "2026-11-28T09:00:01.000+00:00")
    avasam.stock.update({"B": 3, "NEW": 9})
    result = cli("reconcile", "--json")
    assert result.exit_code == 1
    *lines, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["sku"], r["status"]) for r in lines] == [("B", "differs"), ("NEW", "never_received")]
    assert (lines[0]["avasam_stock"], lines[0]["webhook_quantity"]) == (3, 7)
    assert summary["summary"]["differs"] == 1 and summary["summary"]["never_received"] == 1
    human = cli("reconcile")
    assert human.exit_code == 1
    assert "never received by stock webhook: NEW" in human.stderr


def test_reconcile_newest_update_wins_and_since(cli: Cli, avasam: Avasam) -> None:
    """The newest updatedOn wins even if it arrived first; --since leaves older webhooks out."""
    avasam.stock = {"A": 9}
    store_stock_update({"A": 9}, NOW, "2026-11-28T09:00:05.000+00:00")
    store_stock_update({"A": 1}, NOW - timedelta(hours=1), "2026-11-28T09:00:06.000+00:00")
    assert cli("reconcile").exit_code == 0
    later = cli("reconcile", "--since", "2026-11-28T09:00:06", "--csv")
    assert later.exit_code == 1
    assert later.stdout.splitlines()[1].startswith("A,differs,9,1,")
    assert cli("reconcile", "--since", "yesterday").exit_code == 2


def test_newest_by_sku_breaks_ties_by_arrival() -> None:
    """Equal updatedOn: the later arrival wins."""
    first = Sighting("A", 1, "2026-11-28T09:00:00+00:00", "2026-11-28T09:00:01", "r1")
    second = Sighting("A", 2, "2026-11-28T09:00:00.0000000+00:00", "2026-11-28T09:00:02", "r2")
    assert newest_by_sku([second, first])["A"].request_id == "r2"


# --- The token cache, against careless files and hostile servers ----------------------
def test_changed_keys_never_use_the_old_token(
    cli: Cli, avasam: Avasam, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the keys change, the cached token of the old keys is not used."""
    assert cli("ack", "a").exit_code == 0
    monkeypatch.setenv("AVASAM_CONSUMER_KEY", "other")
    monkeypatch.setenv("AVASAM_SECRET_KEY", "wrong")
    result = cli("ack", "b")
    assert result.exit_code == 1
    assert "consumer key or secret key was refused" in result.stderr
    assert [r.body for r in avasam.received if r.path == ACK_PATH] == [{"requestId": "a"}]


def test_a_new_keys_token_replaces_the_old_entry(
    cli: Cli, avasam: Avasam, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries of the same profile and base URL under other keys are dropped on write."""
    assert cli("ack", "a").exit_code == 0
    avasam.consumer_key = "ck-rotated"
    monkeypatch.setenv("AVASAM_CONSUMER_KEY", "ck-rotated")
    assert cli("ack", "b").exit_code == 0
    assert len(cached_tokens()) == 1


@pytest.mark.parametrize("token", ["", "t\u00e9l\u00e9", "abc\r\nX-Injected: 1", "two words"])
def test_unsendable_token_from_the_server(cli: Cli, avasam: Avasam, token: str) -> None:
    """An empty, non-ASCII, CRLF or spaced token: a clear error, nothing cached, no traceback."""
    avasam.token_override = token
    result = cli("ack", "a")
    assert result.exit_code == 1
    assert "cannot be sent in a header" in result.output
    assert "Traceback" not in result.output
    assert not (locations().cache_dir / "tokens.json").exists()


def test_unparsable_expiry_never_shows_the_token(cli: Cli, avasam: Avasam) -> None:
    """A token answer with an expiry we cannot read: the error does not print the token."""
    avasam.expires_override = "next tuesday"
    result = cli("ack", "a")
    assert result.exit_code == 1
    assert "unexpected answer" in result.output and "access-0001" not in result.output


@pytest.mark.parametrize(
    "entry",
    [
        {"access_token": "bad\r\ntoken", "expires_at": 9e12},
        {"access_token": "ok-token", "expires_at": float("inf")},
        {"access_token": "ok-token", "expires_at": float("nan")},
        "not an object",
    ],
)
def test_bad_cached_entries_are_dropped(cli: Cli, avasam: Avasam, entry: object) -> None:
    """A cached token that cannot be used (CRLF, a non-finite expiry, junk) is replaced."""
    assert cli("ack", "a").exit_code == 0
    path = locations().cache_dir / "tokens.json"
    (key,) = cached_tokens()
    path.write_text(json.dumps({key: entry}))
    assert cli("ack", "b").exit_code == 0
    assert avasam.received[-1].headers["Authorization"] == "access-0002"


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev-zero"])
def test_token_cache_that_is_not_a_file(cli: Cli, avasam: Avasam, kind: str) -> None:
    """A folder, a FIFO or a link to /dev/zero: exit 2 with the fix, never a hang."""
    import os

    path = locations().cache_dir / "tokens.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    result = cli("ack", "a")
    assert result.exit_code == 2
    assert "token cache" in result.stderr and "remove it" in result.stderr


def test_answers_echoing_secrets_are_scrubbed(cli: Cli, avasam: Avasam) -> None:
    """An API echoing the keys or the token in an error: they are never printed or stored."""
    store_stock_update({"A": 1}, NOW, "2026-11-28T09:00:01.000+00:00")
    avasam.ack_script = ["echo"]
    with open_store(locations().store_file) as store:
        (pending,) = store.pending_acknowledgements()
    acked = cli("ack", "--pending")
    assert acked.exit_code == 1
    assert "access-0001" not in acked.output and "****" in acked.output
    with open_store(locations().store_file) as store:
        found = store.find(pending)
    assert found is not None and "access-0001" not in (found.ack_detail or "")
    avasam.echo_token_request = True
    (locations().cache_dir / "tokens.json").unlink()
    doctor = cli("doctor")
    assert avasam.secret_key not in doctor.output and avasam.consumer_key not in doctor.output


def test_base_url_password_is_never_shown(
    cli: Cli, avasam: Avasam, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`user:secret@` in a base URL is masked in config show, doctor and error messages."""
    with_password = avasam.url.replace("http://", "http://user:s3cr3t-pw@")
    monkeypatch.setenv("AVASAM_BASE_URL", with_password)
    shown = cli("config", "show")
    assert "user:****@" in shown.stdout and "s3cr3t-pw" not in shown.output
    doctor = cli("doctor", "--offline")
    assert "s3cr3t-pw" not in doctor.output
    online = cli("doctor")
    assert "s3cr3t-pw" not in online.output and "user:****@" in online.stdout
    avasam.data_script = [404]
    failed = cli("api", "/apiseeker/x")
    assert failed.exit_code == 1 and "s3cr3t-pw" not in failed.output


def test_a_trickling_server_cannot_hold_a_command(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that sends one byte at a time: each try ends at the request deadline, and
    the command fails with a clear error instead of waiting for minutes."""
    import socket
    import threading
    import time

    monkeypatch.setattr("avasam_cli.api.client.REQUEST_DEADLINE", 1.0)
    monkeypatch.setattr("avasam_cli.api.client.BACKOFF_SECONDS", 0.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 100:
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AVASAM_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("AVASAM_CONSUMER_KEY", "ck-1")
    monkeypatch.setenv("AVASAM_SECRET_KEY", "sk-1")
    start = time.monotonic()
    try:
        result = cli("ack", "a")
    finally:
        stop.set()
        server.close()
    assert result.exit_code == 1
    assert "did not answer in time" in result.output
    assert time.monotonic() - start < 10
