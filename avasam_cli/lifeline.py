"""A child's side of `listen`'s child protocol (`avasam_cli.supervise` is the parent's):
its settings come first on its standard input, which is then its lifeline: when it
closes, the parent is gone (even by `kill -9`) and the child stops."""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys
import threading
from collections.abc import Callable

HANDED_SIZE = struct.Struct(">I")  # the settings' length, before them


def handed_over() -> bytes:
    """In a child: the settings its parent wrote first to its standard input."""
    (size,) = HANDED_SIZE.unpack(_read_exactly(HANDED_SIZE.size))
    return _read_exactly(size)


def _read_exactly(size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(sys.stdin.fileno(), size - len(data))
        if not chunk:
            raise SystemExit("the parent went away before it gave the settings")
        data += chunk
    return bytes(data)


def exit_when_stdin_closes(on_close: Callable[[], None] | None = None) -> None:
    """In a child: stop when the parent is gone.  A thread reads standard input (the
    parent never writes to it) until end-of-file, then calls `on_close` (by default:
    exit at once).  On Linux the kernel's parent-death signal is asked for as well."""
    die_with_parent()

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while os.read(sys.stdin.fileno(), 4096):
                pass
        if on_close is not None:
            on_close()
        else:
            os._exit(0)

    threading.Thread(target=watch, name="avasam-lifeline", daemon=True).start()


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Linux: `signum` when the parent dies (PR_SET_PDEATHSIG); elsewhere nothing (the
    standard input lifeline does it)."""
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signum)  # 1 = PR_SET_PDEATHSIG
