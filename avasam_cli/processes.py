"""Whether a process of this host is still running, on Linux, macOS and Windows alike."""

from __future__ import annotations

import os
import sys


def process_alive(pid: int) -> bool:
    """True while process `pid` runs (another user's included).

    On POSIX, signal 0 asks without sending anything; on Windows `os.kill(pid, 0)`
    would send CTRL_C_EVENT, so the process is opened and asked instead.
    """
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        synchronize, query_limited = 0x00100000, 0x1000
        handle = kernel32.OpenProcess(synchronize | query_limited, False, pid)
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: alive, not ours
        try:
            return bool(kernel32.WaitForSingleObject(handle, 0) == 0x102)  # WAIT_TIMEOUT
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
