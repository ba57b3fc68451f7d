"""The command line: the app, its root options, and one module per verb or group.

Each verb module holds its options and its glue, and registers itself here.
Heavy modules (httpx, starlette, uvicorn, jwt, sqlite3, rich) are imported
inside the commands that need them, so `avasam --help` starts quickly.
"""

import os
from pathlib import Path
from typing import Annotated

import typer

from avasam_cli import __version__
from avasam_cli.cli import (
    ack,
    api,
    config,
    configure,
    deliveries,
    doctor,
    events,
    inspect,
    listen,
    products,
    reconcile,
    send_test,
    service,
    stock,
    verify,
)
from avasam_cli.cli._context import GuardedGroup, State

app = typer.Typer(
    cls=GuardedGroup,
    name="avasam",
    help="The command-line companion for Avasam sellers: verify, store and simulate Avasam's "
    "stock and price webhooks, and acknowledge them through the API.",
    invoke_without_command=True,  # plain `avasam` shows the help and exits 0 (see root)
    pretty_exceptions_show_locals=False,  # locals would include secrets
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # plain help: it reads at 80 columns (see _help)
)


def _version(value: bool) -> None:
    if value:
        print(f"avasam-cli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            metavar="NAME",
            help="Profile to use (default: $AVASAM_PROFILE, else 'default').",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="PATH",
            help="The event store: a file, or sqlite:///PATH (default: $AVASAM_STORE, then "
            "the profile's, then events.sqlite3 in the data folder).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_version),
    ] = False,
) -> None:
    """Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error."""
    ctx.obj = State(profile=profile)
    _choose_store(store, profile)
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)
    if ctx.invoked_subcommand != "configure" and (profile or "AVASAM_PROFILE" in os.environ):
        _check_profile_exists(profile)


def _choose_store(flag: str | None, profile: str | None) -> None:
    """The event store of this run: --store, then AVASAM_STORE, then the profile's."""
    from avasam_cli.paths import choose_store

    choose_store(None)
    source = "--store" if flag else "the environment variable AVASAM_STORE"
    value = flag or os.environ.get("AVASAM_STORE")
    if value is None:
        from avasam_cli.cli._context import config_file
        from avasam_cli.config import choose_profile

        config = config_file()
        if not config.path.exists():
            return
        name, _ = choose_profile(profile, os.environ)
        value = config.profile(name).get("store") if config.has_profile(name) else None
        source = f"{config.path}, [profiles.{name}] store"
    if value is not None:
        from avasam_cli.config import store_location
        from avasam_cli.errors import ConfigError

        try:
            location = store_location(value)
        except ConfigError as error:
            raise ConfigError(f"{error.message} (from {source})") from None
        if isinstance(location, Path) and not location.parent.is_dir():
            # A folder typed wrong is not made: it would hold the events nobody looks at.
            raise ConfigError(
                f"the folder of the event store {location} does not exist: "
                f"{location.parent} (from {source}); create it first, or choose another store"
            )
        choose_store(location)


def _check_profile_exists(flag: str | None) -> None:
    """A named profile must exist, or a typo would run with nothing configured (only
    `configure` creates one)."""
    from avasam_cli.cli._context import config_file
    from avasam_cli.config import check_profile_exists, choose_profile

    name, source = choose_profile(flag, os.environ)
    config = config_file()
    if source != "default" and not config.has_profile(name):
        check_profile_exists(config, name, source)


# In the order `avasam --help` lists them.
for verb in (
    configure,
    config,
    listen,
    send_test,
    verify,
    ack,
    events,
    deliveries,
    inspect,
    doctor,
    api,
    stock,
    products,
    reconcile,
    service,
):
    verb.register(app)


def main() -> None:
    app(prog_name="avasam")
