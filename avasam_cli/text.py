"""Text from elsewhere, shaped for messages and the store (no terminal, no I/O)."""

from __future__ import annotations

import contextlib
import re


def excerpt(text: str, limit: int) -> str:
    """A one-line excerpt of an answer: whitespace folded, cut at `limit` characters."""
    folded = inert(" ".join(text.split()))
    return folded if len(folded) <= limit else folded[:limit] + "..."


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def inert(text: str) -> str:
    """Text from outside, safe for a terminal: control characters (ESC above all) shown as
    `\\x1b` instead of acting.  Newlines and tabs are kept."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def without_password(url: str) -> str:
    """`url` with the password of any `user:password@` part, and of any `password=`
    parameter (PostgreSQL's URLs allow both), shown as ****."""
    url = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1****", url)
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:****@{host}{slash}{path}"


def passwords_in(url: str) -> list[str]:
    """Every password a URL carries (`user:password@`, `password=`), decoded as a driver
    reads it and as written: what must never be printed back."""
    from urllib.parse import parse_qs, unquote, urlsplit

    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        for value in parse_qs(parts.query).get("password", []):
            found.append(value)
    return sorted({p for p in found if p}, key=len, reverse=True)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str, bare_seconds: bool = False) -> float | None:
    """`500ms`, `30s`, `5m`, `24h`, `7d`, `2w` in seconds (a bare number too, with
    `bare_seconds`); None for anything else.  The one parser of durations."""
    matched = _DURATION.fullmatch(text.strip())
    if matched is None or (matched[2] is None and not bare_seconds):
        return None
    return float(matched[1]) * _DURATION_UNITS[matched[2] or "s"]
