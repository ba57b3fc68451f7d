"""`listen --tunnel`: drive cloudflared or ngrok to give the webhook port a public HTTPS URL.

The tool runs under a guard of ours (`python -m avasam_cli.supervise`), which gives it a
group of its own and ends that whole group, the tool's own children too, when the
listener stops or dies.  Once it has a public URL, the listener's supervisor watches it
and restarts it with back-off like every child.  Everything the tool prints is kept
(the last lines) for error messages, and scanned for its public URL.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from avasam_cli.defaults import DEFAULT_TUNNEL_TIMEOUT
from avasam_cli.errors import UsageError
from avasam_cli.supervise import Spawned

TOOLS = ("cloudflared", "ngrok")
LOG_LINES_KEPT = 12
STOP_GRACE_SECONDS = 5.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class Tool:
    name: str
    install_hint: str
    version_args: tuple[str, ...]

    def command(self, executable: str, port: int, extra: Sequence[str]) -> list[str]:
        local = f"http://127.0.0.1:{port}"
        if self.name == "cloudflared":
            # A quick tunnel; extra arguments (e.g. a named tunnel's `run NAME`) follow.
            return [executable, "tunnel", "--url", local, "--no-autoupdate", *extra]
        return [executable, "http", str(port), "--log", "stdout", "--log-format", "json", *extra]

    def public_url(self, line: str) -> str | None:
        """The public HTTPS URL, if this line of the tool's output announces it."""
        if self.name == "cloudflared":
            found = _QUICK_TUNNEL_URL.search(line)
            return found.group(0) if found else None
        record = _json_line(line)
        url = record.get("url") if record else None
        return url if isinstance(url, str) and url.startswith("https://") else None

    def agent_api(self, line: str) -> str | None:
        """ngrok's local agent API address, if this line announces it."""
        record = _json_line(line) if self.name == "ngrok" else None
        address = record.get("addr") if record and record.get("obj") == "web" else None
        if not isinstance(address, str):
            return None
        return address if "://" in address else f"http://{address}"

    def fatal(self, line: str) -> str | None:
        """A problem that no restart can fix, with its fix."""
        if self.name == "ngrok" and ("ERR_NGROK_4018" in line or "authtoken" in line.lower()):
            return (
                "ngrok needs an auth token: run `ngrok config add-authtoken <token>` with the "
                "token from https://dashboard.ngrok.com/get-started/your-authtoken, or use "
                "`--tunnel cloudflared`, which needs no account"
            )
        return None


_QUICK_TUNNEL_URL = re.compile(r"https://[a-z0-9-]+\.trycloudflare\.com")
KNOWN_TOOLS = {
    "cloudflared": Tool(
        "cloudflared",
        "install it from https://developers.cloudflare.com/cloudflare-one/connections/"
        "connect-networks/downloads/ (Debian/Ubuntu: the cloudflared .deb; macOS: "
        "`brew install cloudflared`)",
        ("--version",),
    ),
    "ngrok": Tool(
        "ngrok",
        "install it from https://ngrok.com/download and add your auth token",
        ("version",),
    ),
}


def _json_line(line: str) -> dict[str, object] | None:
    if not line.startswith("{"):
        return None
    with contextlib.suppress(ValueError):
        record = json.loads(line)
        return record if isinstance(record, dict) else None
    return None


def find_tool(name: str) -> tuple[Tool, str]:
    """The tool and its executable; UsageError saying how to get it when it is missing."""
    tool = KNOWN_TOOLS[name]
    executable = shutil.which(name)
    if executable is None:
        other = next(t for t in TOOLS if t != name)
        raise UsageError(
            f"{name} is not installed (not found on PATH): {tool.install_hint}; "
            f"or use `--tunnel {other}`"
        )
    return tool, executable


