"""What every command shares: the error boundary, the chosen profile, settings, the client.

Light at import time: the CLI imports this module at start-up.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

import typer
from typer.core import TyperGroup

from avasam_cli.errors import AvasamError, UsageError

if TYPE_CHECKING:
    from avasam_cli.api.client import AvasamClient
    from avasam_cli.config import ConfigFile, Settings
    from avasam_cli.paths import Locations

STDIN_MARKER = "-"


class GuardedGroup(TyperGroup):
    """The single boundary where expected errors become a message and an exit code,
    and where refused values are reworded (see `_help`)."""

    _ARGS_KEY = "avasam.subcommand_args"

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        ctx.meta[self._ARGS_KEY] = list(args)
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: Any, name: str) -> Any:
        from avasam_cli.cli._help import tidy

        return tidy(super().get_command(ctx, name))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AvasamError as failure:
            from avasam_cli import output

            if failure.message:
                output.error(failure.message)
            raise typer.Exit(failure.exit_code) from None
        except typer.BadParameter as refused:
            from avasam_cli.cli._help import reworded

            raise (reworded(refused, ctx.meta.get(self._ARGS_KEY, [])) or refused) from None


def group(help: str) -> typer.Typer:
    """A command group guarded by the same error boundary as the app."""
    return typer.Typer(cls=GuardedGroup, help=help, no_args_is_help=True, rich_markup_mode=None)


class State:
    """What the root callback learned: the --profile flag."""

    def __init__(self, profile: str | None = None) -> None:
        self.profile = profile


def config_file() -> ConfigFile:
    from avasam_cli.config import ConfigFile
    from avasam_cli.paths import locations

    return ConfigFile(locations().config_file)


def profile_flag(ctx: typer.Context) -> str | None:
    state: State = ctx.find_root().obj
    return state.profile


def settings(
    ctx: typer.Context, config: ConfigFile | None = None, /, **flags: str | None
) -> Settings:
    """The effective settings: these flags, then the environment, the profile, defaults."""
    return _settings(ctx, config or config_file(), flags, lenient=False)


def logging_settings(
    ctx: typer.Context, config: ConfigFile | None = None, /, **flags: str | None
) -> Settings:
    """As `settings`, for `listen` and `deliveries run`: their log format (--log-format,
    the profile's) is in force before anything is said, the config's warnings included."""
    from avasam_cli.config import resolve
    from avasam_cli.logs import start

    config = config or config_file()
    try:
        resolved = resolve(config, profile_flag(ctx), flags, flag_options=_SPELLED)
    except BaseException:
        say_config_warnings(config)
        raise
    start(resolved.require("log_format"))
    say_config_warnings(config)
    return resolved


def lenient_settings(ctx: typer.Context, **flags: str | None) -> Settings:
    """As `settings`, but a bad value is kept and marked: for the commands that
    diagnose it (`config show`, `doctor`)."""
    return _settings(ctx, config_file(), flags, lenient=True)


_SPELLED = {"listen_host": "--host", "listen_port": "--port"}


def _settings(
    ctx: typer.Context, config: ConfigFile, flags: Mapping[str, str | None], lenient: bool
) -> Settings:
    from avasam_cli.config import resolve

    # Only `configure` spells them --listen-host/--listen-port; the others say --host/--port.
    spelled = {} if ctx.info_name == "configure" else _SPELLED
    try:
        return resolve(config, profile_flag(ctx), flags, lenient=lenient, flag_options=spelled)
    finally:
        say_config_warnings(config)  # a misspelled key may be why a value is missing


def endpoint_paths(resolved: Settings) -> dict[str, str]:
    """kind -> the listener's path for it: flags, environment, profile, default."""
    from avasam_cli.webhooks.kinds import KIND_NAMES

    return {kind: resolved.require(f"{kind}_path") for kind in KIND_NAMES}


def say_config_warnings(config: ConfigFile) -> None:
    """Print what reading the config file found (unknown keys...), once."""
    from avasam_cli import output

    for warning in config.warnings:
        output.warn(warning)
    config.warnings.clear()


def read_stdin_values(given: Mapping[str, str | None], stdin: TextIO) -> dict[str, str | None]:
    """Replace each `-` with the next line of standard input, in the order of FIELDS; at a
    terminal, each is asked for by name and typed without echo."""
    from avasam_cli.config import FIELDS, LABELS

    resolved = dict(given)
    for name in FIELDS:
        if resolved.get(name) != STDIN_MARKER:
            continue
        typed = stdin.isatty()
        line = (
            read_unechoed(f"{LABELS[name].capitalize()} (not shown): ", stdin)
            if typed
            else stdin.readline()
        )
        if not line and typed:
            raise UsageError(f"no {LABELS[name]} was typed: nothing was changed")
        if not line:
            raise UsageError(
                f"--{name.replace('_', '-')} - expects the {LABELS[name]} on standard input, "
                "which was empty: pipe it in, e.g. `printf '%s\\n' \"$TOKEN\" | avasam configure "
                f"--{name.replace('_', '-')} -`"
            )
        resolved[name] = line.rstrip("\r\n")
    return resolved


def read_unechoed(prompt: str, terminal: TextIO) -> str:
    """A line typed at `terminal` (standard input) without echo, after `prompt` on stderr.

    Not getpass on POSIX: it reads /dev/tty, which need not be the terminal on standard
    input.  On Windows getpass reads the console, which is that terminal.
    """
    if sys.platform == "win32":
        import getpass

        return getpass.getpass(prompt, sys.stderr) + "\n"
    import termios

    descriptor = terminal.fileno()
    before = termios.tcgetattr(descriptor)
    quiet = termios.tcgetattr(descriptor)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(descriptor, termios.TCSAFLUSH, quiet)
    try:
        print(prompt, end="", file=sys.stderr, flush=True)  # once echo is off: safe to type
        return terminal.readline()
    finally:
        termios.tcsetattr(descriptor, termios.TCSAFLUSH, before)
        print(file=sys.stderr)


def verification_token_for(ctx: typer.Context, flag: str | None) -> str:
    """The verification token from --verification-token (or `-`: stdin), env or profile."""
    flags = read_stdin_values({"verification_token": flag}, sys.stdin)
    return settings(ctx, **flags).require("verification_token")


def client_for(resolved: Settings, where: Locations) -> AvasamClient:
    """The API client for the effective profile; missing keys are a configuration error here."""
    from avasam_cli import output
    from avasam_cli.api.client import AvasamClient, TokenCache, cache_key_for
    from avasam_cli.config import check_base_url_transport

    base_url = resolved.require("base_url")
    check_base_url_transport(base_url, resolved.get("allow_insecure_base_url") == "true")
    consumer_key = resolved.require("consumer_key")
    key, prefix = cache_key_for(resolved.profile, base_url, consumer_key)
    return AvasamClient(
        base_url,
        consumer_key,
        resolved.require("secret_key"),
        TokenCache(where.cache_dir / "tokens.json", warn=output.warn),
        cache_key=key,
        auth_scheme=resolved.require("auth_scheme"),
        cache_prefix=prefix,
    )


def local_endpoint(ctx: typer.Context, host: str | None, port: int | None, kind: str) -> str:
    """The URL of the local `avasam listen`'s endpoint for `kind`: --host/--port, else the
    profile's address, and the profile's path for the kind."""
    from avasam_cli.cli._context import endpoint_paths
    from avasam_cli.net import local_base_url

    resolved = settings(ctx, listen_host=host, listen_port=None if port is None else str(port))
    base = local_base_url(resolved.require("listen_host"), resolved.require("listen_port"))
    return base + endpoint_paths(resolved)[kind]


def kind_of_url(ctx: typer.Context, url: str) -> str | None:
    """The kind whose endpoint path (the profile's) `url` ends with, if any."""
    from urllib.parse import urlsplit

    from avasam_cli.cli._context import endpoint_paths

    path = urlsplit(url).path.rstrip("/")
    paths = endpoint_paths(settings(ctx))
    return next((kind for kind, p in paths.items() if path == p.rstrip("/")), None)
