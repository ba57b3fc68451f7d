"""Where each effective value comes from.

Precedence for every value: command-line flag > environment > profile > default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from avasam_cli.config.fields import DEFAULTS, ENV_VARS, FIELDS, LABELS, NORMALIZERS, shown_value
from avasam_cli.config.file import (
    DEFAULT_PROFILE,
    PROFILE_ENV,
    ConfigFile,
    check_profile_name,
    closest,
)
from avasam_cli.errors import ConfigError


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
    guess = closest(profile, names)
    hint = f"did you mean {guess}? " if guess else ""
    known = f"profiles: {', '.join(names)}" if names else "no profiles yet"
    given = "--profile" if source == "flag" else PROFILE_ENV
    raise ConfigError(
        f"no profile '{profile}' (from {given}) in {config.path} ({known}); {hint}"
        f"create it with `avasam --profile {profile} configure`"
    )
