"""The pure verification core: every reason code, the item schemas, strict JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avasam_cli.webhooks import sign as signing
from avasam_cli.webhooks.contract import HTTP_STATUS, Reason, VerificationError
from avasam_cli.webhooks.kinds import is_identifier
from avasam_cli.webhooks.verify import verify
from tests.helpers import TOKEN, b64, signed_body, with_token


def envelope(data: list[Any], request_id: str = "req-1", **claims: Any) -> bytes:
    token = jwt.encode({"requestId": request_id, **claims}, TOKEN, algorithm="HS256")
    return json.dumps(
        {"requestId": request_id, "on": "2026-11-27T10:00:00Z", "token": token, "data": data}
    ).encode()


def refused(raw: bytes, kind: str = "stock", **options: Any) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verify(raw, kind, TOKEN, **options)
    return caught.value


STOCK = {"sku": "A-1", "quantity": 3, "updatedOn": "2021-12-22T17:36:19.8066912+00:00"}
PRICE = {"sku": "A-1", "price": 12.5, "updatedOn": "2021-12-22T17:36:19Z", "currency": "GBP"}


def test_signed_body_verifies() -> None:
    """A body made by the signer verifies, with its request id and items."""
    raw = signed_body(count=3, request_id="abc-123")
    update = verify(raw, "stock", TOKEN)
    assert update.request_id == "abc-123"
    assert len(update.items) == 3 and update.algorithm == "HS256"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_family_accepted(alg: str) -> None:
    """HS256, HS384 and HS512 are all accepted."""
    assert verify(signed_body(algorithm=alg), "stock", TOKEN).algorithm == alg


def test_empty_data_is_valid() -> None:
    """Avasam's test button may send no items: still a valid update."""
    assert verify(envelope([]), "stock", TOKEN).items == []


def test_price_items_keep_further_fields() -> None:
    """Price items: extra fields are kept as sent."""
    assert verify(envelope([PRICE]), "price", TOKEN).items == [PRICE]


def test_dotnet_and_offsetless_times_parse() -> None:
    """Seven fractional digits and times without offset are valid updatedOn values."""
    items = [STOCK, {**STOCK, "updatedOn": "2021-12-22T17:36:19"}]
    assert len(verify(envelope(items), "stock", TOKEN).items) == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"requestId": NaN}',
        b'{"requestId": Infinity}',
        b'{"a": -Infinity}',
        b'{"requestId": "x", "requestId": "y"}',
        b'{"data": [{"sku": "a", "sku": "b"}]}',
        b'{"a\\u003a": 1, "a\\u003a": 2}',
        b'{"requestId": "\xff"}',
        b"[" * 5000 + b"]" * 5000,
        b"",
    ],
)
def test_malformed_json(raw: bytes) -> None:
    """Anything a strict JSON parser would refuse is malformed_json."""
    error = refused(raw)
    assert error.reason is Reason.MALFORMED_JSON
    assert error.http_status == 400


def _usual(items: int = 40) -> bytes:
    """A body of the usual shape (see verify._usual_colons), with colons in its strings."""
    data = [{**STOCK, "sku": f"A:{n}:"} for n in range(items)]
    return envelope(data, request_id="req:1")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"quantity": 3', b'"quantity": 3, "quantity": 4'),  # in an item (the last)
        (b'"sku": "A:7:"', b'"sku": "A:7:", "sku": "B"'),
        (b'"requestId": "req:1"', b'"requestId": "x", "requestId": "req:1"'),
        (b'"on": ', b'"data": [{"a:b": "c:d"}], "on": '),  # a whole data before the usual one
    ],
)
def test_duplicate_keys_in_a_usual_body(old: bytes, new: bytes) -> None:
    """A body of the usual shape has its colons counted from what was parsed, not written
    out again: a key given twice, anywhere in it, is still malformed_json."""
    raw = _usual()
    assert verify(raw, "stock", TOKEN).items_as_sent  # the usual shape: the counted path
    at = raw.rindex(old)
    twice = raw[:at] + new + raw[at + len(old) :]
    assert refused(twice).reason is Reason.MALFORMED_JSON


