"""The listener's one printer: fed by the store writer with committed events only.

It runs in the writer process, on a thread of its own, so that a stalled stdout
never stalls storing; what it prints is made by `output`'s event printers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Sequence

from avasam_cli import output
from avasam_cli.store.events import Event
from avasam_cli.webhooks.keys import items_as_sent, stored_items

OUTPUT_MODES = ("none", "json", "human", "log")  # log: records on stderr (--log-format)
# Stands for items that cannot be printed (nested deeper than orjson writes); stored whole.
UNPRINTABLE_ITEMS = b'"(items nested too deeply to print: see avasam events show)"'


class BackgroundPrinter:
    """Prints committed events on a thread.

    A terminal paused with Ctrl-S, or a pipe nobody reads, blocks writes; the
    store writer must keep committing and answering all the same.  Past
    MAX_UNPRINTED waiting batches, batches are dropped and counted instead.  Once
    the output is closed (the reader went away), nothing more is printed: events
    are only counted.

    A printer that makes its output as bytes (JSON lines, log records) makes it on the
    caller's thread and leaves the thread only the write: formatting on the thread
    would take the GIL from the committing thread at each of its calls into SQLite.
    With `inline` (its output is a regular file, whose writes never wait for a reader)
    it writes there too, and there is no thread: handing each batch to a thread cost
    the store writer a fifth of its time per request (bench/).
    """

    MAX_UNPRINTED = 1000
    BEHIND = 8  # batches waiting: from here on, leave out the item tables to catch up

    def __init__(
        self,
        printer: output.EventPrinter,
        on_printed: Callable[[Sequence[Event]], None] | None = None,
        inline: bool = False,
    ) -> None:
        """`on_printed`: told of each batch once it is out (or given up), on the thread."""
        assert not inline or isinstance(printer, output.BytesEventPrinter)
        self.printer = printer
        self.on_printed = on_printed
        self.batches: queue.Queue[tuple[Sequence[Event], bytes | None] | None] = queue.Queue(
            self.MAX_UNPRINTED
        )
        self.committed = 0
        self.printed = 0
        self.closed = False  # the output can no longer be written
        self.thread = None
        if not inline:
            self.thread = threading.Thread(target=self._run, name="avasam-printer", daemon=True)
            self.thread.start()

    def __call__(self, events: Sequence[Event]) -> None:
        # Counted here, as committed: the summary says what was answered, printed or not.
        self.printer.count(events)
        self.committed += len(events)
        if self.closed or self.batches.full():  # too far behind: this batch goes unprinted
            return
        made = None
        if isinstance(self.printer, output.BytesEventPrinter):
            try:
                made = self.printer.render(_with_items(events))
            except Exception:  # one unprintable batch must not stop the rest
                return
        if self.thread is None:
            self._print(events, made)
        else:
            with contextlib.suppress(queue.Full):
                self.batches.put_nowait((events, made))

    def _run(self) -> None:
        while (batch := self.batches.get()) is not None:
            if not self.closed:
                self._print(*batch)

    def _print(self, events: Sequence[Event], made: bytes | None) -> None:
        try:
            if made is not None:
                assert isinstance(self.printer, output.BytesEventPrinter)
                self.printer.write(made)
            else:
                compact = self.batches.qsize() >= self.BEHIND
                self.printer(_with_items(events), compact=compact)
        except (OSError, ValueError, SystemExit):
            # The reader went away (rich turns a broken pipe into SystemExit): storing
            # and answering go on, and what is not printed is counted.
            self.closed = True
        except Exception:  # noqa: S110 - one unprintable batch must not stop the rest
            pass
        else:
            self.printed += len(events)
        if self.on_printed is not None:
            self.on_printed(events)

    def close(self, timeout: float) -> str:
        """Print what is waiting (for at most `timeout` seconds); return the summary."""
        if self.thread is not None:
            with contextlib.suppress(queue.Full):
                self.batches.put(None, timeout=timeout)
            self.thread.join(timeout)
        summary = self.printer.summary()
        unprinted = self.committed - self.printed
        if unprinted:
            why = "closed" if self.closed else "blocked"
            summary += f"; {unprinted} not printed because the output was {why}"
        return summary


def _with_items(events: Sequence[Event]) -> Sequence[Event]:
    """`events`, each verified one with its items for printing (`data_json`)."""
    import orjson

    for event in events:  # the body was verified already
        if event.status == "verified" and event.store_error is None:
            if event.items_as_sent:  # already under canonical names: no need to parse
                event.data_json = items_as_sent(event.body)
                if event.data_json is not None:
                    continue
            try:  # under canonical names, whatever the casing it came in
                event.data_json = orjson.dumps(stored_items(event.body, event.kind))
            except orjson.JSONEncodeError:  # an item nested too deeply to write again
                event.data_json = UNPRINTABLE_ITEMS
    return events


def _is_file(fd: int) -> bool:
    """Whether `fd` is a regular file: its writes never wait for a reader (a terminal
    paused, a pipe nobody reads), so they need no thread of their own."""
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def make_printer(
    mode: str, fd: int, on_printed: Callable[[Sequence[Event]], None] | None = None
) -> BackgroundPrinter | None:
    """The printer for `listen`'s output mode, writing to `fd`; None when nothing prints."""
    if mode == "none" or fd < 0:
        return None
    if mode == "json":
        printer = output.JsonEventPrinter(os.fdopen(fd, "wb"))
        return BackgroundPrinter(printer, on_printed, inline=_is_file(fd))
    if mode == "log":  # whatever `fd`: log records go where the other log lines go
        stream = os.fdopen(os.dup(2), "wb")
        return BackgroundPrinter(output.LogEventPrinter(stream), on_printed, inline=_is_file(2))
    from rich.console import Console

    # Block-buffered, flushed once per event (see HumanEventPrinter): large enough for
    # an event's block to leave in one write.
    text = open(fd, "w", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115 - process-long
    return BackgroundPrinter(
        output.HumanEventPrinter(
            Console(file=text, highlight=False, soft_wrap=False),
            Console(stderr=True, highlight=False, soft_wrap=False),
        ),
        on_printed,
    )
