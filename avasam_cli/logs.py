"""`--log-format json`: every line `listen` and `deliveries run` write to stderr is one
JSON object with `ts`, `level`, `event` and the event's fields, for journald, Loki or
Vector to index.

Two parts.  `said` makes a message a structured line where the caller knows its
fields (a delivery's outcome, a child's death); every other line, whoever writes it
(a child process, a library, a traceback), is wrapped by `JsonStderr`, which stands
between the process's stderr and the real one: its children inherit the pipe as
their stderr, so nothing reaches the real stderr unwrapped.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

LOG_FORMAT_ENV = "AVASAM_LOG_FORMAT"  # inherited by the children: they say JSON too
LOG_FORMATS = ("human", "json")
_LEVELS = (("Error: ", "error"), ("Warning: ", "warning"))


def json_logs() -> bool:
    return os.environ.get(LOG_FORMAT_ENV) == "json"


def record(message: str, event: str = "message", **fields: Any) -> str:
    """One JSON log line: `ts`, `level` (a leading "Error: " or "Warning: " of the message
    says it, else `level` among the fields, else info), `event`, `message`, the fields."""
    level = fields.pop("level", "info")
    for prefix, name in _LEVELS:
        if message.startswith(prefix):
            level, message = name, message[len(prefix) :]
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    head = {"ts": ts, "level": level, "event": event, "message": message}
    return json.dumps({**head, **fields}, default=str, ensure_ascii=False)


def said(message: str, event: str = "message", **fields: Any) -> str:
    """`message` as this run writes it to stderr: as it is, or with --log-format json a
    JSON line naming the event and its fields."""
    return record(message, event, **fields) if json_logs() else message


def _is_record(line: bytes) -> bool:
    if not line.startswith(b"{"):
        return False
    try:
        parsed = json.loads(line)
    except ValueError:
        return False
    return isinstance(parsed, dict) and "event" in parsed and "ts" in parsed


class JsonStderr:
    """Stands between this process (and its children) and the real stderr, passing JSON
    records on and wrapping every other line as a `message` record."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.real = os.dup(2)
        reading, writing = os.pipe()
        os.dup2(writing, 2)
        os.close(writing)
        self.reading = reading
        self.thread = threading.Thread(target=self._relay, name="avasam-json-logs", daemon=True)
        self.thread.start()

    def _relay(self) -> None:
        pending = b""
        while chunk := os.read(self.reading, 1 << 16):
            *lines, pending = (pending + chunk).split(b"\n")
            self._write(lines)
        self._write([pending] if pending else [])
        os.close(self.reading)

    def _write(self, lines: list[bytes]) -> None:
        out = []
        for whole in lines:
            line = whole.rstrip(b"\r")
            if not line.strip():
                continue  # a blank line says nothing a log needs
            if _is_record(line):
                out.append(line)
            else:
                out.append(record(line.decode("utf-8", "replace").strip()).encode())
        data = b"\n".join(out) + b"\n" if out else b""
        while data:
            data = data[os.write(self.real, data) :]

    def close(self, timeout: float = 5.0) -> None:
        """The real stderr back; what the pipe holds is written first (children that
        outlive us go on writing to the pipe until they stop)."""
        sys.stderr.flush()
        os.dup2(self.real, 2)  # our end of the pipe closes: the relay sees its end
        self.thread.join(timeout)


def start(log_format: str) -> JsonStderr | None:
    """Set this run's log format (children inherit it); JSON starts the relay, which
    stays until the process exits."""
    import atexit

    os.environ[LOG_FORMAT_ENV] = log_format
    if log_format != "json":
        return None
    relay = JsonStderr()
    atexit.register(relay.close)
    return relay