def test_a_usual_body_spaced_out_is_not_a_duplicate() -> None:
    """Whitespace anywhere, and colons in every string, leave a usual body valid."""
    document = json.loads(_usual())
    spaced = json.dumps(document, indent=3, separators=(" ,", " : ")).encode()
    assert verify(spaced, "stock", TOKEN).items_as_sent


def test_colons_in_strings_are_not_duplicates() -> None:
    """Colons inside strings and escaped characters do not trip duplicate-key detection."""
    item = {**STOCK, "sku": 'a:b:"c":', "note\\u00e9": "x"}
    update = verify(envelope([item]).replace(b"\\\\u00e9", b"\\u00e9"), "stock", TOKEN)
    assert update.request_id == "req-1" and update.items[0]["sku"] == 'a:b:"c":'


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"[]", "$"),
        (b"42", "$"),
        (b'"text"', "$"),
        (b'{"on": "2026-11-27T10:00:00Z", "data": []}', "requestId"),
        (b'{"requestId": 5, "on": "2026-11-27T10:00:00Z", "data": []}', "requestId"),
        (b'{"requestId": "r", "data": []}', "on"),
        (b'{"requestId": "r", "on": "2026-11-27", "data": []}', "on"),
        (b'{"requestId": "r", "on": "2026-11-27T10:00:00Z", "data": {}}', "data"),
    ],
)
def test_invalid_envelope(raw: bytes, path: str) -> None:
    """Envelope problems are invalid_payload with the field path."""
    error = refused(raw)
    assert (error.reason, error.path) == (Reason.INVALID_PAYLOAD, path)


@pytest.mark.parametrize(
    ("kind", "item", "path"),
    [
        ("stock", "not-an-object", "data[1]"),
        ("stock", {**STOCK, "sku": ""}, "data[1].sku"),
        ("stock", {**STOCK, "sku": 12}, "data[1].sku"),
        ("stock", {"quantity": 1, "updatedOn": STOCK["updatedOn"]}, "data[1].sku"),
        ("stock", {**STOCK, "quantity": True}, "data[1].quantity"),
        ("stock", {**STOCK, "quantity": -1}, "data[1].quantity"),
        ("stock", {**STOCK, "quantity": 1.5}, "data[1].quantity"),
        ("stock", {**STOCK, "quantity": "3"}, "data[1].quantity"),
        ("stock", {**STOCK, "updatedOn": "yesterday"}, "data[1].updatedOn"),
        ("stock", {**STOCK, "updatedOn": 1700000000}, "data[1].updatedOn"),
        ("price", {**PRICE, "price": False}, "data[1].price"),
        ("price", {**PRICE, "price": -0.01}, "data[1].price"),
        ("price", {**PRICE, "price": "9.99"}, "data[1].price"),
        ("price", {"sku": "a", "updatedOn": PRICE["updatedOn"]}, "data[1].price"),
    ],
)
def test_invalid_items(kind: str, item: Any, path: str) -> None:
    """Each item rule is checked; the payload is refused whole, naming the field."""
    good = STOCK if kind == "stock" else PRICE
    error = refused(envelope([good, item]), kind)
    assert (error.reason, error.path) == (Reason.INVALID_PAYLOAD, path)
    assert path in error.detail


def test_huge_number_is_refused() -> None:
    """A number too large for a double is refused, never turned into infinity."""
    raw = envelope([PRICE]).replace(b"12.5", b"1e400")
    assert refused(raw, "price").reason is Reason.MALFORMED_JSON


def test_missing_token() -> None:
    """No token field, or an empty one, is missing_token (401)."""
    document = json.loads(envelope([STOCK]))
    for value in (None, ""):
        if value is None:
            document.pop("token")
        else:
            document["token"] = value
        error = refused(json.dumps(document).encode())
        assert (error.reason, error.http_status) == (Reason.MISSING_TOKEN, 401)


@pytest.mark.parametrize("token", ["abc", "a.b.c", "!!!.###.$$$", 12345])
def test_bad_token(token: Any) -> None:
    """A token that is not a JWT (or not a string) is bad_token."""
    document = json.loads(envelope([STOCK]))
    document["token"] = token
    assert refused(json.dumps(document).encode()).reason is Reason.BAD_TOKEN


