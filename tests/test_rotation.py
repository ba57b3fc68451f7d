"""Trust across hops: rotating the verification token without losing a webhook, and
forwards signed the Standard Webhooks way (checked with the real `standardwebhooks`)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from avasam_cli.config import ConfigFile
from avasam_cli.paths import locations
from avasam_cli.receiver.app import TOKEN_LOOK_INTERVAL
from avasam_cli.rotation import FORWARD_SECRET, Rolling, new_forward_secret, rolling_from
from avasam_cli.store.base import open_store
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import Plan
from avasam_cli.webhooks.contract import CURRENT, PREVIOUS, Reason, VerificationError
from avasam_cli.webhooks.verify import verify_rolling
from tests.conftest import Cli
from tests.helpers import JSON_HEADERS, ListenProcess, RecordingShop, free_port, signed_body

OLD = "old-verification-token-0123456789-abcdefghijkl"
NEW = "new-verification-token-0123456789-abcdefghijkl"


def profile(home: Path) -> dict[str, str]:
    return ConfigFile(home / "config" / "config.toml").profile("default")


# --- The rolling token, pure ------------------------------------------------------------
def test_the_previous_token_counts_only_during_the_grace() -> None:
    """Signed with the previous token: accepted as `previous` until the grace ends, then
    refused 401 saying when it stopped counting; the current one is `current`; any other
    key is a plain bad signature."""
    now = time.time()
    tokens = Rolling(NEW, OLD, now + 60)
    assert verify_rolling(signed_body(key=NEW), "stock", tokens, now=now).token == CURRENT
    assert verify_rolling(signed_body(key=OLD), "stock", tokens, now=now).token == PREVIOUS
    with pytest.raises(VerificationError) as late:
        verify_rolling(signed_body(key=OLD), "stock", tokens, now=now + 61)
    assert late.value.reason is Reason.BAD_SIGNATURE and late.value.http_status == 401
    assert "previous verification token, which stopped counting at" in late.value.detail
    with pytest.raises(VerificationError) as other:
        verify_rolling(signed_body(key="x" * 40), "stock", tokens, now=now)
    assert "previous" not in other.value.detail


def test_the_receiver_looks_for_a_new_token_often_enough() -> None:
    """The promise is 'within 5 seconds': the receiver looks at the profile every second."""
    assert TOKEN_LOOK_INTERVAL <= 1.0


# --- configure --rotate-verification-token -------------------------------------------------
def test_rotate_prints_the_new_token_once_and_keeps_the_old(cli: Cli, isolated_home: Path) -> None:
    """The new token on stdout (only there), the old one kept as previous until now + the
    grace, both masked in `config show` with the end of the grace."""
    assert cli("configure", "--verification-token", OLD).exit_code == 0
    before = time.time()
    rotated = cli("configure", "--rotate-verification-token", "--grace", "2h")
    assert rotated.exit_code == 0, rotated.output
    saved = profile(isolated_home)
    new = saved["verification_token"]
    assert rotated.stdout.strip() == new and new != OLD and len(new) >= 43
    assert saved["previous_verification_token"] == OLD
    until = datetime.fromisoformat(saved["previous_token_until"]).timestamp()
    assert before + 7200 - 5 <= until <= time.time() + 7200
    assert "still accepted until" in rotated.stderr and new not in rotated.stderr
    shown = cli("config", "show").stdout
    assert "****" + OLD[-4:] in shown and "****" + new[-4:] in shown and OLD not in shown
    assert saved["previous_token_until"] in shown


def test_rotate_refuses_what_it_cannot_do(cli: Cli) -> None:
    """No token yet, --grace alone, a bad --grace, a token given beside: exit 2."""
    first = cli("configure", "--rotate-verification-token")
    assert first.exit_code == 2 and "--generate-verification-token" in first.stderr
    assert cli("configure", "--verification-token", OLD).exit_code == 0
    for args in (
        ["--grace", "1h"],
        ["--rotate-verification-token", "--grace", "soon"],
        ["--rotate-verification-token", "--verification-token", NEW],
    ):
        result = cli("configure", *args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def test_a_running_listener_takes_up_a_rotation(cli: Cli, isolated_home: Path) -> None:
    """Old accepted during the grace (recorded as previous), new accepted, the old refused
    once a rotation with --grace 0 ends it; the listener says so on stderr each time,
    within 5 s, without a restart."""
    assert cli("configure", "--verification-token", OLD).exit_code == 0
    listener = ListenProcess(isolated_home, "--json")
    url = f"{listener.url}/webhooks/stock"

    def post(key: str, request_id: str) -> httpx.Response:
        body = signed_body(key=key, request_id=request_id)
        return httpx.post(url, content=body, headers=JSON_HEADERS, timeout=30)

    def said(text: str) -> Any:
        return lambda: listener.captured["err"].decode().count(text)

    try:
        assert post(OLD, "before").status_code == 200
        assert cli("configure", "--rotate-verification-token", "--grace", "1h").exit_code == 0
        new = profile(isolated_home)["verification_token"]
        wait_for(said("The verification token of profile 'default' changed"), 5, "pick-up")
        during = [post(new, "new-1"), post(OLD, "old-during")]
        assert cli("configure", "--rotate-verification-token", "--grace", "0").exit_code == 0
        newest = profile(isolated_home)["verification_token"]
        wait_for(lambda: said("no longer counts")() == 1, 5, "the second pick-up")
        after = [post(new, "new-after"), post(OLD, "old-after"), post(newest, "newest")]
    finally:
        code, out, err = listener.stop()
    assert code == 0
    assert [a.status_code for a in during] == [200, 200]
    assert [a.status_code for a in after] == [401, 401, 200]
    assert "stopped counting at" in after[0].json()["detail"]
    assert "previous" not in after[1].json()["detail"]  # two rotations ago: unknown
    printed = {r["requestId"]: r for r in map(json.loads, out.splitlines())}
    assert [printed[i]["token"] for i in ("before", "new-1", "old-during", "newest")] == [
        "current", "current", "previous", "current",
    ]  # fmt: skip
    assert "still counts until" in err
    listed = cli("events", "list", "--json", "--limit", "100")
    tokens = {r["requestId"]: r.get("token") for r in map(json.loads, listed.stdout.splitlines())}
    assert tokens["old-during"] == "previous" and tokens["new-1"] == "current"
    shown = cli("events", "show", "old-during")
    assert "verified with the previous verification token" in shown.stdout


def test_a_token_from_the_environment_is_not_followed(
    cli: Cli, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AVASAM_VERIFICATION_TOKEN (or --verification-token) fixes the token for the run: the
    receiver does not follow the profile (the environment wins, as everywhere); a token
    from the profile is followed, with its previous one."""
    from avasam_cli.cli.listen import token_settings
    from avasam_cli.config import resolve

    assert cli("configure", "--verification-token", OLD).exit_code == 0
    assert cli("configure", "--rotate-verification-token").exit_code == 0
    config = ConfigFile(locations().config_file)
    followed = token_settings(resolve(config), config)
    assert followed["follow_profile"] == (str(config.path), "default")
    assert followed["previous_token"] == OLD and followed["previous_until"] > time.time()
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", NEW)
    fixed = token_settings(resolve(config), config)
    assert fixed == {"previous_token": None, "previous_until": None, "follow_profile": None}


