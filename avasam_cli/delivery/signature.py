"""Signing forwards the Standard Webhooks way, so that a shop checks them with a library
(`standardwebhooks.Webhook(secret).verify(body, headers)`, or its equivalent in any
language), not by trusting a header anyone can send.

Each forward carries `webhook-id` (the same for every attempt at one update to one
target, so a shop can drop repeats), `webhook-timestamp` (this attempt's Unix time)
and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for each
secret in force, space-separated (both during a rotation's grace, as the
specification allows).  The body is signed exactly as Avasam sent it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from avasam_cli.rotation import (
    FORWARD_SECRET,
    FORWARD_SECRET_PREFIX,
    followed,
    rolling_from,
)

if TYPE_CHECKING:
    from avasam_cli.config import Settings

Secrets = Callable[[], Sequence[str]]  # the forward secrets in force now


def message_id(kind: str, request_id: str | None, target: str) -> str:
    """One update to one target: the same id on every attempt, another for another target."""
    digest = hashlib.sha256(f"{kind}\n{request_id}\n{target}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(FORWARD_SECRET_PREFIX))


def signature_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> list[tuple[str, str]]:
    """The three headers of a signed message; none without a secret."""
    if not secrets:
        return []
    moment = str(int(time.time()) if timestamp is None else timestamp)
    signed = f"{msg_id}.{moment}.".encode() + body
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )
    return [
        ("webhook-id", msg_id),
        ("webhook-timestamp", moment),
        ("webhook-signature", signatures),
    ]


def no_secrets() -> Sequence[str]:
    return ()


def secrets_for_run(resolved: Settings, config_path: Path) -> Secrets:
    """The forward secrets in force for a run: the profile's, followed while the run goes
    on (a rotation or a new secret is taken up within a second or so), or a fixed one
    from the environment (AVASAM_FORWARD_SECRET)."""
    values = {name: resolved.get(name) for name in FORWARD_SECRET}
    rolling = rolling_from(values, FORWARD_SECRET)
    if resolved.values["forward_secret"].source not in ("profile", "unset"):
        fixed = [rolling.current] if rolling is not None else []
        return lambda: fixed
    now = followed(config_path, resolved.profile, FORWARD_SECRET, rolling)

    def in_force() -> Sequence[str]:
        current = now()
        return current.in_force(time.time()) if current is not None else ()

    return in_force
