"""`avasam verify`: check a saved webhook body offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from avasam_cli import output
from avasam_cli.errors import AlreadyReported, UsageError


def read_body(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {source}: {error.strerror or error}") from None


def guess_kind(raw: bytes) -> str:
    """stock or price, from the first item's fields; stock when it cannot tell."""
    try:
        data = json.loads(raw).get("data")
        first: Any = data[0] if isinstance(data, list) and data else {}
    except (ValueError, AttributeError):
        return "stock"
    return (
        "price"
        if isinstance(first, dict) and "price" in first and "quantity" not in first
        else "stock"
    )


def run(
    source: str, kind: str | None, verification_token: str, leeway: float, as_json: bool
) -> None:
    from avasam_cli.verification import VerificationError, verify

    raw = read_body(source)
    chosen = kind or guess_kind(raw)
    try:
        update = verify(raw, chosen, verification_token, leeway)
    except VerificationError as refused:
        if as_json:
            output.out(
                json.dumps(
                    {
                        "valid": False,
                        "kind": chosen,
                        "reason": refused.reason.value,
                        "detail": refused.detail,
                    }
                )
            )
        else:
            output.out(f"INVALID {chosen} update: {refused.reason.value}: {refused.detail}")
        raise AlreadyReported from None
    if as_json:
        output.out(
            json.dumps(
                {
                    "valid": True,
                    "kind": chosen,
                    "requestId": update.request_id,
                    "on": update.on,
                    "algorithm": update.algorithm,
                    "data": update.items,
                }
            )
        )
        return
    output.out(
        f"VALID {chosen} update {update.request_id} ({output.plural(len(update.items), 'item')}, "
        f"{update.algorithm}, sent {update.on})"
    )
    if update.items:
        output.make_console().print(output.items_table(chosen, update.items))
