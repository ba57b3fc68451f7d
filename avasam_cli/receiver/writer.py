"""The receiver's store writer: a child process that commits received requests.

Why a process and not a thread: on a small machine the event loop and a writer
thread spend much of their time handing the GIL back and forth (SQLite releases
it on every call), which halved the receiver's throughput in `bench/`.  A child
process commits on the other core with no GIL in common.

Protocol, over two pipes of its own (never stdin or stdout, which printing
libraries may close or redirect when the terminal goes away): frames of a 4-byte big-endian
length and a `marshal`-encoded payload.  The parent sends `(seq, *WireRequest)`
for each request, and `(operation, *arguments)` for each follow-up result; the
child reads whatever frames have arrived (a natural batch), commits them,
answers one frame listing `(seq, id, status, store_error)` for the batch, and
only then hands the committed events to the printer.  The parent answers each
HTTP request when its outcome arrives, so an answer always follows its commit.
While `listen` runs, this child is the store's only writer.  It ignores SIGINT
and SIGTERM: the parent ends it by closing the request pipe once the last in-flight
request has been answered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import marshal
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avasam_cli.defaults import restart_delay
from avasam_cli.delivery.outbox import Plan
from avasam_cli.errors import StoreError
from avasam_cli.paths import DatabaseUrl, StoreLocation, spelled_out
from avasam_cli.store.events import Event, WireRequest

if TYPE_CHECKING:
    from avasam_cli.store.base import EventStore

FRAME = struct.Struct(">I")
STOP_TIMEOUT = 60.0
REFUSAL_MEMORY = 10.0  # seconds /healthz answers 503 after a failed commit
# An answer waits at most this long for its commit; then 503, and Avasam retries.
COMMIT_TIMEOUT = 5.0
PIPE_SIZE = 1 << 20


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
    while len(buffer) - offset >= FRAME.size:
        (size,) = FRAME.unpack_from(buffer, offset)
        end = offset + FRAME.size + size
        if end > len(buffer):
            break
        # marshal is safe here: both ends are this program, over a private pipe.
        payloads.append(marshal.loads(bytes(buffer[offset + FRAME.size : end])))  # noqa: S302
        offset = end
    del buffer[:offset]
    return payloads


class _OutcomeReader(asyncio.Protocol):
    def __init__(self, owner: StoreWriter) -> None:
        self.owner = owner
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for batch in split_frames(self.buffer):
            self.owner._resolve(batch)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost()


class StoreWriter:
    """The parent's side: `record` sends a request to the child and waits for its commit."""

    def __init__(
        self,
        path: StoreLocation,
        output: str = "none",
        output_fd: int | None = None,
        say: Callable[[str], None] | None = None,
        retain: int | None = None,
        plan: Plan | None = None,
    ) -> None:
        from avasam_cli.receiver.printer import OUTPUT_MODES

        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}")
        self.path = path
        self.output = output
        self.output_fd = output_fd
        self.retain = retain
        self.plan = plan
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self._sent: collections.deque[tuple[int, float]] = collections.deque()
        self._closing = False
        self._watchdog: asyncio.Task[None] | None = None
        self._restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self._seq = 0
        self._outgoing: list[bytes] = []
        self._exited = asyncio.Event()
        self._failure: str | None = None
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
        self._loop = loop = asyncio.get_running_loop()
        self._exited = asyncio.Event()
        out_fd = os.dup(self.output_fd) if self.output_fd is not None else None
        requests_read, requests_write = os.pipe()
        outcomes_read, outcomes_write = os.pipe()
        for fd in (requests_write, outcomes_read):
            widen_pipe(fd)
        child_fds = [requests_read, outcomes_write] + ([out_fd] if out_fd is not None else [])
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [
                    sys.executable,
                    "-m",
                    "avasam_cli.receiver.writer",
                    _location_argument(self.path),
                    self.output,
                    str(out_fd if out_fd is not None else -1),
                    str(requests_read),
                    str(outcomes_write),
                    str(self.retain or 0),
                    *([self.plan.to_json()] if self.plan else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=child_fds,
                env=_location_environment(self.path),
            )
        except BaseException:
            for fd in (requests_write, outcomes_read):
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        self._ready = loop.create_future()
        self._writer, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(requests_write, "wb", buffering=0)
        )
        await loop.connect_read_pipe(
            lambda: _OutcomeReader(self), os.fdopen(outcomes_read, "rb", buffering=0)
        )
        problem = await self._ready  # the child's first frame: None, or why it cannot store
        if problem is not None:
            await self._stop_child()
            raise StoreError(problem)
        self._failure = None
        if self._watchdog is None:
            self._watchdog = loop.create_task(self._watch_commits())

    async def record(self, request: WireRequest) -> Outcome:
        """Send one request and wait until the child has committed it."""
        if self._failure is not None or self._writer is None:
            return Outcome(None, request.status, self._failure or "the store is not running")
        loop = asyncio.get_running_loop()
        self._seq += 1
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending[self._seq] = future
        self._sent.append((self._seq, loop.time()))
        self._send(frame((self._seq, *request)))
        return await future

    async def _watch_commits(self) -> None:
        """Answer 503 for requests whose commit takes longer than COMMIT_TIMEOUT (a writer
        that is stopped, or stuck on the disk): nobody waits for an answer forever."""
        assert self._loop is not None
        while not self._closing:
            await asyncio.sleep(0.5)
            now = self._loop.time()
            while self._sent and self._sent[0][0] not in self._pending:
                self._sent.popleft()
            while self._sent and now - self._sent[0][1] > COMMIT_TIMEOUT:
                seq, _ = self._sent.popleft()
                future = self._pending.pop(seq, None)
                if future is not None and not future.done():
                    problem = f"the store writer did not commit within {COMMIT_TIMEOUT:g} s"
                    future.set_result(Outcome(None, "rejected", problem))

    def _send(self, data: bytes) -> None:
        assert self._loop is not None
        if not self._outgoing:  # one write per loop iteration, however many requests
            self._loop.call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _resolve(self, batch: Any) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(batch)
            return
        refused = None
        for seq, row_id, status, error in batch:
            refused = error or refused
            future = self._pending.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(Outcome(row_id, status, error))
        self._refused = (time.monotonic(), refused) if refused else None

    def _lost(self) -> None:
        if self._failure is None:
            self._failure = "the store writer stopped"
        starting = self._ready is not None and not self._ready.done()
        if starting:
            assert self._ready is not None
            self._ready.set_result("the store writer exited before it was ready")
        for future in self._pending.values():
            if not future.done():
                future.set_result(Outcome(None, "rejected", self._failure))
        self._pending.clear()
        self._exited.set()
        if not self._closing and not starting and self._loop is not None:
            self._writer = None
            self._loop.create_task(self._restart())

    async def _restart(self) -> None:
        """A writer that died is reported, and started again with back-off."""
        process = self._process
        code = process.poll() if process is not None else None
        while not self._closing:
            delay = restart_delay(self._restarts)
            self._restarts += 1
            self.say(
                f"Error: the store writer stopped (exit code {code}); requests are answered "
                f"503 until it is back (Avasam retries them). Restarting it in {delay:g} s."
            )
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self.start()
            except StoreError as error:
                self._failure = f"the store writer cannot start: {error.message}"
                continue
            self.say("The store writer is back: requests are stored and answered again.")
            return

    async def close(self) -> None:
        """Let the child commit what it has, print its summary and exit."""
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self._stop_child()

    async def _stop_child(self) -> None:
        if self._process is None:
            return
        self._flush()
        if self._writer is not None:
            self._failure = "the store writer is shutting down"
            self._writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), STOP_TIMEOUT)
        process = self._process
        await asyncio.get_running_loop().run_in_executor(None, _wait, process)
        self._process = None


def widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe (Linux): large bodies then cross in one write, not sixteen."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, PIPE_SIZE)


def _wait(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- The child ---------------------------------------------------------------------
def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def commit_loop(
    store: EventStore,
    on_committed: Callable[[Sequence[Event]], None],
    requests: int,
    outcomes: int,
    plan: Plan | None = None,
) -> None:
    """Read request frames until that pipe closes; commit (each new verified update with
    the delivery jobs of `plan`), answer, then hand the events on."""
    buffer = bytearray()
    while chunk := os.read(requests, 1 << 20):
        buffer += chunk
        arrived: list[tuple[int, Event]] = []
        for payload in split_frames(buffer):
            arrived.append((payload[0], Event.from_wire(WireRequest(*payload[1:]))))
        # Bounded transactions: each batch is answered as soon as it is committed.
        for start in range(0, len(arrived), store.batch_size):
            received = arrived[start : start + store.batch_size]
            events = [event for _, event in received]
            try:
                notice = store.ensure_present()
                if notice is not None:
                    print(f"Error: {notice}", file=sys.stderr, flush=True)
                store.insert(events, plan)
            except Exception as error:  # an answer must go back whatever happened
                for event in events:
                    event.store_error = str(error) or type(error).__name__
                    event.id = None  # rolled back: the id may be given to another row
            answer = frame([(seq, e.id, e.status, e.store_error) for seq, e in received])
            _write_all(outcomes, answer)
            on_committed(events)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# A PostgreSQL URL may hold a password: it reaches the child in its environment, which
# only its user can read, never on its command line, which every user's `ps` shows.
_URL_ENV = "AVASAM_WRITER_STORE_URL"


def _location_argument(location: StoreLocation) -> str:
    return f"env:{_URL_ENV}" if isinstance(location, DatabaseUrl) else str(location)


def _location_environment(location: StoreLocation) -> dict[str, str] | None:
    if isinstance(location, DatabaseUrl):
        return {**os.environ, _URL_ENV: spelled_out(location)}
    return None


def _location_from_argument(argument: str) -> StoreLocation:
    if argument == f"env:{_URL_ENV}":
        return DatabaseUrl(os.environ.pop(_URL_ENV))
    return Path(argument)


def worker_main(argv: Sequence[str]) -> int:
    from avasam_cli.receiver.printer import make_printer
    from avasam_cli.store.base import open_store
    from avasam_cli.store.retention import Retention

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Committing (mostly in SQLite, without the GIL) must get the GIL back quickly from
    # the printing thread: answers wait for commits, nobody waits for the printing.
    sys.setswitchinterval(0.0005)
    path, mode, fd = _location_from_argument(argv[0]), argv[1], int(argv[2])
    requests, outcomes, retain = int(argv[3]), int(argv[4]), int(argv[5])
    plan = Plan.from_json(argv[6]) if len(argv) > 6 else None
    try:
        store = open_store(path, bulk_writer=True)
    except StoreError as error:
        _write_all(outcomes, frame(error.message))
        return 1
    _write_all(outcomes, frame(None))  # ready
    printer = make_printer(mode, fd)
    retention = Retention(path, retain, _say) if retain else None
    try:
        shown = printer if printer is not None else lambda _: None
        commit_loop(store, shown, requests, outcomes, plan)
    finally:
        if retention is not None:
            retention.close()
        store.close()
    if printer is not None:
        with contextlib.suppress(Exception):
            print(f"Stopped: {printer.close(timeout=10)}.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
