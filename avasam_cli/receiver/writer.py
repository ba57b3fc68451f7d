"""The receiver's store writer: a child process that commits received requests.

Why a process and not a thread: on a small machine the event loop and a writer
thread spend much of their time handing the GIL back and forth (SQLite releases
it on every call), which halved the receiver's throughput in `bench/`.  A child
process commits on the other core with no GIL in common.

It is started like every child of `listen` (`avasam_cli.supervise`), with nothing
but what Linux, macOS and Windows all have: its settings come first on its standard
input, which then is its lifeline, and it prints on the standard output it shares
with the listener.  The requests and their outcomes cross a loopback TCP connection
that the child opens to its parent and opens with a secret only the two know.

Protocol on that connection: frames of a 4-byte big-endian length and a
`marshal`-encoded payload.  The child first sends the secret, then a status frame:
None once the store is open, or why it cannot be opened (then, when it was
restarted, it tries again every STORE_RETRY seconds).  The parent then sends
`(seq, *WireRequest)` for each request: at once while the child has nothing in hand,
else all those verified meanwhile together when it answers, so that the child commits
one batch while the parent verifies the next.  The child reads whatever frames have
arrived (a natural batch), commits them, answers one frame listing
`(seq, id, status, store_error)` for the batch, and only then hands the committed
events to the printer.  The parent answers each HTTP request when its outcome
arrives, so an answer always follows its commit.  While `listen` runs, this child is
the store's only writer.  It ignores SIGINT and SIGTERM: the parent ends it by
closing the connection once the last in-flight request has been answered.  A writer
that dies is restarted by the supervisor; meanwhile requests are answered 503.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import marshal
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avasam_cli.alerts import Alerts
from avasam_cli.defaults import DEFAULT_DURABILITY
from avasam_cli.errors import StoreError
from avasam_cli.lifeline import exit_when_stdin_closes, handed_over
from avasam_cli.metrics.counts import here as metrics_here
from avasam_cli.paths import DatabaseUrl, StoreLocation, spelled_out
from avasam_cli.store.events import Event, WireRequest
from avasam_cli.store.jobs import Plan
from avasam_cli.supervise import Spawned, Supervisor, Watched

if TYPE_CHECKING:
    from avasam_cli.store.base import EventStore

FRAME = struct.Struct(">I")
STOP_TIMEOUT = 60.0
REFUSAL_MEMORY = 10.0  # seconds /healthz answers 503 after a failed commit
# An answer waits at most this long for its commit; then 503, and Avasam retries.
COMMIT_TIMEOUT = 5.0
SECRET_SIZE = 32
LINK_BUFFER = 1 << 20  # bytes of socket buffer each way
STORE_RETRY = 1.0  # seconds between a restarted writer's tries to open an absent store
ORPHAN_GRACE = 10.0  # seconds a writer whose parent is gone has to finish its commits
STORE_WRITER = "store writer"  # its name in messages and /healthz
MEANING = "requests are answered 503 (Avasam retries them)"
ALERT_AFTER = 30.0  # seconds of refused commits before a person is told
# glibc gives the top of its heap back to the system whenever it frees enough, and maps
# each block above a threshold afresh: a writer of large bodies (their frames, the copies
# SQLite binds and the printer writes) then faults in new pages on every batch: 29 per
# request under bench/'s 1,000-item load, a seventh of its CPU.  Starting at the
# thresholds glibc would grow to by itself keeps the memory it reuses (bench/ prints the
# faults per request).  Other C libraries ignore the names; values already set are kept.
MALLOC_THRESHOLDS = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),  # glibc's largest on 64 bits
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),  # twice that, as glibc sets it
}


@dataclass(frozen=True, slots=True)
class Outcome:
    id: int | None
    status: str  # "verified", "duplicate" or "rejected"
    store_error: str | None


def frame(payload: Any) -> bytes:
    data = marshal.dumps(payload)
    return FRAME.pack(len(data)) + data


def split_frames(buffer: bytearray) -> list[Any]:
    """Remove and decode every complete frame at the start of `buffer`."""
    payloads = []
    offset = 0
    with memoryview(buffer) as view:  # each frame read where it lies: no copy of a body
        while len(buffer) - offset >= FRAME.size:
            (size,) = FRAME.unpack_from(buffer, offset)
            end = offset + FRAME.size + size
            if end > len(buffer):
                break
            # marshal is safe here: both ends are this program, over a private pipe.
            payloads.append(marshal.loads(view[offset + FRAME.size : end]))  # noqa: S302
            offset = end
    del buffer[:offset]
    return payloads


class _Link(asyncio.Protocol):
    """One writer process's connection: the secret first, then status and outcome frames."""

    def __init__(self, owner: StoreWriter) -> None:
        self.owner = owner
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.trusted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a large body crosses in one write
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LINK_BUFFER)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.trusted:  # anyone on this host may connect: only our child knows it
            if len(self.buffer) < SECRET_SIZE:
                return
            if not hmac.compare_digest(bytes(self.buffer[:SECRET_SIZE]), self.owner.secret):
                assert self.transport is not None
                self.transport.close()
                self.buffer.clear()
                return
            del self.buffer[:SECRET_SIZE]
            self.trusted = True
        for payload in split_frames(self.buffer):
            self.owner._received(self, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.trusted:
            self.owner._lost(self)


class StoreWriter:
    """The parent's side: `record` sends a request to the child and waits for its commit.

    The child runs under `supervisor` (the listener's, or one of its own), which says
    when it dies and starts it again."""

    def __init__(
        self,
        path: StoreLocation,
        output: str = "none",
        output_fd: int | None = None,
        say: Callable[[str], None] | None = None,
        retain: int | None = None,
        plan: Plan | None = None,
        supervisor: Supervisor | None = None,
        alerts: Alerts | None = None,
        durability: str = DEFAULT_DURABILITY,
    ) -> None:
        from avasam_cli.receiver.printer import OUTPUT_MODES

        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}")
        self.path = path
        self.output = output
        self.output_fd = output_fd
        self.retain = retain
        self.plan = plan
        self.durability = durability
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self.secret = secrets.token_bytes(SECRET_SIZE)
        self.alerts = alerts
        self._failing_since: float | None = None  # requests refused since (monotonic)
        self._clock = time.monotonic
        self._own_supervisor = supervisor is None
        self.supervisor = supervisor if supervisor is not None else Supervisor(self.say)
        self._sent: collections.deque[tuple[int, float]] = collections.deque()
        self._closing = False
        self._watchdog: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._port = 0
        self._watched: Watched | None = None
        self._link: _Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self._seq = 0
        self._outgoing: list[bytes] = []  # frames not yet handed to the writer
        self._handed = 0  # requests handed to the writer and not yet answered
        self._failure: str | None = "the store writer is starting"
        self._refused: tuple[float, str] | None = None  # the last batch's commit failed
        self._ready: asyncio.Future[str | None] | None = None

    @property
    def failure(self) -> str | None:
        """Why requests cannot be stored now: the writer is down, or its last commit
        failed (a database away) less than REFUSAL_MEMORY seconds ago.  None: all well.
        The refusal is forgotten after a while even without traffic, so that a load
        balancer sends requests again and finds out."""
        if self._failure is None and self._refused is not None:
            at, reason = self._refused
            if time.monotonic() - at < REFUSAL_MEMORY:
                return f"the store refused the last commit: {reason}"
        return self._failure

    async def start(self) -> None:
        """Start the child and wait until it has the store open; StoreError if it cannot."""
        self._loop = loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Link(self), "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        self._ready = loop.create_future()
        child = self._spawn(retry=False)
        while not self._ready.done():
            await asyncio.wait([self._ready], timeout=0.1)
            if not self._ready.done() and child.poll() is not None:
                self._ready.set_result("the store writer exited before it was ready")
        problem = self._ready.result()
        if problem is not None:
            await loop.run_in_executor(None, child.stop, STOP_TIMEOUT)
            self._server.close()
            raise StoreError(problem)
        self._watched = self.supervisor.start(
            STORE_WRITER,
            lambda: self._spawn(retry=True),
            MEANING,
            needed=True,
            stop_wait=STOP_TIMEOUT,
            started=child,
        )
        self._watchdog = loop.create_task(self._watch_commits())

    def _spawn(self, retry: bool) -> Spawned:
        """A writer process (on the supervisor's thread for a restart): it connects back."""
        stdout = self.output_fd if self.output_fd is not None else subprocess.DEVNULL
        child = Spawned(
            [sys.executable, "-m", "avasam_cli.receiver.writer"],
            env={**MALLOC_THRESHOLDS, **os.environ},
            stdout=stdout,
        )
        location = (
            ("url", spelled_out(self.path))
            if isinstance(self.path, DatabaseUrl)
            else ("path", str(self.path))
        )
        plan = self.plan.to_json() if self.plan else None
        settings = (location, self.output, self.retain or 0, plan, self._port, self.secret,
                    retry, self.durability)  # fmt: skip
        child.hand_over(marshal.dumps(settings))
        return child

    async def record(self, request: WireRequest) -> Outcome:
        """Send one request and wait until the child has committed it."""
        return await self.submit(request)

    def submit(self, request: WireRequest) -> asyncio.Future[Outcome]:
        """Send one request; the future is its outcome, once the child has committed it
        (at once when the store is not running)."""
        # The loop kept at start: asking asyncio for the running loop costs a system call
        # (getpid, its check against a fork) on every request.
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        if self._failure is not None or self._link is None:
            future.set_result(
                Outcome(None, request.status, self._failure or "the store is not running")
            )
            return future
        self._seq += 1
        self._pending[self._seq] = future
        self._sent.append((self._seq, loop.time()))
        self._send(frame((self._seq, *request)))
        return future

    async def _watch_commits(self) -> None:
        """Answer 503 for requests whose commit takes longer than COMMIT_TIMEOUT (a writer
        that is stopped, or stuck on the disk): nobody waits for an answer forever."""
        assert self._loop is not None
        while not self._closing:
            await asyncio.sleep(0.5)
            self._alert_if_refusing()
            now = self._loop.time()
            while self._sent and self._sent[0][0] not in self._pending:
                self._sent.popleft()
            while self._sent and now - self._sent[0][1] > COMMIT_TIMEOUT:
                seq, _ = self._sent.popleft()
                future = self._pending.pop(seq, None)
                if future is not None and not future.done():
                    problem = f"the store writer did not commit within {COMMIT_TIMEOUT:g} s"
                    future.set_result(Outcome(None, "rejected", problem))

    def _alert_if_refusing(self) -> None:
        """Tell a person once the store has refused requests for ALERT_AFTER seconds."""
        failing, now = self.failure, self._clock()
        if failing is None or self._closing:
            self._failing_since = None
        elif self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > ALERT_AFTER and self.alerts is not None:
            refused = now - self._failing_since
            self.alerts.send("store_refusing", f"requests have been refused for {refused:.0f} s "
                             f"({failing}); Avasam retries them", store=str(self.path))  # fmt: skip
            self._failing_since = float("inf")  # said: once, until it is well again

    def _send(self, data: bytes) -> None:
        self._outgoing.append(data)
        if not self._handed:  # the writer is idle: it starts on this one at once
            self._flush()

    def _flush(self) -> None:
        """Hand the writer every request waiting; it commits them as one batch."""
        if not self._outgoing:
            return
        link = self._link
        if link is not None and link.transport is not None and not link.transport.is_closing():
            link.transport.write(b"".join(self._outgoing))
            self._handed += len(self._outgoing)
        self._outgoing.clear()

    def _received(self, link: _Link, payload: Any) -> None:
        if isinstance(payload, list):
            if link is self._link:
                self._resolve(payload)
            return
        # A status: None once the child has the store open, else why it has not.
        starting = self._ready is not None and not self._ready.done()
        if payload is None:
            self._link, self._failure = link, None
        elif not starting:
            self._failure = f"the store writer cannot open the store: {payload}"
        if starting:
            assert self._ready is not None
            self._ready.set_result(payload)

    def _resolve(self, batch: list[Any]) -> None:
        self._handed -= len(batch)
        # The writer has committed a batch and reads again: what arrived meanwhile is the
        # next batch, committed while this one's answers go out (the two overlap).
        self._flush()
        refused = None
        for seq, row_id, status, error in batch:
            refused = error or refused
            future = self._pending.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(Outcome(row_id, status, error))
        self._refused = (time.monotonic(), refused) if refused else None

    def _lost(self, link: _Link) -> None:
        if link is not self._link:  # one that never had the store open
            if self._ready is not None and not self._ready.done():
                self._ready.set_result("the store writer exited before it was ready")
            return
        self._link, self._handed = None, 0
        self._outgoing.clear()  # their requests are answered 503 below
        if self._failure is None:
            self._failure = "the store writer stopped"
        for future in self._pending.values():
            if not future.done():
                future.set_result(Outcome(None, "rejected", self._failure))
        self._pending.clear()

    async def close(self) -> None:
        """Let the child commit what it has, print its summary and exit."""
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._watched is not None:
            self.supervisor.retire(self._watched)
        self._flush()
        link, self._failure = self._link, "the store writer is shutting down"
        if link is not None and link.transport is not None:
            link.transport.close()  # the child's end of the requests: it finishes and exits
        child = self._watched.process if self._watched is not None else None
        if child is not None:
            await asyncio.get_running_loop().run_in_executor(None, child.stop, STOP_TIMEOUT)
        if self._own_supervisor:
            self.supervisor.stop()
        if self._server is not None:
            self._server.close()


