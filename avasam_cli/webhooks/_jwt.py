"""PyJWT, tuned for verifying many tokens with one key (see bench/), and its error mapping."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS

from avasam_cli.webhooks.contract import (
    HMAC_ALGORITHMS,
    NO_AUDIENCE,
    Reason,
    VerificationError,
)


class _CachedKeyHMAC(HMACAlgorithm):
    """PyJWT's HMAC, preparing each key once instead of on every request.

    Preparing a key includes trying to parse it as PEM, SSH and DER certificates (to
    refuse asymmetric keys): by far the dearest step of verifying a short token.
    """

    @functools.lru_cache(maxsize=8)  # noqa: B019 - three instances live for the process
    def prepare_key(self, key: str | bytes) -> bytes:
        return super().prepare_key(key)

    def check_key_length(self, key: bytes) -> str | None:
        # The CLI warns about a short verification token itself (configure, listen, doctor);
        # PyJWT would repeat it on every request.
        return None


_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_BASE64URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_STANDARD_TO_BASE64URL = bytes.maketrans(b"+/", b"-_")
# The last character of a canonical segment whose length is 2 or 3 past a multiple of 4:
# one whose spare bits (4 or 2) are zero.
_CANONICAL_LAST = {
    2: frozenset(b"AQgw"),
    3: frozenset(b"AEIMQUYcgkosw048"),
}


class _FastJWS(PyJWS):
    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        # PyJWT 2.15's rules (alphabet, canonical form, and up to two '=' where they
        # complete a multiple of four), with byte operations and binascii in place of a
        # Python loop over every character.  One rule whatever PyJWT is installed: 2.14,
        # the floor, refuses any padding; every segment PyJWT decodes comes through here.
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        spare = len(stripped) % 4
        if (
            padding > 2
            or (padding and len(segment) % 4 != 0)
            or spare == 1
            or stripped.translate(None, _BASE64URL_ALPHABET)  # a character outside it
            or (spare and stripped[-1] not in _CANONICAL_LAST[spare])
        ):
            raise jwt.DecodeError(f"Invalid {name} padding")
        standard = stripped.translate(_BASE64URL_TO_STANDARD)
        try:
            return binascii.a2b_base64(standard + b"=" * (-spare % 4), strict_mode=True)
        except binascii.Error as error:
            raise jwt.DecodeError(f"Invalid {name} padding") from error


class _WebhookJWT(jwt.PyJWT):
    """PyJWT's codec with the HMAC family only, cached keys, and orjson for payloads."""

    def __init__(self) -> None:
        # The audience is checked only when one is configured (decode_token; the decision
        # is contract.NO_AUDIENCE); Avasam documents no issuer.
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


JWT = _WebhookJWT()


