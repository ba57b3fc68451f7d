"""The processes `listen` starts beside its receiver, each under the supervisor: the
delivery runner, the inspector, the extra `--workers` and the printer that follows
what they commit.

Each is a new Python process (`subprocess`, never a fork or an inherited descriptor),
so Linux, macOS and Windows run the same code.  Its standard input is its lifeline.
An extra worker reads its settings from that pipe first (a pickle from its own
parent), then watches it like the others.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from avasam_cli.lifeline import exit_when_stdin_closes, handed_over
from avasam_cli.supervise import Spawned, Supervisor

if TYPE_CHECKING:
    from avasam_cli.cli._serve import ListenOptions
    from avasam_cli.config import Settings
    from avasam_cli.receiver.app import ReceiverSettings
    from avasam_cli.store.events import Event

PRINTER_BATCH = 500
PROGRESS_ID = 20  # the progress file: the last row printed, in this many bytes, then
PROGRESS_SIZE = 512  # the counts printed so far (JSON), padded to this
PRINTER_WAIT = 0.1  # seconds at most between looks (PostgreSQL wakes it at once)


def with_store() -> dict[str, str]:
    """Our environment, naming the store this run chose (--store, profile) for a child:
    whole, password included (the environment is private to our user, unlike argv)."""
    from avasam_cli.paths import locations, spelled_out

    return {**os.environ, "AVASAM_STORE": spelled_out(locations().store_file)}


def profile_args(resolved: Settings) -> list[str]:
    return ["--profile", resolved.profile] if resolved.profile_source != "default" else []


def start_runner(supervisor: Supervisor, options: ListenOptions, resolved: Settings) -> None:
    """What `deliveries run --watch` does, in a process of its own: delivering never
    competes with answering.  It is handed the profile's settings and the delivery
    configuration as they are, not as options to parse again."""
    settings = pickle.dumps((resolved, options.delivery, options.shutdown_wait))

    def start() -> Spawned:
        child = Spawned([sys.executable, "-m", "avasam_cli.cli._children", "runner"],
                        with_store(), background=True)  # fmt: skip
        child.hand_over(settings)
        return child

    supervisor.start(
        "delivery runner",
        start,
        "forwards and acknowledgements wait in the outbox",
        needed=True,
        stop_wait=options.shutdown_wait,
        killed_note=(
            f"Warning: deliveries still in flight after {options.shutdown_wait:g} s were "
            "stopped; they stay pending in the outbox and are tried again by the next runner"
        ),
    )


def start_inspector(
    supervisor: Supervisor, port: int, resolved: Settings, env: Mapping[str, str]
) -> None:
    """`avasam inspect` on 127.0.0.1:`port`, binding it itself (again after a restart:
    the same port and token, so an open page reconnects)."""
    argv = [sys.executable, "-m", "avasam_cli", *profile_args(resolved), "inspect",
            "--port", str(port), "--stop-on-eof"]  # fmt: skip
    supervisor.start(
        "inspector",
        lambda: Spawned(argv, {**with_store(), **env}, background=True),
        "the inspector page does not answer",
    )


def our_file(prefix: str, suffix: str) -> Path:
    """A file (or folder) of this listener's in the cache folder, named by our pid; those
    a listener that was killed left behind go first."""
    import shutil

    from avasam_cli.paths import ensure_private_dir, locations
    from avasam_cli.processes import process_alive

    cache = ensure_private_dir(locations().cache_dir)
    for left in cache.glob(f"{prefix}*{suffix}"):
        pid = left.name[len(prefix) : len(left.name) - len(suffix)]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            if left.is_dir():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)
    return cache / f"{prefix}{os.getpid()}{suffix}"


def published_states() -> Path:
    """Where the listener's supervisor publishes its children's states for the other
    receiver processes' /healthz."""
    return our_file("listen-", "-children.json")


def start_workers(
    supervisor: Supervisor, options: ListenOptions, receiver: ReceiverSettings
) -> None:
    """`--workers N`: N - 1 more receivers, each on a socket of its own bound to the
    listener's port (SO_REUSEPORT: the kernel hands each connection to one of them)."""
    from avasam_cli.cli._uvicorn import GRACEFUL_SHUTDOWN_SECONDS

    settings = pickle.dumps((options, receiver, supervisor.publish))

    def start() -> Spawned:
        child = Spawned([sys.executable, "-m", "avasam_cli.cli._children", "worker"],
                        with_store())  # fmt: skip
        child.hand_over(settings)
        return child

    for number in range(2, options.workers + 1):
        supervisor.start(
            f"receiver process {number}",
            start,
            "its connections go to the other receiver processes",
            stop_wait=GRACEFUL_SHUTDOWN_SECONDS + 5,
        )


