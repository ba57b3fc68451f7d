"""The receiver's store writer: a child process that commits and prints received requests.

Why a process and not a thread: on a small machine the event loop and a writer
thread spend much of their time handing the GIL back and forth (SQLite releases
it on every call), which halved the receiver's throughput in `bench/`.  A child
process commits on the other core with no GIL in common.

Protocol, over the child's stdin and stdout: frames of a 4-byte big-endian
length and a `marshal`-encoded payload.  The parent sends one tuple per request
(see `_wire`); the child reads whatever frames have arrived (a natural batch),
commits them in one transaction, answers one frame listing
`(seq, id, status, store_error)` for the batch, and only then prints them.  The
parent answers each HTTP request when its outcome arrives, so an answer always
follows its commit.  The child ignores SIGINT and SIGTERM: the parent ends it by
closing its stdin once the last in-flight request has been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import marshal
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from avasam_cli.errors import StoreError
from avasam_cli.store import (
    MAX_BATCH,
    Checkpointer,
    Event,
    connect,
    insert_events,
    redacted_headers,
)

FRAME = struct.Struct(">I")
OUTPUT_MODES = ("none", "json", "human")
STOP_TIMEOUT = 60.0
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
    def __init__(self, owner: StoreProcess) -> None:
        self.owner = owner
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for batch in split_frames(self.buffer):
            self.owner._resolve(batch)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost()


class StoreProcess:
    """The parent's side: `record` sends a request to the child and waits for its commit."""

    def __init__(self, path: Path, output: str = "none", output_fd: int | None = None) -> None:
        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}")
        self.path = path
        self.output = output
        self.output_fd = output_fd
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self._seq = 0
        self._outgoing: list[bytes] = []
        self._exited = asyncio.Event()
        self._failure: str | None = None
        self._ready: asyncio.Future[str | None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        out_fd = os.dup(self.output_fd) if self.output_fd is not None else None
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [
                    sys.executable,
                    "-m",
                    "avasam_cli.store_process",
                    str(self.path),
                    self.output,
                    str(out_fd if out_fd is not None else -1),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=(out_fd,) if out_fd is not None else (),
            )
        finally:
            if out_fd is not None:
                os.close(out_fd)
        assert self._process.stdin is not None and self._process.stdout is not None
        for pipe in (self._process.stdin, self._process.stdout):
            _widen(pipe.fileno())
        self._ready = loop.create_future()
        self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, self._process.stdin)
        await loop.connect_read_pipe(lambda: _OutcomeReader(self), self._process.stdout)
        problem = await self._ready  # the child's first frame: None, or why it cannot store
        if problem is not None:
            await self.close()
            raise StoreError(problem)

    async def record(self, request: tuple[Any, ...]) -> Outcome:
        """Send one request (see `_wire`) and wait until the child has committed it."""
        if self._failure is not None or self._writer is None:
            return Outcome(None, request[2], self._failure or "the store is not running")
        loop = asyncio.get_running_loop()
        self._seq += 1
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending[self._seq] = future
        if not self._outgoing:  # one write per loop iteration, however many requests
            loop.call_soon(self._flush)
        self._outgoing.append(frame((self._seq, *request)))
        return await future

    def _flush(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _resolve(self, batch: Any) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(batch)
            return
        for seq, row_id, status, error in batch:
            future = self._pending.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(Outcome(row_id, status, error))

    def _lost(self) -> None:
        if self._failure is None:
            self._failure = "the store writer stopped"
        if self._ready is not None and not self._ready.done():
            self._ready.set_result("the store writer exited before it was ready")
        for future in self._pending.values():
            if not future.done():
                future.set_result(Outcome(None, "rejected", self._failure))
        self._pending.clear()
        self._exited.set()

    async def close(self) -> None:
        """Let the child commit what it has, print its summary and exit."""
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


def _widen(fd: int) -> None:
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
def _wire_to_event(fields: Sequence[Any]) -> tuple[int, Event]:
    seq, received, kind, status, http_status, reason, detail, request_id, count, client = fields[
        :10
    ]
    headers, body = fields[10], fields[11]
    event = Event(
        received_at=datetime.fromtimestamp(received, UTC).isoformat(timespec="milliseconds"),
        kind=kind,
        status=status,
        http_status=http_status,
        headers_json=redacted_headers(headers),
        body=body,
        reason=reason,
        detail=detail,
        request_id=request_id,
        item_count=count,
        client=client,
    )
    return seq, event


class _BackgroundPrinter:
    """Prints committed events on a thread, so a stalled stdout never stalls storing.

    A terminal paused with Ctrl-S, or a pipe nobody reads, blocks writes; the
    store writer must keep committing and answering all the same.  Past
    MAX_UNPRINTED waiting batches, batches are dropped and counted instead.
    """

    MAX_UNPRINTED = 1000
    BEHIND = 8  # batches waiting: from here on, leave out the item tables to catch up

    def __init__(self, printer: Any) -> None:
        self.printer = printer
        self.batches: queue.Queue[Sequence[Event] | None] = queue.Queue(self.MAX_UNPRINTED)
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="avasam-printer", daemon=True)
        self.thread.start()

    def __call__(self, events: Sequence[Event]) -> None:
        try:
            self.batches.put_nowait(events)
        except queue.Full:
            self.printer.count(events)
            self.dropped += len(events)

    def _run(self) -> None:
        import orjson

        while (events := self.batches.get()) is not None:
            for event in events:  # the items, for printing: the body was verified already
                if event.status == "verified" and event.store_error is None:
                    event.data_json = orjson.dumps(orjson.loads(event.body)["data"])
            with contextlib.suppress(Exception):  # a closed pipe must not stop the storing
                self.printer(events, compact=self.batches.qsize() >= self.BEHIND)

    def close(self, timeout: float) -> str:
        """Print what is waiting (for at most `timeout` seconds); return the summary."""
        with contextlib.suppress(queue.Full):
            self.batches.put(None, timeout=timeout)
        self.thread.join(timeout)
        summary = str(self.printer.summary())
        if self.dropped:
            summary += f"; {self.dropped} not printed because the output was blocked"
        return summary


