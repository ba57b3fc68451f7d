"""Profiles in `config.toml`, and where each effective value comes from.

Precedence for every value: command-line flag > environment > profile > default.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping, Sequence
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
    DEFAULT_WEBHOOK_PATHS,
)
from avasam_cli.errors import ConfigError, OperationFailed, UsageError
from avasam_cli.paths import DatabaseUrl, StoreLocation, is_too_open, write_secret_file
from avasam_cli.text import without_password

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
    *(f"{kind}_path" for kind in DEFAULT_WEBHOOK_PATHS),  # the listener's endpoint paths
    "store",  # the event store: a file (default: events.sqlite3 in the data folder)
    "audience",  # the JWT audiences `listen` requires, comma-separated (default: any)
    "forward_to",  # the shop's URL: `listen`'s --forward-to, and `reconcile --fix`'s target
    # Rotations (configure --rotate-*): the value replaced, and until when it still counts.
    "previous_verification_token",
    "previous_token_until",
    "forward_headers",  # 'Name: value' lines every forward carries (a shop's key)
    "forward_secret",  # signs every forward (Standard Webhooks): whsec_ and base64
    "previous_forward_secret",
    "previous_forward_secret_until",
)
FIELD_TYPES: Mapping[str, str] = {
    "listen_port": 'a port number (20603 or "20603")',
    "allow_insecure_base_url": "true or false",
    "audience": 'audiences separated by commas ("shop-a, shop-b")',
}


def typed_value(name: str, value: str) -> str | int | bool:
    """A setting as TOML and JSON write it: a port as a number, a yes/no as a boolean."""
    if name == "listen_port" and value.isascii() and value.isdigit():
        return int(value)
    if name == "allow_insecure_base_url" and value in ("true", "false"):
        return value == "true"
    return value


PROMPTED_FIELDS = FIELDS[:4]  # the listener's address is set with flags, not prompted for
SECRET_FIELDS = frozenset(
    {
        "consumer_key",
        "secret_key",
        "verification_token",
        "previous_verification_token",
        "forward_secret",
        "previous_forward_secret",
    }
)
DEFAULTS: Mapping[str, str] = {
    "base_url": DEFAULT_BASE_URL,
    "listen_host": DEFAULT_LISTEN_HOST,
    "listen_port": DEFAULT_LISTEN_PORT,
    "auth_scheme": DEFAULT_AUTH_SCHEME,
    "allow_insecure_base_url": "false",
    **{f"{kind}_path": path for kind, path in DEFAULT_WEBHOOK_PATHS.items()},
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
    **{f"{kind}_path": f"{kind} update endpoint path" for kind in DEFAULT_WEBHOOK_PATHS},
    "store": "event store",
    "audience": "required token audience",
    "forward_to": "forward target",
    "previous_verification_token": "previous verification token",
    "previous_token_until": "previous token counts until",
    "forward_headers": "forward headers",
    "forward_secret": "forward signing secret",
    "previous_forward_secret": "previous forward signing secret",
    "previous_forward_secret_until": "previous forward secret counts until",
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


NORMALIZERS: Mapping[str, Callable[[str], str]] = {
    "forward_headers": normalize_forward_headers,
    "forward_secret": normalize_forward_secret,
    "previous_forward_secret": normalize_forward_secret,
    "previous_token_until": normalize_until,
    "previous_forward_secret_until": normalize_until,
    "audience": normalize_audience,
    "forward_to": normalize_forward_to,
    **{f"{kind}_path": normalize_path for kind in DEFAULT_WEBHOOK_PATHS},
    "allow_insecure_base_url": normalize_flag,
    "base_url": normalize_base_url,
    "listen_host": normalize_host,
    "store": normalize_store,
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
    """The TOML document holding every profile; never overwritten when it cannot be parsed.

    Reading it also checks it: unknown keys and tables become warnings naming the
    file, the line and the closest known name, because a misspelled key is otherwise
    silently ignored (and a misspelled verification token would be replaced).
    """

    path: Path
    warnings: list[str] = field(default_factory=list)
    # profile -> (field, the misspelled key, its line): keys that look like a known field
    near_misses: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    _document: dict[str, Any] | None = None

    def read(self) -> dict[str, Any]:
        if self._document is None:
            self._document = self._load()
        return self._document

    def _load(self) -> dict[str, Any]:
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
            text = raw.decode("utf-8")
            document = tomllib.loads(text)
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
        self._check_names(document, text)
        return document

    def _check_names(self, document: Mapping[str, Any], text: str) -> None:
        lines = text.splitlines()
        for key, value in document.items():
            if key == "profiles":
                continue
            guess = _closest(key, ["profiles"])
            self._unknown(f"table or key '{key}'", _line_of(lines, key), guess, "profiles")
            if guess and isinstance(value, dict):  # [profile.default]: look inside too
                for name, table in value.items():
                    if isinstance(table, dict):
                        for field_name in table:
                            close = _closest(field_name, FIELDS, exact=True)
                            if close:
                                line = _line_of(lines, field_name)
                                self.near_misses.setdefault(name, []).append(
                                    (close, f"{key}.{name}.{field_name}", line)
                                )
        for name, table in document.get("profiles", {}).items():
            for key in table:
                if key in FIELDS:
                    continue
                guess = _closest(key, FIELDS)
                line = _line_of(lines, key)
                self._unknown(f"key '{key}' in [profiles.{name}]", line, guess, "a known setting")
                if guess:
                    self.near_misses.setdefault(name, []).append((guess, key, line))

    def _unknown(self, what: str, line: int, guess: str | None, otherwise: str) -> None:
        where = f"{self.path}:{line}" if line else str(self.path)
        hint = f"did you mean {guess}?" if guess else f"expected {otherwise}"
        self.warnings.append(f"{where}: unknown {what} ({hint}); it is ignored")

    def profile(self, name: str) -> dict[str, str]:
        table = self.read().get("profiles", {}).get(name, {})
        values: dict[str, str] = {}
        for key, raw in table.items():
            if key not in FIELDS:
                continue
            value = raw
            if isinstance(raw, bool) and key == "allow_insecure_base_url":
                value = "true" if raw else "false"
            elif isinstance(raw, int) and not isinstance(raw, bool) and key == "listen_port":
                value = str(raw)
            elif (
                isinstance(raw, list)
                and key == "audience"
                and all(isinstance(part, str) for part in raw)
            ):
                value = ", ".join(raw)
            if not isinstance(value, str):
                raise ConfigError(
                    f"config file {self.path}: profiles.{name}.{key} must be "
                    f"{FIELD_TYPES.get(key, 'a string')}; fix it, or run "
                    f"`avasam --profile {name} configure`"
                )
            values[key] = value
        return values

    def has_profile(self, name: str) -> bool:
        return name in self.read().get("profiles", {})

    def profile_names(self) -> list[str]:
        return sorted(self.read().get("profiles", {}))

    def save_profile(self, name: str, updates: Mapping[str, str]) -> None:
        """Merge `updates` into profile `name`, keeping every other profile and key."""
        import tomli_w

        self._document = None  # read afresh: another command may have written meanwhile
        document = self.read()
        profiles = document.setdefault("profiles", {})
        typed = {key: typed_value(key, value) for key, value in updates.items()}
        profiles.setdefault(name, {}).update(typed)
        try:
            write_secret_file(self.path, tomli_w.dumps(document))
        except OSError as error:
            raise OperationFailed(
                f"cannot write config file {self.path}: {error.strerror or error}; "
                "check free space and permissions (the previous file was kept)"
            ) from None


def _closest(word: str, known: Sequence[str], exact: bool = False) -> str | None:
    """The known name `word` most likely misspells (or is, with `exact`), if any."""
    import difflib

    if exact and word in known:
        return word
    matches = difflib.get_close_matches(word.lower(), known, n=1, cutoff=0.7)
    return matches[0] if matches else None


def _line_of(lines: Sequence[str], key: str) -> int:
    """The 1-based line where `key` is assigned or opens a table; 0 if not found."""
    pattern = re.compile(rf"""^\s*(\[+\s*)?["']?{re.escape(key)}["']?\s*(=|\.|\])""")
    return next((n for n, line in enumerate(lines, 1) if pattern.match(line)), 0)


@dataclass(frozen=True)
class Setting:
    name: str
    value: str | None
    source: str  # "flag", "environment", "profile", "default" or "unset"
    problem: str | None = None  # why the value is unusable (lenient resolution only)

    @property
    def shown(self) -> str:
        return shown_value(self.name, self.value)


@dataclass(frozen=True)
class Settings:
    profile: str
    profile_source: str
    values: Mapping[str, Setting]

    def get(self, name: str) -> str | None:
        return self.values[name].value

    def require(self, name: str) -> str:
        setting = self.values[name]
        if setting.problem:
            raise ConfigError(setting.problem)
        if setting.value:
            return setting.value
        flag = name.replace("_", "-")
        profile_hint = "" if self.profile == DEFAULT_PROFILE else f" --profile {self.profile}"
        command = f"avasam{profile_hint} configure"
        if name == "verification_token":
            command += " --generate-verification-token"
        raise ConfigError(
            f"no {LABELS[name]} for profile '{self.profile}': run `{command}`, "
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
    lenient: bool = False,
    flag_options: Mapping[str, str] | None = None,
) -> Settings:
    """Combine flags, environment, the chosen profile and defaults into effective settings.

    A bad value is a ConfigError naming where it came from; with `lenient` (for
    `config show` and `doctor`, which must run to diagnose it) it is kept as given,
    with the error in `Setting.problem`.  `flag_options` names the option a flag came
    from where the command spells it differently (`listen --host` for listen_host).
    """
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
        problem = None
        if value is not None and name in NORMALIZERS:
            try:
                value = NORMALIZERS[name](value)
            except ConfigError as error:
                origin = _origin(name, source, config, profile, flag_options or {})
                problem = f"{error.message} (from {origin})"
                if not lenient:
                    raise ConfigError(problem) from None
        values[name] = Setting(name, value, source, problem)
    return Settings(profile, profile_source, values)


def _origin(
    name: str, source: str, config: ConfigFile, profile: str, flag_options: Mapping[str, str]
) -> str:
    if source == "flag":
        return flag_options.get(name, f"--{name.replace('_', '-')}")
    if source == "environment":
        return f"the environment variable {ENV_VARS[name]}"
    if source == "profile":
        return f"{config.path}, [profiles.{profile}] {name}"
    return "the default"


def check_profile_exists(config: ConfigFile, profile: str, source: str) -> None:
    """Raise the error for a profile named by --profile or AVASAM_PROFILE that the file
    does not hold."""
    names = config.profile_names()
    guess = _closest(profile, names)
    hint = f"did you mean {guess}? " if guess else ""
    known = f"profiles: {', '.join(names)}" if names else "no profiles yet"
    given = "--profile" if source == "flag" else PROFILE_ENV
    raise ConfigError(
        f"no profile '{profile}' (from {given}) in {config.path} ({known}); {hint}"
        f"create it with `avasam --profile {profile} configure`"
    )