def start_printer(supervisor: Supervisor, after: int, mode: str) -> None:
    """The printer of what every --workers process commits, read back from the store in
    commit order.  It notes the last row it printed, and a restart goes on from there."""
    progress = our_file("printer-", ".last")
    progress.unlink(missing_ok=True)

    def start() -> Spawned:
        shown, counted = after, "{}"
        with contextlib.suppress(FileNotFoundError, ValueError):
            noted = progress.read_bytes()
            shown, counted = int(noted[:PROGRESS_ID]), noted[PROGRESS_ID:].decode().strip()
        argv = [sys.executable, "-m", "avasam_cli.cli._children", "printer", str(shown), mode,
                str(progress), counted]  # fmt: skip
        return Spawned(argv, with_store(), background=True)

    supervisor.start(
        "printer",
        start,
        "requests are stored and answered, but not printed",
        stop_wait=30.0,
    )


# --- In the child ---------------------------------------------------------------------
def _worker() -> None:
    from avasam_cli.alerts import Alerts
    from avasam_cli.cli._serve import delivery_plan
    from avasam_cli.cli._uvicorn import uvicorn_server
    from avasam_cli.net import bind
    from avasam_cli.paths import locations
    from avasam_cli.receiver.app import create_app
    from avasam_cli.receiver.writer import STORE_WRITER
    from avasam_cli.supervise import Published

    # Our own parent wrote it on a pipe only it holds: safe to unpickle.
    options, receiver, published = pickle.loads(handed_over())  # noqa: S301
    sock = bind(options.host, options.port, shared=True)
    sock.listen(2048)
    elsewhere = Published(published, leave_out={STORE_WRITER}) if published else None
    alerts = Alerts(options.delivery.alerts, lambda said: print(said, file=sys.stderr))
    app = create_app(receiver, locations().store_file, plan=delivery_plan(options),
                     elsewhere=elsewhere, alerts=alerts,
                     durability=options.durability)  # fmt: skip
    server = uvicorn_server(app, options, receiver)

    def stop() -> None:
        server.should_exit = True

    exit_when_stdin_closes(stop)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


def _runner() -> None:
    import asyncio

    from avasam_cli.cli._deliver import delivery_runner, watch_deliveries
    from avasam_cli.errors import StoreError
    from avasam_cli.paths import locations

    # Our own parent wrote it on a pipe only it holds: safe to unpickle.
    resolved, config, shutdown_wait = pickle.loads(handed_over())  # noqa: S301
    with contextlib.ExitStack() as resources:
        try:
            runner = delivery_runner(resources, resolved, config, locations())
        except StoreError as error:  # the store is away (restarting): said, and restarted
            print(f"Error: {error.message}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        asyncio.run(watch_deliveries(runner, stop_on_eof=True, orphan_wait=shutdown_wait))


def _printer(after: int, mode: str, progress: Path, counted: Mapping[str, int]) -> None:
    import collections
    import json
    import threading

    from avasam_cli.paths import locations
    from avasam_cli.receiver.printer import make_printer
    from avasam_cli.store.base import open_store
    from avasam_cli.store.follow import Follower

    # Stopped by its lifeline only, once the receivers are: a signal would interrupt a
    # PostgreSQL read under way (psycopg raises InterruptedError), and the last rows
    # would go unprinted.  SIGKILL, after the stop's wait, still ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stopping = threading.Event()
    exit_when_stdin_closes(stopping.set)
    # The last row printed (not only read), and the counts so far: a restart goes on
    # after it, and the stop summary counts the whole run.  Rewritten in place, two
    # calls, so a kill -9 between printing and noting is unlikely to matter.
    noted = os.open(progress, os.O_RDWR | os.O_CREAT, 0o600)
    printed = collections.Counter(counted)

    def note(events: Sequence[Event]) -> None:
        printed.update(event.status for event in events)
        data = b"%*d" % (PROGRESS_ID, events[-1].id or 0) + json.dumps(printed).encode()
        os.lseek(noted, 0, os.SEEK_SET)
        os.write(noted, data.ljust(PROGRESS_SIZE))

    printer = make_printer(mode, sys.stdout.fileno(), note)
    if printer is not None:
        printer.printer.count_earlier(counted)

    follower = Follower(
        lambda: open_store(locations().store_file, read_only=True),
        after,
        PRINTER_BATCH,
        say=lambda message: print(message, file=sys.stderr, flush=True),
    )

    def show_new() -> bool:
        rows = follower.new_rows()
        if rows and printer is not None:
            printer(rows)
        return bool(rows)

    while not stopping.is_set():  # the store may be away a while: said, then it goes on
        if not show_new():
            follower.wait(PRINTER_WAIT)
    while show_new():  # what was committed before the stop
        pass
    follower.close()
    if printer is not None:
        print(f"Stopped: {printer.close(timeout=10)}.", file=sys.stderr, flush=True)
    os.close(noted)
    progress.unlink(missing_ok=True)


def main(argv: Sequence[str]) -> int:
    from avasam_cli.cli import _choose_store

    _choose_store(None, None)  # the listener's, handed on in AVASAM_STORE (with_store)
    if argv[0] == "worker":
        _worker()
    elif argv[0] == "runner":
        _runner()
    elif argv[0] == "printer":
        import json

        _printer(int(argv[1]), argv[2], Path(argv[3]), json.loads(argv[4]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