def tool_version(name: str) -> str | None:
    """`cloudflared 2024.1.5` or `ngrok 3.5.0` when the tool is on PATH, else None."""
    executable = shutil.which(name)
    if executable is None:
        return None
    try:
        answer = subprocess.run(  # noqa: S603 - a tool found on PATH, fixed arguments
            [executable, *KNOWN_TOOLS[name].version_args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return f"{name} (its version could not be read)"
    found = re.search(r"\d+(\.\d+)+", answer.stdout + answer.stderr)
    return f"{name} {found.group(0)}" if found else name


@dataclass
class Tunnel:
    """A tunnel tool pointing at the webhook port: `start` runs the first one; `spawn`
    runs each (the supervisor's restarts), reading what it prints on a thread."""

    tool: Tool
    executable: str
    port: int
    extra_args: Sequence[str] = ()
    on_new_url: Callable[[str], None] | None = None
    url: str | None = None
    first: Spawned | None = None
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=50))
    _failure: str | None = None
    _first_url: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, timeout: float = DEFAULT_TUNNEL_TIMEOUT) -> str:
        """Start the tool and wait for its public URL; UsageError (exit 2) when none comes."""
        try:
            self.first = self.spawn()
        except OSError as error:
            self._failure = f"it could not be started ({error.strerror or error})"
        else:
            self._first_url.wait(timeout)
        if self.url is not None:
            return self.url
        problem = self._failure or f"no public URL appeared within {timeout:g} s"
        if self.first is not None:
            self.first.stop(STOP_GRACE_SECONDS + 1)
        raise UsageError(
            f"{self.tool.name} did not give a public URL: {problem}.\n"
            f"Its last lines:\n{self.last_lines()}"
        )

    def last_lines(self) -> str:
        lines = list(self.log)[-LOG_LINES_KEPT:]
        return "\n".join(f"    {line}" for line in lines) or "    (nothing)"

    def spawn(self) -> Spawned:
        """The tool, under the guard, its output read on a thread of its own."""
        command = self.tool.command(self.executable, self.port, self.extra_args)
        argv = [sys.executable, "-m", "avasam_cli.supervise", *command]
        child = Spawned(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, own_group=True)
        reader = threading.Thread(target=self._read, args=(child,), name="avasam-tunnel")
        reader.daemon = True
        reader.start()
        return child

    def _read(self, child: Spawned) -> None:
        assert child.process.stdout is not None
        for raw in child.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            fatal = self.tool.fatal(line)
            if fatal is not None and self.url is None:
                self._failure = fatal
                self._first_url.set()
            url = self.tool.public_url(line)
            if url is not None:
                self._announce(url)
            agent = self.tool.agent_api(line)
            if agent is not None:  # the log may not say the URL: ask the agent too
                threading.Thread(target=self._ask_agent, args=(agent, child), daemon=True).start()
        if self.url is None:  # it ended before it gave a URL
            self._failure = self._failure or f"it exited with code {child.process.wait()}"
            self._first_url.set()

    def _ask_agent(self, address: str, child: Spawned) -> None:
        url = _url_from_agent(address, lambda: child.poll() is None)
        if url is not None and self.url is None:
            self._announce(url)

    def _announce(self, url: str) -> None:
        with self._lock:  # the reader and the agent question may both find it
            previous, self.url = self.url, url
        if previous is None:
            self._first_url.set()
        elif url != previous and self.on_new_url is not None:
            self.on_new_url(url)


def _url_from_agent(address: str, running: Callable[[], bool], tries: int = 40) -> str | None:
    """The first HTTPS public URL ngrok's agent API lists (it may take a moment to appear)."""
    import httpx

    for _ in range(tries):
        if not running():
            return None
        with contextlib.suppress(httpx.HTTPError, ValueError):
            tunnels = httpx.get(f"{address}/api/tunnels", timeout=2).json().get("tunnels", [])
            for tunnel in tunnels:
                url = tunnel.get("public_url", "")
                if isinstance(url, str) and url.startswith("https://"):
                    return url
        time.sleep(0.25)
    return None
