"""The pure verification core: bytes in, a verified update or a typed error out.

No web framework in here.  The decisions Avasam's documentation leaves open
(see the README's "Decisions" section) are the constants at the top of this
module and the item schemas below them, so a seller with a real account can
correct them in one place.
"""

from __future__ import annotations

import binascii
import collections
import functools
import json
import math
import operator
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS

from avasam_cli.defaults import DEFAULT_LEEWAY
from avasam_cli.errors import OperationFailed

# --- Decisions where Avasam's documentation is silent -------------------------------
# The JWT is signed with the seller's verification token; only the HMAC family fits a
# shared secret.  `none` and every asymmetric algorithm are refused.
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
# The claim carrying the request id, matched case-insensitively (RequestId, requestid).
REQUEST_ID_CLAIM = "requestId"

# We say so ourselves (configure, listen) when the token is short; PyJWT would repeat it
# on every request.
warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)


class Reason(StrEnum):
    """Stable reason codes: they appear in HTTP answers, the store and `--json` output."""

    MALFORMED_JSON = "malformed_json"
    INVALID_PAYLOAD = "invalid_payload"
    MISSING_TOKEN = "missing_token"  # noqa: S105 - a reason code, not a password
    BAD_TOKEN = "bad_token"  # noqa: S105 - same
    BAD_SIGNATURE = "bad_signature"
    DISALLOWED_ALG = "disallowed_alg"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REQUEST_ID_MISMATCH = "request_id_mismatch"


# Which answer each reason gets: a body we cannot read is the sender's mistake (400);
# a body we can read but cannot trust is an authentication failure (401).
HTTP_STATUS: Mapping[Reason, int] = {
    Reason.MALFORMED_JSON: 400,
    Reason.INVALID_PAYLOAD: 400,
    **{
        reason: 401
        for reason in Reason
        if reason not in (Reason.MALFORMED_JSON, Reason.INVALID_PAYLOAD)
    },
}


class VerificationError(OperationFailed):
    """A payload that is refused, with its reason code and a detail safe to show."""

    def __init__(self, reason: Reason, detail: str, path: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.path = path

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.reason]


@dataclass(frozen=True, slots=True)
class VerifiedUpdate:
    kind: str
    request_id: str
    on: str
    items: list[dict[str, Any]]
    algorithm: str


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _invalid(path: str, expected: str, value: Any = ...) -> VerificationError:
    got = "" if value is ... else f" (got {_shown(value)})"
    return VerificationError(Reason.INVALID_PAYLOAD, f"{path} must be {expected}{got}", path)


def is_iso_datetime(value: Any) -> bool:
    """ISO 8601 date and time; seven fractional digits (.NET) parse, date alone does not."""
    if type(value) is not str or len(value) <= 10:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# --- Item schemas: one rule set per kind -------------------------------------------
# Each returns None for a valid item, else (field, what it must be).  The field path
# is only built for the error: this runs for every item of every update.
Problem = tuple[str, str] | None
_SKU_RULE = ("sku", "a non-empty string")
_UPDATED_ON_RULE = ("updatedOn", "an ISO 8601 date and time")


def _sku_and_time_problem(item: dict[str, Any]) -> Problem:
    sku = item.get("sku")
    if type(sku) is not str or not sku or sku.isspace():
        return _SKU_RULE
    return None if is_iso_datetime(item.get("updatedOn")) else _UPDATED_ON_RULE


def stock_item_problem(item: dict[str, Any]) -> Problem:
    """`{sku: str, quantity: int >= 0, updatedOn: DateTime}`; further fields are kept."""
    quantity = item.get("quantity")
    if type(quantity) is not int or quantity < 0:
        return ("quantity", "an integer >= 0")
    return _sku_and_time_problem(item)


def price_item_problem(item: dict[str, Any]) -> Problem:
    """`{sku: str, price: number >= 0, updatedOn: DateTime}`; further fields are kept."""
    price: Any = item.get("price")
    if type(price) not in (int, float) or not math.isfinite(price) or price < 0:
        return ("price", "a finite number >= 0")
    return _sku_and_time_problem(item)


