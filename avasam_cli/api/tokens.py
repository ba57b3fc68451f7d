"""Access tokens: how one is sent (our decision where Avasam is silent), and the cache
that keeps them per profile and base URL, with the form Avasam accepted each in."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

from avasam_cli.errors import ConfigError
from avasam_cli.paths import is_too_open, write_secret_file

# A cached access token is renewed this long before Avasam says it expires.
EXPIRY_MARGIN_SECONDS = 60.0


# --- How the access token is sent -------------------------------------------------------
# Avasam's help page says only "with a valid token".  Public evidence, not Avasam's word:
# live probes recorded by a public integration against a real seller account (August 2026)
# found `Authorization: <token>` (no prefix) accepted while `Authorization: Bearer <token>`
# and a `Token:` header were refused; other public clients agree or try several forms.  So
# `auto` (the default) sends the raw token first, `Bearer` second: a fresh token's first
# call goes out raw; when a freshly issued token is refused (401 or 403) the other form is
# tried once, and the form accepted is remembered with the token (and when it was learned).
# `bearer` and `raw` force one form (profile `auth_scheme`, AVASAM_AUTH_SCHEME,
# `configure --auth-scheme`).  The names are also in `defaults.AUTH_SCHEME_CHOICES`.
AUTO = "auto"


AUTH_SCHEMES = ("raw", "bearer")  # the order `auto` tries them in


AUTH_SCHEME_LABELS = {"bearer": "Authorization: Bearer <token>", "raw": "Authorization: <token>"}


def authorization(access_token: str, scheme: str = AUTH_SCHEMES[0]) -> dict[str, str]:
    """The header carrying the access token in `scheme` ("bearer" or "raw")."""
    if scheme == "raw":
        return {"Authorization": access_token}
    return {"Authorization": f"Bearer {access_token}"}


_SENDABLE_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")


def is_sendable_token(token: object) -> TypeGuard[str]:
    """A token that can go in a header as it is: printable ASCII, no spaces, no CR or LF."""
    return isinstance(token, str) and _SENDABLE_TOKEN.fullmatch(token) is not None


def cache_key_for(profile: str, base_url: str, consumer_key: str) -> tuple[str, str]:
    """The token cache key, and the prefix shared by the same profile and base URL.

    A hash of the consumer key (never the key) is part of it: after the keys change, the
    old token is not used, and it is dropped at the next write.
    """
    import hashlib

    prefix = f"{profile}|{base_url}|"
    return prefix + hashlib.sha256(consumer_key.encode()).hexdigest()[:16], prefix


def other_scheme(scheme: str) -> str:
    return AUTH_SCHEMES[1 - AUTH_SCHEMES.index(scheme)]


def parse_expiry(text: str) -> float:
    """Avasam's `2021-12-22T17:36:19.8066912+00:00` as a Unix time."""
    return float(datetime.fromisoformat(text).timestamp())


class CachedToken(NamedTuple):
    access_token: str
    expires_at: float  # Unix time
    scheme: str | None = None  # the form Avasam accepted it in, once known
    customer_id: str | None = None  # Avasam's customerId, when the token answer has one
    scheme_learned_at: float | None = None  # Unix time `auto` learned the form


class TokenCache:
    """Access tokens per profile and base URL, in a 0600 JSON file in the cache folder,
    each with the form Avasam accepted it in and the customer id, when known."""

    def __init__(self, path: Path, warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.warn = warn
        self._warned = False

    MAX_SIZE = 1 << 20  # a cache holds a few tokens: anything larger is not ours

    def _read(self) -> dict[str, Any]:
        """The cache's entries; {} when it is missing or unreadable as JSON.  Only a regular
        file is read (a FIFO would hang, /dev/zero never ends), and only up to MAX_SIZE."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise ConfigError(
                f"cannot read the token cache {self.path}: {error.strerror}; check its "
                "permissions, or remove it (it is rebuilt on the next call)"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ConfigError(
                f"the token cache {self.path} is {what}: remove it (it is rebuilt on the "
                "next call), or set AVASAM_HOME elsewhere"
            )
        if self.warn is not None and not self._warned and is_too_open(self.path):
            self._warned = True
            self.warn(
                f"token cache {self.path} is readable by other users; it will be "
                "tightened to 0600 on the next write"
            )
        try:
            with open(self.path, "rb") as handle:
                document = json.loads(handle.read(self.MAX_SIZE + 1)[: self.MAX_SIZE])
        except (OSError, ValueError, RecursionError):
            return {}
        return document if isinstance(document, dict) else {}

    def get(self, key: str) -> CachedToken | None:
        """The entry for `key`; None (and the entry dropped) when it is not a usable token."""
        entry = self._read().get(key)
        if entry is None:
            return None
        token = entry.get("access_token") if isinstance(entry, dict) else None
        expires = entry.get("expires_at") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or not is_sendable_token(token)
            or not isinstance(expires, int | float)
            or not math.isfinite(expires)
        ):
            self.clear(key)
            return None
        scheme = entry.get("scheme")
        customer_id = entry.get("customer_id")
        learned = entry.get("scheme_learned_at")
        known = scheme in AUTH_SCHEMES
        return CachedToken(
            token,
            float(expires),
            scheme if known else None,
            customer_id if isinstance(customer_id, str) else None,
            float(learned) if known and isinstance(learned, int | float) else None,
        )

    def put(self, key: str, entry: CachedToken, replaces: str | None = None) -> None:
        """Store `entry` under `key`, dropping every entry whose key starts with `replaces`
        (the same profile and base URL under other keys)."""
        document = self._read()
        if replaces is not None:
            document = {k: v for k, v in document.items() if not k.startswith(replaces)}
        document[key] = {
            name: value for name, value in entry._asdict().items() if value is not None
        }
        write_secret_file(self.path, json.dumps(document, indent=2))

    def clear(self, key: str) -> None:
        document = self._read()
        if document.pop(key, None) is not None:
            write_secret_file(self.path, json.dumps(document, indent=2))
