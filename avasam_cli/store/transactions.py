"""SQLite write transactions: taken at once (BEGIN IMMEDIATE), committed, or rolled back
on any error, so that no caller leaves the connection inside a failed transaction."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator

# SQLite's own busy handler sleeps 1, 2, 5, 10, 15 ms... between its tries for a lock,
# while another process of the listener (the delivery runner recording an attempt) holds
# the write lock a fraction of a millisecond.  The receiver's writer commits requests
# that wait for their answers, so it asks again in short steps instead: from
# FIRST_STEP, doubling, at most LONGEST_STEP apart.
FIRST_STEP = 0.00005
LONGEST_STEP = 0.001


@contextlib.contextmanager
def write_transaction(
    conn: sqlite3.Connection, lock_wait: float = 0.0
) -> Iterator[sqlite3.Connection]:
    """A write transaction on `conn`.  With `lock_wait` (seconds), the connection's own
    busy timeout is 0 and a lock held elsewhere is asked for again in short steps until
    then; without it, the connection's busy timeout waits (SQLite's steps)."""
    if lock_wait > 0:
        _begin_in_steps(conn, lock_wait)
    else:
        conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _begin_in_steps(conn: sqlite3.Connection, lock_wait: float) -> None:
    deadline = time.monotonic() + lock_wait
    step = FIRST_STEP
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(step)
        step = min(step * 2, LONGEST_STEP)