def _make_printer(mode: str, fd: int) -> _BackgroundPrinter | None:
    from avasam_cli import output

    if mode == "none" or fd < 0:
        return None
    if mode == "json":
        return _BackgroundPrinter(output.JsonEventPrinter(os.fdopen(fd, "wb")))
    from rich.console import Console

    text = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    return _BackgroundPrinter(
        output.HumanEventPrinter(
            Console(file=text, highlight=False, soft_wrap=False),
            Console(stderr=True, highlight=False, soft_wrap=False),
        )
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def worker_main(argv: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Committing (mostly in SQLite, without the GIL) must get the GIL back quickly from
    # the printing thread: answers wait for commits, nobody waits for the printing.
    sys.setswitchinterval(0.0005)
    path, mode, fd = Path(argv[0]), argv[1], int(argv[2])
    try:
        conn = connect(path)
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's job, off this path
        checkpointer = Checkpointer(path)
    except StoreError as error:
        _write_all(1, frame(error.message))
        return 1
    _write_all(1, frame(None))  # ready
    printer = _make_printer(mode, fd)
    buffer = bytearray()
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            break
        buffer += chunk
        arrived = [_wire_to_event(fields) for fields in split_frames(buffer)]
        # One transaction per MAX_BATCH rows keeps each INSERT within SQLite's variable limit.
        for start in range(0, len(arrived), MAX_BATCH):
            received = arrived[start : start + MAX_BATCH]
            events = [event for _, event in received]
            try:
                insert_events(conn, events)
            except Exception as error:  # an answer must go back whatever happened
                for event in events:
                    event.store_error = str(error) or type(error).__name__
            outcome = [(seq, e.id, e.status, e.store_error) for seq, e in received]
            _write_all(1, frame(outcome))
            if printer is not None:
                printer(events)
    conn.close()
    checkpointer.close()
    if printer is not None:
        with contextlib.suppress(Exception):
            print(f"Stopped: {printer.close(timeout=10)}.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
