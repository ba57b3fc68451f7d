"""`avasam service install|uninstall|status`: `avasam listen` as a service that starts
with the machine and restarts on failure (systemd, launchd; a recipe on Windows)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.cli._context import group, settings
from avasam_cli.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    from avasam_cli.service import Service

SystemOption = Annotated[
    bool,
    typer.Option("--system", help="The machine's systemd unit (run as you), not your user's."),
]


def _service(ctx: typer.Context, listen_args: list[str], system: bool) -> "Service":
    """This command's profile and store, for the service to run with."""
    from avasam_cli.paths import locations, spelled_out
    from avasam_cli.service import service_for

    if system and sys.platform != "linux":
        raise UsageError("--system is for a systemd unit on Linux")
    environment = {"AVASAM_STORE": spelled_out(locations().store_file)}
    if os.environ.get("AVASAM_HOME"):
        environment["AVASAM_HOME"] = os.environ["AVASAM_HOME"]
    return service_for(settings(ctx).profile, listen_args, environment, system)


def _files(service: "Service") -> tuple[Path, Path | None]:
    """Where the definition goes, and the private file beside it (systemd's environment)."""
    from avasam_cli.paths import locations
    from avasam_cli.service import launchd_plist_path, systemd_unit_path

    if sys.platform == "darwin":
        return launchd_plist_path(service, Path.home()), None
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    unit = systemd_unit_path(service, config_home)
    return unit, locations().config_file.parent / f"{service.name}.env"


def _definition(service: "Service") -> tuple[Path, bytes, Path | None, bytes | None]:
    from avasam_cli.paths import locations
    from avasam_cli.service import (
        environment_file_text,
        launchd_plist,
        systemd_unit,
    )

    path, private = _files(service)
    if sys.platform == "darwin":  # its output: a log file in the cache folder
        return path, launchd_plist(service, locations().cache_dir / "listen.log"), None, None
    assert private is not None
    unit = systemd_unit(service, private).encode()
    return path, unit, private, environment_file_text(service.environment).encode()


def install(
    ctx: typer.Context,
    listen_args: Annotated[
        list[str] | None,
        typer.Argument(help="Options for `avasam listen`, after --: -- --forward-to URL"),
    ] = None,
    system: SystemOption = False,
    print_only: Annotated[
        bool, typer.Option("--print", help="Show the definition; write nothing.")
    ] = False,
) -> None:
    """Run `avasam listen` (this profile, this store) as a service: started at boot or
    login, restarted on failure."""
    from avasam_cli import output
    from avasam_cli.paths import write_secret_file
    from avasam_cli.service import systemctl, windows_recipe

    service = _service(ctx, list(listen_args or []), system)
    if sys.platform == "win32":
        output.out(windows_recipe(service))
        return
    path, definition, private, secret = _definition(service)
    if print_only:
        sys.stdout.write(definition.decode())
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if private is not None and secret is not None:
            write_secret_file(private, secret.decode())
            path.write_bytes(definition)
        else:  # launchd's plist holds the environment itself: private
            write_secret_file(path, definition.decode())
    except OSError as error:
        hint = " (a --system unit needs root: sudo, or --print)" if system else ""
        raise OperationFailed(f"cannot write {path}: {error.strerror}{hint}") from None
    output.info(f"Wrote {path}" + (f" (its environment: {private}, mode 0600)" if private else ""))
    if sys.platform == "darwin":
        _run(["launchctl", "load", "-w", str(path)], f"launchctl load -w {path}")
        return
    _run(systemctl(service, "daemon-reload"), None)
    _run(
        systemctl(service, "enable", "--now", f"{service.name}.service"),
        " ".join(systemctl(service, "enable", "--now", f"{service.name}.service")),
    )


def _on_path(tool: str) -> bool:
    return shutil.which(tool) is not None


def _run(command: list[str], then: str | None, removing: bool = False) -> None:
    """Ask systemd or launchd; without it (a container, no user session), say what to run.
    A failure stops an install (the definition stays written); a removal goes on."""
    from avasam_cli import output

    if not _on_path(command[0]):
        if then is not None:
            output.info(f"{command[0]} is not on PATH here: to start it, run `{then}`.")
        return
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        failed = f"`{' '.join(command)}` failed: {said[-1] if said else done.returncode}"
        if removing:
            output.warn(f"{failed}; removing the definition all the same")
            return
        raise OperationFailed(
            f"{failed}; the definition is written: start it by hand once the problem is fixed"
        )
    if then is not None:
        output.info(f"Started: `{' '.join(command)}`.")


def uninstall(ctx: typer.Context, system: SystemOption = False) -> None:
    """Stop the service and remove its definition."""
    from avasam_cli import output
    from avasam_cli.service import systemctl

    service = _service(ctx, [], system)
    if sys.platform == "win32":
        output.out(f'On Windows, remove the task with: schtasks /Delete /TN "{service.name}"')
        return
    path, private = _files(service)
    if not path.exists():
        raise OperationFailed(f"no service is installed at {path}")
    if sys.platform == "darwin":
        _run(["launchctl", "unload", "-w", str(path)], None, removing=True)
    else:
        _run(systemctl(service, "disable", "--now", f"{service.name}.service"), None, True)
    path.unlink()
    if private is not None:
        private.unlink(missing_ok=True)
    if sys.platform != "darwin":
        _run(systemctl(service, "daemon-reload"), None, removing=True)
    output.info(f"Removed {path}.")


def status(ctx: typer.Context, system: SystemOption = False) -> None:
    """Whether the service is installed, and (where systemd or launchd can say) running;
    exit 1 when it is not installed."""
    from avasam_cli import output
    from avasam_cli.service import systemctl

    service = _service(ctx, [], system)
    if sys.platform == "win32":
        output.out(f'On Windows, ask Task Scheduler: schtasks /Query /TN "{service.name}"')
        return
    path, _ = _files(service)
    if not path.exists():
        raise OperationFailed(f"not installed (no {path}): `avasam service install` installs it")
    command = (
        ["launchctl", "list", path.stem]
        if sys.platform == "darwin"
        else systemctl(service, "is-active", f"{service.name}.service")
    )
    state = "unknown here (no service manager on PATH)"
    if _on_path(command[0]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        said = (done.stdout or done.stderr).strip().splitlines()
        state = said[0] if said else f"exit code {done.returncode}"
    output.out(f"Installed: {path}\nState: {state}")


def register(app: typer.Typer) -> None:
    service_app = group("Run `avasam listen` as a service (systemd, launchd).")
    service_app.command(
        "install",
        epilog="Examples:\n\n  avasam service install\n\n  avasam service install --print\n\n"
        "  avasam service install -- --forward-to http://127.0.0.1:3000/avasam",
    )(install)
    service_app.command("uninstall")(uninstall)
    service_app.command("status")(status)
    app.add_typer(service_app, name="service")
