"""Stand-ins for cloudflared and ngrok: small scripts on PATH that print what the real tools
print (their documented log lines, version output and agent API answers), then stay up until
they are signalled.  STUB_STATE names a folder where each start leaves its pid and arguments;
STUB_MODE picks a behaviour."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Every start leaves its pid and arguments in STUB_STATE, and stops on SIGTERM.
STARTED = r"""
state = Path(os.environ["STUB_STATE"])
mode = os.environ.get("STUB_MODE", "ok")
start = len(list(state.glob("start-*"))) + 1
(state / f"start-{start}").write_text(str(os.getpid()))
(state / "args").write_text("\n".join(sys.argv[1:]))
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # no traceback, even mid-exit
"""

CLOUDFLARED = r"""
import os, signal, sys, time
from pathlib import Path

if sys.argv[1:2] == ["--version"]:
    print("cloudflared version 2024.1.5 (built 2024-01-22-1303 UTC)")
    sys.exit(0)
# STARTED
log = sys.stderr
print("2026-11-28T10:00:00Z INF Thank you for trying Cloudflare Tunnel.", file=log, flush=True)
print("2026-11-28T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...", file=log, flush=True)
if mode != "never":
    print("2026-11-28T10:00:01Z INF +-------------------------------------------------------+", file=log)
    print("2026-11-28T10:00:01Z INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |", file=log)
    print(f"2026-11-28T10:00:01Z INF |  https://stub-{start}-words.trycloudflare.com                  |", file=log, flush=True)
if mode == "grandchild":  # a tool with a process of its own
    import subprocess
    subprocess.Popen(["sleep", "300"])
if mode == "exit-once" and start == 1:
    time.sleep(0.5)
    sys.exit(1)
while True:
    time.sleep(0.1)
"""

NGROK = r"""
import json, os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

if sys.argv[1:2] == ["version"]:
    print("ngrok version 3.5.0")
    sys.exit(0)
# STARTED
url = f"https://stub-{start}.ngrok-free.app"

def log(**record):
    print(json.dumps({"t": "2026-11-28T10:00:00Z", "lvl": "info", **record}), flush=True)

if mode == "noauth":
    log(lvl="eror", msg="session closing", obj="tunnels.session",
        err="authentication failed: Usage of ngrok requires a verified account and authtoken."
            "\n\nSign up for an account: https://dashboard.ngrok.com/signup\nInstall your "
            "authtoken: https://dashboard.ngrok.com/get-started/your-authtoken\r\n\r\nERR_NGROK_4018\r\n")
    sys.exit(1)

class Agent(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass
    def do_GET(self):
        data = json.dumps({"tunnels": [{"name": "command_line", "proto": "https",
                                        "public_url": url}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

agent = ThreadingHTTPServer(("127.0.0.1", 0), Agent)
threading.Thread(target=agent.serve_forever, daemon=True).start()
log(msg="starting web service", obj="web", addr=f"127.0.0.1:{agent.server_address[1]}")
if mode == "ok":
    port = sys.argv[2]
    log(msg="started tunnel", obj="tunnels", name="command_line", addr=f"http://localhost:{port}", url=url)
while True:
    time.sleep(0.1)
"""


def install_stubs(folder: Path) -> Path:
    """Write both stand-ins into `folder`/bin; returns that folder, to put first on PATH."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, source in (("cloudflared", CLOUDFLARED), ("ngrok", NGROK)):
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\n" + source.replace("# STARTED\n", STARTED))
        script.chmod(0o755)
    return bin_dir


def alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting to be reaped counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def stub_env(folder: Path, mode: str = "ok", with_stubs: bool = True) -> dict[str, str]:
    state = folder / "state"
    state.mkdir(parents=True, exist_ok=True)
    path = str(install_stubs(folder)) if with_stubs else str(folder / "empty")
    return {
        "PATH": path + os.pathsep + "/usr/bin:/bin",
        "STUB_STATE": str(state),
        "STUB_MODE": mode,
    }
