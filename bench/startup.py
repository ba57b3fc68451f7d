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
    """A Typer app with our command tree, each command doing nothing."""
    from avasam_cli.cli import app

    lines = [
        "import typer",
        "app = typer.Typer()",
    ]
    for group in app.registered_groups:
        lines.append(f"{group.name}_app = typer.Typer()")
        lines.append(f"app.add_typer({group.name}_app, name={group.name!r})")
        assert group.typer_instance is not None
        for command in group.typer_instance.registered_commands:
            lines.append(
                f"@{group.name}_app.command({command.name!r})\ndef _{command.name}(): pass"
            )
    for command in app.registered_commands:
        assert command.callback is not None
        name = command.name or command.callback.__name__.replace("_", "-")
        fn = name.replace("-", "_")
        lines.append(f"@app.command({name!r})\ndef _{fn}(): pass")
    lines.append(
        "@app.callback()\ndef root(version: bool = typer.Option(False, '--version')):\n"
        "    if version:\n        print('0')\n        raise typer.Exit()"
    )
    lines.append("app()")
    return "\n".join(lines) + "\n"


def run_once(script: Path, args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    options = parser.parse_args()
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