def test_bad_signature() -> None:
    """A token signed with another key is bad_signature."""
    raw = signed_body(key="another-key-that-is-long-enough-0123456789")
    assert refused(raw).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "JWT"},
        {"alg": "RS256", "typ": "JWT"},
        {"typ": "JWT"},
        {"alg": "ES256"},
    ],
)
def test_disallowed_algorithms(header: dict[str, str]) -> None:
    """none, asymmetric algorithms and a missing alg are refused."""
    raw = envelope([STOCK])
    forged = f"{b64(header)}.{b64({'requestId': 'req-1'})}.c2lnbmF0dXJl"
    error = refused(with_token(raw, forged))
    assert error.reason is Reason.DISALLOWED_ALG
    unsigned = f"{b64(header)}.{b64({'requestId': 'req-1'})}."
    assert refused(with_token(raw, unsigned)).reason is Reason.DISALLOWED_ALG


def test_expired_and_leeway() -> None:
    """exp in the past beyond the leeway is expired; within the leeway it passes."""
    past = datetime.now(UTC) - timedelta(seconds=310)  # valid for 300 s: expired 10 s ago
    raw = signed_body(now=past)
    assert verify(raw, "stock", TOKEN, leeway=60).items == json.loads(raw)["data"]
    error = refused(raw, leeway=0)
    assert (error.reason, error.http_status) == (Reason.EXPIRED, 401)


def test_not_yet_valid() -> None:
    """nbf or iat in the future beyond the leeway is not_yet_valid."""
    future = int((datetime.now(UTC) + timedelta(minutes=10)).timestamp())
    assert refused(envelope([STOCK], nbf=future)).reason is Reason.NOT_YET_VALID
    assert refused(envelope([STOCK], iat=future)).reason is Reason.NOT_YET_VALID
    near = int((datetime.now(UTC) + timedelta(seconds=20)).timestamp())
    assert verify(envelope([STOCK], nbf=near), "stock", TOKEN, leeway=60).items == [STOCK]


def test_request_id_claim_is_case_insensitive() -> None:
    """RequestId and requestid name the same claim."""
    for claim in ("RequestId", "requestid", "REQUESTID"):
        token = jwt.encode({claim: "req-1"}, TOKEN, algorithm="HS256")
        assert verify(with_token(envelope([STOCK]), token), "stock", TOKEN).request_id == "req-1"


@pytest.mark.parametrize(
    "claims",
    [
        {"requestId": "req-2"},
        {"requestId": 1},
        {"other": "req-1"},
        {},
        {"requestId": "req-1", "RequestId": "req-2"},
    ],
)
def test_request_id_mismatch(claims: dict[str, Any]) -> None:
    """The claim must equal the body's requestId in type and value."""
    raw = json.loads(envelope([STOCK]))
    raw["requestId"] = "req-1"
    token = jwt.encode(claims, TOKEN, algorithm="HS256")
    error = refused(with_token(json.dumps(raw).encode(), token))
    assert error.reason is Reason.REQUEST_ID_MISMATCH


def test_integer_request_ids_are_invalid_payload() -> None:
    """requestId is a string in the contract; a number in the body is invalid_payload."""
    document = json.loads(envelope([STOCK]))
    document["requestId"] = 1
    assert refused(json.dumps(document).encode()).reason is Reason.INVALID_PAYLOAD


def test_every_reason_has_a_status() -> None:
    """Each reason code maps to 400 (unreadable) or 401 (untrusted)."""
    assert set(HTTP_STATUS) == set(Reason)
    assert {HTTP_STATUS[r] for r in Reason} == {400, 401}


def test_details_never_contain_the_key() -> None:
    """No refusal detail repeats the verification token or the JWT."""
    raw = signed_body(key="wrong-key-wrong-key-wrong-key-wrong-key")
    error = refused(raw)
    assert TOKEN not in str(error) and json.loads(raw)["token"] not in str(error)


# --- Properties: the signer and the verifier are mirror images ------------------------
request_ids = st.text(min_size=1, max_size=40).filter(is_identifier)
keys = st.text(min_size=1, max_size=64).filter(lambda s: s.strip() != "")
algorithms = st.sampled_from(["HS256", "HS384", "HS512"])


