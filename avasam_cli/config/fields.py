"""The registry of settings: one `Field` record per setting (its label, default,
normalizer, whether it is secret or prompted for, its type in TOML), and the views the
rest of the program reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from avasam_cli.config.normalize import (
    mask,
    normalize_audience,
    normalize_auth_scheme,
    normalize_base_url,
    normalize_durability,
    normalize_flag,
    normalize_forward_headers,
    normalize_forward_secret,
    normalize_forward_to,
    normalize_host,
    normalize_log_format,
    normalize_path,
    normalize_port,
    normalize_store,
    normalize_until,
)
from avasam_cli.defaults import (
    DEFAULT_AUTH_SCHEME,
    DEFAULT_BASE_URL,
    DEFAULT_DURABILITY,
    DEFAULT_LISTEN_HOST,
    DEFAULT_LISTEN_PORT,
    DEFAULT_WEBHOOK_PATHS,
)
from avasam_cli.text import without_password


@dataclass(frozen=True)
class Field:
    name: str
    label: str  # how messages name it
    default: str | None = None
    normalize: Callable[[str], str] | None = None
    secret: bool = False  # masked wherever it is shown
    prompted: bool = False  # `configure` asks for it
    typed: type | None = None  # int or bool: so TOML and JSON write it
    expects: str | None = None  # what a value of another type should look like


REGISTRY: tuple[Field, ...] = (
    Field("consumer_key", "consumer key", secret=True, prompted=True),
    Field("secret_key", "secret key", secret=True, prompted=True),
    Field("verification_token", "verification token", secret=True, prompted=True),
    Field("base_url", "base URL", DEFAULT_BASE_URL, normalize_base_url, prompted=True),
    Field("listen_host", "listener host", DEFAULT_LISTEN_HOST, normalize_host),
    Field("listen_port", "listener port", DEFAULT_LISTEN_PORT, normalize_port, typed=int,
          expects='a port number (20603 or "20603")'),
    Field("auth_scheme", "access-token scheme", DEFAULT_AUTH_SCHEME, normalize_auth_scheme),
    Field("allow_insecure_base_url", "plain-HTTP base URL allowance", "false", normalize_flag,
          typed=bool, expects="true or false"),
    # The listener's endpoint paths.
    *(Field(f"{kind}_path", f"{kind} update endpoint path", path, normalize_path)
      for kind, path in DEFAULT_WEBHOOK_PATHS.items()),
    # The event store: a file (default: events.sqlite3 in the data folder), or a URL.
    Field("store", "event store", normalize=normalize_store),
    # What a commit survives: normal (any crash of the program) or full (a power cut too).
    Field("durability", "store durability", DEFAULT_DURABILITY, normalize_durability),
    # The JWT audiences `listen` requires, comma-separated (default: any).
    Field("audience", "required token audience", normalize=normalize_audience,
          expects='audiences separated by commas ("shop-a, shop-b")'),
    # The shop's URL: `listen`'s --forward-to, and `reconcile --fix`'s target.
    Field("forward_to", "forward target", normalize=normalize_forward_to),
    # Rotations (configure --rotate-*): the value replaced, and until when it still counts.
    Field("previous_verification_token", "previous verification token", secret=True),
    Field("previous_token_until", "previous token counts until", normalize=normalize_until),
    # 'Name: value' lines every forward carries (a shop's key).
    Field("forward_headers", "forward headers", normalize=normalize_forward_headers),
    # Signs every forward (Standard Webhooks): whsec_ and base64.
    Field("forward_secret", "forward signing secret", normalize=normalize_forward_secret,
          secret=True),
    Field("previous_forward_secret", "previous forward signing secret",
          normalize=normalize_forward_secret, secret=True),
    Field("previous_forward_secret_until", "previous forward secret counts until",
          normalize=normalize_until),
    # Where a person is told when needed (listen's and deliveries run's --alert-*).
    Field("alert_url", "alert URL", normalize=normalize_forward_to),
    Field("alert_command", "alert command"),
    # Where `listen` serves Prometheus metrics (--metrics-port, --metrics-host).
    Field("metrics_port", "metrics port", normalize=normalize_port, typed=int,
          expects='a port number (9464 or "9464")'),
    Field("metrics_host", "metrics host", DEFAULT_LISTEN_HOST, normalize_host),
    # What `listen` and `deliveries run` write on stderr: human lines, or JSON records.
    Field("log_format", "log format", "human", normalize_log_format),
)  # fmt: skip
BY_NAME: Mapping[str, Field] = {field.name: field for field in REGISTRY}

FIELDS = tuple(BY_NAME)
PROMPTED_FIELDS = tuple(field.name for field in REGISTRY if field.prompted)
SECRET_FIELDS = frozenset(field.name for field in REGISTRY if field.secret)
DEFAULTS: Mapping[str, str] = {f.name: f.default for f in REGISTRY if f.default is not None}
ENV_VARS: Mapping[str, str] = {name: f"AVASAM_{name.upper()}" for name in FIELDS}
LABELS: Mapping[str, str] = {field.name: field.label for field in REGISTRY}
FIELD_TYPES: Mapping[str, str] = {f.name: f.expects for f in REGISTRY if f.expects}
NORMALIZERS: Mapping[str, Callable[[str], str]] = {
    field.name: field.normalize for field in REGISTRY if field.normalize is not None
}


def typed_value(name: str, value: str) -> str | int | bool:
    """A setting as TOML and JSON write it: a port as a number, a yes/no as a boolean."""
    typed = BY_NAME[name].typed if name in BY_NAME else None
    if typed is int and value.isascii() and value.isdigit():
        return int(value)
    if typed is bool and value in ("true", "false"):
        return value == "true"
    return value


def shown_value(name: str, value: str | None) -> str:
    """A setting as it may be printed: secrets masked, URLs without their password."""
    if name in SECRET_FIELDS:
        return mask(value)
    if name == "forward_headers" and value:  # a shop's key, often: the names only, masked
        lines = (line.partition(":") for line in value.splitlines())
        return "; ".join(f"{head}: {mask(rest.strip())}" for head, _, rest in lines)
    if name in ("base_url", "store", "forward_to") and value:
        return without_password(value)
    return value or "(not set)"
