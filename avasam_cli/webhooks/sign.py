"""The signer: the mirror image of the verifier, building bodies as Avasam does.

Time comes in as a parameter so that fixtures can be made deterministic.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from avasam_cli.webhooks import _jwt
from avasam_cli.webhooks.contract import HMAC_ALGORITHMS, REQUEST_ID_CLAIM
from avasam_cli.webhooks.kinds import KINDS

DEFAULT_ALGORITHM = "HS256"
DEFAULT_EXPIRES_IN = 300  # seconds


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with .NET's seven fractional digits, as Avasam writes times."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0+00:00"


def sign_token(
    request_id: str,
    verification_token: str,
    *,
    now: datetime,
    algorithm: str = DEFAULT_ALGORITHM,
    expires_in: int = DEFAULT_EXPIRES_IN,
    include_iat: bool = True,
) -> str:
    """A JWT over the request id; `expires_in=0` leaves out `exp`."""
    if algorithm not in HMAC_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(HMAC_ALGORITHMS)}")
    claims: dict[str, Any] = {REQUEST_ID_CLAIM: request_id}
    if include_iat:
        claims["iat"] = int(now.timestamp())
    if expires_in:
        claims["exp"] = int((now + timedelta(seconds=expires_in)).timestamp())
    return _jwt.encode(claims, verification_token, algorithm)


def build_body(
    items: Sequence[dict[str, Any]],
    verification_token: str,
    *,
    now: datetime,
    request_id: str | None = None,
    on: str | None = None,
    algorithm: str = DEFAULT_ALGORITHM,
    expires_in: int = DEFAULT_EXPIRES_IN,
    include_iat: bool = True,
) -> dict[str, Any]:
    """The envelope `{requestId, on, token, data}` in Avasam's field order."""
    request_id = request_id or str(uuid.uuid4())
    token = sign_token(
        request_id,
        verification_token,
        now=now,
        algorithm=algorithm,
        expires_in=expires_in,
        include_iat=include_iat,
    )
    return {"requestId": request_id, "on": on or iso_utc(now), "token": token, "data": list(items)}


def encode(body: dict[str, Any], pretty: bool = False) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)


def make_item(kind: str, sku: str, updated_on: str, value: float | None = None) -> dict[str, Any]:
    """One item of `kind`; `value` is its quantity or price (the kind's default if None)."""
    rules = KINDS[kind]
    return {
        "sku": sku,
        rules.value_field: rules.default_value if value is None else value,
        "updatedOn": updated_on,
    }


def generate_items(
    kind: str, count: int, now: datetime, seed: int | None = None
) -> list[dict[str, Any]]:
    """`count` plausible items: distinct SKUs, varied quantities or prices and times."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    items = []
    for index in range(count):
        sku = f"AVS-{rng.randrange(100000, 999999)}-{index:05d}"
        updated_on = iso_utc(now - timedelta(seconds=rng.uniform(0, 3600)))
        if int in KINDS[kind].value_types and float not in KINDS[kind].value_types:
            value: float = rng.randrange(0, 500)
        else:
            value = round(rng.uniform(0.5, 250), 2)
        items.append(make_item(kind, sku, updated_on, value))
    return items