@settings(max_examples=60, deadline=None)
@given(
    request_id=request_ids,
    key=keys,
    alg=algorithms,
    kind=st.sampled_from(["stock", "price"]),
    count=st.integers(0, 5),
)
def test_any_signed_body_verifies(
    request_id: str, key: str, alg: str, kind: str, count: int
) -> None:
    """Whatever the request id, key and algorithm, the signer's body verifies."""
    items = signing.generate_items(kind, count, datetime.now(UTC), seed=count)
    body = signing.build_body(
        items, key, now=datetime.now(UTC), request_id=request_id, algorithm=alg
    )
    update = verify(signing.encode(body), kind, key)
    assert (update.request_id, update.items) == (request_id, items)


@settings(max_examples=60, deadline=None)
@given(request_id=request_ids, key=keys, data=st.data())
def test_any_single_mutation_is_refused(request_id: str, key: str, data: st.DataObject) -> None:
    """Changing one character of the token, the request id or the key breaks verification."""
    body = signing.build_body([], key, now=datetime.now(UTC), request_id=request_id)
    target = data.draw(st.sampled_from(["token", "requestId", "key"]))
    if target == "key":
        other = data.draw(keys.filter(lambda k: k != key))
        with pytest.raises(VerificationError):
            verify(signing.encode(body), "stock", other)
        return
    original: str = body[target]
    index = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != original[index]))
    body[target] = original[:index] + replacement + original[index + 1 :]
    if target == "token" and _same_signature_bits(original, body[target]):
        return  # base64url's last character carries spare bits: same bytes, same token
    with pytest.raises(VerificationError):
        verify(signing.encode(body), "stock", key)


def _same_signature_bits(original: str, mutated: str) -> bool:
    """True when a mutation only changed unused base64 padding bits of the signature."""
    import base64

    def decode(part: str) -> bytes | None:
        try:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except ValueError:
            return None

    head_a, _, sig_a = original.rpartition(".")
    head_b, _, sig_b = mutated.rpartition(".")
    return head_a == head_b and sig_a != sig_b and decode(sig_a) == decode(sig_b) is not None


# --- The fast paths agree with the reference rules ---------------------------------
item_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        ["2021-12-22T17:36:19.8066912+00:00", "2021-12-22", "2021-12-22T17:36:19", " ", "A-1"]
    ),
)
items_strategy = st.lists(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["sku", "quantity", "price", "updatedOn", "x"]), item_values, max_size=5
        ),
        st.fixed_dictionaries(
            {
                "sku": st.just("A-1"),
                "quantity": st.integers(0, 9),
                "price": st.floats(0, 99),
                "updatedOn": st.just(STOCK["updatedOn"]),
            }
        ),
        item_values,
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["stock", "price"]), data=items_strategy)
def test_column_checks_agree_with_item_rules(kind: str, data: list[Any]) -> None:
    """The column-by-column fast path accepts exactly what the per-item rules accept among
    items holding the three fields alone (others take the loop, which renames keys)."""
    from avasam_cli.webhooks.kinds import KINDS
    from avasam_cli.webhooks.verify import colons_in_valid_items

    rule = KINDS[kind].item_problem
    reference = all(type(item) is dict and len(item) == 3 and rule(item) is None for item in data)
    colons = colons_in_valid_items(kind, data)
    assert (colons >= 0) == reference
    if reference:  # then also the colons inside the items' strings, for the duplicate check
        assert colons == sum(str(value).count(":") for item in data for value in item.values())


