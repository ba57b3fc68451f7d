"""The listener's one printer: fed by the store writer with committed events only.

It runs in the writer process, on a thread of its own, so that a stalled stdout
never stalls storing; what it prints is made by `output`'s event printers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Sequence

from avasam_cli import output
from avasam_cli.store.events import Event
from avasam_cli.webhooks.keys import stored_items

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
    """

    MAX_UNPRINTED = 1000
    BEHIND = 8  # batches waiting: from here on, leave out the item tables to catch up

    def __init__(
        self,
        printer: output.EventPrinter,
        on_printed: Callable[[Sequence[Event]], None] | None = None,
    ) -> None:
        """`on_printed`: told of each batch once it is out (or given up), on the thread."""
        self.printer = printer
        self.on_printed = on_printed
        self.batches: queue.Queue[Sequence[Event] | None] = queue.Queue(self.MAX_UNPRINTED)
        self.committed = 0
        self.printed = 0
        self.closed = False  # the output can no longer be written
        self.thread = threading.Thread(target=self._run, name="avasam-printer", daemon=True)
        self.thread.start()

    def __call__(self, events: Sequence[Event]) -> None:
        # Counted here, as committed: the summary says what was answered, printed or not.
        self.printer.count(events)
        self.committed += len(events)
        if not self.closed:
            with contextlib.suppress(queue.Full):  # too far behind: this batch goes unprinted
                self.batches.put_nowait(events)

    def _run(self) -> None:
        import orjson

        while (events := self.batches.get()) is not None:
            if self.closed:
                continue
            for event in events:  # the items, for printing: the body was verified already
                if event.status == "verified" and event.store_error is None:
                    try:  # under canonical names, whatever the casing it came in
                        event.data_json = orjson.dumps(stored_items(event.body, event.kind))
                    except orjson.JSONEncodeError:  # an item nested too deeply to write again
                        event.data_json = UNPRINTABLE_ITEMS
            try:
                self.printer(events, compact=self.batches.qsize() >= self.BEHIND)
            except (OSError, ValueError, SystemExit):
                # The reader went away (rich turns a broken pipe into SystemExit): storing
                # and answering go on, and what is not printed is counted.
                self.closed = True
            except Exception:  # noqa: S112 - one unprintable batch must not stop the rest
                continue
            else:
                self.printed += len(events)
            if self.on_printed is not None:
                self.on_printed(events)

    def close(self, timeout: float) -> str:
        """Print what is waiting (for at most `timeout` seconds); return the summary."""
        with contextlib.suppress(queue.Full):
            self.batches.put(None, timeout=timeout)
        self.thread.join(timeout)
        summary = self.printer.summary()
        unprinted = self.committed - self.printed
        if unprinted:
            why = "closed" if self.closed else "blocked"
            summary += f"; {unprinted} not printed because the output was {why}"
        return summary


def make_printer(
    mode: str, fd: int, on_printed: Callable[[Sequence[Event]], None] | None = None
) -> BackgroundPrinter | None:
    """The printer for `listen`'s output mode, writing to `fd`; None when nothing prints."""
    if mode == "none" or fd < 0:
        return None
    if mode == "json":
        return BackgroundPrinter(output.JsonEventPrinter(os.fdopen(fd, "wb")), on_printed)
    if mode == "log":  # whatever `fd`: log records go where the other log lines go
        stream = os.fdopen(os.dup(2), "wb")
        return BackgroundPrinter(output.LogEventPrinter(stream), on_printed)
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
