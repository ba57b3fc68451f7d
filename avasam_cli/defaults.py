"""Default values shown in `--help`, in one place; light imports only, so the CLI starts fast."""

from avasam_cli.webhooks.contract import DEFAULT_LEEWAY
from avasam_cli.webhooks.kinds import KINDS

__all__ = ["DEFAULT_LEEWAY"]  # a webhook decision (webhooks/contract.py), shown in --help

DEFAULT_BASE_URL = "https://app.avasam.com"
# How the access token is sent to the API; the decision and its evidence: api/client.py.
AUTH_SCHEME_CHOICES = ("auto", "bearer", "raw")
DEFAULT_AUTH_SCHEME = "auto"
DEFAULT_LISTEN_HOST = "127.0.0.1"
DEFAULT_LISTEN_PORT = "8787"
DEFAULT_WEBHOOK_PATHS = {name: kind.default_path for name, kind in KINDS.items()}
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
# Connection limits of the receiver (see receiver/protocol.py and the README's Security).
DEFAULT_MAX_HEAD_SIZE = 64 * 1024  # request line and headers, in bytes
DEFAULT_HEAD_TIMEOUT = 10.0  # seconds for a request head to arrive
DEFAULT_BODY_TIMEOUT = 30.0  # seconds a body may stall
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0  # seconds an idle keep-alive connection stays open
DEFAULT_MAX_CONNECTIONS = 1000  # beyond: 503
HEALTH_PATH = "/healthz"
DEFAULT_FORWARD_TIMEOUT = 10.0  # seconds to wait for a forward target
# How durable a commit of the SQLite store is (listen --durability, profile `durability`):
# normal survives any crash of the program, a power cut can lose the last commits; full
# also survives a power cut (one fsync per committed batch).  Full costs the receiver
# nothing measurable (its batches grow while a sync runs; bench/listener.py, the
# `fast` row), so what was answered 200 survives a power cut by default.
DURABILITY_LEVELS = ("normal", "full")
DEFAULT_DURABILITY = "full"
# The other writers' commits (the delivery runner's records, `ack`'s marks, the
# inspector's actions): a power cut can at worst have them done again, which their
# receivers see anyway (deliveries are at least once; an acknowledgement repeats).
FOLLOW_UP_DURABILITY = "normal"
DEFAULT_SHUTDOWN_WAIT = 10.0  # seconds a stop waits, in all, for forwards and acknowledgements
DEFAULT_ACK_MAX_WAIT = 120.0  # seconds `ack` may spend in all waiting for retries (429s)
# Waits before restarting a helper process that died (store writer, tunnel), then 30 s.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
DEFAULT_TUNNEL_TIMEOUT = 30.0  # seconds to wait for a tunnel tool to print its public URL


def restart_delay(restarts: int) -> float:
    """The wait before restart number `restarts` (0 for the first)."""
    return RESTART_DELAYS[min(restarts, len(RESTART_DELAYS) - 1)]
