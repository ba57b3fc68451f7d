"""`avasam listen --tunnel` with stand-in cloudflared and ngrok on PATH (no internet)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.helpers import TOKEN, ListenProcess, free_port
from tests.tunnel_stubs import alive, stub_env

ENV = {"AVASAM_VERIFICATION_TOKEN": TOKEN}


def started_pids(env: dict[str, str]) -> list[int]:
    state = Path(env["STUB_STATE"])
    return [int(p.read_text()) for p in sorted(state.glob("start-*"))]


def wait_for(condition: object, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def run_listen(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`avasam listen` expected to stop by itself (a tunnel that cannot start)."""
    return subprocess.run(
        [sys.executable, "-m", "avasam_cli", "listen", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AVASAM_HOME": str(home), "NO_COLOR": "1", **ENV, **env},
    )


def test_cloudflared_quick_tunnel_urls_shown(isolated_home: Path, tmp_path: Path) -> None:
    """The banner shows both public endpoints; the tool points at the webhook port."""
    env = stub_env(tmp_path)
    listener = ListenProcess(
        isolated_home, "--tunnel", "cloudflared", "--tunnel-arg=--region=eu", env={**ENV, **env}
    )
    code, _, err = listener.stop()
    assert code == 0, err
    public = "https://stub-1-words.trycloudflare.com"
    assert f"{public}/webhooks/stock" in err and f"{public}/webhooks/price" in err
    assert "Paste these into Avasam" in err
    args = (Path(env["STUB_STATE"]) / "args").read_text().splitlines()
    assert args == [
        "tunnel",
        "--url",
        f"http://127.0.0.1:{listener.port}",
        "--no-autoupdate",
        "--region=eu",
    ]


def test_the_go_live_check_runs_by_itself_once_the_tunnel_is_up(
    isolated_home: Path, tmp_path: Path
) -> None:
    """`listen --tunnel` sends its test update through the public URL and says what came
    of it; the stand-in's URL leads nowhere (no such host here), and the line says so."""
    from tests.test_rotation import wait_for

    listener = ListenProcess(isolated_home, "--tunnel", "cloudflared",
                             env={**ENV, **stub_env(tmp_path)})  # fmt: skip
    try:
        wait_for(lambda: b"Go-live check:" in listener.captured["err"], 40, "the check")
    finally:
        code, _, err = listener.stop()
    assert code == 0, err
    said = ("Warning: Go-live check: https://stub-1-words.trycloudflare.com/webhooks/stock "
            "does not reach this listener")  # fmt: skip
    assert said in err


@pytest.mark.parametrize("mode", ["ok", "agent-only"])
def test_ngrok_urls_from_log_or_agent_api(isolated_home: Path, tmp_path: Path, mode: str) -> None:
    """ngrok's URL is read from its JSON log, or else from its local agent API."""
    env = stub_env(tmp_path, mode=mode)
    listener = ListenProcess(isolated_home, "--tunnel", "ngrok", env={**ENV, **env})
    code, _, err = listener.stop()
    assert code == 0, err
    assert "https://stub-1.ngrok-free.app/webhooks/stock" in err
    args = (Path(env["STUB_STATE"]) / "args").read_text().splitlines()
    assert args[:2] == ["http", str(listener.port)]


def test_restart_prints_the_new_urls(isolated_home: Path, tmp_path: Path) -> None:
    """A tunnel that exits is restarted; its new URL is printed with "paste these again"."""
    env = stub_env(tmp_path, mode="exit-once")
    listener = ListenProcess(isolated_home, "--tunnel", "cloudflared", env={**ENV, **env})
    assert wait_for(lambda: b"stub-2-words" in listener.captured["err"])
    code, _, err = listener.stop()
    assert code == 0, err
    assert "the cloudflared tunnel stopped (exit code 1): Avasam cannot reach" in err
    assert "Restarting it in 1 s." in err and "The cloudflared tunnel is back" in err
    assert "paste these into Avasam again" in err
    assert "https://stub-2-words.trycloudflare.com/webhooks/price" in err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_tunnel_process_outlives_the_listener(
    isolated_home: Path, tmp_path: Path, stop: int
) -> None:
    """Ctrl-C, SIGTERM, even kill -9 of the listener: the tunnel process is gone."""
    env = stub_env(tmp_path)
    listener = ListenProcess(isolated_home, "--tunnel", "cloudflared", env={**ENV, **env})
    (pid,) = started_pids(env)
    assert alive(pid)
    listener.stop(stop)
    assert wait_for(lambda: not alive(pid), 10), f"tunnel process {pid} left behind"


def test_missing_tool(isolated_home: Path, tmp_path: Path) -> None:
    """Not installed: exit 2, where to get it, and the other tool named."""
    env = stub_env(tmp_path, with_stubs=False)
    env["PATH"] = str(tmp_path / "empty")
    result = run_listen(isolated_home, env, "--tunnel", "cloudflared")
    assert result.returncode == 2
    assert "cloudflared is not installed" in result.stderr and "--tunnel ngrok" in result.stderr
    assert "Traceback" not in result.stderr


def test_tool_that_never_prints_a_url(isolated_home: Path, tmp_path: Path) -> None:
    """No URL within --tunnel-timeout: exit 2 with the tool's last lines; nothing left running."""
    env = stub_env(tmp_path, mode="never")
    result = run_listen(isolated_home, env, "--tunnel", "cloudflared", "--tunnel-timeout", "1")
    assert result.returncode == 2
    assert "no public URL appeared within 1 s" in result.stderr
    assert "Requesting new quick Tunnel" in result.stderr
    assert not any(alive(pid) for pid in started_pids(env))


def test_ngrok_without_auth_token(isolated_home: Path, tmp_path: Path) -> None:
    """ngrok with no auth token: exit 2 saying how to add one."""
    env = stub_env(tmp_path, mode="noauth")
    result = run_listen(isolated_home, env, "--tunnel", "ngrok")
    assert result.returncode == 2
    assert "ngrok config add-authtoken" in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_reports_tunnel_tools(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """doctor names each tunnel tool on PATH with its version, and says when there is none."""
    env = stub_env(tmp_path)
    monkeypatch.setenv("PATH", env["PATH"])
    found = cli("doctor", "--offline")
    assert "PASS  tunnel tools: cloudflared 2024.1.5; ngrok 3.5.0" in found.stdout
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    none = cli("doctor", "--offline")
    assert "skip  tunnel tools: neither cloudflared nor ngrok" in none.stdout
