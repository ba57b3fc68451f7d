"""`avasam listen` as a service that starts with the machine and restarts on failure: a
systemd unit on Linux (the user's, or with `system` the machine's), a launchd agent on
macOS, and on Windows a recipe for Task Scheduler.  Pure: what to write and where; the
CLI (`cli/service.py`) writes it and asks systemd or launchd to start it.

The service runs this install's own `avasam`, with the profile and the store the
command was given.  The store's URL may hold a password: it goes in a file of mode 0600
(systemd's EnvironmentFile, launchd's plist), never in the unit, which others can read.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LABEL = "com.avasam.listen"  # launchd's name for it
RESTART_SECONDS = 5


@dataclass(frozen=True)
class Service:
    name: str  # avasam-listen, or avasam-listen-PROFILE
    command: tuple[str, ...]  # the absolute avasam (or python -m avasam_cli), its options
    environment: Mapping[str, str]  # AVASAM_STORE, AVASAM_HOME: kept private
    system: bool = False  # the machine's unit (run as `user`), not the user's
    user: str | None = None


def avasam_command() -> list[str]:
    """This install's `avasam`: the script beside this Python, else `python -m avasam_cli`."""
    script = Path(sys.executable).parent / ("avasam.exe" if sys.platform == "win32" else "avasam")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "avasam_cli"]


def service_for(
    profile: str,
    listen_args: Sequence[str],
    environment: Mapping[str, str],
    system: bool = False,
) -> Service:
    name = "avasam-listen" if profile == "default" else f"avasam-listen-{profile}"
    # The journal (or the log file) indexes records: JSON, unless the options say otherwise.
    chosen = any(arg == "--log-format" or arg.startswith("--log-format=") for arg in listen_args)
    logs = () if chosen else ("--log-format", "json")
    command = (*avasam_command(), "--profile", profile, "listen", *logs, *listen_args)
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    return Service(name, command, dict(environment), system, user if system else None)


# --- systemd --------------------------------------------------------------------------
def systemd_unit_path(service: Service, config_home: Path) -> Path:
    folder = Path("/etc/systemd/system") if service.system else config_home / "systemd" / "user"
    return folder / f"{service.name}.service"


def systemd_unit(service: Service, environment_file: Path) -> str:
    """The unit: restarted on failure; stopped with SIGTERM, which `listen` takes as a
    graceful stop (what it holds answered and stored first)."""
    user = f"User={service.user}\n" if service.user else ""
    wanted_by = "multi-user.target" if service.system else "default.target"
    return f"""[Unit]
Description=avasam listen ({service.name}): Avasam's webhooks, verified and stored
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
{user}ExecStart={shlex.join(service.command)}
EnvironmentFile={environment_file}
Restart=on-failure
RestartSec={RESTART_SECONDS}
KillSignal=SIGTERM
TimeoutStopSec=60
NoNewPrivileges=yes

[Install]
WantedBy={wanted_by}
"""


def environment_file_text(environment: Mapping[str, str]) -> str:
    """systemd's EnvironmentFile: one NAME=value per line, the value quoted."""
    return "".join(f"{name}={_systemd_quoted(value)}\n" for name, value in environment.items())


def _systemd_quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemctl(service: Service, *verb: str) -> list[str]:
    return ["systemctl", *([] if service.system else ["--user"]), *verb]


# --- launchd --------------------------------------------------------------------------
def launchd_plist_path(service: Service, home: Path) -> Path:
    suffix = service.name.removeprefix("avasam-listen")
    return home / "Library" / "LaunchAgents" / f"{LABEL}{suffix.replace('-', '.')}.plist"


def launchd_plist(service: Service, log_file: Path) -> bytes:
    """The agent: started at login, started again whenever it exits with a failure."""
    suffix = service.name.removeprefix("avasam-listen").replace("-", ".")
    return plistlib.dumps(
        {
            "Label": LABEL + suffix,
            "ProgramArguments": list(service.command),
            "EnvironmentVariables": dict(service.environment),
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "ThrottleInterval": RESTART_SECONDS,
            "StandardOutPath": str(log_file),
            "StandardErrorPath": str(log_file),
        }
    )


# --- Windows ----------------------------------------------------------------------------
def windows_recipe(service: Service) -> str:
    """Task Scheduler: started at logon, restarted on failure (set in its Settings tab).
    A task's command can be read by others: the store is the profile's there."""
    shown = {name: value for name, value in service.environment.items() if name != "AVASAM_STORE"}
    sets = " && ".join(f'set "{name}={value}"' for name, value in shown.items())
    command = " ".join(f'"{part}"' if " " in part else part for part in service.command)
    run = f"cmd /c {sets} && {command}" if sets else command
    return (
        "Windows has no service definition avasam writes itself. To start the listener at "
        "logon, with Task Scheduler:\n\n"
        f'  schtasks /Create /TN "{service.name}" /SC ONLOGON /RL LIMITED /TR "{run}"\n\n'
        "then, in Task Scheduler, open the task's Settings and tick \"If the task fails, "
        f'restart every: 1 minute". Remove it with: schtasks /Delete /TN "{service.name}"\n'
    )
