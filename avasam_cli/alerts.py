"""Alerts, when a person is needed: a delivery went dead, a child process is left down
after crashing again and again, the store has refused commits for a while, Avasam
refused the API keys.

`--alert-url URL` POSTs `{"text": ..., "event": ..., ...}` (which Slack and most chat
webhooks take as it is); `--alert-command CMD` runs a command with the same JSON on its
standard input.  One alert per kind of event per QUIET seconds; the next one says how
many were held back meanwhile.  An alert that cannot be sent is said on stderr, never
fatal: alerting must not stop what it reports on.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

QUIET = 600.0  # seconds between two alerts of one kind
SEND_TIMEOUT = 10.0  # seconds for the URL to answer
COMMAND_TIMEOUT = 30.0  # seconds for the command to finish


@dataclass(frozen=True)
class AlertConfig:
    url: str | None = None
    command: str | None = None

    def __bool__(self) -> bool:
        return bool(self.url or self.command)


NO_ALERTS = AlertConfig()


class Alerts:
    """Sends alerts for one process, each on a thread of its own (the process waits for
    the ones in flight before it exits: at most the timeouts above)."""

    def __init__(
        self,
        config: AlertConfig,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.say = say
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sending: list[threading.Thread] = []

    def send(self, event: str, text: str, **fields: Any) -> bool:
        """Alert of `event` (a kind: delivery_dead, child_down...); False when none is
        configured or one of this kind went out less than QUIET seconds ago."""
        if not self.config:
            return False
        with self._lock:
            now = self.clock()
            last = self._last.get(event)
            if last is not None and now - last < QUIET:
                self._held[event] = self._held.get(event, 0) + 1
                return False
            self._last[event] = now
            held = self._held.pop(event, 0)
        if held:
            text += f" ({held} more like it held back in the last {QUIET / 60:g} min)"
        payload = {
            "text": f"avasam on {socket.gethostname()}: {text}",
            "event": event,
            "ts": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "held_back": held,
            **fields,
        }
        sender = threading.Thread(target=self._deliver, args=(payload,), name="avasam-alert")
        sender.start()
        self._sending.append(sender)
        return True

    def _deliver(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload)
        if self.config.url:
            import httpx

            try:
                answer = httpx.post(
                    self.config.url,
                    content=data,
                    headers={"content-type": "application/json"},
                    timeout=SEND_TIMEOUT,
                )
                if answer.status_code >= 400:
                    self.say(f"Warning: the alert to {self.config.url} got {answer.status_code}")
            except httpx.HTTPError as error:
                self.say(f"Warning: the alert to {self.config.url} failed: {type(error).__name__}")
        if self.config.command:
            try:
                ran = subprocess.run(  # noqa: S603 - the seller's own command
                    shlex.split(self.config.command, posix=sys.platform != "win32"),
                    input=data, text=True, capture_output=True, timeout=COMMAND_TIMEOUT,
                    check=False,
                )  # fmt: skip
                if ran.returncode != 0:
                    said = (ran.stderr or ran.stdout).strip().splitlines()
                    self.say(
                        f"Warning: the alert command exited {ran.returncode}"
                        + (f": {said[-1]}" if said else "")
                    )
            except (OSError, ValueError, subprocess.TimeoutExpired) as error:
                self.say(f"Warning: the alert command failed: {error}")

    def wait(self, timeout: float = SEND_TIMEOUT + COMMAND_TIMEOUT) -> None:
        """Until the alerts in flight are sent (for tests, and before a process exits)."""
        deadline = time.monotonic() + timeout
        for sender in list(self._sending):
            sender.join(max(0.0, deadline - time.monotonic()))
