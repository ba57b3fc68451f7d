"""Start-up time of `avasam` against a minimal Typer app with the same command names.

Usage: python bench/startup.py [--runs N]

Both are started as `python SCRIPT ARGS` the same way, interleaved, and the
median wall time of N runs is compared.  Target: every ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.3
# Quick commands: those that answer without the network or a server.
CASES = [
    ["--help"],
    ["--version"],
    ["configure", "--help"],
    ["config", "show"],
    ["config", "path"],
    ["listen", "--help"],
    ["send-test", "--help"],
    ["ack", "--help"],
    ["events", "list", "--help"],
    ["doctor", "--help"],
    ["api", "--help"],
    ["reconcile", "--help"],
]


def minimal_app_source() -> str:
    """A Typer app with our command tree and options, each command doing nothing.

    Each command takes the same options (as plain text or flags), and help is plain
    as ours is: Typer >= 0.25 imports pydantic to coerce any option (about 100 ms), and
    rich help imports rich, so a baseline without them would not be the same app.
    """
    import typer.main

    from avasam_cli.cli import app

    lines = [
        "from typing import Optional",
        "import typer",
        "app = typer.Typer(rich_markup_mode=None)",
    ]
    root = typer.main.get_command(app)
    for name, command in sorted(root.commands.items()):  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            lines.append(_command_source("app", name, command))
            continue
        lines.append(f"{_identifier(name)}_app = typer.Typer(rich_markup_mode=None)")
        lines.append(f"app.add_typer({_identifier(name)}_app, name={name!r})")
        for sub_name, sub in sorted(subcommands.items()):
            lines.append(_command_source(f"{_identifier(name)}_app", sub_name, sub))
    lines.append(
        "@app.callback()\ndef root(version: bool = typer.Option(False, '--version'),\n"
        "         profile: Optional[str] = typer.Option(None, '--profile', '-p')):\n"
        "    if version:\n        print('0')\n        raise typer.Exit()"
    )
    lines.append("app()")
    return "\n".join(lines) + "\n"


def _identifier(name: str) -> str:
    return name.replace("-", "_")


def _command_source(app_name: str, name: str, command: object) -> str:
    """`@app.command(name) def _name(...): pass`, taking the command's parameters."""
    parameters = []
    for param in command.params:  # type: ignore[attr-defined]
        if param.name == "help":
            continue
        if param.param_type_name == "argument":
            many = "list[str]" if param.nargs != 1 else "str"
            parameters.append(f"{param.name}: Optional[{many}] = typer.Argument(None)")
        elif getattr(param, "is_flag", False):
            declared = " / ".join(param.opts[:1] + param.secondary_opts[:1])
            parameters.append(f"{param.name}: bool = typer.Option(False, {declared!r})")
        else:
            many = "list[str]" if param.multiple else "str"
            opts = ", ".join(repr(opt) for opt in param.opts)
            parameters.append(f"{param.name}: Optional[{many}] = typer.Option(None, {opts})")
    signature = ", ".join(parameters)
    return f"@{app_name}.command({name!r})\ndef _{_identifier(app_name + name)}({signature}): pass"


def run_once(script: Path, args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    options = parser.parse_args()
    # As installed from a wheel: pip compiles the bytecode at install time.  An editable
    # install under PYTHONDONTWRITEBYTECODE would compile our sources on every run.
    import compileall

    import avasam_cli

    compileall.compile_dir(Path(avasam_cli.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        minimal = folder / "minimal.py"
        minimal.write_text(minimal_app_source())
        ours = folder / "ours.py"
        ours.write_text("from avasam_cli.cli import main\nmain()\n")
        env = {**os.environ, "AVASAM_HOME": str(folder / "home"), "NO_COLOR": "1"}
        subprocess.run(
            [sys.executable, str(ours), "configure", "--consumer-key", "bench-key-0000"],
            env=env,
            capture_output=True,
            check=True,
        )
        failed = False
        print(f"{'command':<22}{'minimal ms':>12}{'avasam ms':>12}{'ratio':>8}")
        for args in CASES:
            base_times, our_times = [], []
            for _ in range(options.runs):  # interleaved so drift hits both alike
                base_times.append(run_once(minimal, args, env))
                our_times.append(run_once(ours, args, env))
            base, mine = statistics.median(base_times), statistics.median(our_times)
            ratio = mine / base
            failed |= ratio > TARGET_RATIO
            print(f"{' '.join(args):<22}{base * 1000:>12.1f}{mine * 1000:>12.1f}{ratio:>8.2f}")
        print(f"target: every ratio <= {TARGET_RATIO}: {'FAIL' if failed else 'PASS'}")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
