"""Running the receiver for `avasam listen`: checks, the token, the banner, uvicorn.

Imported only when `listen` runs.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from avasam_cli.defaults import HEALTH_PATH
from avasam_cli.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import socket

    from avasam_cli.cli._deliver import DeliveryConfig
    from avasam_cli.config import ConfigFile, Settings
    from avasam_cli.delivery.outbox import Plan
    from avasam_cli.paths import Locations
    from avasam_cli.receiver.app import ReceiverSettings
    from avasam_cli.rotation import Rolling
    from avasam_cli.tunnel import Tunnel

GRACEFUL_SHUTDOWN_SECONDS = 30


@dataclass(frozen=True)
class ListenOptions:
    """What `listen` was asked for beyond the receiver's own settings (no defaults here:
    they are in `defaults` and the option declarations of `cli.listen`)."""

    host: str
    port: int
    paths: Mapping[str, str]  # kind -> path
    as_json: bool
    auto_ack: bool
    forward_to: Mapping[str, str]  # kind -> URL
    forward_timeout: float
    tunnel: str | None  # "cloudflared" or "ngrok"
    tunnel_args: tuple[str, ...]
    tunnel_timeout: float
    head_timeout: float
    body_timeout: float
    keep_alive_timeout: float
    max_connections: int
    retain: int | None  # seconds: older events are pruned on a timer
    shutdown_wait: float
    delivery: DeliveryConfig
    inspect_port: int | None  # None: no inspector
    workers: int = 1  # receiver processes on the one port


def check_paths(paths: Mapping[str, str]) -> None:
    for path in paths.values():
        if not path.startswith("/") or any(ch.isspace() or ch in "?#{}" for ch in path):
            raise UsageError(
                f"invalid endpoint path {path!r}: it must start with / and hold no spaces, "
                "?, # or braces (for example --stock-path /webhooks/stock)"
            )
    if len(set(paths.values())) != len(paths) or HEALTH_PATH in paths.values():
        raise UsageError(
            f"--stock-path and --price-path must differ from each other and from {HEALTH_PATH}"
        )


def delivery_plan(options: ListenOptions) -> Plan:
    from avasam_cli.delivery.outbox import Plan

    names = tuple(name for name, _ in options.delivery.headers)
    return Plan(dict(options.forward_to), options.auto_ack, names)


FORWARD_CHECK_SECONDS = 3.0  # the whole start-up look at a forward target, at most


def check_forward_targets(options: ListenOptions) -> None:
    """Say at start whether each forward target answers (jobs wait for it if not), and
    catch a forward to this listener itself.  Each look reads the answer's head only and
    has FORWARD_CHECK_SECONDS in all: a target that trickles bytes cannot hold the start."""
    from avasam_cli import output
    from avasam_cli.net import WILDCARD_HOSTS, is_loopback_host

    for url in sorted(set(options.forward_to.values())):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if port == options.port and (
            is_loopback_host(parts.hostname) or parts.hostname in WILDCARD_HOSTS
        ):
            output.warn(
                f"forward target {url} is this listener itself: forwarded updates would come "
                "back as duplicates. Did you mean your shop's port?"
            )
            continue
        answered = _look_at(url, options)
        if isinstance(answered, int):
            output.info(
                f"Forwarding verified updates to {url} (it is reachable: it answered a GET with "
                f"{answered}; deliveries use POST)"
            )
        else:
            output.warn(
                f"forward target {url} is not reachable ({answered}); updates are still "
                "stored and answered, and wait in the outbox until it is"
            )


def _look_at(url: str, options: ListenOptions) -> int | str:
    """The status of a GET to `url` (its head only), or why there was none, within
    FORWARD_CHECK_SECONDS; on a thread, so that the wait is bounded whatever the server
    does, and Ctrl-C still stops us meanwhile."""
    import threading

    import httpx

    from avasam_cli.delivery.forward import tls_verify

    found: list[int | str] = []

    def look() -> None:
        try:
            verify = tls_verify(options.delivery.verify)
            timeout = min(options.forward_timeout, FORWARD_CHECK_SECONDS)
            with httpx.stream("GET", url, timeout=timeout, verify=verify) as answer:
                found.append(answer.status_code)
        except httpx.HTTPError as error:
            found.append(type(error).__name__)

    worker = threading.Thread(target=look, name="avasam-forward-check", daemon=True)
    worker.start()
    worker.join(FORWARD_CHECK_SECONDS)
    return found[0] if found else f"no answer within {FORWARD_CHECK_SECONDS:g} s"


def inspector_page(
    options: ListenOptions, resolved: Settings, sock: socket.socket, signing: str | None
) -> tuple[int, str, dict[str, str]] | None:
    """The inspector's port, its URL and its child's environment; None (and why) when
    its port is busy: the listener carries on without it."""
    import json

    from avasam_cli import output
    from avasam_cli.cli.inspect import (
        FORWARD_ENV,
        HEADERS_ENV,
        RECEIVER_ENV,
        TOKEN_ENV,
        page_token,
        page_url,
    )
    from avasam_cli.net import bind, local_base_url

    if options.inspect_port is None:
        return None
    try:  # said here, in the banner's place; the child binds it itself
        probe = bind("127.0.0.1", options.inspect_port, "with --inspect-port")
    except UsageError as error:
        output.warn(f"no inspector: {error.message} (or --no-inspect)")
        return None
    port = probe.getsockname()[1]
    probe.close()
    base = local_base_url(*sock.getsockname()[:2])
    receiver = {kind: base + path for kind, path in options.paths.items()}
    token = page_token()
    env = {
        TOKEN_ENV: token,
        RECEIVER_ENV: json.dumps(receiver),
        FORWARD_ENV: json.dumps(dict(options.forward_to)),
        HEADERS_ENV: json.dumps([list(pair) for pair in options.delivery.headers]),
        # A token from a flag or the environment; the profile's it follows itself.
        **({"AVASAM_VERIFICATION_TOKEN": signing} if signing else {}),
    }
    return port, page_url(port, token), env


def outbox_line(counts: Mapping[str, int]) -> str | None:
    """How many jobs wait or gave up, with the commands for them; None when none."""
    pending, dead = counts.get("pending", 0), counts.get("dead", 0)
    if not pending and not dead:
        return None
    parts = []
    if pending:
        parts.append(f"{pending:,} pending (`avasam deliveries run` delivers them)")
    if dead:
        parts.append(f"{dead:,} dead (`avasam deliveries retry --dead` tries them again)")
    return "Outbox: " + "; ".join(parts) + "."


def ensure_token(resolved: Settings, config: ConfigFile) -> str:
    """The configured verification token, or a new one saved to the profile and shown once."""
    from avasam_cli import output
    from avasam_cli.config import (
        PASTE_INSTRUCTION,
        generate_verification_token,
        token_length_warning,
    )

    token = resolved.get("verification_token")
    if token:
        warning = token_length_warning(token)
        if warning:
            output.warn(warning)
        return token
    for field_name, key, line in config.near_misses.get(resolved.profile, []):
        if field_name == "verification_token":
            raise ConfigError(
                f"{config.path}:{line}: '{key}' looks like a misspelled verification_token; "
                "fix the key (a new token is not generated while it is there: Avasam signs "
                "with the token you chose)"
            )
    token = generate_verification_token()
    config.save_profile(resolved.profile, {"verification_token": token})
    output.info(
        f"No verification token was configured; created one and saved it to profile "
        f"'{resolved.profile}' ({config.path}):"
    )
    output.info(f"\n    {token}\n")
    output.info(PASTE_INSTRUCTION)
    return token


WEBHOOK_SETTINGS = "Settings > User management > your API user > webhook section"


def _endpoints(paths: Mapping[str, str], base: str, indent: str = "  ") -> list[str]:
    from rich.markup import escape

    return [
        f"{indent}{kind.capitalize() + ' update endpoint':21}  [cyan]{escape(base + path)}[/]"
        for kind, path in paths.items()
    ]


def banner(
    options: ListenOptions,
    sock: socket.socket,
    resolved: Settings,
    where: Locations,
    public_url: str | None = None,
    inspector_url: str | None = None,
) -> None:
    from rich.markup import escape
    from rich.padding import Padding
    from rich.text import Text

    from avasam_cli import output
    from avasam_cli.net import shown_base_url

    console = output.make_console(stderr=True)
    console.print(f"[bold]avasam listen[/] · profile [bold]{escape(resolved.profile)}[/]")
    for line in _endpoints(options.paths, shown_base_url(sock)):
        console.print(line)
    console.print(f"  {'Event store':21}  {escape(str(where.store_file))}")
    if options.workers > 1:
        console.print(f"  {'Receiver processes':21}  {options.workers}, on the one port")
    if inspector_url is not None:
        console.print(f"  {'Inspector':21}  [cyan]{escape(inspector_url)}[/]", soft_wrap=True)
    if public_url is None:
        note = (
            f"Paste the endpoints into Avasam ({WEBHOOK_SETTINGS}). Avasam must reach them "
            "from the internet: `--tunnel cloudflared` (or ngrok) gives them a public URL, or "
            "put your own HTTPS proxy in front and paste its URL with the same paths."
        )
        console.print(Padding(Text(note), (0, 0, 0, 2), expand=False))
    else:
        console.print(f"  {'Public URL':21}  [cyan]{escape(public_url)}[/] ({options.tunnel})")
        console.print(
            Padding(
                Text(f"Paste these into Avasam ({WEBHOOK_SETTINGS}):"), (0, 0, 0, 2), expand=False
            )
        )
        for line in _endpoints(options.paths, public_url, indent="    "):
            console.print(line)


def announce_new_url(options: ListenOptions, url: str) -> None:
    """A restarted quick tunnel comes back with a new URL: Avasam must be told."""
    from avasam_cli import output

    console = output.make_console(stderr=True)
    console.print(
        f"[bold yellow]The {options.tunnel} tunnel restarted with a new public URL: "
        f"paste these into Avasam again ({WEBHOOK_SETTINGS}):[/]"
    )
    for line in _endpoints(options.paths, url):
        console.print(line)


def start_tunnel(options: ListenOptions, port: int) -> Tunnel:
    """The tunnel to the webhook port, once it has a public URL (UsageError otherwise)."""
    from avasam_cli import output
    from avasam_cli.tunnel import Tunnel, find_tool

    assert options.tunnel is not None
    tool, executable = find_tool(options.tunnel)
    output.info(f"Starting a {tool.name} tunnel to port {port}...")
    tunnel = Tunnel(
        tool,
        executable,
        port,
        options.tunnel_args,
        say=output.info,
        on_new_url=lambda url: announce_new_url(options, url),
    )
    tunnel.start(options.tunnel_timeout)
    return tunnel


def _say_token_changed(profile: str, tokens: Rolling) -> None:
    """A rotation (or an edit) of the profile's token, taken up while running."""
    import time

    from avasam_cli import output
    from avasam_cli.rotation import until_text

    if tokens.previous_counts(time.time()):
        assert tokens.previous_until is not None
        after = (
            f"; the previous one still counts until {until_text(tokens.previous_until)}, so "
            "paste the new one into Avasam before then"
        )
    else:
        after = "; the previous one no longer counts"
    output.info(
        f"The verification token of profile '{profile}' changed: webhooks signed with the "
        f"new one are accepted now{after}."
    )


