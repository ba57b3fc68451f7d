"""`avasam configure`: store credentials and the verification token in a profile."""

import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from avasam_cli.cli._context import (
    config_file,
    profile_flag,
    read_stdin_values,
    say_config_warnings,
)
from avasam_cli.cli._options import STDIN_HELP
from avasam_cli.errors import UsageError

if TYPE_CHECKING:
    from avasam_cli.config import ConfigFile

HIDDEN_FIELDS = frozenset({"secret_key", "verification_token"})
# Prompt(label, current value shown, hide input) -> the answer, "" to keep the current value.
Prompt = Callable[[str, str, bool], str]


def prompt_for_values(current: Mapping[str, str], prompt: Prompt) -> dict[str, str]:
    """Ask for each prompted field; Enter keeps the value shown (the current one, else the
    default).  A value that cannot be used is explained and asked again, so the answers
    typed before it are not lost."""
    from avasam_cli import output
    from avasam_cli.config import DEFAULTS, LABELS, NORMALIZERS, PROMPTED_FIELDS, shown_value
    from avasam_cli.errors import ConfigError

    answers: dict[str, str] = {}
    for name in PROMPTED_FIELDS:
        value = current.get(name, "") or DEFAULTS.get(name, "")
        shown = shown_value(name, value) if value else value
        while answer := prompt(LABELS[name].capitalize(), shown, name in HIDDEN_FIELDS).strip():
            try:
                answers[name] = NORMALIZERS[name](answer) if name in NORMALIZERS else answer
                break
            except ConfigError as problem:
                output.error(f"{problem.message}; try again, or press Enter to keep {shown}")
    return answers


def save(
    *,
    config: "ConfigFile",
    profile_flag: str | None,
    given: Mapping[str, str | None],
    generate_token: bool,
    interactive: bool,
    stdin: TextIO,
    prompt: Prompt,
    force: bool = False,
) -> None:
    from avasam_cli import output
    from avasam_cli.config import (
        ENV_VARS,
        FIELDS,
        LABELS,
        NORMALIZERS,
        PASTE_INSTRUCTION,
        check_base_url_transport,
        choose_profile,
        generate_verification_token,
        shown_value,
        token_length_warning,
    )

    profile, _ = choose_profile(profile_flag, os.environ)
    current = config.profile(profile)  # a corrupt file stops us here, before anything is written
    if generate_token and given.get("verification_token"):
        raise UsageError(
            "--generate-verification-token and --verification-token both set the token: "
            "give one of them"
        )
    values = read_stdin_values(given, stdin)
    updates = {name: value for name, value in values.items() if value is not None}
    if not updates and not generate_token and interactive:
        updates = prompt_for_values(current, prompt)
    for name, value in updates.items():
        if not value.strip():
            raise UsageError(f"the {LABELS[name]} is empty: give a value or leave the option out")
    for name, normalize in NORMALIZERS.items():
        if name in updates:
            updates[name] = normalize(updates[name])
    if "base_url" in updates:  # refused before anything is saved
        allowed = updates.get("allow_insecure_base_url", current.get("allow_insecure_base_url"))
        check_base_url_transport(updates["base_url"], allowed == "true")
    if generate_token:
        updates["verification_token"] = generate_verification_token()
    elif "verification_token" in updates:
        warning = token_length_warning(updates["verification_token"])
        if warning:
            output.warn(warning)
            old = current.get("verification_token", "")
            if old and not token_length_warning(old) and old != updates["verification_token"]:
                _confirm_weaker_token(interactive, force)

    say_config_warnings(config)
    if not updates:
        output.info(f"Nothing changed in profile '{profile}' ({config.path}).")
        return
    config.save_profile(profile, updates)
    output.info(f"Saved profile '{profile}' to {config.path}")
    for name in FIELDS:
        if name in updates and not (generate_token and name == "verification_token"):
            output.info(f"  {LABELS[name]}: {shown_value(name, updates[name])}")
        if name in updates and os.environ.get(ENV_VARS[name]):
            output.warn(f"{ENV_VARS[name]} is set and overrides the saved {LABELS[name]}")
    if "verification_token" in updates and updates["verification_token"] != current.get(
        "verification_token"
    ):
        output.info(
            "A running `avasam listen` keeps the token it started with: restart it to use "
            "this one (and paste the same token into Avasam)."
        )
    if generate_token:
        output.info("New verification token (shown once):")
        output.out(updates["verification_token"])
        output.info(PASTE_INSTRUCTION)


