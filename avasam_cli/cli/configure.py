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
from avasam_cli.errors import ConfigError, UsageError

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
    rotation: "Rotation | None" = None,
) -> None:
    from avasam_cli import output
    from avasam_cli.config import (
        ENV_VARS,
        FIELDS,
        LABELS,
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
    updates = _normalized(updates)
    if "base_url" in updates:  # refused before anything is saved
        allowed = updates.get("allow_insecure_base_url", current.get("allow_insecure_base_url"))
        check_base_url_transport(updates["base_url"], allowed == "true")
    rotation = rotation or Rotation()
    rotation.check(given, generate_token)
    if generate_token:
        updates["verification_token"] = generate_verification_token()
    elif rotation.any:
        updates.update(rotation.updates(current))
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
    shown_once = rotation.shown_once() | ({"verification_token"} if generate_token else set())
    for name in FIELDS:
        if name in updates and name not in shown_once:
            output.info(f"  {LABELS[name]}: {shown_value(name, updates[name])}")
        if name in updates and os.environ.get(ENV_VARS[name]):
            output.warn(f"{ENV_VARS[name]} is set and overrides the saved {LABELS[name]}")
    if "verification_token" in updates and updates["verification_token"] != current.get(
        "verification_token"
    ):
        output.info(
            "A running `avasam listen` takes it up within seconds; paste the same token into "
            "Avasam."
        )
    if generate_token:
        output.info("New verification token (shown once):")
        output.out(updates["verification_token"])
        output.info(PASTE_INSTRUCTION)
    rotation.announce(updates)


def _normalized(updates: Mapping[str, str]) -> dict[str, str]:
    """Each value checked and put in its normal form; ConfigError naming the option."""
    from avasam_cli.config import NORMALIZERS

    checked = dict(updates)
    for name, normalize in NORMALIZERS.items():
        if name in checked:
            try:
                checked[name] = normalize(checked[name])
            except ConfigError as error:  # say which option gave it, as everywhere
                option = "--forward-header" if name == "forward_headers" else name
                raise ConfigError(f"{error.message} (from --{option.replace('_', '-')})") from None
    return checked


class Rotation:
    """What `configure` was asked to rotate or create: the verification token, the forward
    secret; each rotation keeps the old value counting for `grace` seconds."""

    def __init__(
        self,
        token: bool = False,
        new_forward_secret: bool = False,
        forward_secret: bool = False,
        grace: int | None = None,
    ) -> None:
        self.token = token
        self.new_forward_secret = new_forward_secret
        self.forward_secret = forward_secret
        self.grace = grace

    @property
    def any(self) -> bool:
        return self.token or self.new_forward_secret or self.forward_secret

    def check(self, given: Mapping[str, str | None], generate_token: bool) -> None:
        if self.token and (generate_token or given.get("verification_token")):
            raise UsageError(
                "--rotate-verification-token makes the new token itself: leave out "
                "--verification-token and --generate-verification-token"
            )
        if self.new_forward_secret and self.forward_secret:
            raise UsageError("give --generate-forward-secret or --rotate-forward-secret, not both")
        if self.grace is not None and not (self.token or self.forward_secret):
            raise UsageError(
                "--grace goes with --rotate-verification-token or --rotate-forward-secret"
            )

    def updates(self, current: Mapping[str, str]) -> dict[str, str]:
        import time

        from avasam_cli.config import generate_verification_token
        from avasam_cli.rotation import (
            DEFAULT_GRACE,
            FORWARD_SECRET,
            VERIFICATION_TOKEN,
            new_forward_secret,
            rotated,
        )

        grace = DEFAULT_GRACE if self.grace is None else self.grace
        now = time.time()
        updates: dict[str, str] = {}
        if self.token:
            old = current.get("verification_token")
            if not old:
                raise UsageError(
                    "there is no verification token to rotate yet: `avasam configure "
                    "--generate-verification-token` makes the first one"
                )
            new = generate_verification_token()
            updates.update(rotated(old, new, grace, now, VERIFICATION_TOKEN))
        if self.new_forward_secret:
            updates["forward_secret"] = new_forward_secret()
        if self.forward_secret:
            old = current.get("forward_secret")
            if not old:
                raise UsageError(
                    "there is no forward secret to rotate yet: `avasam configure "
                    "--generate-forward-secret` makes the first one"
                )
            updates.update(rotated(old, new_forward_secret(), grace, now, FORWARD_SECRET))
        return updates

    def shown_once(self) -> set[str]:
        """Settings printed whole below (once), not masked in the list of what was saved."""
        shown = set()
        if self.token:
            shown.add("verification_token")
        if self.new_forward_secret or self.forward_secret:
            shown.add("forward_secret")
        return shown

    def announce(self, updates: Mapping[str, str]) -> None:
        from avasam_cli import output
        from avasam_cli.config import PASTE_INSTRUCTION

        if self.token:
            output.info("New verification token (shown once):")
            output.out(updates["verification_token"])
            output.info(PASTE_INSTRUCTION)
            output.info(
                f"Webhooks signed with the previous token are still accepted until "
                f"{updates['previous_token_until']} (--grace), by a running `avasam listen` "
                "too: paste the new one into Avasam before then."
            )
        if self.new_forward_secret or self.forward_secret:
            output.info("New forward signing secret (shown once): give it to your shop, which "
                        "verifies each forward's webhook-signature with it:")  # fmt: skip
            output.out(updates["forward_secret"])
        if self.forward_secret:
            output.info(
                "Forwards carry a signature with each secret until "
                f"{updates['previous_forward_secret_until']} (--grace): the shop may switch to "
                "the new one at any time before then."
            )


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
    forward_header: Annotated[
        list[str] | None,
        typer.Option(
            "--forward-header",
            help="A header every forward carries, 'Name: value' (repeatable; replaces the "
            "saved ones): every runner has it, so no retry goes out without it.",
            show_default=False,
        ),
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
    rotate_verification_token: Annotated[
        bool,
        typer.Option(
            "--rotate-verification-token",
            help="Make a new verification token and print it once; the old one still "
            "verifies webhooks for --grace, so none is refused while Avasam is updated.",
        ),
    ] = False,
    generate_forward_secret: Annotated[
        bool,
        typer.Option(
            "--generate-forward-secret",
            help="Make a secret (whsec_...) that signs every forward (Standard Webhooks), save "
            "it and print it once for the shop.",
        ),
    ] = False,
    rotate_forward_secret: Annotated[
        bool,
        typer.Option(
            "--rotate-forward-secret",
            help="Make a new forward secret; forwards are signed with both for --grace.",
        ),
    ] = False,
    grace: Annotated[
        str | None,
        typer.Option(
            help="With a rotation: how long the old value still counts (default 24h; 0 ends "
            "it at once).",
            show_default=False,
        ),
    ] = None,
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
            "forward_headers": None if forward_header is None else "\n".join(forward_header),
        },
        generate_token=generate_verification_token,
        interactive=_stdin_is_terminal(),
        stdin=sys.stdin,
        prompt=_prompt,
        force=force,
        rotation=Rotation(
            rotate_verification_token,
            generate_forward_secret,
            rotate_forward_secret,
            _grace_seconds(grace),
        ),
    )


def _grace_seconds(value: str | None) -> int | None:
    from avasam_cli.cli._options import duration_seconds

    if value is None:
        return None
    seconds = 0 if value.strip() == "0" else duration_seconds(value)
    if seconds is None:
        raise UsageError(f"--grace {value!r} is not a duration: for example --grace 24h, 7d or 0")
    return seconds


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n"
        "  avasam configure\n\n"
        "  avasam configure --consumer-key CK --secret-key - < secret.txt\n\n"
        "  avasam -p staging configure --base-url https://sandbox.example\n\n"
        "  avasam configure --generate-verification-token\n\n"
        "  avasam configure --rotate-verification-token --grace 48h\n\n"
        "  avasam configure --generate-forward-secret",
    )(configure)
