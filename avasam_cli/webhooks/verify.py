"""The pure verification core: bytes in, a verified update or a typed error out.

No web framework and no I/O in here.  The decisions Avasam's documentation
leaves open live in `contract`, the per-kind item rules in `kinds`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import operator
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from avasam_cli.rotation import Rolling, until_text
from avasam_cli.webhooks._jwt import decode_token, shown
from avasam_cli.webhooks.contract import (
    DEFAULT_LEEWAY,
    KEYS_MATCH_ANY_CASE,
    NO_AUDIENCE,
    PREVIOUS,
    REQUEST_ID_CLAIM,
    Reason,
    VerificationError,
    VerifiedUpdate,
)
from avasam_cli.webhooks.keys import ENVELOPE_NAMES, ITEM_NAMES, AmbiguousKeys, canonical
from avasam_cli.webhooks.kinds import (
    CONTROL_CHARACTERS,
    IDENTIFIER_RULE,
    KINDS,
    is_identifier,
    is_iso_datetime,
)


def _invalid(path: str, expected: str, value: Any = ...) -> VerificationError:
    got = "" if value is ... else f" (got {shown(value)})"
    return VerificationError(Reason.INVALID_PAYLOAD, f"{path} must be {expected}{got}", path)


# Column checks pay off from a few dozen items; below that the per-item loop is cheaper.
COLUMNS_FROM = 32
# Getters for each column an item must have (the kind's number is looked up per kind).
_SKU = operator.itemgetter("sku")
_UPDATED_ON = operator.itemgetter("updatedOn")
_VALUE: Mapping[str, Callable[[dict[str, Any]], Any]] = {
    name: operator.itemgetter(kind.value_field) for name, kind in KINDS.items()
}


def colons_in_valid_items(kind: str, data: list[Any]) -> int:
    """The colons inside the items' strings when every item holds the three fields alone
    (canonical names) and passes its kind's rules, checked column by column; else -1.

    Same rules as the kind's `item_problem`, but each column is checked by builtins looping in C
    (map, join, set, min) instead of a Python call per item: a 1,000-item update
    costs a fraction of the per-item loop.  When it says -1, the per-item loop
    finds and names the first bad field.  The count is what the duplicate-key check
    needs (`_usual_colons`): the three keys hold none.
    """
    if not data:
        return 0
    rules = KINDS[kind]
    # The items are orjson's: exact builtins, where a getter by name raises TypeError on
    # anything but a dict, and join on anything but a str.
    try:  # one pass per column: cheaper than one tuple per item (bench/)
        skus = list(map(_SKU, data))
        numbers = list(map(_VALUE[kind], data))
        times = list(map(_UPDATED_ON, data))
        joined_skus = "".join(skus)
        joined_times = "".join(times)
    except (KeyError, TypeError):  # a missing field, an item or a field of another type
        return -1
    # Exactly the three fields, each under its canonical name (the getters above): no key
    # in another casing beside it (ambiguous), none to rename.  Others take the loop.
    if sum(map(len, data)) != 3 * len(data):
        return -1
    if not set(map(type, numbers)) <= rules.value_types or min(numbers) < 0:
        return -1
    if rules.finite_values and not all(map(math.isfinite, numbers)):
        return -1
    if not all(skus) or _control_or_blank(joined_skus, skus):
        return -1
    if min(map(len, times)) <= 10:
        return -1
    try:
        collections.deque(map(datetime.fromisoformat, times), maxlen=0)
    except ValueError:
        return -1
    return joined_skus.count(":") + joined_times.count(":")


# The printable ASCII characters: for ASCII text, "no control characters" is "nothing
# left once these are deleted", and the space is the only one of them that is blank.
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _control_or_blank(joined: str, skus: list[str]) -> bool:
    """Whether any of `skus` (all str; `joined` is them joined) holds a control character or
    is blank.  ASCII, as SKUs usually are, is checked with byte operations in C: several
    times faster than isprintable, isspace or the expression, which other text takes."""
    if joined.isascii():
        ascii_bytes = joined.encode("ascii")
        if ascii_bytes.translate(None, _PRINTABLE_ASCII):
            return True
        return b" " in ascii_bytes and any(map(str.isspace, skus))
    return CONTROL_CHARACTERS.search(joined) is not None or any(map(str.isspace, skus))


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


def parse_json(raw: bytes, kind: str) -> tuple[Any, int]:
    """Parse as a strict parser would: UTF-8, no NaN or Infinity, no duplicate keys.
    With the document, the colons it holds when it is of the usual shape (its items
    then passed the column checks: see `_usual_colons`), else -1.

    orjson already refuses NaN, Infinity and invalid UTF-8.  Duplicate keys are
    caught without a slow object hook: outside strings, a colon only follows a
    key, so the raw body has more colons than the document would have written out
    exactly when a key was dropped.  An escaped character (`\\u003a`) could hide
    a colon, so bodies with any escape take the exact, slower path.
    """
    try:
        document = orjson.loads(raw)  # refuses nesting deeper than 1,024 levels itself
    except orjson.JSONDecodeError as error:
        raise VerificationError(Reason.MALFORMED_JSON, f"not valid JSON: {error}") from None
    colons = raw.count(b":")
    usual = _usual_colons(document, kind)
    if colons and (b"\\" in raw or colons != (usual if usual >= 0 else _compact_colons(document))):
        try:
            json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except ValueError as error:  # JSONDecodeError is a ValueError
            raise VerificationError(Reason.MALFORMED_JSON, f"not valid JSON: {error}") from None
        except RecursionError:
            raise VerificationError(
                Reason.MALFORMED_JSON, "not valid JSON: nested too deeply"
            ) from None
    return document, usual


def _usual_colons(document: Any, kind: str) -> int:
    """For the usual body (an object of the envelope's keys alone, canonically spelled,
    its other values strings, and at least 32 items that pass the column checks), the
    colons it holds when written without escapes: one after each key (the envelope's,
    three per item) and those inside its strings (its keys hold none); else -1.  So
    they are counted without writing the document out again, which costs a 1,000-item
    update a tenth of its check.
    """
    if type(document) is not dict or not document.keys() <= ENVELOPE_NAMES.canonical:
        return -1
    data = document.get("data")
    if type(data) is not list or len(data) < COLUMNS_FROM:
        return -1
    envelope = [value for key, value in document.items() if key != "data"]
    if any(type(value) is not str for value in envelope):
        return -1
    in_items = colons_in_valid_items(kind, data)
    if in_items < 0:
        return -1
    in_envelope: int = sum(value.count(":") for value in envelope)
    return len(document) + 3 * len(data) + in_envelope + in_items


def _compact_colons(document: Any) -> int:
    """Colons in the compact form; -1 (take the exact path) when it cannot be written
    (orjson writes at most 254 levels of nesting)."""
    try:
        return orjson.dumps(document).count(b":")
    except orjson.JSONEncodeError:
        return -1


# Claims no other casing of REQUEST_ID_CLAIM can hide among: the usual token's, whose
# request id is then found by one lookup instead of a look at every key in lower case.
_PLAIN_CLAIMS = frozenset((REQUEST_ID_CLAIM, "iat", "nbf", "exp", "sub", "jti", "aud", "iss"))


def _claimed_request_ids(claims: Mapping[str, Any]) -> list[Any]:
    if claims.keys() <= _PLAIN_CLAIMS:
        return [claims[REQUEST_ID_CLAIM]] if REQUEST_ID_CLAIM in claims else []
    wanted = REQUEST_ID_CLAIM.lower()
    return [value for key, value in claims.items() if key.lower() == wanted]


def _ambiguous(path: str, clash: AmbiguousKeys) -> VerificationError:
    return VerificationError(
        Reason.INVALID_PAYLOAD,
        f"{path} holds both {clash.first!r} and {clash.second!r}: keys that differ only in "
        "case are ambiguous; send one of them",
        path,
    )


# --- The whole check ---------------------------------------------------------------
def verify(
    raw: bytes,
    kind: str,
    verification_token: str,
    leeway: float = DEFAULT_LEEWAY,
    audience: tuple[str, ...] = NO_AUDIENCE,
) -> VerifiedUpdate:
    """Accept or refuse a webhook body whole.  Raises VerificationError with its reason.

    The update it returns has its items under the canonical (camelCase) names."""
    document, usual_colons = parse_json(raw, kind)
    if type(document) is not dict:
        raise _invalid("$", "a JSON object {requestId, on, token, data}")
    envelope_as_sent = document.keys() <= ENVELOPE_NAMES.canonical
    if KEYS_MATCH_ANY_CASE and not envelope_as_sent:  # else nothing to rename
        try:
            document = canonical(document, ENVELOPE_NAMES)
        except AmbiguousKeys as clash:
            raise _ambiguous("$", clash) from None
    request_id = document.get("requestId")
    if not is_identifier(request_id):
        raise _invalid("requestId", IDENTIFIER_RULE, document.get("requestId", ...))
    try:
        return _verify_claimed(document, request_id, kind, verification_token, leeway,
                               audience, envelope_as_sent, usual_colons >= 0)  # fmt: skip
    except VerificationError as refused:
        refused.claimed_request_id = request_id
        raise


def _verify_claimed(
    document: dict[str, Any],
    request_id: str,
    kind: str,
    verification_token: str,
    leeway: float,
    audience: tuple[str, ...],
    envelope_as_sent: bool,
    checked_by_columns: bool,
) -> VerifiedUpdate:
    """`verify` once the request id is known to be well-formed (`checked_by_columns`: its
    items passed the column checks already)."""
    on: Any = document.get("on")
    if not is_iso_datetime(on):
        raise _invalid("on", "an ISO 8601 date and time", document.get("on", ...))
    data = document.get("data")
    if type(data) is not list:
        raise _invalid("data", "a list of items", document.get("data", ...))
    problem_of = KINDS[kind].item_problem
    names = ITEM_NAMES[kind]
    # Under a canonical envelope parse_json checked the items by columns where it could.
    if not checked_by_columns and not envelope_as_sent:
        checked_by_columns = len(data) >= COLUMNS_FROM and colons_in_valid_items(kind, data) >= 0
    only_canonical_keys = True  # in every item checked one by one
    for index, given in enumerate([] if checked_by_columns else data):
        if type(given) is not dict:
            raise _invalid(f"data[{index}]", "an object", given)
        item = given
        if not given.keys() <= names.canonical:
            only_canonical_keys = False
            if KEYS_MATCH_ANY_CASE:
                try:  # the document is ours: its items are renamed in place
                    item = data[index] = canonical(given, names)
                except AmbiguousKeys as clash:
                    raise _ambiguous(f"data[{index}]", clash) from None
        problem = problem_of(item)
        if problem is not None:
            field, expected = problem
            raise _invalid(f"data[{index}].{field}", expected, item.get(field, ...))
    token = document.get("token")
    if not token:
        raise VerificationError(Reason.MISSING_TOKEN, "the body has no token")
    if type(token) is not str:
        raise VerificationError(Reason.BAD_TOKEN, "token must be a string")

    claims, algorithm = decode_token(token, verification_token, leeway, audience)
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
    # Items that passed the columns' check, or the loop with no key but their canonical
    # three (one missing is refused), hold exactly those three.
    as_sent = envelope_as_sent and (checked_by_columns or only_canonical_keys)
    return VerifiedUpdate(kind, request_id, on, data, algorithm, items_as_sent=as_sent)


def verify_rolling(
    raw: bytes,
    kind: str,
    tokens: Rolling,
    leeway: float = DEFAULT_LEEWAY,
    audience: tuple[str, ...] = NO_AUDIENCE,
    now: float | None = None,
) -> VerifiedUpdate:
    """`verify` with the current token, and, only when its signature does not match, with
    the previous one: accepted while the rotation's grace lasts (the update says which
    token verified it), refused after it with a detail saying when it stopped counting."""
    try:
        return verify(raw, kind, tokens.current, leeway, audience)
    except VerificationError as refused:
        if refused.reason is not Reason.BAD_SIGNATURE or tokens.previous is None:
            raise
        try:
            update = verify(raw, kind, tokens.previous, leeway, audience)
        except VerificationError:
            raise refused from None
    moment = time.time() if now is None else now
    if not tokens.previous_counts(moment):
        assert tokens.previous_until is not None
        expired = VerificationError(
            Reason.BAD_SIGNATURE,
            "the token was signed with the previous verification token, which stopped "
            f"counting at {until_text(tokens.previous_until)}: paste the current one into "
            "Avasam's webhook settings",
        )
        expired.claimed_request_id = update.request_id
        raise expired
    return dataclasses.replace(update, token=PREVIOUS)