def shown(value: Any) -> str:
    """A value from a request, cut short enough to quote in an error."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# (key, header segment) -> (algorithm, keyed HMAC), for the headers PyJWT accepted with
# that key.  A token whose header is byte for byte one of these needs only its signature
# and claims checked: PyJWT's verdict on the header (alg allowed, b64, crit, kid) and on
# the key cannot differ.  Avasam signs every request with one header and one key, so
# this halves the cost of verifying (bench/listener.py).
_ACCEPTED: dict[tuple[str, str], tuple[str, hmac.HMAC]] = {}
_ACCEPTED_MAX = 32  # keys x headers; past it the cache starts again
_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_NUMBERS = (int, float)


def _known_good(token: str, key: str, leeway: float) -> tuple[dict[str, Any], str] | None:
    """The claims and algorithm of a token PyJWT would accept, found without PyJWT: its
    header already accepted, its signature right and its time claims in range.  None
    for anything else, which PyJWT then decides (and words the refusal of)."""
    header, _, rest = token.partition(".")
    accepted = _ACCEPTED.get((key, header))
    payload_segment, dot, signature_segment = rest.rpartition(".")
    if accepted is None or not dot or not token.isascii():
        return None
    alg, keyed = accepted
    mac = keyed.copy()
    mac.update(token[: len(header) + 1 + len(payload_segment)].encode())
    # The signature compared as text: its one canonical, unpadded spelling.  Any other
    # spelling PyJWT may still accept, and decides.
    expected = binascii.b2a_base64(mac.digest(), newline=False).rstrip(b"=")
    if not hmac.compare_digest(
        expected.translate(_STANDARD_TO_BASE64URL), signature_segment.encode()
    ):
        return None
    try:
        decoded = _FastJWS._decode_base64url_segment(payload_segment.encode(), "Payload")
        payload = orjson.loads(decoded)
    except (jwt.DecodeError, orjson.JSONDecodeError):
        return None
    if type(payload) is not dict:
        return None
    # PyJWT's claim rules (api_jwt._validate_claims), on the plain case only: numbers for
    # the times (it truncates them with int), strings for sub and jti.
    now = time.time()
    for name in ("iat", "nbf", "exp"):
        if name in payload:
            value = payload[name]
            if type(value) not in _NUMBERS:
                return None
            moment = int(value)
            if moment <= now - leeway if name == "exp" else moment > now + leeway:
                return None
    for name in ("sub", "jti"):
        if name in payload and type(payload[name]) is not str:
            return None
    return payload, alg


def decode_token(
    token: str, key: str, leeway: float, audience: tuple[str, ...] = NO_AUDIENCE
) -> tuple[dict[str, Any], str]:
    """The verified claims and algorithm; VerificationError with its reason otherwise.

    With no `audience`, any `aud` is accepted (see contract.NO_AUDIENCE); with one or more,
    the token's `aud` must name one of them."""
    if not audience:
        known = _known_good(token, key, leeway)
        if known is not None:
            return known
    try:
        if audience:
            decoded = JWT.decode_complete(
                token,
                key,
                algorithms=list(HMAC_ALGORITHMS),
                leeway=leeway,
                audience=list(audience),
                options={"verify_aud": True},
            )
        else:
            decoded = JWT.decode_complete(
                token, key, algorithms=list(HMAC_ALGORITHMS), leeway=leeway
            )
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
    except jwt.InvalidAudienceError:
        raise VerificationError(
            Reason.WRONG_AUDIENCE,
            f"token audience (aud) is not one of {', '.join(audience)}: check --audience",
        ) from None
    except jwt.MissingRequiredClaimError as error:
        if error.claim != "aud":
            raise VerificationError(Reason.BAD_TOKEN, f"token is not valid: {error}") from None
        raise VerificationError(
            Reason.WRONG_AUDIENCE,
            f"token has no audience (aud); one of {', '.join(audience)} is required",
        ) from None
    except jwt.ImmatureSignatureError as error:
        claim = "iat" if "iat" in str(error) else "nbf"
        raise VerificationError(Reason.NOT_YET_VALID, f"token is not valid yet ({claim})") from None
    except jwt.PyJWTError as error:
        raise VerificationError(Reason.BAD_TOKEN, f"token is not a valid JWT: {error}") from None
    except (TypeError, ValueError, OverflowError):
        # PyJWT before 2.15 calls int() on iat/nbf/exp unchecked: `"iat": null` ends here.
        raise VerificationError(
            Reason.BAD_TOKEN, "token is not a valid JWT: its iat, nbf and exp must be numbers"
        ) from None
    alg = decoded["header"]["alg"]
    if len(_ACCEPTED) >= _ACCEPTED_MAX:
        _ACCEPTED.clear()
    keyed = hmac.new(key.encode(), digestmod=_DIGESTS[alg])
    _ACCEPTED[(key, token.partition(".")[0])] = (alg, keyed)
    return decoded["payload"], alg


def _unverified_alg(token: str) -> str:
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        return "(unreadable)"
    return "(missing)" if alg is None else shown(alg)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


# PyJWT's own header for each algorithm (sorted keys, no spaces), made once.
_HEADERS = {
    alg: _b64(
        json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":"), sort_keys=True).encode()
    )
    for alg in _DIGESTS
}


def encode(claims: Mapping[str, Any], key: str, algorithm: str) -> str:
    """The JWT PyJWT's `encode` makes, byte for byte (a test holds us to it), in a fifth of
    the time: `send-test --count` signs every body as the run goes."""
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _HEADERS[algorithm] + b"." + payload
    signature = hmac.new(key.encode(), signing_input, _DIGESTS[algorithm]).digest()
    return (signing_input + b"." + _b64(signature)).decode("ascii")