@settings(max_examples=300, deadline=None)
@given(
    skus=st.lists(
        st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=1, max_size=6)
        | st.text(min_size=1, max_size=6)
        | st.sampled_from([" ", "  ", "A B", "A\x7f", "A\tB", "\x85", "\u00a0", "\u3000"]),
        min_size=1,
        max_size=8,
    )
)
def test_the_skus_column_check_agrees_with_the_identifier_rule(skus: list[str]) -> None:
    """The SKU column's byte checks (ASCII) and expression (other text) refuse exactly
    the SKUs the identifier rule refuses: a control character, or blank."""
    from avasam_cli.webhooks.verify import _control_or_blank

    assert _control_or_blank("".join(skus), skus) == (not all(map(is_identifier, skus)))


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJyZXF1ZXN0SWQiOiJyZXEtMSJ9.",
        "eyJhbGciOiJIUzI1NiJ9=.eyJyZXF1ZXN0SWQiOiJyZXEtMSJ9.abc",
        "eyJhbGciOiJIUzI1NiJ9.e.abc",
        "eyJhbGciOiJIUzI1NiJ9.eyJyZXF1ZXN0SWQiOiJyZXEtMSJ9.a+b/",
        "eyJhbGciOiJIUzI1NiJ9.eyJyZXF1ZXN0SWQiOiJyZXEtMSJ9.YWJj==",
        "eyJhbGciOiJIUzI1NiJ9.eyJyZXF1ZXN0SWQiOiJyZXEtMSJ9.YWJk",
        "eyJhbGciOiJIUzI1NiJ9.eyJyZXF1ZXN0SWQiOiJyZXEtMSJ9.YWJl",
    ],
)
def test_fast_jwt_decoder_agrees_with_pyjwt(token: str) -> None:
    """Our tuned PyJWT subclass refuses exactly what stock PyJWT refuses."""
    from avasam_cli.webhooks._jwt import JWT

    def outcome(decoder: jwt.PyJWT) -> str:
        try:
            decoder.decode_complete(token, TOKEN, algorithms=["HS256"])
        except jwt.PyJWTError as error:
            return type(error).__name__
        return "ok"

    assert outcome(JWT) == outcome(jwt.PyJWT())


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_fast_jwt_decoder_agrees_on_mutations(data: st.DataObject) -> None:
    """On any one-character change to a valid token, both decoders agree."""
    from avasam_cli.webhooks._jwt import JWT

    token = signing.sign_token("req-1", TOKEN, now=datetime.now(UTC))
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from("AZaz09-_=+/.!"))
    mutated = token[:index] + char + token[index + 1 :]

    def outcome(decoder: jwt.PyJWT) -> str:
        try:
            decoder.decode_complete(mutated, TOKEN, algorithms=["HS256"], leeway=10**9)
        except jwt.PyJWTError as error:
            return type(error).__name__
        return "ok"

    assert outcome(JWT) == outcome(jwt.PyJWT())


# Claim values around every rule PyJWT applies: seconds from now (kept clear of the exact
# boundaries, which a slow machine could cross between the two decodes), and odd types.
_MOMENTS = st.one_of(
    st.integers(-(10**6), 10**6).filter(lambda offset: min(abs(offset - 60), abs(offset + 60)) > 5),
    st.sampled_from([True, None, "1700000000", 1.5e9, [1], {"a": 1}]),
)
_CLAIM_VALUES = {
    "iat": _MOMENTS,
    "nbf": _MOMENTS,
    "exp": _MOMENTS,
    "sub": st.sampled_from(["seller", 7, None]),
    "jti": st.sampled_from(["j-1", 7, None]),
}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_shortcut_for_accepted_headers_agrees_with_pyjwt(data: st.DataObject) -> None:
    """Once a header was accepted, `decode_token` checks signature and claims itself
    (`_known_good`): it accepts exactly what stock PyJWT accepts, and refuses the rest
    with PyJWT's reason."""
    import time

    from avasam_cli.webhooks import _jwt

    algorithm = data.draw(st.sampled_from(["HS256", "HS384", "HS512"]))
    now = int(time.time())
    claims: dict[str, Any] = {"requestId": "req-1"}
    for name in data.draw(st.lists(st.sampled_from(sorted(_CLAIM_VALUES)), unique=True)):
        value = data.draw(_CLAIM_VALUES[name])
        moving = name in ("iat", "nbf", "exp") and type(value) is int
        claims[name] = now + value if moving else value
    key = data.draw(st.sampled_from([TOKEN, TOKEN + "-other"]))
    token = jwt.encode(claims, key, algorithm=algorithm)
    if data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(token) - 1))
        token = token[:index] + data.draw(st.sampled_from("AZaz09-_=.!é")) + token[index + 1 :]
    seen = jwt.encode({"requestId": "seen"}, TOKEN, algorithm=algorithm)
    _jwt.decode_token(seen, TOKEN, 60)  # the header is now accepted: the shortcut applies
    assert (TOKEN, seen.partition(".")[0]) in _jwt._ACCEPTED

    try:
        ours: Any = _jwt.decode_token(token, TOKEN, 60)[0]
    except VerificationError as error:
        ours = error.reason
    try:
        theirs: Any = jwt.decode(token, TOKEN, algorithms=[algorithm], leeway=60)
    except (jwt.PyJWTError, TypeError):  # PyJWT < 2.15: int(None) on a null iat/nbf/exp
        theirs = "refused"
    if theirs == "refused":
        assert isinstance(ours, Reason)
        _jwt._ACCEPTED.clear()  # the same refusal, decided by PyJWT alone
        try:
            _jwt.decode_token(token, TOKEN, 60)
        except VerificationError as error:
            assert error.reason is ours
    else:
        assert ours == theirs


