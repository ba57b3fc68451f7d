"""The command line: declarations only; each command hands its work to one function.

Heavy modules (httpx, starlette, uvicorn, jwt, sqlite3, rich) are imported
inside the commands that need them, so `avasam --help` starts quickly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from avasam_cli import __version__
from avasam_cli.errors import AvasamError


class GuardedGroup(TyperGroup):
    """The single boundary where expected errors become a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AvasamError as failure:
            from avasam_cli import output

            output.error(failure.message)
            raise typer.Exit(failure.exit_code) from None


app = typer.Typer(
    cls=GuardedGroup,
    name="avasam",
    help="The command-line companion for Avasam sellers: verify, store and simulate Avasam's "
    "stock and price webhooks, and acknowledge them through the API.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would include secrets
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)
config_app = typer.Typer(
    cls=GuardedGroup,
    help="Show the effective configuration and where avasam keeps its files.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


@dataclass
class State:
    profile: str | None = None


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
            help="Profile to use (default: $AVASAM_PROFILE, else 'default').",
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


def _config_file() -> Any:
    from avasam_cli.config import ConfigFile
    from avasam_cli.paths import locations

    return ConfigFile(locations().config_file)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _prompt(label: str, shown: str, hidden: bool) -> str:
    suffix = f" [{shown}]" if shown else ""
    answer: str = typer.prompt(
        f"{label}{suffix}", default="", show_default=False, hide_input=hidden
    )
    return answer


STDIN_HELP = "Use - to read it from standard input (keeps it out of argv and shell history)."


@app.command(
    epilog="Examples:\n\n"
    "  avasam configure\n\n"
    "  avasam configure --consumer-key CK --secret-key - < secret.txt\n\n"
    "  avasam -p staging configure --base-url https://sandbox.example\n\n"
    "  avasam configure --generate-verification-token",
)
def configure(
    ctx: typer.Context,
    consumer_key: Annotated[
        str | None, typer.Option(help=f"Consumer key from Avasam's API keys page. {STDIN_HELP}")
    ] = None,
    secret_key: Annotated[
        str | None, typer.Option(help=f"Secret key from Avasam's API keys page. {STDIN_HELP}")
    ] = None,
    verification_token: Annotated[
        str | None,
        typer.Option(help=f"The token you typed into Avasam's webhook settings. {STDIN_HELP}"),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="API base URL (default https://app.avasam.com).")
    ] = None,
    generate_verification_token: Annotated[
        bool,
        typer.Option(
            "--generate-verification-token",
            help="Create a strong random verification token, save it and print it once.",
        ),
    ] = False,
) -> None:
    """Store API keys and the webhook verification token in a profile."""
    from avasam_cli.commands import configure as command

    command.run(
        config=_config_file(),
        profile_flag=ctx.obj.profile,
        given={
            "consumer_key": consumer_key,
            "secret_key": secret_key,
            "verification_token": verification_token,
            "base_url": base_url,
        },
        generate_token=generate_verification_token,
        interactive=_stdin_is_terminal(),
        stdin=sys.stdin,
        prompt=_prompt,
    )


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@config_app.command(
    "show", epilog="Examples:\n\n  avasam config show\n\n  avasam -p staging config show --json"
)
def config_show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show every effective value and where it came from; secrets masked."""
    from avasam_cli.commands import config_cmd
    from avasam_cli.config import resolve

    config = _config_file()
    config_cmd.show(resolve(config, ctx.find_root().obj.profile), config, as_json)


@config_app.command(
    "path", epilog="Examples:\n\n  avasam config path\n\n  avasam config path --json"
)
def config_path(as_json: JsonOption = False) -> None:
    """Show where the config file, the token cache and the event store live."""
    from avasam_cli.commands import config_cmd
    from avasam_cli.paths import locations

    config_cmd.paths(locations(), as_json)


@app.command(
    epilog="Examples:\n\n"
    "  avasam listen\n\n"
    "  avasam listen --port 9000 --json | jq .\n\n"
    "  avasam -p staging listen --host 0.0.0.0 --stock-path /avasam/stock",
)
def listen(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8787,
    stock_path: Annotated[str, typer.Option(help="Path of the stock update endpoint.")] = (
        "/webhooks/stock"
    ),
    price_path: Annotated[str, typer.Option(help="Path of the price update endpoint.")] = (
        "/webhooks/price"
    ),
    leeway: Annotated[
        float, typer.Option(help="Seconds of clock drift allowed for exp/nbf/iat.", min=0)
    ] = 60.0,
    max_body_size: Annotated[
        int, typer.Option(help="Largest body accepted, in bytes (larger: 413).", min=1)
    ] = 1024 * 1024,
    verification_token: Annotated[
        str | None,
        typer.Option(
            help=f"Verification token for this run (overrides env and profile). {STDIN_HELP}"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per request on stdout.")
    ] = False,
) -> None:
    """Receive, verify, store and print Avasam's stock and price webhooks."""
    from avasam_cli.commands import listen as command
    from avasam_cli.commands.configure import read_stdin_values
    from avasam_cli.config import resolve
    from avasam_cli.paths import locations

    config = _config_file()
    flags = read_stdin_values({"verification_token": verification_token}, sys.stdin)
    options = command.ListenOptions(
        host=host,
        port=port,
        stock_path=stock_path,
        price_path=price_path,
        leeway=leeway,
        max_body_size=max_body_size,
        as_json=as_json,
    )
    settings = resolve(config, ctx.obj.profile, flags)
    command.run(options, settings, config, locations())


def main() -> None:
    app(prog_name="avasam")
