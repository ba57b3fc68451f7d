"""`avasam verify`: check a saved webhook body offline."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from avasam_cli.cli._context import settings, verification_token_for
from avasam_cli.cli._options import (
    KIND_CHOICES,
    AudienceOption,
    Kind,
    LeewayOption,
    TokenOption,
)
from avasam_cli.defaults import DEFAULT_LEEWAY
from avasam_cli.errors import AlreadyReported, UsageError


def read_body(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {source}: {error.strerror or error}") from None


def guess_kind(raw: bytes) -> str:
    """The kind, from the first item's fields in any casing (see `kinds.guess_kind`)."""
    from avasam_cli.webhooks.keys import stored_items
    from avasam_cli.webhooks.kinds import STRAY_KIND
    from avasam_cli.webhooks.kinds import guess_kind as kind_of

    data = stored_items(raw, STRAY_KIND)
    first: Any = data[0] if data else None
    return kind_of(first)


def _leeway_needed(
    raw: bytes, kind: str, token: str, refused: Exception, audience: tuple[str, ...]
) -> int | None:
    """For a body refused only for its time (expired, not yet valid): the whole seconds
    of --leeway that would accept it; None when anything else is wrong too."""
    import math
    import time

    import jwt

    from avasam_cli.webhooks.contract import Reason, VerificationError
    from avasam_cli.webhooks.keys import readable_body
    from avasam_cli.webhooks.verify import verify

    timing = (Reason.EXPIRED, Reason.NOT_YET_VALID)
    if not isinstance(refused, VerificationError) or refused.reason not in timing:
        return None
    try:
        verify(raw, kind, token, leeway=10**10, audience=audience)  # all but the time
        claims = jwt.decode(
            readable_body(raw, kind)["token"], options={"verify_signature": False}, algorithms=None
        )
    except (VerificationError, jwt.PyJWTError, ValueError, KeyError, TypeError):
        return None
    now = time.time()
    gaps = [now - claims["exp"]] if isinstance(claims.get("exp"), int | float) else []
    gaps += [claims[c] - now for c in ("nbf", "iat") if isinstance(claims.get(c), int | float)]
    return math.ceil(max(gaps)) + 1 if gaps else None


def show_verdict(
    source: str,
    kind: str | None,
    token: str,
    leeway: float,
    as_json: bool,
    audience: tuple[str, ...] = (),
) -> None:

    from avasam_cli import output
    from avasam_cli.webhooks.contract import VerificationError
    from avasam_cli.webhooks.verify import verify

    raw = read_body(source)
    chosen = kind or guess_kind(raw)
    try:
        update = verify(raw, chosen, token, leeway, audience)
    except VerificationError as refused:
        needed = _leeway_needed(raw, chosen, token, refused, audience)
        if as_json:
            output.out(
                json.dumps(
                    {
                        "valid": False,
                        "kind": chosen,
                        "reason": refused.reason.value,
                        "detail": refused.detail,
                        **({"leeway_needed": needed} if needed is not None else {}),
                    }
                )
            )
        else:
            output.out(f"INVALID {chosen} update: {refused.reason.value}: {refused.detail}")
            if needed is not None:
                output.out(
                    "The signature itself is valid (made with this verification token); only "
                    f"the time is off: --leeway {needed} would accept it."
                )
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


def verify_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A saved webhook body, or - for stdin.")] = "-",
    kind: Annotated[
        Kind | None,
        typer.Option(help=f"{KIND_CHOICES} (default: guessed from the items)."),
    ] = None,
    verification_token: TokenOption = None,
    leeway: LeewayOption = DEFAULT_LEEWAY,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    audience: AudienceOption = None,
) -> None:
    """Verify a saved webhook body offline with your verification token (keys in any case)."""
    if source == "-" and verification_token == "-":  # noqa: S105 - the stdin marker
        raise UsageError("the body and the token cannot both come from standard input")
    if source == "-" and sys.stdin.isatty():  # it would wait, silently, for a paste
        raise UsageError(
            "verify checks a saved webhook body: give its file (avasam verify body.json), "
            "or pipe one in (avasam sign-test-payload | avasam verify)"
        )
    from avasam_cli.config import audiences

    token = verification_token_for(ctx, verification_token)
    given = ",".join(audience) if audience else None
    wanted = audiences(settings(ctx, audience=given).get("audience"))
    show_verdict(source, kind.value if kind else None, token, leeway, as_json, wanted)


def register(app: typer.Typer) -> None:
    app.command(
        "verify",
        epilog="Examples:\n\n"
        "  avasam verify body.json\n\n"
        "  avasam sign-test-payload price | avasam verify - --json",
    )(verify_command)