# --- The child ---------------------------------------------------------------------
def commit_loop(
    store: EventStore,
    on_committed: Callable[[Sequence[Event]], None],
    receive_into: Callable[[memoryview], int],
    send: Callable[[bytes], None],
    plan: Plan | None = None,
) -> None:
    """Read request frames (`receive_into` as socket.recv_into: 0 once their stream
    ends); commit (each new verified update with the delivery jobs of `plan`), answer,
    then hand the events on.  A parent that went away without closing the connection
    (killed with answers unread: the kernel resets it) ends the loop as a close does."""
    with contextlib.suppress(ConnectionError):
        _commit_until_closed(store, on_committed, receive_into, send, plan)


def _commit_until_closed(
    store: EventStore,
    on_committed: Callable[[Sequence[Event]], None],
    receive_into: Callable[[memoryview], int],
    send: Callable[[bytes], None],
    plan: Plan | None,
) -> None:
    buffer = bytearray()
    # One buffer for every read: a fresh one of this size per read (socket.recv) is
    # allocated and shrunk each time, which cost more than the read itself (bench/).
    chunk = memoryview(bytearray(LINK_BUFFER))
    counts = metrics_here()
    while size := receive_into(chunk):
        buffer += chunk[:size]
        arrived: list[tuple[int, Event]] = []
        for payload in split_frames(buffer):
            arrived.append((payload[0], Event.from_wire(WireRequest(*payload[1:]))))
        # Bounded transactions: each batch is answered as soon as it is committed.
        for start in range(0, len(arrived), store.batch_size):
            received = arrived[start : start + store.batch_size]
            events = [event for _, event in received]
            started = time.perf_counter()
            try:
                notice = store.ensure_present()
                if notice is not None:
                    print(f"Error: {notice}", file=sys.stderr, flush=True)
                store.insert(events, plan)
            except Exception as error:  # an answer must go back whatever happened
                for event in events:
                    event.store_error = str(error) or type(error).__name__
                    event.id = None  # rolled back: the id may be given to another row
            else:
                if counts is not None:
                    counts.observe("avasam_store_commit_seconds", (), time.perf_counter() - started)
            send(frame([(seq, e.id, e.status, e.store_error) for seq, e in received]))
            on_committed(events)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _open_when_possible(
    location: StoreLocation, link: socket.socket, retry: bool, durability: str
) -> EventStore | None:
    """The store, opened for bulk writing, once it can be; each failure is told to the
    parent.  None: it cannot be (first start), or the parent closed the connection."""
    from avasam_cli.store.base import open_store

    while True:
        try:
            return open_store(location, bulk_writer=True, durability=durability)
        except StoreError as error:
            link.sendall(frame(error.message))
            if not retry:
                return None
        link.settimeout(STORE_RETRY)  # the parent sends nothing before we are ready
        try:
            if not link.recv(1):
                return None
        except TimeoutError:
            pass
        finally:
            link.settimeout(None)