@pytest.mark.parametrize("bad", ["   ", "\t", "req\x1b[31m", "req\n", "req\x7f", "\x85req"])
@pytest.mark.parametrize("field", ["requestId", "sku"])
def test_identifiers_refuse_spaces_and_control_characters(bad: str, field: str) -> None:
    """Request ids and SKUs follow one rule: not only spaces, no control characters."""
    item = {**STOCK, "sku": bad} if field == "sku" else STOCK
    raw = envelope([item] * (1 if field == "requestId" else 40), request_id="req-1")
    if field == "requestId":
        raw = envelope([STOCK], request_id=bad)
    error = refused(raw)
    assert error.reason is Reason.INVALID_PAYLOAD
    assert "control characters" in error.detail


def _segment_outcome(decode: Any, segment: bytes) -> bytes | str:
    try:
        return bytes(decode(segment, "Payload"))
    except jwt.DecodeError:
        return "refused"


def _padding_allowed(segment: bytes) -> bool:
    """Our rule for trailing '=' (PyJWT 2.15's; 2.14 refused any): at most two, and only
    where they complete a multiple of four."""
    padding = len(segment) - len(segment.rstrip(b"="))
    return padding == 0 or (padding <= 2 and len(segment) % 4 == 0)


@pytest.mark.parametrize("prefix", [b"", b"Y", b"YW", b"YWJ", b"YWJj", b"YWJjZ", b"YWJjZG"])
def test_the_fast_base64_decoder_agrees_with_pyjwts_on_every_last_character(
    prefix: bytes,
) -> None:
    """Every character (the alphabet, the standard one's + and /, others) after segments
    of every length modulo 4: the same bytes as PyJWT's decoder, or refused by both.  The
    last character's spare bits decide canonical form (`_CANONICAL_LAST`).  Padded, the
    rule is one whatever PyJWT is installed (the floor, 2.14, refuses padding; 2.15 takes
    it): allowed padding decodes as the segment without it does, any other is refused."""
    from jwt.api_jws import PyJWS

    from avasam_cli.webhooks._jwt import _FastJWS

    for code in range(128):
        for padding in (b"", b"=", b"==", b"==="):
            segment = prefix + bytes([code]) + padding
            stripped = segment.rstrip(b"=")
            expected = (
                _segment_outcome(PyJWS._decode_base64url_segment, stripped)
                if _padding_allowed(segment)
                else "refused"
            )
            ours = _segment_outcome(_FastJWS._decode_base64url_segment, segment)
            assert ours == expected, segment


