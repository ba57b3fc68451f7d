"""Avasam's contract as live accounts show it: the raw token first, keys in any casing, the
product list, `reconcile --prices` and `--fix`, and the audience decision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from avasam_cli.paths import locations
from avasam_cli.store.base import open_store
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import TEST_MARKER
from avasam_cli.webhooks import sign as signing
from avasam_cli.webhooks.contract import Reason, VerificationError
from avasam_cli.webhooks.keys import recased
from avasam_cli.webhooks.verify import verify
from tests.conftest import Cli
from tests.helpers import (
    JSON_HEADERS,
    TOKEN,
    ListenProcess,
    RecordingShop,
    free_port,
    store_rows,
)
from tests.standin import ACK_PATH, PRODUCT_PATH, STOCK_PATH, TOKEN_PATH, Avasam

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def body_of(kind: str = "stock", count: int = 1, casing: str = "camel", **claims: Any) -> bytes:
    """A body signed now; `claims` replace the token with one carrying them too."""
    moment = datetime.now(UTC)
    items = signing.generate_items(kind, count, moment, seed=3)
    body = signing.build_body(items, TOKEN, now=moment)
    if claims:
        body["token"] = jwt.encode({"requestId": body["requestId"], **claims}, TOKEN, "HS256")
    return signing.encode(recased(body, casing))


def upper_cased(raw: bytes) -> bytes:
    """Every key of the envelope and the items in capitals (REQUESTID, SKU, ...)."""
    document = json.loads(raw)
    document = {key.upper(): value for key, value in document.items()}
    document["DATA"] = [{key.upper(): value for key, value in i.items()} for i in document["DATA"]]
    return json.dumps(document).encode()


# --- 1. The raw token first --------------------------------------------------------------
def test_a_fresh_token_goes_out_raw_with_no_refused_call(cli: Cli, avasam: Avasam) -> None:
    """Against a raw-only server (as live accounts behave), a new token's first data call
    is `Authorization: <token>`: no call is refused, and the form is remembered."""
    avasam.scheme = "raw"
    avasam.products = {"A-1": 9.5}
    assert cli("ack", "req-1").exit_code == 0
    assert cli("products", "list").exit_code == 0
    data_calls = [r for r in avasam.received if r.path != TOKEN_PATH]
    assert [r.headers["Authorization"] for r in data_calls] == ["access-0001", "access-0001"]
    assert avasam.refused_calls() == 0


def test_a_bearer_only_server_costs_one_refused_call_once(cli: Cli, avasam: Avasam) -> None:
    """The second form is still found: one refused call for a new token, none after."""
    avasam.scheme = "bearer"
    assert cli("ack", "a").exit_code == 0
    assert cli("ack", "b").exit_code == 0
    assert avasam.refused_calls() == 1
    assert avasam.received[-1].headers["Authorization"] == "Bearer access-0001"


# --- 2. Keys in any casing --------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 40])  # the per-item loop and the column checks
@pytest.mark.parametrize("spelling", ["pascal", "upper"])
def test_the_verifier_takes_either_casing(spelling: str, count: int) -> None:
    """PascalCase and UPPER-case bodies verify; the items come back under canonical names."""
    raw = body_of("price", count, "pascal")
    if spelling == "upper":
        raw = upper_cased(raw)
    update = verify(raw, "price", TOKEN)
    assert len(update.items) == count
    assert set(update.items[0]) == {"sku", "price", "updatedOn"}
    assert (
        update.request_id == json.loads(raw)["RequestId" if spelling == "pascal" else "REQUESTID"]
    )


@pytest.mark.parametrize(
    ("change", "path", "keys"),
    [
        (lambda d: d.update(requestId=d["RequestId"]), "$", ("RequestId", "requestId")),
        (lambda d: d["Data"][0].update(sku="OTHER"), "data[0]", ("Sku", "sku")),
        (lambda d: d["Data"][39].update(SKU="OTHER"), "data[39]", ("Sku", "SKU")),
    ],
)
def test_two_keys_differing_only_in_case_are_refused(change: Any, path: str, keys: Any) -> None:
    """An object holding `requestId` and `RequestId` (or `Sku` and `sku`) is ambiguous:
    400 invalid_payload naming both keys and where."""
    document = json.loads(body_of("stock", 40, "pascal"))
    change(document)
    with pytest.raises(VerificationError) as refused:
        verify(json.dumps(document).encode(), "stock", TOKEN)
    assert refused.value.reason is Reason.INVALID_PAYLOAD
    assert refused.value.http_status == 400
    assert refused.value.detail.startswith(f"{path} holds both ")
    assert all(repr(key) in refused.value.detail for key in keys)


def test_the_listener_takes_either_casing_and_stores_the_body_unchanged(
    isolated_home: Path,
) -> None:
    """A real listener: PascalCase and UPPER-case bodies are 200 ok, stored byte for byte,
    printed by `--json` and listed by `events` under canonical names; an ambiguous one is
    400."""
    pascal, upper = body_of(casing="pascal"), upper_cased(body_of(count=2, casing="pascal"))
    ambiguous = json.loads(body_of(casing="pascal"))
    ambiguous["requestId"] = "smuggled"
    listener = ListenProcess(isolated_home, "--json", env={"AVASAM_VERIFICATION_TOKEN": TOKEN})
    url = f"{listener.url}/webhooks/stock"
    answers = [
        httpx.post(url, content=body, headers=JSON_HEADERS, timeout=30)
        for body in (pascal, upper, json.dumps(ambiguous).encode())
    ]
    code, out, _err = listener.stop()
    assert code == 0
    assert [a.status_code for a in answers] == [200, 200, 400]
    assert answers[0].json()["status"] == "ok"
    assert answers[2].json()["error"] == "invalid_payload"
    assert "'RequestId' and 'requestId'" in answers[2].json()["detail"]
    rows = store_rows(isolated_home / "data" / "events.sqlite3")
    assert [bytes(r["body"]) for r in rows[:2]] == [pascal, upper]
    assert [r["item_count"] for r in rows[:2]] == [1, 2]
    printed = [json.loads(line) for line in out.splitlines()]
    assert [p["status"] for p in printed] == ["verified", "verified", "rejected"]
    for record in printed[:2]:
        assert all(set(item) == {"sku", "quantity", "updatedOn"} for item in record["data"])


def test_send_test_and_sign_test_payload_write_pascal_case(cli: Cli, isolated_home: Path) -> None:
    """`--casing pascal` writes RequestId, On, Token, Data and Sku, Quantity, UpdatedOn."""
    signed = cli("sign-test-payload", "--casing", "pascal", "--verification-token", TOKEN)
    assert signed.exit_code == 0, signed.output
    document = json.loads(signed.stdout)
    assert set(document) == {"RequestId", "On", "Token", "Data"}
    assert set(document["Data"][0]) == {"Sku", "Quantity", "UpdatedOn"}
    listener = ListenProcess(isolated_home, env={"AVASAM_VERIFICATION_TOKEN": TOKEN})
    sent = cli(
        "send-test", "--casing", "pascal", "--port", str(listener.port), "--verification-token",
        TOKEN,
    )  # fmt: skip
    listener.stop()
    assert sent.exit_code == 0, sent.output
    assert '"status":"ok"' in sent.stdout.replace(" ", "")
    (row,) = store_rows(isolated_home / "data" / "events.sqlite3")
    assert row["status"] == "verified" and b'"RequestId"' in bytes(row["body"])


def test_replay_resign_reads_pascal_bodies(
    cli: Cli, shop: RecordingShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`events replay --resign` finds the items of a PascalCase body, and re-signs them
    under canonical names."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    raw = body_of(count=2, casing="pascal")
    with open_store(locations().store_file) as store:
        store.insert([_event("stock", raw, "[]")])
    result = cli("events", "replay", "1", "--resign", "--to", shop.url)
    assert result.exit_code == 0, result.output
    ((_, sent),) = shop.received
    items = json.loads(sent)["data"]
    assert [item["sku"] for item in items] == [i["Sku"] for i in json.loads(raw)["Data"]]


# --- 3. The product list ------------------------------------------------------------------
def test_products_list_reads_every_page(cli: Cli, avasam: Avasam) -> None:
    """Pages of --page-size from page 0 until a short one, `{"Page", "Limit"}` bodies; a
    table of SKU and price, every field in --json, CSV with a header."""
    avasam.products = {f"P-{n}": 1.5 * n for n in range(5)}
    table = cli("products", "list", "--page-size", "2")
    assert table.exit_code == 0, table.output
    bodies = [r.body for r in avasam.received if r.path == PRODUCT_PATH]
    assert bodies == [{"Page": 0, "Limit": 2}, {"Page": 1, "Limit": 2}, {"Page": 2, "Limit": 2}]
    expected = [cell for n in range(5) for cell in (f"P-{n}", str(1.5 * n))]
    assert table.stdout.split() == ["sku", "price", *expected]
    assert "5 SKUs shown of 5 in the product list." in table.stderr
    lines = [json.loads(line) for line in cli("products", "list", "--json").stdout.splitlines()]
    assert lines[1] == {"sku": "P-1", "price": 1.5, "Title": "Product P-1"}
    csv = cli("products", "list", "--csv", "--sku", "P-2").stdout.splitlines()
    assert csv == ["sku,price", "P-2,3.0"]


def test_products_list_takes_a_wrapped_answer_and_names_a_missing_sku(
    cli: Cli, avasam: Avasam
) -> None:
    """An object holding the rows (any key casing) works too; a --sku not found is exit 1."""
    avasam.products = {"A": 2.0, "B": 3.0}
    avasam.list_wrapper = "Data"
    found = cli("products", "list", "--sku", "B", "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["price"] == 3.0
    missing = cli("products", "list", "--sku", "NOPE")
    assert missing.exit_code == 1
    assert "not in Avasam's product list: NOPE" in missing.stderr
    assert "Traceback" not in missing.output


# --- 4. reconcile --prices -------------------------------------------------------------------
def _event(kind: str, raw: bytes, headers_json: str) -> Event:
    return Event(
        received_at=NOW.isoformat(),
        kind=kind,
        status="verified",
        http_status=200,
        headers_json=headers_json,
        body=raw,
        request_id=json.loads(raw).get("requestId") or json.loads(raw)["RequestId"],
        item_count=len(json.loads(raw).get("data") or json.loads(raw)["Data"]),
    )


def store_update(
    kind: str, values: dict[str, float], casing: str = "camel", test: bool = False
) -> None:
    """A verified update in the store, as a listener would have stored it (`test`: marked
    as send-test's)."""
    on = signing.iso_utc(NOW)
    items = [signing.make_item(kind, sku, on, value) for sku, value in values.items()]
    raw = signing.encode(recased(signing.build_body(items, TOKEN, now=NOW), casing))
    headers = json.dumps([[TEST_MARKER, "1"]] if test else [])
    with open_store(locations().store_file) as store:
        store.insert([_event(kind, raw, headers)])


def test_reconcile_prices_names_the_drifted_sku(cli: Cli, avasam: Avasam) -> None:
    """The newest price webhook per SKU against the product list: one drifted SKU is exit 1
    and named; a test event's price never counts; PascalCase webhooks count."""
    avasam.stock = {"A": 1, "B": 2}
    avasam.products = {"A": 10.0, "B": 20.0}
    store_update("stock", {"A": 1, "B": 2})
    store_update("price", {"A": 10.0}, casing="pascal")
    store_update("price", {"B": 25.0})
    store_update("price", {"A": 99.0}, test=True)  # send-test's: not Avasam's word
    result = cli("reconcile", "--prices", "--json")
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    differing = [r for r in records if r.get("status") == "differs"]
    assert differing == [
        {
            "kind": "price",
            "sku": "B",
            "status": "differs",
            "avasam_price": 20.0,
            "webhook_price": 25.0,
            "updatedOn": signing.iso_utc(NOW),
            "received_at": NOW.isoformat(),
            "requestId": differing[0]["requestId"],
        }
    ]
    summaries = {r["kind"]: r["summary"] for r in records if "summary" in r}
    assert summaries["stock"]["agrees"] == 2 and summaries["price"]["agrees"] == 1
    human = cli("reconcile", "--prices")
    assert human.exit_code == 1
    assert "2 SKUs in Avasam's product list: 2 compared" in human.stderr
    assert "B" in human.stdout and "25.0" in human.stdout
    assert cli("reconcile").exit_code == 0  # stock alone agrees


# --- 5. reconcile --fix ------------------------------------------------------------------------
@pytest.fixture
def shop() -> Iterator[RecordingShop]:
    served = RecordingShop()
    yield served
    served.close()


def test_reconcile_fix_sends_the_shop_exactly_the_drifted_skus(
    cli: Cli, avasam: Avasam, shop: RecordingShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shop receives the SKUs that differ or were never received, with Avasam's
    values, marked as reconcile's, with the forward headers; nothing is acknowledged, and
    the next reconcile does not count what --fix sent."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    avasam.stock = {"SAME": 5, "DRIFT": 3, "NEW": 8}
    avasam.products = {"SAME": 1.0, "DRIFT": 2.0, "NEW": 4.5}
    store_update("stock", {"SAME": 5, "DRIFT": 7})
    store_update("price", {"SAME": 1.0, "DRIFT": 2.5, "NEW": 4.5})
    dry = cli("reconcile", "--prices", "--fix", "--dry-run", "--forward-to", shop.url)
    assert dry.exit_code == 1, dry.output
    assert "would send  stock  DRIFT  3  (differs)" in dry.stdout
    assert shop.received == []
    result = cli(
        "reconcile", "--prices", "--fix", "--yes", "--forward-to", shop.url,
        "--forward-header", "X-Shop-Key: abc123",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = {
        (headers["x-avasam-event"], item["sku"], item.get("quantity", item.get("price")))
        for headers, raw in shop.received
        for item in json.loads(raw)["data"]
    }
    assert sent == {("stock", "DRIFT", 3), ("stock", "NEW", 8), ("price", "DRIFT", 2.0)}
    for headers, raw in shop.received:
        body = json.loads(raw)
        assert headers["x-avasam-cli-source"] == "reconcile"
        assert headers["x-shop-key"] == "abc123"
        assert headers["x-avasam-verified"] == "true"
        claims = jwt.decode(body["token"], TOKEN, algorithms=["HS256"])
        assert claims["requestId"] == body["requestId"]
    assert ACK_PATH not in avasam.paths()
    with open_store(locations().store_file, read_only=True) as store:
        assert store.delivery_counts() == {"delivered": 2}
    again = cli("reconcile", "--prices", "--json")
    summaries = [json.loads(line)["summary"] for line in again.stdout.splitlines()[-2:]]
    assert summaries[0]["differs"] == 1 and summaries[0]["never_received"] == 1
    shown = cli("events", "show", json.loads(shop.received[0][1])["requestId"])
    assert "made by `avasam reconcile --fix`" in shown.stdout


def test_reconcile_fix_asks_first_and_needs_a_target(
    cli: Cli, avasam: Avasam, shop: RecordingShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --yes off a terminal: exit 2 and nothing sent; no target: exit 2 naming
    --forward-to and configure; the profile's forward_to is used; --yes alone is refused."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    avasam.stock = {"A": 1}
    unasked = cli("reconcile", "--fix", "--forward-to", shop.url)
    assert unasked.exit_code == 2
    assert "add --yes" in unasked.stderr
    no_target = cli("reconcile", "--fix", "--yes")
    assert no_target.exit_code == 2
    assert "--forward-to URL" in no_target.stderr and "configure --forward-to" in no_target.stderr
    assert cli("reconcile", "--yes").exit_code == 2
    assert cli("configure", "--forward-to", shop.url).exit_code == 0
    result = cli("reconcile", "--fix", "--yes")
    assert result.exit_code == 0, result.output
    assert [json.loads(raw)["data"][0]["sku"] for _, raw in shop.received] == ["A"]
    again = cli("reconcile", "--fix", "--yes")
    assert again.exit_code == 0  # what --fix sent is no webhook: A is still never received
    assert len(shop.received) == 2


def test_reconcile_fix_keeps_what_the_shop_did_not_take(
    cli: Cli, avasam: Avasam, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shop that cannot be reached: exit 1, the update stays pending in the outbox."""
    monkeypatch.setenv("AVASAM_VERIFICATION_TOKEN", TOKEN)
    avasam.stock = {"A": 1}
    down = f"http://127.0.0.1:{free_port()}/avasam"
    result = cli("reconcile", "--fix", "--yes", "--forward-to", down)
    assert result.exit_code == 1
    assert "not delivered" in result.stderr and "Traceback" not in result.output
    with open_store(locations().store_file, read_only=True) as store:
        assert store.delivery_counts() == {"pending": 1}


# --- 6. doctor ------------------------------------------------------------------------------
def test_doctor_says_which_form_was_learned_and_when(cli: Cli, avasam: Avasam) -> None:
    """doctor names the form Avasam accepted and the date auto learned it."""
    avasam.scheme = "bearer"
    cli("configure", "--verification-token", TOKEN)
    result = cli("doctor")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert (
        "API accepts the access token: Authorization: Bearer <token> accepted (auth_scheme "
        f"auto learned it on {today}" in result.stdout
    )


# --- 7. The audience -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("claims", "audience", "verdict"),
    [
        ({}, (), "ok"),
        ({"aud": "anyone"}, (), "ok"),  # no audience configured: any is accepted
        ({"aud": "shop-eu"}, ("shop-eu",), "ok"),
        ({"aud": ["x", "shop-eu"]}, ("shop-us", "shop-eu"), "ok"),
        ({"aud": "shop-us"}, ("shop-eu",), Reason.WRONG_AUDIENCE),
        ({}, ("shop-eu",), Reason.WRONG_AUDIENCE),  # none given where one is required
    ],
)
def test_the_audience_is_checked_only_when_configured(
    claims: dict[str, Any], audience: tuple[str, ...], verdict: object
) -> None:
    raw = body_of(iat=int(datetime.now(UTC).timestamp()), **claims)
    if verdict == "ok":
        verify(raw, "stock", TOKEN, audience=audience)
        return
    with pytest.raises(VerificationError) as refused:
        verify(raw, "stock", TOKEN, audience=audience)
    assert refused.value.reason is verdict
    assert refused.value.http_status == 401


def test_listen_audience_refuses_other_audiences(isolated_home: Path, cli: Cli) -> None:
    """`listen --audience` (or the profile's `audience`): the right aud is 200, another or
    none is 401 wrong_audience."""
    assert cli("configure", "--audience", "shop-eu", "--audience", "shop-us").exit_code == 0
    listener = ListenProcess(isolated_home, env={"AVASAM_VERIFICATION_TOKEN": TOKEN})
    url = f"{listener.url}/webhooks/stock"
    answers = [
        httpx.post(url, content=body_of(aud=aud), headers=JSON_HEADERS, timeout=30)
        for aud in ("shop-us", "shop-cn")
    ]
    listener.stop()
    assert [a.status_code for a in answers] == [200, 401]
    assert answers[1].json()["error"] == "wrong_audience"
    shown = cli("config", "show")
    assert "shop-eu, shop-us" in shown.stdout


def test_a_bad_audience_is_refused_by_configure(cli: Cli) -> None:
    result = cli("configure", "--audience", " ")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_stock_list_path_is_unchanged(avasam: Avasam, cli: Cli) -> None:
    """The stock list still pages with its own lower-case body."""
    avasam.stock = {"A": 1}
    assert cli("stock", "list").exit_code == 0
    assert [r.body for r in avasam.received if r.path == STOCK_PATH] == [{"limit": 1000, "page": 0}]
