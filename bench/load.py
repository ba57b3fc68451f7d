"""`send-test --count` against wrk, side by side, on the same listener.

Usage: python bench/load.py [--count 20000] [--concurrency 20] [--rounds 3]

One `avasam listen --json` (output to a file) runs for the whole benchmark.  In
alternating rounds, wrk (`-t1 -c20`, distinct signed 1-item bodies, see
signed_bodies.lua) and `avasam send-test --count 20000 --concurrency 20` load
it; medians are reported.  Targets: send-test reaches >= 0.5x wrk's requests/s,
and its p50 latency is within 2x of wrk's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from listener import TOKEN, free_port, running, write_data, write_tokens, wrk_command

SCALE = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_round(
    port: int, folder: Path, seconds: float, connections: int, round_: int
) -> dict[str, float]:
    data = folder / "data-1.json"
    write_data(data, 1)
    tokens = folder / f"tokens-{round_}.tsv"
    write_tokens(tokens, int(seconds * 16_000), f"wrk-{round_}")
    command = wrk_command(port, tokens, data, seconds, connections)
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    tokens.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", text)
    assert p50 is not None, text
    return {"rps": rps, "p50_ms": float(p50.group(1)) * SCALE[p50.group(2)]}


def send_test_round(
    port: int, env: dict[str, str], count: int, concurrency: int
) -> dict[str, float]:
    command = [
        sys.executable, "-m", "avasam_cli", "send-test",
        "--url", f"http://127.0.0.1:{port}/webhooks/stock",
        "--count", str(count), "--concurrency", str(concurrency),
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"send-test failed: {run.stdout}{run.stderr}")
    rps = re.search(r"([\d.]+) answered requests/s", run.stdout)
    p50 = re.search(r"p50 ([\d.]+) ms", run.stdout)
    assert rps is not None and p50 is not None, run.stdout
    return {"rps": float(rps.group(1)), "p50_ms": float(p50.group(1))}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=float, default=5.0)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install wrk` (Debian package wrk)", file=sys.stderr)
        return 2
    runs: dict[str, list[dict[str, float]]] = {"wrk": [], "send-test": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        env = {
            **os.environ,
            "AVASAM_HOME": str(folder / "home"),
            "AVASAM_VERIFICATION_TOKEN": TOKEN,
        }
        port = free_port()
        command = [sys.executable, "-m", "avasam_cli", "listen", "--json", "--port", str(port)]
        with running(command, port, env, folder / "listener.out"):
            send_test_round(port, env, 2000, options.concurrency)  # warm-up
            for round_ in range(options.rounds):
                runs["wrk"].append(
                    wrk_round(port, folder, options.wrk_seconds, options.concurrency, round_)
                )
                runs["send-test"].append(
                    send_test_round(port, env, options.count, options.concurrency)
                )
    medians = {
        tool: {name: statistics.median(r[name] for r in values) for name in values[0]}
        for tool, values in runs.items()
    }
    print(
        f"medians of {options.rounds} alternating rounds against one listener, "
        f"{options.concurrency} connections; send-test --count {options.count}"
    )
    print(f"{'load tool':<12}{'req/s':>10}{'p50 ms':>10}")
    for tool, figures in medians.items():
        print(f"{tool:<12}{figures['rps']:>10.0f}{figures['p50_ms']:>10.2f}")
    ratio = medians["send-test"]["rps"] / medians["wrk"]["rps"]
    latency = medians["send-test"]["p50_ms"] / medians["wrk"]["p50_ms"]
    print(f"req/s send-test/wrk: {ratio:.2f} (target >= 0.5) {'PASS' if ratio >= 0.5 else 'FAIL'}")
    print(f"p50 send-test/wrk: {latency:.2f} (target <= 2) {'PASS' if latency <= 2 else 'FAIL'}")
    return 0 if ratio >= 0.5 and latency <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