def test_the_fast_base64_override_is_really_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT calls our base64 hook when verifying (it does from 2.14, the declared floor).

    PyJWT only decides tokens whose header is not yet accepted with their key: with the
    cache of accepted headers warm (as the tests before this one may leave it), the
    check would pass PyJWT by, so it runs on an empty one."""
    from avasam_cli.webhooks import _jwt

    calls: list[str] = []
    original = _jwt._FastJWS._decode_base64url_segment

    def counting(segment: bytes, name: str) -> bytes:
        calls.append(name)
        return original(segment, name)

    assert verify(signed_body(request_id="hook-0"), "stock", TOKEN)  # the cache warm
    monkeypatch.setattr(_jwt, "_ACCEPTED", {})
    monkeypatch.setattr(_jwt._FastJWS, "_decode_base64url_segment", staticmethod(counting))
    assert verify(signed_body(request_id="hook-1"), "stock", TOKEN).request_id == "hook-1"
    assert calls, "PyJWT never called the tuned base64 decoder"


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize(
    "claims",
    [
        {"requestId": "r-1"},
        {"requestId": "é-ünicode", "iat": 1700000000, "exp": 1700000300},
        {"requestId": 'quote"and\\slash', "nbf": 0},
    ],
)
def test_our_token_encoder_matches_pyjwt(algorithm: str, claims: dict[str, object]) -> None:
    """The fast encoder makes exactly the token PyJWT makes."""
    import jwt

    from avasam_cli.webhooks import _jwt

    assert _jwt.encode(claims, TOKEN, algorithm) == jwt.encode(claims, TOKEN, algorithm=algorithm)


# --- The printer's items, taken as sent ---------------------------------------------
def _resigned(document: dict[str, Any], **dumps: Any) -> bytes:
    """`document` with a valid token for its requestId, written by json.dumps(**dumps)."""
    token = signing.sign_token(document["requestId"], TOKEN, now=datetime.now(UTC))
    return json.dumps({**document, "token": token}, **dumps).encode()


def test_a_canonical_body_gives_its_items_as_sent() -> None:
    """The usual body (Avasam's order, data last, camelCase): verification says so, and
    the printer takes the items' bytes unparsed, which read as parsing would print."""
    import orjson

    from avasam_cli.webhooks.keys import items_as_sent, stored_items

    spaced = json.dumps(json.loads(signed_body(count=40))).encode()  # ", " and ": " apart
    bodies = [("stock", signed_body(count=n)) for n in (0, 1, 3, 1000)]  # by item, by column
    for kind, raw in (*bodies, ("price", signed_body("price", count=40)), ("stock", spaced)):
        assert verify(raw, kind, TOKEN).items_as_sent
        items = items_as_sent(raw)
        assert items is not None and items in raw
        assert orjson.loads(items) == stored_items(raw, kind)


@pytest.mark.parametrize("count", [2, 40])  # checked item by item, and by column
def test_items_as_sent_only_where_verification_vouches_for_them(count: int) -> None:
    document = json.loads(signed_body(count=count))
    items = document["data"]
    renamed = [{"SKU": item["sku"], **{k: v for k, v in item.items() if k != "sku"}}
               for item in items]  # fmt: skip
    one_renamed = [*items[:-1], renamed[-1]]
    more = [*items[:-1], {**items[-1], "note": "x"}]
    without_data = {key: value for key, value in document.items() if key != "data"}
    not_vouched = [
        {**document, "note": "x"},  # a key the envelope does not know
        {**without_data, "Data": items},  # the envelope's in another casing
        {**document, "data": renamed},  # items to rename
        {**document, "data": one_renamed},  # the last one only
        {**document, "data": more},  # a field beside the three
    ]
    for changed in not_vouched:
        assert not verify(_resigned(changed), "stock", TOKEN).items_as_sent


@settings(max_examples=100, deadline=None)
@given(
    order=st.permutations(["requestId", "on", "token", "data"]),
    sku=st.text(alphabet='ab]["\\:,{} \n', min_size=1, max_size=6).filter(str.strip),
    request_id=st.text(alphabet='ab]["\\:,{}', min_size=1, max_size=6),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")]),
    indent=st.sampled_from([None, 1]),
    count=st.sampled_from([1, 8, 40]),  # checked item by item, and by column
)
def test_items_as_sent_are_what_parsing_would_print(
    order: list[str],
    sku: str,
    request_id: str,
    separators: tuple[str, str],
    indent: int | None,
    count: int,
) -> None:
    """Whatever the key order, the spacing, the escapes and brackets in a string, the
    bytes taken as sent are either declined or the very items parsing would print."""
    import orjson

    from avasam_cli.webhooks.keys import items_as_sent, stored_items

    document = json.loads(signed_body(count=count))
    document["data"][count // 2]["sku"] = sku
    document["requestId"] = request_id
    raw = _resigned({key: document[key] for key in order}, separators=separators, indent=indent)
    try:
        vouched = verify(raw, "stock", TOKEN).items_as_sent
    except VerificationError as refused:  # a SKU or request id the rules refuse
        assert refused.reason is Reason.INVALID_PAYLOAD, refused
        return
    taken = items_as_sent(raw) if vouched else None
    if taken is not None:
        assert b"\n" not in taken
        assert orjson.loads(taken) == stored_items(raw, "stock")
    elif order[-1] == "data" and indent is None:
        raise AssertionError("a body in the usual shape was not taken as sent")
