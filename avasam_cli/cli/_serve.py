"""Running `avasam listen`: the checks before it starts, the token, and `serve`, which
starts the receiver and every child process under one supervisor, and stops them.

What it says is in `_banner`, each receiver process's server set-up in `_uvicorn`,
the children in `_children`.  Imported only when `listen` runs.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from avasam_cli.cli import _banner, _uvicorn
from avasam_cli.defaults import DEFAULT_DURABILITY, HEALTH_PATH
from avasam_cli.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import socket

    from avasam_cli.alerts import Alerts
    from avasam_cli.cli._deliver import DeliveryConfig
    from avasam_cli.config import ConfigFile, Settings
    from avasam_cli.metrics.exposition import MetricsServer
    from avasam_cli.paths import Locations
    from avasam_cli.receiver.app import ReceiverSettings
    from avasam_cli.store.jobs import Plan
    from avasam_cli.supervise import Supervisor
    from avasam_cli.tunnel import Tunnel


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
    # Addresses whose X-Forwarded-* headers are trusted; None: none (unless a tunnel's).
    forwarded_allow_ips: str | None
    retain: int | None  # seconds: older events are pruned on a timer
    shutdown_wait: float
    delivery: DeliveryConfig
    inspect_port: int | None  # None: no inspector
    workers: int = 1  # receiver processes on the one port
    metrics: tuple[str, int] | None = None  # (host, port) of GET /metrics
    durability: str = DEFAULT_DURABILITY  # of the SQLite store's commits


def check_paths(paths: Mapping[str, str]) -> None:
    """The endpoint paths, each checked already as a setting (`normalize_path`), must
    also differ from each other and from the health check's."""
    if len(set(paths.values())) != len(paths) or HEALTH_PATH in paths.values():
        raise UsageError(
            f"--stock-path and --price-path must differ from each other and from {HEALTH_PATH}"
        )