def _confirm_weaker_token(interactive: bool, force: bool) -> None:
    """Replacing a strong token with a short one is asked for on a terminal, and needs
    --force in a script: every webhook signed with the old token would be refused."""
    if force:
        return
    if not interactive:
        raise UsageError(
            "this would replace a strong verification token with a shorter one: add --force "
            "if that is what you mean"
        )
    if not typer.confirm(
        "Replace the strong verification token with this shorter one?", default=False, err=True
    ):
        raise UsageError("the verification token was left as it was")


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _prompt(label: str, shown: str, hidden: bool) -> str:
    suffix = f" [{shown}]" if shown else ""
    answer: str = typer.prompt(
        f"{label}{suffix}", default="", show_default=False, hide_input=hidden
    )
    return answer


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
    listen_host: Annotated[
        str | None, typer.Option(help="Default host for `avasam listen` and `send-test`.")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(help="The profile's event store: a file path, or sqlite:///PATH."),
    ] = None,
    listen_port: Annotated[
        str | None, typer.Option(help="Default port for `avasam listen` and `send-test`.")
    ] = None,
    auth_scheme: Annotated[
        str | None,
        typer.Option(
            help="How the API access token is sent: auto (learn it), bearer or raw (default auto).",
        ),
    ] = None,
    stock_path: Annotated[
        str | None, typer.Option(help="Stock endpoint path for `listen`, `send-test`, `replay`.")
    ] = None,
    price_path: Annotated[
        str | None, typer.Option(help="Price endpoint path for `listen`, `send-test`, `replay`.")
    ] = None,
    forward_to: Annotated[
        str | None,
        typer.Option(help="Your shop's URL: `listen` forwards there, `reconcile --fix` too."),
    ] = None,
    audience: Annotated[
        list[str] | None,
        typer.Option(
            "--audience",
            help="The JWT audience (aud) `listen` requires (repeatable; default: any).",
            show_default=False,
        ),
    ] = None,
    allow_insecure_base_url: Annotated[
        bool,
        typer.Option(
            "--allow-insecure-base-url",
            help="Allow a plain http:// base URL on another machine (keys sent in clear).",
        ),
    ] = False,
    generate_verification_token: Annotated[
        bool,
        typer.Option(
            "--generate-verification-token",
            help="Create a strong random verification token, save it and print it once.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a strong verification token with a short one."),
    ] = False,
) -> None:
    """Store API keys and the webhook verification token in a profile."""
    save(
        config=config_file(),
        profile_flag=profile_flag(ctx),
        given={
            "consumer_key": consumer_key,
            "secret_key": secret_key,
            "verification_token": verification_token,
            "base_url": base_url,
            "listen_host": listen_host,
            "store": store,
            "listen_port": listen_port,
            "auth_scheme": auth_scheme,
            "stock_path": stock_path,
            "price_path": price_path,
            "allow_insecure_base_url": "true" if allow_insecure_base_url else None,
            "audience": None if audience is None else ",".join(audience),
            "forward_to": forward_to,
        },
        generate_token=generate_verification_token,
        interactive=_stdin_is_terminal(),
        stdin=sys.stdin,
        prompt=_prompt,
        force=force,
    )


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n"
        "  avasam configure\n\n"
        "  avasam configure --consumer-key CK --secret-key - < secret.txt\n\n"
        "  avasam -p staging configure --base-url https://sandbox.example\n\n"
        "  avasam configure --generate-verification-token",
    )(configure)
