"""`listen --retain`: old events are deleted on a timer, in the store writer process but
on a thread and a connection of their own, so commits never wait for a whole prune."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from avasam_cli.errors import StoreError
from avasam_cli.paths import StoreLocation

RETAIN_EVERY = 3600.0  # seconds between prunes, after the first one
RETAIN_FIRST = 1.0  # seconds after start-up; each batch is short, so requests are not held
BATCH_PAUSE = 0.05  # seconds between DELETE batches: the writer takes the lock in between


def cutoff(age_seconds: float) -> str:
    """The ISO time in UTC (as the store writes it) `age_seconds` ago."""
    moment = datetime.now(UTC) - timedelta(seconds=age_seconds)
    return moment.isoformat(timespec="milliseconds")


class Retention:
    """Deletes events older than `age` seconds, `first` seconds after start and then every
    `every` seconds; what it did (or why it could not) is told to `say`."""

    def __init__(
        self,
        path: StoreLocation,
        age: float,
        say: Callable[[str], None],
        first: float = RETAIN_FIRST,
        every: float = RETAIN_EVERY,
    ) -> None:
        self.path, self.age, self.say = path, age, say
        self.first, self.every = first, every
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="avasam-retention", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        wait = self.first
        while not self.stopping.wait(wait):
            wait = self.every
            try:
                self.prune_once()
            except StoreError as error:
                self.say(f"Warning: retention could not prune: {error.message}")

    def prune_once(self) -> int:
        from avasam_cli.store.base import open_store

        before = cutoff(self.age)
        deleted = 0
        with open_store(self.path) as store:
            while not self.stopping.is_set() and (went := store.prune(before)):
                deleted += went
                self.stopping.wait(BATCH_PAUSE)
            # Only stores that reclaim in short steps: a VACUUM would hold the writer.
            for _ in store.reclaim_space(allow_vacuum=False):
                if self.stopping.wait(BATCH_PAUSE):
                    break
        if deleted:
            self.say(
                f"Retention: deleted {deleted:,} events received before "
                f"{before[:19].replace('T', ' ')} UTC."
            )
        return deleted

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