# --- Signed forwards (Standard Webhooks) -------------------------------------------------
def test_a_forward_secret_is_whsec_and_32_random_bytes(cli: Cli, isolated_home: Path) -> None:
    made = cli("configure", "--generate-forward-secret")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert profile(isolated_home)["forward_secret"] == secret
    assert secret not in cli("config", "show").stdout
    assert new_forward_secret() != new_forward_secret()
    bad = cli("configure", "--rotate-forward-secret", "--grace", "0")
    assert bad.exit_code == 0  # there is one to rotate now


@pytest.fixture
def shop() -> Iterator[RecordingShop]:
    served = RecordingShop()
    yield served
    served.close()


def queue_forward(request_id: str, target: str) -> bytes:
    body = signed_body(request_id=request_id)
    event = Event(
        received_at=datetime.now(UTC).isoformat(),
        kind="stock",
        status="verified",
        http_status=200,
        headers_json=json.dumps([["content-type", "application/json"], ["webhook-id", "forged"]]),
        body=body,
        request_id=request_id,
        item_count=1,
    )
    with open_store(locations().store_file) as store:
        store.insert([event], Plan({"stock": target}))
    return body


def test_forwards_verify_with_the_standard_library(
    cli: Cli, isolated_home: Path, shop: RecordingShop
) -> None:
    """Every attempt verifies with standardwebhooks; a retry keeps its webhook-id and
    carries its own timestamp; a changed byte fails; a caller's webhook-id is not passed
    on; the body is the exact bytes received."""
    secret = cli("configure", "--generate-forward-secret").stdout.strip()
    body = queue_forward("sw-1", shop.url)
    shop.codes = [500]
    assert cli("deliveries", "run").exit_code == 0  # the 500: kept for a retry
    assert cli("deliveries", "run").exit_code == 0
    assert len(shop.received) == 2
    hook = standardwebhooks.Webhook(secret)
    for headers, raw in shop.received:
        assert raw == body
        assert hook.verify(raw, headers)["requestId"] == "sw-1"
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            hook.verify(raw.replace(b"sw-1", b"sw-2"), headers)
    (first, _), (second, _) = shop.received
    assert first["webhook-id"] == second["webhook-id"] != "forged"
    assert int(first["webhook-timestamp"]) <= int(second["webhook-timestamp"])
    assert abs(int(second["webhook-timestamp"]) - time.time()) < 60
    other = standardwebhooks.Webhook(new_forward_secret())
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        other.verify(shop.received[0][1], shop.received[0][0])


