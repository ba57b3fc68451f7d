"""One follower of the store: the rows after a row id, oldest first, as any process
commits them.  `events list --follow`, `listen`'s printer and the inspector's live
stream all read through it.

It waits with the store's live feed (PostgreSQL's NOTIFY wakes it at once; on SQLite a
short sleep), and a store that is away for a while (a PostgreSQL server restarting) is
said once and opened again, with nothing skipped: it goes on after the last row it
handed out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from avasam_cli.errors import StoreError
from avasam_cli.store.base import EventStore
from avasam_cli.store.events import StoredEvent

Fetch = Callable[[EventStore, int, int], list[StoredEvent]]
REOPEN_WAIT = 1.0  # seconds between tries while the store is away


def rows_after(store: EventStore, last: int, limit: int) -> list[StoredEvent]:
    return list(store.after(last, limit))


class Follower:
    """`new_rows()` hands out what was committed after the last row it handed out (at
    most `batch` at a time, read by `fetch`); `wait(timeout)` returns once more may have
    been committed."""

    def __init__(
        self,
        open_reader: Callable[[], EventStore],
        after: int = 0,
        batch: int = 500,
        fetch: Fetch = rows_after,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.open_reader = open_reader
        self.last = after
        self.batch = batch
        self.fetch = fetch
        self.say = say
        self._reader: EventStore | None = None
        self._away: str | None = None  # why the store cannot be read now
        self._retry_at = 0.0

    def new_rows(self) -> list[StoredEvent]:
        if self._reader is None and time.monotonic() < self._retry_at:
            return []  # away a moment ago: not asked again yet
        try:
            if self._reader is None:
                self._reader = self.open_reader()
            rows = self.fetch(self._reader, self.last, self.batch)
        except StoreError as error:
            if error.message != self._away and self.say is not None:
                self.say(error.message)
            self._away = error.message
            self._retry_at = time.monotonic() + REOPEN_WAIT
            self._drop_reader()
            return []
        self._away = None
        if rows:
            self.last = rows[-1].id or self.last
        return rows

    def wait(self, timeout: float) -> None:
        if self._reader is None:  # away, or not opened yet
            time.sleep(timeout)
            return
        self._reader.wait_for_rows(timeout)

    def _drop_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
        self._reader = None

    def close(self) -> None:
        self._drop_reader()
