"""The webhook contract: the decisions Avasam's documentation leaves open, and reason codes.

A seller with a real account who finds one of these decisions wrong corrects it
here (the README's "Decisions" table points to each).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# --- Decisions where Avasam's documentation is silent -------------------------------
# The JWT is signed with the seller's verification token; only the HMAC family fits a
# shared secret.  `none` and every asymmetric algorithm are refused.
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
# The claim carrying the request id, matched case-insensitively (RequestId, requestid).
REQUEST_ID_CLAIM = "requestId"
# The body's keys (envelope and items) are matched without regard to case: Avasam's API
# answers in PascalCase (`SKU`, `Stock`, `Price`, seen live) while its help page writes the
# webhook in camelCase, and .NET reads keys in any case.  Two keys of one object that
# differ only in case are refused as ambiguous.  False: the help page's names only.
KEYS_MATCH_ANY_CASE = True
# Avasam documents no audience (`aud`).  RFC 7519 says a receiver must refuse a token whose
# `aud` does not name it; with no audience configured we name none, and accept any `aud`.
# `listen --audience VALUE` (profile `audience`) requires one of the values given.
NO_AUDIENCE: tuple[str, ...] = ()


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
    WRONG_AUDIENCE = "wrong_audience"
    # The JWT binds only the request id, not the kind: a request id verified for one kind
    # and sent again for the other is a replay (decided by the store, across processes).
    REQUEST_ID_REUSED = "request_id_reused"


REUSED_DETAIL = (
    "this request id was already verified for the other kind of update; a token is only "
    "valid for the kind it was first sent for"
)


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


class VerificationError(Exception):
    """A payload that is refused, with its reason code and a detail safe to show.

    Not one of the CLI's errors: the receiver answers it over HTTP, and `avasam
    verify` prints it as a verdict.
    """

    def __init__(self, reason: Reason, detail: str, path: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.path = path
        # The body's requestId when it was well-formed: what the sender claimed, never
        # verified (stored and shown as such, to find a retried or forged update).
        self.claimed_request_id: str | None = None

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.reason]


# Which verification token verified an update (`"token"` in the JSON views): during a
# rotation's grace the previous one still counts.  A verified row keeps PREVIOUS_TOKEN in
# its reason column when the previous one did.
CURRENT, PREVIOUS = "current", "previous"
PREVIOUS_TOKEN = "previous_token"  # noqa: S105 - a reason code, not a password


@dataclass(frozen=True, slots=True)
class VerifiedUpdate:
    kind: str
    request_id: str
    on: str
    items: list[dict[str, Any]]
    algorithm: str
    token: str = CURRENT  # or PREVIOUS
    # The body holds only the envelope's keys and items of exactly their kind's three
    # fields, all under their canonical names: its items may be printed as they came.
    items_as_sent: bool = False


# exp / nbf / iat are checked when present, with this tolerance for clock drift (seconds).
DEFAULT_LEEWAY = 60.0