def test_a_forward_secret_rotation_signs_with_both(
    cli: Cli, isolated_home: Path, shop: RecordingShop
) -> None:
    """During the grace a forward carries two signatures: a shop still on the old secret
    and one already on the new one both verify it; after it, only the new one does."""
    old = cli("configure", "--generate-forward-secret").stdout.strip()
    rotated = cli("configure", "--rotate-forward-secret", "--grace", "1h")
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    queue_forward("both-1", shop.url)
    assert cli("deliveries", "run").exit_code == 0
    headers, raw = shop.received[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(raw, headers)
    assert cli("configure", "--rotate-forward-secret", "--grace", "0").exit_code == 0
    newest = profile(isolated_home)["forward_secret"]
    queue_forward("one-1", shop.url)
    assert cli("deliveries", "run").exit_code == 0
    headers, raw = shop.received[-1]
    assert len(headers["webhook-signature"].split(" ")) == 1
    standardwebhooks.Webhook(newest).verify(raw, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new).verify(raw, headers)


def test_a_listeners_runner_takes_up_a_new_forward_secret(
    cli: Cli, isolated_home: Path, shop: RecordingShop
) -> None:
    """`listen --forward-to` signs with the profile's secret, and with one made while it
    runs, without a restart."""
    assert cli("configure", "--verification-token", OLD).exit_code == 0
    listener = ListenProcess(isolated_home, "--forward-to", shop.url)
    url = f"{listener.url}/webhooks/stock"
    try:
        httpx.post(url, content=signed_body(key=OLD), headers=JSON_HEADERS, timeout=30)
        wait_for(lambda: len(shop.received) == 1, 10, "the first forward")
        secret = cli("configure", "--generate-forward-secret").stdout.strip()

        def signed_forward_arrived() -> bool:
            # One update after another until one comes signed (the runner looks at the
            # profile at most every second): a condition, not a fixed wait.
            if not any("webhook-signature" in headers for headers, _ in shop.received):
                body = signed_body(key=OLD)
                httpx.post(url, content=body, headers=JSON_HEADERS, timeout=30)
                time.sleep(0.2)
            return any("webhook-signature" in headers for headers, _ in shop.received)

        wait_for(signed_forward_arrived, 10, "a forward signed with the new secret")
    finally:
        listener.stop()
    assert "webhook-signature" not in shop.received[0][0]
    headers, raw = next((h, r) for h, r in shop.received if "webhook-signature" in h)
    standardwebhooks.Webhook(secret).verify(raw, headers)


def test_replay_and_the_inspector_sign_too(
    cli: Cli, isolated_home: Path, shop: RecordingShop
) -> None:
    """`events replay --to` and the inspector's forward action carry valid signatures."""
    from avasam_cli.delivery.signature import no_secrets
    from avasam_cli.inspector.app import create_inspector
    from tests.test_inspector import PAGE_TOKEN, cookie_for, serving

    secret = cli("configure", "--generate-forward-secret").stdout.strip()
    queue_forward("rp-1", "http://127.0.0.1:9/unused")
    replayed = cli("events", "replay", "rp-1", "--to", shop.url)
    assert replayed.exit_code == 0, replayed.output
    port = free_port()
    app = create_inspector(locations().store_file, PAGE_TOKEN, port, forward={"stock": shop.url})
    assert app.state.forward_secrets is no_secrets
    app.state.forward_secrets = lambda: [secret]
    with serving(app, port) as base, httpx.Client(base_url=base) as client:
        client.cookies.set(cookie_for(base), PAGE_TOKEN)
        csrf = client.get("/api/session").json()["csrf"]
        answer = client.post(
            "/api/events/1/forward", headers={"origin": base, "x-avasam-csrf": csrf}
        )
    assert answer.json()["status"] == 200
    assert len(shop.received) == 2
    for headers, raw in shop.received:
        standardwebhooks.Webhook(secret).verify(raw, headers)


def test_rolling_from_a_profile_needs_its_end() -> None:
    """A previous secret without a valid end time does not count (nothing is open-ended)."""
    names = FORWARD_SECRET
    assert rolling_from({names[0]: "a", names[1]: "b", names[2]: "soon"}, names) == Rolling("a")
    assert rolling_from({}, names) is None


def test_the_inspector_re_signs_with_the_token_in_force(cli: Cli) -> None:
    """The inspector that `listen` starts follows the profile's token for its re-signs: a
    rotation while the page is open is used for the next one."""
    from avasam_cli.cli.inspect import _followed_token
    from avasam_cli.config import resolve

    assert cli("configure", "--verification-token", OLD).exit_code == 0
    config = ConfigFile(locations().config_file)
    signing = _followed_token(resolve(config))
    assert signing is not None and signing() == OLD
    assert cli("configure", "--rotate-verification-token").exit_code == 0
    rotated = ConfigFile(locations().config_file).profile("default")["verification_token"]
    wait_for(lambda: signing() == rotated, 5, "the inspector's token to follow")


def test_reconcile_fix_forwards_are_signed(
    cli: Cli, avasam: Any, shop: RecordingShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconcile --fix` goes through the outbox's runner: its catch-up is signed too."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", OLD)
    secret = cli("configure", "--generate-forward-secret").stdout.strip()
    avasam.stock = {"A": 4}
    result = cli("reconcile", "--fix", "--yes", "--forward-to", shop.url)
    assert result.exit_code == 0, result.output
    ((headers, raw),) = shop.received
    assert standardwebhooks.Webhook(secret).verify(raw, headers)["data"][0]["sku"] == "A"