def _say_ready() -> None:
    """Once the receiver has started, forward checks included: only then is it ready."""
    from avasam_cli import output

    output.make_console(stderr=True).print("[green]Ready.[/] Press Ctrl-C to stop.")


def allow_connections(wanted: int) -> int:
    """Raise the open-files limit so `wanted` connections fit; fewer if the system caps it.

    Beyond the cap uvicorn answers 503; with too few descriptors, accepting would fail
    for everyone instead (the attack run saw 1,100 idle connections shut all clients out).
    """
    import resource

    from avasam_cli import output

    spare = 64  # the store, pipes, logs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + spare
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        allowed = max(1, soft - spare)
        output.warn(
            f"this system allows {soft} open files: serving at most {allowed} connections "
            "at once (--max-connections)"
        )
        return allowed
    return wanted


def _stdout_fd() -> int | None:
    """Our stdout's descriptor; None (and a note) when the listener was started without one."""
    from avasam_cli import output

    try:
        fd = sys.stdout.fileno()
        os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        output.info(
            "Note: there is no standard output (it is closed), so requests are not printed; "
            "they are still stored: see `avasam events list`."
        )
        # Libraries (uvicorn's logging among them) expect a stdout to exist.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        return None
    return fd


def serve(
    options: ListenOptions,
    receiver: ReceiverSettings,
    resolved: Settings,
    where: Locations,
) -> None:
    from avasam_cli import output
    from avasam_cli.cli import _children
    from avasam_cli.receiver.app import create_app
    from avasam_cli.store.base import open_store
    from avasam_cli.supervise import Supervisor

    with open_store(where.store_file) as store:  # an unusable store stops us before we listen
        waiting = store.delivery_counts()
        newest = next(store.latest(1, with_body=False), None)
    sock = _listening_socket(options)
    output_fd = _stdout_fd()
    mode = ("json" if options.as_json else "human") if output_fd is not None else "none"
    supervisor = Supervisor(output.info)
    tunnel = None
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully;
    # a quiet SIGTERM handler and catching KeyboardInterrupt make that a normal exit.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        if options.workers > 1:
            _children.start_workers(supervisor, options, receiver)
            if mode != "none":
                seen = (newest.id or 0) if newest is not None else 0
                _children.start_printer(supervisor, seen, mode)
        if options.tunnel is not None:
            tunnel = start_tunnel(options, sock.getsockname()[1])
        # Alone, the store writer's printer shows each request once it is committed.
        app = create_app(
            receiver,
            where.store_file,
            output=mode if options.workers == 1 else "none",
            output_fd=output_fd,
            plan=delivery_plan(options),
            on_ready=_say_ready,
            retain=options.retain,
            on_token_change=lambda tokens: _say_token_changed(resolved.profile, tokens),
            children=supervisor,
        )
        server = uvicorn_server(app, options, receiver)
        fixed = None if receiver.follow_profile else receiver.verification_token
        page = inspector_page(options, resolved, sock, fixed)
        if page is not None:
            _children.start_inspector(supervisor, page[0], resolved, page[2])
        banner(options, sock, resolved, where, tunnel.url if tunnel else None,
               page[1] if page else None)  # fmt: skip
        if _deliveries_wanted(options, waiting):
            _children.start_runner(supervisor, options, resolved)
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
        if tunnel is not None:
            tunnel.stop()
        supervisor.stop()  # the workers finish, the printer shows the last, then the runner
        if any(child.name == "delivery runner" for child in supervisor.children):
            _say_outbox_left(where)
    restarts = supervisor.restart_count()
    if restarts:
        output.info(f"Child processes restarted while listening: {restarts}.")
    if "server" not in locals() or not server.started:
        raise UsageError("the receiver could not start (see the messages above)")