ITEM_RULES: Mapping[str, Callable[[dict[str, Any]], Problem]] = {
    "stock": stock_item_problem,
    "price": price_item_problem,
}
# Each kind's columns (sku, its number, updatedOn) and the types its number may have.
_COLUMNS: Mapping[str, tuple[Callable[[dict[str, Any]], tuple[Any, ...]], set[type]]] = {
    "stock": (operator.itemgetter("sku", "quantity", "updatedOn"), {int}),
    "price": (operator.itemgetter("sku", "price", "updatedOn"), {int, float}),
}


def _all_items_valid(kind: str, data: list[Any]) -> bool:
    """True when every item passes its kind's rules, checked column by column.

    Same rules as ITEM_RULES, but each column is checked by builtins looping in C
    (map, zip, set, min) instead of a Python call per item: a 1,000-item update
    costs a fraction of the per-item loop.  When it says False, the per-item loop
    finds and names the first bad field.
    """
    if not data:
        return True
    if set(map(type, data)) != {dict}:
        return False
    columns, number_types = _COLUMNS[kind]
    try:
        skus, numbers, times = zip(*map(columns, data), strict=True)
    except KeyError:  # a missing field
        return False
    if not set(map(type, numbers)) <= number_types or min(numbers) < 0:
        return False
    if kind == "price" and not all(map(math.isfinite, numbers)):
        return False
    if set(map(type, skus)) != {str} or not all(skus) or any(map(str.isspace, skus)):
        return False
    if set(map(type, times)) != {str} or min(map(len, times)) <= 10:
        return False
    try:
        collections.deque(map(datetime.fromisoformat, times), maxlen=0)
    except ValueError:
        return False
    return True


# --- Strict JSON -------------------------------------------------------------------
def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def parse_json(raw: bytes) -> Any:
    """Parse as a strict parser would: UTF-8, no NaN or Infinity, no duplicate keys.

    orjson already refuses NaN, Infinity and invalid UTF-8.  Duplicate keys are
    caught without a slow object hook: outside strings, a colon only follows a
    key, so the raw body has more colons than its compact re-serialisation
    exactly when a key was dropped.  An escaped character (`\\u003a`) could hide
    a colon, so bodies with any escape take the exact, slower path.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise VerificationError(Reason.MALFORMED_JSON, f"not valid JSON: {error}") from None
    colons = raw.count(b":")
    if colons and (b"\\" in raw or colons != orjson.dumps(document).count(b":")):
        try:
            json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except ValueError as error:  # JSONDecodeError is a ValueError
            raise VerificationError(Reason.MALFORMED_JSON, f"not valid JSON: {error}") from None
    return document


# --- The JWT -----------------------------------------------------------------------
class _CachedKeyHMAC(HMACAlgorithm):
    """PyJWT's HMAC, preparing each key once instead of on every request.

    Preparing a key includes trying to parse it as PEM, SSH and DER certificates (to
    refuse asymmetric keys): by far the dearest step of verifying a short token.
    """

    @functools.lru_cache(maxsize=8)  # noqa: B019 - three instances live for the process
    def prepare_key(self, key: str | bytes) -> bytes:
        return super().prepare_key(key)


_BASE64URL_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*={0,2}")


_BASE64URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class _FastJWS(PyJWS):
    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        # Same rules as PyJWT's own check (alphabet, padding, canonical form), with a
        # regular expression and binascii in place of a Python loop over every character.
        stripped = segment.rstrip(b"=")
        if (
            not _BASE64URL_SEGMENT.fullmatch(segment)
            or (segment != stripped and len(segment) % 4 != 0)
            or len(stripped) % 4 == 1
        ):
            raise jwt.DecodeError(f"Invalid {name} padding")
        standard = stripped.translate(_BASE64URL_TO_STANDARD)
        try:
            decoded = binascii.a2b_base64(standard + b"=" * (-len(standard) % 4), strict_mode=True)
        except binascii.Error as error:
            raise jwt.DecodeError(f"Invalid {name} padding") from error
        if binascii.b2a_base64(decoded, newline=False).rstrip(b"=") != standard:
            raise jwt.DecodeError(f"Invalid {name} padding")
        return decoded


class _WebhookJWT(jwt.PyJWT):
    """PyJWT's decoder, tuned for verifying many tokens with one key (see bench/)."""

    def __init__(self) -> None:
        super().__init__(options={"verify_aud": False, "verify_iss": False, "require": []})
        self._jws = _FastJWS(algorithms=[], options=self._get_sig_options())
        digests = (HMACAlgorithm.SHA256, HMACAlgorithm.SHA384, HMACAlgorithm.SHA512)
        for name, digest in zip(HMAC_ALGORITHMS, digests, strict=True):
            self._jws.register_algorithm(name, _CachedKeyHMAC(digest))

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        # The documented override point for payload decoding: orjson instead of json.
        try:
            payload = orjson.loads(decoded["payload"])
        except orjson.JSONDecodeError as error:
            raise jwt.DecodeError(f"Invalid payload string: {error}") from None
        if not isinstance(payload, dict):
            raise jwt.DecodeError("Invalid payload string: must be a json object")
        return payload


