"""The settings' normalizers and checks: each value as it is stored, or a clear error
naming the setting and a good value; and masking for what is shown."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from avasam_cli.defaults import AUTH_SCHEME_CHOICES, DEFAULT_BASE_URL
from avasam_cli.errors import ConfigError
from avasam_cli.paths import DatabaseUrl, StoreLocation
from avasam_cli.text import without_password

PASTE_INSTRUCTION = (
    "Paste it into Avasam: Settings > User management > your API user > webhook section > "
    "Verification token, then click Save."
)


# The verification token is the HS256 key: RFC 7518 asks for a key at least as long as the hash.
MIN_TOKEN_BYTES = 32


def mask(secret: str | None) -> str:
    """Show at most the last four characters, and none of a short secret."""
    if not secret:
        return "(not set)"
    if len(secret) < 8:
        return "****"
    return "****" + secret[-4:]


def generate_verification_token() -> str:
    """A URL-safe token with 32 bytes (256 bits) of entropy."""
    return secrets.token_urlsafe(32)


def token_length_warning(token: str) -> str | None:
    size = len(token.encode("utf-8"))
    if size >= MIN_TOKEN_BYTES:
        return None
    return (
        f"the verification token is {size} bytes; as the JWT signing key it should be at least "
        f"{MIN_TOKEN_BYTES}: run `avasam configure --generate-verification-token` for a strong one"
    )


def normalize_base_url(url: str) -> str:
    """Validate a base URL and drop a trailing slash; raise ConfigError when malformed."""
    from avasam_cli.net import url_problem

    candidate = url.strip()
    problem = url_problem(candidate)
    if problem is None:
        parts = urlsplit(candidate)
        if parts.query or parts.fragment:
            problem = "it must not have a query or fragment"
        elif parts.path.rstrip("/").lower().endswith("/api"):
            # Every API path starts with /api already: /api/api-seller/... would be a 404.
            fixed = candidate.rstrip("/")[: -len("/api")]
            problem = f"leave out the /api at the end (the API paths add it): {fixed}"
    if problem:
        raise ConfigError(
            f"malformed base URL {url!r}: {problem}; for example --base-url {DEFAULT_BASE_URL}"
        )
    return candidate.rstrip("/")


def normalize_store(value: str) -> str:
    """The event store: a file's absolute path (from a path or `sqlite:///PATH`), or a
    `postgresql://` URL as given; ConfigError otherwise."""
    candidate = value.strip()
    example = (
        "for example --store ~/avasam/events.sqlite3, --store sqlite:///events.sqlite3 "
        "or --store postgresql://avasam@db.example/avasam"
    )
    if candidate.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(candidate)
        if parts.fragment or not (parts.hostname or "host=" in parts.query):
            raise ConfigError(
                f"store {without_password(candidate)!r}: a PostgreSQL URL names its server, "
                f"as in postgresql://USER@HOST:PORT/DATABASE ({example})"
            )
        return candidate
    if candidate.startswith("sqlite:///"):
        candidate = candidate[len("sqlite:///") :]
    elif "://" in candidate or not candidate:
        raise ConfigError(
            f"store {without_password(candidate)!r} is neither a file path, sqlite:///PATH "
            f"nor postgresql://... ({example})"
        )
    path = Path(candidate).expanduser().absolute()
    if path.is_dir():
        raise ConfigError(f"store {value!r} is a folder: name the file in it ({example})")
    return str(path)


def store_location(value: str) -> StoreLocation:
    """`normalize_store`'s answer as what `open_store` takes."""
    normal = normalize_store(value)
    return DatabaseUrl(normal) if normal.startswith("postgres") else Path(normal)


def normalize_host(host: str) -> str:
    from avasam_cli.net import host_problem

    problem = host_problem(host.strip())
    if problem:
        raise ConfigError(f"invalid listener host {host!r}: {problem}; for example 127.0.0.1")
    return host.strip()


def normalize_port(port: str) -> str:
    """A TCP port number from 1 to 65535, as text; raise ConfigError otherwise (0, "any
    free port", is only for `listen --port 0`: nothing could reach a saved 0)."""
    candidate = port.strip()
    if not (candidate.isascii() and candidate.isdigit()) or not 1 <= int(candidate) <= 65535:
        raise ConfigError(f"invalid listener port {port!r}: use a number from 1 to 65535")
    return str(int(candidate))