def _listening_socket(options: ListenOptions) -> socket.socket:
    """Bound and listening, and inherited by every process that serves on it."""
    from avasam_cli.net import bind

    shared = options.workers > 1
    if shared:  # the port must be free: a shared bind would join another's group
        bind(options.host, options.port).close()
    sock = bind(options.host, options.port, shared=shared)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _deliveries_wanted(options: ListenOptions, waiting: Mapping[str, int]) -> bool:
    """Check the forward targets and say what the outbox holds: a runner is wanted for
    this run's plan, and for jobs left by an earlier run whatever this run's options."""
    if options.forward_to:
        check_forward_targets(options)
    said = outbox_line(waiting)
    if said:
        from avasam_cli import output

        output.info(said)
    return bool(delivery_plan(options)) or said is not None


def uvicorn_server(app: Any, options: ListenOptions, receiver: ReceiverSettings) -> Any:
    """The server of one receiver process (every --workers process has its own)."""
    import uvicorn

    from avasam_cli.receiver.protocol import ConnectionLimits, protocol_with

    limits = ConnectionLimits(receiver.max_head_size, options.head_timeout, options.body_timeout)
    return uvicorn.Server(
        uvicorn.Config(
            app,
            http=protocol_with(limits),
            ws="none",  # no WebSocket endpoint: nor the import of a websockets library
            log_level="warning",
            access_log=False,  # our own lines replace uvicorn's access log
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            timeout_keep_alive=options.keep_alive_timeout,  # type: ignore[arg-type]  # a float works
            limit_concurrency=allow_connections(options.max_connections),
        )
    )


def _say_outbox_left(where: Locations) -> None:
    from avasam_cli import output
    from avasam_cli.store.base import open_store

    with open_store(where.store_file, read_only=True) as store:
        said = outbox_line(store.delivery_counts())
    if said:
        output.info(said)