_JWT = _WebhookJWT()


def _decode_token(token: str, key: str, leeway: float) -> tuple[dict[str, Any], str]:
    try:
        decoded = _JWT.decode_complete(token, key, algorithms=list(HMAC_ALGORITHMS), leeway=leeway)
    except jwt.InvalidAlgorithmError:
        alg = _unverified_alg(token)
        raise VerificationError(
            Reason.DISALLOWED_ALG,
            f"token algorithm {alg} is not allowed; expected one of {', '.join(HMAC_ALGORITHMS)}",
        ) from None
    except jwt.InvalidSignatureError:
        raise VerificationError(
            Reason.BAD_SIGNATURE,
            "token signature does not match the verification token: check that the token "
            "configured here is the one typed into Avasam",
        ) from None
    except jwt.ExpiredSignatureError:
        raise VerificationError(Reason.EXPIRED, "token has expired (exp)") from None
    except jwt.ImmatureSignatureError as error:
        claim = "iat" if "iat" in str(error) else "nbf"
        raise VerificationError(Reason.NOT_YET_VALID, f"token is not valid yet ({claim})") from None
    except jwt.PyJWTError as error:
        raise VerificationError(Reason.BAD_TOKEN, f"token is not a valid JWT: {error}") from None
    return decoded["payload"], decoded["header"]["alg"]


def _unverified_alg(token: str) -> str:
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        return "(unreadable)"
    return "(missing)" if alg is None else _shown(alg)


def _claimed_request_ids(claims: Mapping[str, Any]) -> list[Any]:
    wanted = REQUEST_ID_CLAIM.lower()
    return [value for key, value in claims.items() if key.lower() == wanted]


# --- The whole check ---------------------------------------------------------------
def verify(
    raw: bytes, kind: str, verification_token: str, leeway: float = DEFAULT_LEEWAY
) -> VerifiedUpdate:
    """Accept or refuse a webhook body whole.  Raises VerificationError with its reason."""
    document = parse_json(raw)
    if type(document) is not dict:
        raise _invalid("$", "a JSON object {requestId, on, token, data}")
    request_id = document.get("requestId")
    if type(request_id) is not str or not request_id:
        raise _invalid("requestId", "a non-empty string", document.get("requestId", ...))
    on: Any = document.get("on")
    if not is_iso_datetime(on):
        raise _invalid("on", "an ISO 8601 date and time", document.get("on", ...))
    data = document.get("data")
    if type(data) is not list:
        raise _invalid("data", "a list of items", document.get("data", ...))
    problem_of = ITEM_RULES[kind]
    # Column checks pay off from a few dozen items; below that the loop is cheaper.
    checked_by_columns = len(data) >= 32 and _all_items_valid(kind, data)
    for index, item in enumerate([] if checked_by_columns else data):
        if type(item) is not dict:
            raise _invalid(f"data[{index}]", "an object", item)
        problem = problem_of(item)
        if problem is not None:
            field, expected = problem
            raise _invalid(f"data[{index}].{field}", expected, item.get(field, ...))
    token = document.get("token")
    if not token:
        raise VerificationError(Reason.MISSING_TOKEN, "the body has no token")
    if type(token) is not str:
        raise VerificationError(Reason.BAD_TOKEN, "token must be a string")

    claims, algorithm = _decode_token(token, verification_token, leeway)
    claimed = _claimed_request_ids(claims)
    if not claimed:
        raise VerificationError(
            Reason.REQUEST_ID_MISMATCH, f"token has no {REQUEST_ID_CLAIM} claim"
        )
    if any(type(value) is not str or value != request_id for value in claimed):
        raise VerificationError(
            Reason.REQUEST_ID_MISMATCH,
            f"the token's {REQUEST_ID_CLAIM} does not match the body's requestId",
        )
    return VerifiedUpdate(kind, request_id, on, data, algorithm)
