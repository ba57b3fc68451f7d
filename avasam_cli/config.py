"""Profiles in `config.toml`, and where each effective value comes from.

Precedence for every value: command-line flag > environment > profile > default.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from avasam_cli.defaults import (
    AUTH_SCHEME_CHOICES,
    DEFAULT_AUTH_SCHEME,
    DEFAULT_BASE_URL,
    DEFAULT_LISTEN_HOST,
    DEFAULT_LISTEN_PORT,
)
from avasam_cli.errors import ConfigError, OperationFailed, UsageError
from avasam_cli.paths import is_too_open, write_secret_file

DEFAULT_PROFILE = "default"
PROFILE_ENV = "AVASAM_PROFILE"


FIELDS = (
    "consumer_key",
    "secret_key",
    "verification_token",
    "base_url",
    "listen_host",
    "listen_port",
    "auth_scheme",
    "allow_insecure_base_url",
)
PROMPTED_FIELDS = FIELDS[:4]  # the listener's address is set with flags, not prompted for
SECRET_FIELDS = frozenset({"consumer_key", "secret_key", "verification_token"})
DEFAULTS: Mapping[str, str] = {
    "base_url": DEFAULT_BASE_URL,
    "listen_host": DEFAULT_LISTEN_HOST,
    "listen_port": DEFAULT_LISTEN_PORT,
    "auth_scheme": DEFAULT_AUTH_SCHEME,
    "allow_insecure_base_url": "false",
}
ENV_VARS: Mapping[str, str] = {name: f"AVASAM_{name.upper()}" for name in FIELDS}
LABELS: Mapping[str, str] = {
    "consumer_key": "consumer key",
    "secret_key": "secret key",
    "verification_token": "verification token",
    "base_url": "base URL",
    "listen_host": "listener host",
    "listen_port": "listener port",
    "auth_scheme": "access-token scheme",
    "allow_insecure_base_url": "plain-HTTP base URL allowance",
}

PASTE_INSTRUCTION = (
    "Paste it into Avasam: Settings > User management > your API user > webhook section > "
    "Verification token, then click Save."
)
# The verification token is the HS256 key: RFC 7518 asks for a key at least as long as the hash.
MIN_TOKEN_BYTES = 32

_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    candidate = url.strip()
    problem = None
    try:
        parts = urlsplit(candidate)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as error:
        problem = str(error)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with https:// (or http:// for a local server)"
        elif not parts.hostname:
            problem = "it has no host name"
        elif parts.query or parts.fragment:
            problem = "it must not have a query or fragment"
        elif any(ch.isspace() for ch in candidate) or port == 0:
            problem = "it contains spaces or an invalid port"
    if problem:
        raise ConfigError(
            f"malformed base URL {url!r}: {problem}; for example --base-url {DEFAULT_BASE_URL}"
        )
    return candidate.rstrip("/")


def normalize_port(port: str) -> str:
    """A TCP port number as text; raise ConfigError otherwise."""
    candidate = port.strip()
    if not candidate.isdigit() or not 0 <= int(candidate) <= 65535:
        raise ConfigError(
            f"invalid listener port {port!r}: use a number from 1 to 65535 (0: any free port)"
        )
    return str(int(candidate))


def normalize_auth_scheme(scheme: str) -> str:
    candidate = scheme.strip().lower()
    if candidate not in AUTH_SCHEME_CHOICES:
        raise ConfigError(
            f"invalid access-token scheme {scheme!r}: use {', '.join(AUTH_SCHEME_CHOICES)} "
            "(for example --auth-scheme auto)"
        )
    return candidate


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


NORMALIZERS: Mapping[str, Callable[[str], str]] = {
    "allow_insecure_base_url": normalize_flag,
    "base_url": normalize_base_url,
    "listen_port": normalize_port,
    "auth_scheme": normalize_auth_scheme,
}


def check_profile_name(name: str) -> str:
    if not _PROFILE_NAME.match(name):
        raise UsageError(
            f"invalid profile name {name!r}: use letters, digits, '.', '_' or '-' "
            "(for example --profile staging)"
        )
    return name


@dataclass
class ConfigFile:
    """The TOML document holding every profile; never overwritten when it cannot be parsed."""

    path: Path
    warnings: list[str] = field(default_factory=list)

    def read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise ConfigError(
                f"cannot read config file {self.path}: {error.strerror or error}; "
                "check its permissions"
            ) from None
        if is_too_open(self.path):
            self.warnings.append(
                f"config file {self.path} is readable by other users; "
                "it will be tightened to 0600 on the next `avasam configure`"
            )
        try:
            document = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(
                f"config file {self.path} is not valid TOML ({error}); "
                "fix it or move it away and run `avasam configure` (it was left untouched)"
            ) from None
        profiles = document.get("profiles", {})
        if not isinstance(profiles, dict) or not all(
            isinstance(p, dict) for p in profiles.values()
        ):
            raise ConfigError(
                f"config file {self.path}: [profiles] must hold one table per profile; "
                "fix it or move it away and run `avasam configure` (it was left untouched)"
            )
        return document

    def profile(self, name: str) -> dict[str, str]:
        table = self.read().get("profiles", {}).get(name, {})
        values: dict[str, str] = {}
        for key, value in table.items():
            if key in FIELDS and not isinstance(value, str):
                raise ConfigError(
                    f"config file {self.path}: profiles.{name}.{key} must be a string; "
                    f"fix it or run `avasam configure --profile {name}`"
                )
            if key in FIELDS:
                values[key] = value
        return values

    def profile_names(self) -> list[str]:
        return sorted(self.read().get("profiles", {}))

    def save_profile(self, name: str, updates: Mapping[str, str]) -> None:
        """Merge `updates` into profile `name`, keeping every other profile and key."""
        import tomli_w

        document = self.read()
        profiles = document.setdefault("profiles", {})
        profiles.setdefault(name, {}).update(updates)
        try:
            write_secret_file(self.path, tomli_w.dumps(document))
        except OSError as error:
            raise OperationFailed(
                f"cannot write config file {self.path}: {error.strerror or error}; "
                "check free space and permissions (the previous file was kept)"
            ) from None


@dataclass(frozen=True)
class Setting:
    name: str
    value: str | None
    source: str  # "flag", "environment", "profile", "default" or "unset"

    @property
    def shown(self) -> str:
        if self.name in SECRET_FIELDS:
            return mask(self.value)
        if self.name == "base_url" and self.value:
            from avasam_cli.text import without_password

            return without_password(self.value)
        return self.value or "(not set)"


@dataclass(frozen=True)
class Settings:
    profile: str
    profile_source: str
    values: Mapping[str, Setting]

    def get(self, name: str) -> str | None:
        return self.values[name].value

    def require(self, name: str) -> str:
        value = self.values[name].value
        if value:
            return value
        flag = name.replace("_", "-")
        profile_hint = "" if self.profile == DEFAULT_PROFILE else f" --profile {self.profile}"
        raise ConfigError(
            f"no {LABELS[name]} for profile '{self.profile}': "
            f"run `avasam configure{profile_hint}`, "
            f"or set {ENV_VARS[name]} (or pass --{flag} where the command offers it)"
        )


def choose_profile(flag: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    if flag:
        return check_profile_name(flag), "flag"
    if environ.get(PROFILE_ENV):
        return check_profile_name(environ[PROFILE_ENV]), "environment"
    return DEFAULT_PROFILE, "default"


def resolve(
    config: ConfigFile,
    profile_flag: str | None = None,
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Combine flags, environment, the chosen profile and defaults into effective settings."""
    env = os.environ if environ is None else environ
    flags = flags or {}
    profile, profile_source = choose_profile(profile_flag, env)
    stored = config.profile(profile)
    values: dict[str, Setting] = {}
    for name in FIELDS:
        candidates = (
            ("flag", flags.get(name)),
            ("environment", env.get(ENV_VARS[name])),
            ("profile", stored.get(name)),
            ("default", DEFAULTS.get(name)),
        )
        source, value = next(((s, v) for s, v in candidates if v), ("unset", None))
        if value is not None and name in NORMALIZERS:
            value = NORMALIZERS[name](value)
        values[name] = Setting(name, value, source)
    return Settings(profile, profile_source, values)
