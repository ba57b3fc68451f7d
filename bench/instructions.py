"""Instructions the receiver executes per request, counted by callgrind: the same figure
on a quiet machine and a noisy one.

Usage: python bench/instructions.py [--seconds 10] [--items 1,1000] [--baseline DIR]

On a 2-core machine shared with other tenants, the same code's rate moves by a fifth from
run to run (docs/performance.md, 2026-12-07, evening), so bench/listener.py cannot show a
change of a few percent.  This counts instead: each server (the bare app, the listener,
and with --baseline the listener from another checkout) runs under valgrind's callgrind
with counting off; wrk warms it up, counting is switched on for a wrk run of --seconds,
then off.  The figure is the receiver process's user-space instructions (its threads'
too, not its children's: the store writer runs natively) divided by the requests
answered.  The kernel's work (system calls, wake-ups) is not in it, and under callgrind
the receiver is some 50 times slower, so its batches to the writer are larger than at
full speed: compare figures of this bench with each other, not with bench/listener.py's.
The bare app's figure repeats to within 0.1%, the listener's to within 1.5% (its
batches differ from run to run): a change smaller than that needs a microbenchmark.

Needs Debian's `valgrind` and `wrk`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from listener import (
    HERE,
    TOKEN,
    free_port,
    running,
    server_command,
    write_data,
    write_tokens,
    wrk_command,
)

CONNECTIONS = 8
WARM_UP = 3  # seconds of wrk before counting starts
START_TIMEOUT = 300.0  # seconds; Python starts slowly under callgrind


def counted(command: list[str], port: int, env: dict[str, str], folder: Path, seconds: int,
            tokens: Path, warm_up: Path, data: Path) -> tuple[int, int]:  # fmt: skip
    """(instructions, requests answered) while counting was on."""
    out = folder / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=no",
                f"--callgrind-out-file={out}"]  # fmt: skip
    with running(valgrind + command, port, env, folder / "server.out", START_TIMEOUT) as pid:
        subprocess.run(wrk_command(port, warm_up, data, WARM_UP, CONNECTIONS),
                       capture_output=True, check=True)  # fmt: skip
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True,
                       check=True)  # fmt: skip
        text = subprocess.run(wrk_command(port, tokens, data, seconds, CONNECTIONS),
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True,
                       check=True)  # fmt: skip
    answered = re.search(r"(\d+) requests in", text)
    if answered is None:
        raise RuntimeError(f"wrk said nothing of its requests: {text[:200]}")
    instructions = 0
    for part in folder.glob("callgrind.out*"):  # one file per process part; the largest total
        for line in part.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                instructions = max(instructions, int(line.split()[1]))
        part.unlink()
    return instructions, int(answered.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--items", default="1,1000", help="payload sizes, comma-separated")
    parser.add_argument("--baseline", metavar="DIR", help="another checkout's listener too")
    options = parser.parse_args()
    missing = [tool for tool in ("valgrind", "callgrind_control", "wrk") if not shutil.which(tool)]
    if missing:
        print(f"Needs {', '.join(missing)}: apt-get install valgrind wrk", file=sys.stderr)
        return 2
    servers = ["bare", "listener"] + (["baseline"] if options.baseline else [])
    print(f"user-space instructions per request under callgrind, {CONNECTIONS} connections, "
          f"{options.seconds} s counted")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for items in map(int, options.items.split(",")):
            data, tokens, warm_up = folder / "data.json", folder / "tokens.tsv", folder / "warm.tsv"
            write_data(data, items)
            write_tokens(tokens, 40_000 if items == 1 else 4_000, f"run-{items}")
            write_tokens(warm_up, 10_000 if items == 1 else 1_000, f"warm-up-{items}")
            figures = {}
            for server in servers:
                port = free_port()
                command = server_command("listener" if server == "baseline" else server, port, 0)
                code = Path(options.baseline).resolve() if server == "baseline" else HERE.parent
                env = {**os.environ, "AVASAM_HOME": str(folder / "home"),
                       "AVASAM_VERIFICATION_TOKEN": TOKEN, "PYTHONPATH": str(code)}  # fmt: skip
                shutil.rmtree(folder / "home", ignore_errors=True)
                instructions, answered = counted(command, port, env, folder, options.seconds,
                                                 tokens, warm_up, data)  # fmt: skip
                figures[server] = instructions / max(answered, 1)
                print(f"{items:>5} items  {server:<10}{figures[server]:>14,.0f}"
                      f"   ({answered} requests)", flush=True)  # fmt: skip
            for server in servers[1:]:
                print(f"{items:>5} items  {server}/bare: {figures[server] / figures['bare']:.3f}")
            if "baseline" in figures:
                ratio = figures["listener"] / figures["baseline"]
                print(f"{items:>5} items  listener/baseline: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
