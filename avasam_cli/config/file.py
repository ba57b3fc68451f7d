"""`config.toml`: the TOML document holding every profile, read and checked (unknown
keys named with the closest known one) and written atomically at mode 0600."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avasam_cli.config.fields import FIELD_TYPES, FIELDS, typed_value
from avasam_cli.errors import ConfigError, OperationFailed, UsageError
from avasam_cli.paths import is_too_open, write_secret_file

DEFAULT_PROFILE = "default"


PROFILE_ENV = "AVASAM_PROFILE"


_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
            guess = closest(key, ["profiles"])
            self._unknown(f"table or key '{key}'", _line_of(lines, key), guess, "profiles")
            if guess and isinstance(value, dict):  # [profile.default]: look inside too
                for name, table in value.items():
                    if isinstance(table, dict):
                        for field_name in table:
                            close = closest(field_name, FIELDS, exact=True)
                            if close:
                                line = _line_of(lines, field_name)
                                self.near_misses.setdefault(name, []).append(
                                    (close, f"{key}.{name}.{field_name}", line)
                                )
        for name, table in document.get("profiles", {}).items():
            for key in table:
                if key in FIELDS:
                    continue
                guess = closest(key, FIELDS)
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


def closest(word: str, known: Sequence[str], exact: bool = False) -> str | None:
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
