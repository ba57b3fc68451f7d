"""`avasam service`: the systemd unit (checked by systemd's own `systemd-analyze verify`),
the launchd agent, the Windows recipe, and installing and removing them."""

from __future__ import annotations

import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from avasam_cli.service import launchd_plist, service_for, windows_recipe

PASSWORD = "hunter2-secret"
STORE = f"postgresql://avasam:{PASSWORD}@db.internal:5432/avasam"
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="systemd units are for Linux")


def _verified(unit: str, tmp_path: Path) -> None:
    """systemd's own check of a unit file (Debian's `systemd`; `.ci/run` installs it)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd)")
    path = tmp_path / "avasam-listen.service"
    path.write_text(unit)
    checked = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


@linux_only
def test_the_printed_unit_is_one_systemd_accepts(cli: Any, tmp_path: Path) -> None:
    """`service install --print`: this install's absolute avasam, the profile, the listen
    options after --, restarted on failure; the store's password is not in it."""
    printed = cli("--store", STORE, "service", "install", "--print", "--",
                  "--forward-to", "http://127.0.0.1:3000/avasam")  # fmt: skip
    assert printed.exit_code == 0, printed.output
    unit = printed.stdout
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    command = exec_start.removeprefix("ExecStart=").split()
    assert Path(command[0]).is_absolute() and Path(command[0]).exists()
    assert (
        "--profile default listen --log-format json --forward-to http://127.0.0.1:3000/avasam"
        in exec_start
    )  # the journal gets records
    assert "Restart=on-failure" in unit and "WantedBy=default.target" in unit
    assert PASSWORD not in unit and "EnvironmentFile=" in unit
    _verified(unit, tmp_path)


@linux_only
def test_a_system_unit_runs_as_this_user(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "shop")
    printed = cli("service", "install", "--system", "--print")
    assert printed.exit_code == 0, printed.output
    assert "User=shop" in printed.stdout and "WantedBy=multi-user.target" in printed.stdout
    _verified(printed.stdout, tmp_path)


@linux_only
def test_install_status_uninstall(
    cli: Any, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a service manager to ask (as in a container), install writes the unit and
    its private environment and says how to start it; status finds it; uninstall removes
    both, and then status is exit 1."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("avasam_cli.cli.service._on_path", lambda _: False)
    installed = cli("--store", STORE, "service", "install")
    assert installed.exit_code == 0, installed.output
    unit = tmp_path / "xdg" / "systemd" / "user" / "avasam-listen.service"
    private = isolated_home / "config" / "avasam-listen.env"
    assert unit.is_file() and PASSWORD not in unit.read_text()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert f'AVASAM_STORE="{STORE}"' in private.read_text()
    said = " ".join(installed.stderr.split())
    assert "systemctl is not on PATH here: to start it, run `systemctl --user enable --now" in said
    status = cli("service", "status")
    assert status.exit_code == 0 and f"Installed: {unit}" in status.stdout
    removed = cli("service", "uninstall")
    assert removed.exit_code == 0, removed.output
    assert not unit.exists() and not private.exists()
    gone = cli("service", "status")
    assert gone.exit_code == 1 and "not installed" in gone.stderr


def test_the_launchd_agent_and_the_windows_recipe() -> None:
    """macOS: an agent started at login and again after a failure, its environment in the
    (private) plist.  Windows: a Task Scheduler recipe without the store's password."""
    service = service_for("shop", ["--no-inspect"], {"AVASAM_STORE": STORE})
    agent = plistlib.loads(launchd_plist(service, Path("/tmp/listen.log")))
    assert agent["Label"] == "com.avasam.listen.shop"
    assert agent["ProgramArguments"][-6:] == [
        "--profile", "shop", "listen", "--log-format", "json", "--no-inspect"
    ]  # fmt: skip
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
    assert agent["EnvironmentVariables"] == {"AVASAM_STORE": STORE}
    recipe = windows_recipe(service)
    assert 'schtasks /Create /TN "avasam-listen-shop" /SC ONLOGON' in recipe
    assert PASSWORD not in recipe