def delivery_plan(options: ListenOptions) -> Plan:
    from avasam_cli.store.jobs import Plan

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
    from avasam_cli.inspector.handover import (
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


def start_tunnel(options: ListenOptions, port: int, supervisor: Supervisor) -> Tunnel:
    """The tunnel to the webhook port, once it has a public URL (UsageError otherwise),
    watched by the supervisor from then on."""
    from avasam_cli import output
    from avasam_cli.tunnel import STOP_GRACE_SECONDS, Tunnel, find_tool

    assert options.tunnel is not None
    tool, executable = find_tool(options.tunnel)
    output.info(f"Starting a {tool.name} tunnel to port {port}...")
    tunnel = Tunnel(
        tool,
        executable,
        port,
        options.tunnel_args,
        on_new_url=lambda url: _banner.announce_new_url(options, url),
    )
    tunnel.start(options.tunnel_timeout)
    supervisor.start(
        f"{tool.name} tunnel",
        tunnel.spawn,
        "Avasam cannot reach the listener at its public URL",
        stop_wait=STOP_GRACE_SECONDS + 1,
        started=tunnel.first,
    )
    return tunnel


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

    with open_store(where.store_file) as store:  # an unusable store stops us before we listen
        waiting = store.delivery_counts()
        newest = next(store.latest(1, with_body=False), None)
    sock, metrics = _sockets(options, where)
    output_fd = _uvicorn.stdout_fd()
    mode = _output_mode(options, output_fd)
    supervisor, alerts = _supervisor(options)
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
            tunnel = start_tunnel(options, sock.getsockname()[1], supervisor)
        # Alone, the store writer's printer shows each request once it is committed.
        app = create_app(
            receiver,
            where.store_file,
            output=mode if options.workers == 1 else "none",
            output_fd=output_fd,
            plan=delivery_plan(options),
            on_ready=_banner.say_ready,
            retain=options.retain,
            on_token_change=lambda tokens: _banner.say_token_changed(resolved.profile, tokens),
            children=supervisor,
            alerts=alerts,
            durability=options.durability,
        )
        server = _uvicorn.uvicorn_server(app, options, receiver)
        fixed = None if receiver.follow_profile else receiver.verification_token
        page = inspector_page(options, resolved, sock, fixed)
        if page is not None:
            _children.start_inspector(supervisor, page[0], resolved, page[2])
        _banner.banner(options, sock, resolved, where, tunnel.url if tunnel else None,
                       page[1] if page else None,
                       metrics.url if metrics else None)  # fmt: skip
        if _deliveries_wanted(options, waiting):
            _children.start_runner(supervisor, options, resolved)
        if tunnel is not None and tunnel.url:
            go_live_check(tunnel.url, options, receiver, where, lambda: server.started)
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
        supervisor.stop()  # the workers finish, the printer shows the last, then the runner
        if any(child.name == "delivery runner" for child in supervisor.children):
            _banner.say_outbox_left(where)
        if metrics is not None:
            metrics.stop()
    alerts.wait()  # those in flight go out before we exit
    restarts = supervisor.restart_count()
    if restarts:
        output.info(f"Child processes restarted while listening: {restarts}.")
    if "server" not in locals() or not server.started:
        raise UsageError("the receiver could not start (see the messages above)")


def _output_mode(options: ListenOptions, output_fd: int | None) -> str:
    """How each request is printed: --json on stdout; with --log-format json a record on
    stderr; else a human block on stdout."""
    from avasam_cli.logs import json_logs

    if options.as_json:
        return "json" if output_fd is not None else "none"
    if json_logs():
        return "log"
    return "human" if output_fd is not None else "none"


GO_LIVE_WAIT = 30.0  # seconds the go-live check waits for the receiver to have started


def go_live_check(
    public_url: str, options: ListenOptions, receiver: ReceiverSettings, where: Locations,
    started: Callable[[], bool],
) -> None:  # fmt: skip
    """Once the receiver answers, send one test update through the tunnel's public URL
    (`doctor --public-url`'s check), on a thread, and say whether it arrived."""
    import threading
    import time

    from avasam_cli import logs, output
    from avasam_cli.reach import probe

    def check() -> None:
        deadline = time.monotonic() + GO_LIVE_WAIT
        while not started():
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        reach = probe(public_url, options.paths["stock"], receiver.verification_token,
                      where.store_file)  # fmt: skip
        said = f"Go-live check: {reach.said}"
        said = said if reach.reached else f"Warning: {said}"
        output.info(logs.said(said, "go_live", reached=reach.reached, public_url=public_url))

    threading.Thread(target=check, name="avasam-go-live", daemon=True).start()


def _sockets(
    options: ListenOptions, where: Locations
) -> tuple[socket.socket, MetricsServer | None]:
    """The webhook port's socket, and the metrics server's (started before any child:
    they count too); either busy is a UsageError, with nothing left open."""
    sock = _uvicorn.listening_socket(options)
    try:
        return sock, start_metrics(options, where)
    except UsageError:
        sock.close()
        raise


def start_metrics(options: ListenOptions, where: Locations) -> MetricsServer | None:
    """GET /metrics on its own socket (a busy port stops us here), summing what every
    process of this listener counts in a folder of its own."""
    if options.metrics is None:
        return None
    try:
        from avasam_cli.metrics.exposition import metrics_server
    except ImportError:
        raise UsageError(
            "--metrics-port needs prometheus_client, which is not installed: "
            "pip install 'avasam-cli[metrics]' (or pip install prometheus_client)"
        ) from None
    from avasam_cli.cli._children import our_file
    from avasam_cli.metrics.counts import count_for
    from avasam_cli.net import bind

    host, port = options.metrics
    sock = bind(host, port, "with --metrics-port")
    sock.listen(64)
    folder = our_file("metrics-", "")
    folder.mkdir(mode=0o700, exist_ok=True)
    server = metrics_server(sock, folder, count_for(folder), where.store_file)
    server.start()
    return server


def _supervisor(options: ListenOptions) -> tuple[Supervisor, Alerts]:
    """The supervisor of this listener's children (which publishes their states for the
    other receiver processes), and its alerts (a child left down is one)."""
    from avasam_cli import output
    from avasam_cli.alerts import Alerts
    from avasam_cli.cli import _children
    from avasam_cli.supervise import Supervisor

    alerts = Alerts(options.delivery.alerts, output.info)
    supervisor = Supervisor(
        output.info,
        publish=_children.published_states() if options.workers > 1 else None,
        on_down=lambda name, said: alerts.send("child_down", said, child=name),
    )
    return supervisor, alerts


def _deliveries_wanted(options: ListenOptions, waiting: Mapping[str, int]) -> bool:
    """Check the forward targets and say what the outbox holds: a runner is wanted for
    this run's plan, and for jobs left by an earlier run whatever this run's options."""
    if options.forward_to:
        check_forward_targets(options)
    said = _banner.outbox_line(waiting)
    if said:
        from avasam_cli import output

        output.info(said)
    return bool(delivery_plan(options)) or said is not None