def worker_main() -> int:
    from avasam_cli.receiver.printer import make_printer
    from avasam_cli.store.retention import Retention

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Committing (mostly in SQLite, without the GIL) must get the GIL back quickly from
    # the printing thread: answers wait for commits, nobody waits for the printing.
    sys.setswitchinterval(0.0005)
    # Our own parent wrote it on a pipe only it holds: safe to unmarshal.
    settings = marshal.loads(handed_over())  # noqa: S302
    (kind, spelled), mode, retain, plan_json, port, secret, retry, durability = settings
    location: StoreLocation = DatabaseUrl(spelled) if kind == "url" else Path(spelled)
    plan = Plan.from_json(plan_json) if plan_json else None
    # The connection ends when the parent does; should it not, the lifeline does it.
    exit_when_stdin_closes(lambda: threading.Timer(ORPHAN_GRACE, os._exit, (0,)).start())
    link = socket.socket()
    with contextlib.suppress(OSError):  # before connecting: the window is agreed then
        link.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LINK_BUFFER)
    link.connect(("127.0.0.1", port))
    link.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    link.sendall(secret)
    store = _open_when_possible(location, link, retry, durability)
    if store is None:
        return 1
    link.sendall(frame(None))  # ready
    printer = make_printer(mode, sys.stdout.fileno())
    retention = Retention(location, retain, _say) if retain else None
    try:
        shown = printer if printer is not None else lambda _: None
        commit_loop(store, shown, link.recv_into, link.sendall, plan)
    finally:
        if retention is not None:
            retention.close()
        store.close()
    if printer is not None:
        with contextlib.suppress(Exception):
            print(f"Stopped: {printer.close(timeout=10)}.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
