"""`avasam doctor`: check that everything an integration needs is in place."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.cli._context import client_for, lenient_settings
from avasam_cli.cli._options import BaseUrlOption
from avasam_cli.errors import AlreadyReported, AvasamError, ConfigError, UsageError

if TYPE_CHECKING:
    from avasam_cli.config import Settings
    from avasam_cli.paths import Locations

Check = tuple[str, Callable[[], str]]  # (what, run): run returns a note or raises AvasamError


def _configuration(resolved: "Settings") -> str:
    for name in ("consumer_key", "secret_key", "verification_token"):
        resolved.require(name)
    return f"profile '{resolved.profile}' has keys and a verification token"


def _token_strength(resolved: "Settings") -> str:
    from avasam_cli.config import token_length_warning

    token = resolved.get("verification_token")
    if not token:
        raise ConfigError(
            "no token to measure: `avasam configure --generate-verification-token` makes one"
        )
    warning = token_length_warning(token)
    if warning:
        raise ConfigError(warning)
    return f"{len(token.encode())} bytes"


def _credentials(resolved: "Settings", where: "Locations") -> str:
    with client_for(resolved, where) as client:
        entry, _ = client.token_entry(renew=True)
    customer = f" (customer id {entry.customer_id})" if entry.customer_id else ""
    return f"accepted by {resolved.values['base_url'].shown}{customer}"


def _token_scheme(resolved: "Settings", where: "Locations") -> str:
    """A read-only call (the stock list, one row) shows which form of the token works."""
    from datetime import UTC, datetime

    from avasam_cli.api.client import AUTH_SCHEME_LABELS, AUTH_SCHEMES, STOCK_LIST_PATH

    with client_for(resolved, where) as client:
        client.call(STOCK_LIST_PATH, {"limit": 1, "page": 0})
        used = client.scheme_used or AUTH_SCHEMES[0]
        entry = client.cache.get(client.cache_key)
    setting = resolved.require("auth_scheme")
    if setting != "auto":
        return f"{AUTH_SCHEME_LABELS[used]} accepted (set: auth_scheme {setting})"
    learned = entry.scheme_learned_at if entry is not None else None
    when = f" on {datetime.fromtimestamp(learned, UTC):%Y-%m-%d %H:%M} UTC" if learned else ""
    return f"{AUTH_SCHEME_LABELS[used]} accepted (auth_scheme auto learned it{when})"


def _store(where: "Locations") -> str:
    from avasam_cli.store.base import open_store

    with open_store(where.store_file) as store:
        store.check_writable()
        return store.location


def _port(resolved: "Settings") -> str:
    from avasam_cli.net import bind

    host, port = resolved.require("listen_host"), int(resolved.require("listen_port"))
    try:
        bind(host, port, option_hint="with `avasam configure --listen-port`").close()
    except UsageError:  # a busy port: held by our own listener, or by someone else
        listener = _avasam_listener_at(host, port)
        if listener is None:
            raise
        return f"{host}:{port} is held by a running `avasam listen` ({listener})"
    return f"{host}:{port} is free"


def _avasam_listener_at(host: str, port: int) -> str | None:
    """What an avasam listener on that port says of itself at /healthz, or None."""
    import httpx

    from avasam_cli.defaults import HEALTH_PATH
    from avasam_cli.net import local_base_url

    try:
        answer = httpx.get(local_base_url(host, str(port)) + HEALTH_PATH, timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(answer, dict) or "version" not in answer:
        return None
    return f"avasam-cli {answer['version']}, {answer.get('status')}"


def _report_tunnel_tools() -> None:
    """Which tunnel tools `listen --tunnel` can drive: informative, never a failure."""
    from avasam_cli import output
    from avasam_cli.tunnel import TOOLS, tool_version

    versions = {name: tool_version(name) for name in TOOLS}
    if not any(versions.values()):
        output.check_line(
            None,
            "tunnel tools: neither cloudflared nor ngrok is on PATH "
            "(needed only for `avasam listen --tunnel`)",
        )
        return
    found = "; ".join(version or f"{name} not found" for name, version in versions.items())
    output.check_line(True, f"tunnel tools: {found}")


def _public_url(resolved: "Settings", where: "Locations", public_url: str) -> str:
    """One signed test update to the public URL, looked for in the running listener's
    store: what Avasam will meet."""
    from avasam_cli.cli._context import endpoint_paths
    from avasam_cli.errors import OperationFailed
    from avasam_cli.reach import probe

    host, port = resolved.require("listen_host"), int(resolved.require("listen_port"))
    if _avasam_listener_at(host, port) is None:
        raise OperationFailed(
            f"no `avasam listen` answers on {host}:{port} (profile '{resolved.profile}'): "
            "start it, then run this again; the test update must have a listener to reach"
        )
    token = resolved.require("verification_token")
    reach = probe(public_url, endpoint_paths(resolved)["stock"], token, where.store_file)
    if not reach.reached:
        raise OperationFailed(reach.said)
    return reach.said


def run_checks(
    resolved: "Settings", where: "Locations", offline: bool, public_url: str | None = None
) -> None:
    from avasam_cli import output

    for setting in resolved.values.values():
        if setting.problem:
            output.check_line(False, f"setting {setting.name}: {setting.problem}")
    failures = sum(1 for setting in resolved.values.values() if setting.problem)
    checks: list[Check] = [
        ("configuration complete", lambda: _configuration(resolved)),
        ("verification token at least 32 bytes", lambda: _token_strength(resolved)),
    ]
    if not offline:
        checks.append(("credentials accepted", lambda: _credentials(resolved, where)))
        checks.append(("API accepts the access token", lambda: _token_scheme(resolved, where)))
    checks += [
        ("event store writable", lambda: _store(where)),
        ("listener port free", lambda: _port(resolved)),
    ]
    if public_url is not None:
        checks.append(("public URL reaches the listener",
                       lambda: _public_url(resolved, where, public_url)))  # fmt: skip
    for what, check in checks:
        try:
            note = check()
        except AvasamError as problem:
            failures += 1
            output.check_line(False, f"{what}: {problem.message}")
        else:
            output.check_line(True, f"{what}: {note}")
    if offline:
        output.check_line(None, "credentials accepted: --offline")
        output.check_line(None, "API accepts the access token: --offline")
    _report_tunnel_tools()
    if failures:
        raise AlreadyReported


def doctor(
    ctx: typer.Context,
    offline: Annotated[
        bool, typer.Option(help="Skip the check that calls Avasam with your keys.")
    ] = False,
    base_url: BaseUrlOption = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="The URL pasted into Avasam, without the endpoint's path (a tunnel's, your "
            "proxy's): send one signed test update there and check that it reaches the "
            "running `avasam listen`.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check configuration, token strength, credentials, the store and the listener port;
    with --public-url, that Avasam's way in reaches the listener."""
    from avasam_cli.net import checked_url
    from avasam_cli.paths import locations

    if public_url is not None:
        public_url = checked_url(public_url, "--public-url", "https://shop.example.com")
    run_checks(lenient_settings(ctx, base_url=base_url), locations(), offline, public_url)


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n  avasam doctor\n\n  avasam -p staging doctor --offline\n\n"
        "  avasam doctor --offline --public-url https://abc-words.trycloudflare.com",
    )(doctor)