def _one_of(value: str, choices: Sequence[str], what: str, example: str) -> str:
    candidate = value.strip().lower()
    if candidate not in choices:
        raise ConfigError(
            f"invalid {what} {value!r}: use {', '.join(choices)} (for example {example})"
        )
    return candidate


def normalize_auth_scheme(scheme: str) -> str:
    return _one_of(scheme, AUTH_SCHEME_CHOICES, "access-token scheme", "--auth-scheme auto")


def normalize_log_format(value: str) -> str:
    from avasam_cli.logs import LOG_FORMATS

    return _one_of(value, LOG_FORMATS, "log format", "--log-format json")


def normalize_durability(value: str) -> str:
    from avasam_cli.defaults import DURABILITY_LEVELS

    return _one_of(value, DURABILITY_LEVELS, "durability", "--durability full")


def normalize_flag(value: str) -> str:
    candidate = value.strip().lower()
    if candidate in ("1", "true", "yes", "on"):
        return "true"
    if candidate in ("0", "false", "no", "off"):
        return "false"
    raise ConfigError(f"invalid yes/no value {value!r}: use true or false")


def check_base_url_transport(base_url: str, allow_insecure: bool) -> None:
    """Keys travel to the base URL: plain http:// is for this machine only, unless allowed."""
    from avasam_cli.net import is_loopback_host

    parts = urlsplit(base_url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname) and not allow_insecure:
        raise ConfigError(
            f"the base URL {parts.scheme}://{parts.hostname} is plain HTTP to another "
            "machine: your API keys would cross the network in clear. Use https://, or, for "
            "a server you trust on your own network, `avasam configure "
            "--allow-insecure-base-url` (or AVASAM_ALLOW_INSECURE_BASE_URL=true)"
        )


def normalize_path(path: str) -> str:
    """An endpoint path for the listener; raise ConfigError otherwise."""
    candidate = path.strip()
    if not candidate.startswith("/") or any(ch.isspace() or ch in "?#{}" for ch in candidate):
        raise ConfigError(
            f"invalid endpoint path {path!r}: it must start with / and hold no spaces, "
            "?, # or braces (for example --stock-path /webhooks/stock)"
        )
    return candidate.rstrip("/") or "/"


def normalize_audience(value: str) -> str:
    """Audiences (the JWT's `aud` values a listener requires) as "a, b"; ConfigError when
    one is empty or holds a control character."""
    from avasam_cli.webhooks.kinds import is_identifier

    values = [part.strip() for part in value.split(",")]
    if not all(is_identifier(part) for part in values):
        raise ConfigError(
            f"invalid audience {value!r}: give non-empty values without control characters, "
            "separated by commas (for example --audience shop-eu)"
        )
    return ", ".join(dict.fromkeys(values))


def normalize_forward_to(url: str) -> str:
    from avasam_cli.net import url_problem

    problem = url_problem(url)
    if problem:
        raise ConfigError(
            f"invalid forward target {url!r}: {problem}; for example "
            "--forward-to http://127.0.0.1:3000/avasam"
        )
    return url.strip()


def normalize_forward_headers(value: str) -> str:
    """'Name: value' lines (a line each), checked; ConfigError naming a bad one."""
    from avasam_cli.delivery.forward import split_header

    lines = []
    for line in value.splitlines():
        if not line.strip():
            continue
        split = split_header(line)
        if split is None:
            raise ConfigError(
                f"invalid forward header {line!r}: write it as 'Name: value', for example "
                "--forward-header 'X-Shop-Key: abc123'"
            )
        lines.append(f"{split[0]}: {split[1]}")
    return "\n".join(lines)


def normalize_forward_secret(secret: str) -> str:
    from avasam_cli.rotation import forward_secret_problem

    problem = forward_secret_problem(secret.strip())
    if problem:
        raise ConfigError(
            f"invalid forward secret: {problem}; `avasam configure --generate-forward-secret` "
            "makes one"
        )
    return secret.strip()


def normalize_until(value: str) -> str:
    """A time in ISO 8601 (UTC when no offset is given), written back in UTC."""
    from avasam_cli.rotation import parse_until, until_text

    moment = parse_until(value)
    if moment is None:
        raise ConfigError(f"invalid time {value!r}: use ISO 8601, e.g. 2026-12-03T09:00:00+00:00")
    return until_text(moment)


def audiences(value: str | None) -> tuple[str, ...]:
    """The audiences of a normalized `audience` setting; () when none is required."""
    return tuple(part.strip() for part in value.split(",")) if value else ()
