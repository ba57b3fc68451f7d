"""Throughput, latency and memory of `avasam listen` against a bare Starlette receiver.

Usage: python bench/listener.py [--duration 10] [--connections 20] [--rounds 3]
       [--skip-memory] [--skip-throughput] [--skip-wal] [--wal-duration 60]
       [--baseline DIR] [--servers bare,listener,baseline]

Both servers run on this machine with the same uvicorn settings; wrk (Debian
package `wrk`) drives them with distinct, validly signed bodies (1 item and
1,000 items).  The listener runs with `--json` and its output goes to a file.

Beside each row, the CPU each of its processes spent per request (receiver, store
writer, runner, ...) and the page faults it took per request, from /proc: a regression
shows where it is.

Targets: ratio listener/bare >= 0.6 for both payloads, >= 0.5 with --forward-to
and with the inspector's stream open; the listener with
`--metrics-port`, scraped every second, >= 0.95x the listener without it; p99 <= 20 ms for 1-item
payloads at 20 connections; resident memory grows by no more than 20 MB
between 1,000 and 100,000 requests; the store's WAL file stays <= 64 MB during a
60 s run of 1-item bodies.  With PostgreSQL installed (Debian's `postgresql`; the
bench starts its own server, with PostgreSQL's durable defaults): the listener on
a PostgreSQL store >= 0.45x for both payloads, p99 <= 30 ms for 1 item; and
`--workers 2` on each store, reported.  Reported too: `--durability normal` (SQLite
not syncing its WAL at each committed batch) against the listener's default, full.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from avasam_cli.webhooks import sign as signing

HERE = Path(__file__).resolve().parent
LUA = HERE / "signed_bodies.lua"
TOKEN = "bench-verification-token-" + "0123456789" * 4
WARM_UP = 2  # seconds of load before each measured run
ON = "2026-11-27T12:00:00.0000000+00:00"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_tokens(path: Path, count: int, prefix: str) -> None:
    now = datetime.now(UTC)
    with path.open("w") as out:
        for index in range(count):
            request_id = f"{prefix}-{index:07d}"
            token = signing.sign_token(request_id, TOKEN, now=now, expires_in=3 * 3600)
            out.write(f"{request_id}\t{token}\n")


def write_data(path: Path, items: int) -> None:
    data = signing.generate_items("stock", items, datetime.now(UTC), seed=items)
    path.write_bytes(orjson.dumps(data))


@contextlib.contextmanager
def running(
    command: list[str], port: int, env: dict[str, str], stdout: Path, start_timeout: float = 30
) -> Iterator[int]:
    with stdout.open("wb") as sink:
        # Started in the scratch folder: `python -m` puts its folder first on the path, and
        # from a checkout that would run the checkout's code whatever PYTHONPATH says.
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.DEVNULL, cwd=stdout.parent
        )
        try:
            deadline = time.monotonic() + start_timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    httpx.post(
                        f"http://127.0.0.1:{port}/webhooks/stock",
                        content=b"{}",
                        headers={"content-type": "application/json"},
                        timeout=1,
                    )
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"{command[:3]} did not start")
            yield process.pid
        finally:
            process.terminate()
            process.wait(timeout=60)


def wrk_command(port: int, tokens: Path, data: Path, seconds: float, connections: int) -> list[str]:
    """wrk sending distinct signed bodies (see signed_bodies.lua) to the stock endpoint."""
    return [
        "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(LUA),
        f"http://127.0.0.1:{port}/webhooks/stock", "--", str(tokens), str(data), ON,
    ]  # fmt: skip


def wrk(port: int, tokens: Path, data: Path, seconds: float, connections: int) -> dict[str, float]:
    command = wrk_command(port, tokens, data, seconds, connections)
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    requests = re.search(r"(\d+) requests in", text)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "requests": float(requests.group(1)) if requests else 0.0,
    }


# What each process of a server is, from its command line (the first match names it).
ROLES = (
    ("avasam_cli.receiver.writer", "writer"),
    ("_children runner", "runner"),
    ("_children worker", "receiver"),
    ("_children printer", "printer"),
    (" inspect", "inspector"),
)
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usage_by_role(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) and page faults (minor and major) so far of a server and
    its descendants, summed by role ("cpu_writer", "faults_writer", ...): the server itself
    is the receiver (the bare app for `bare`).  Faults are counted because on this machine
    memory given back and taken again is faulted in anew, at a cost its CPU shows
    (docs/performance.md, 2026-12-07, midday)."""
    used: dict[str, float] = {}
    waiting = [pid]
    while waiting:
        member = waiting.pop()
        with contextlib.suppress(OSError, IndexError):
            command = Path(f"/proc/{member}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
            role = next((name for mark, name in ROLES if mark in command), "receiver")
            cpu, faults = "cpu_" + role, "faults_" + role
            used[cpu] = used.get(cpu, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
            used[faults] = used.get(faults, 0.0) + int(fields[7]) + int(fields[9])
            waiting += map(int, Path(f"/proc/{member}/task/{member}/children").read_text().split())
    return used


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the listener's store writer)."""
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for member in [pid, *map(int, children)]:
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def memory_growth(folder: Path, env: dict[str, str], connections: int) -> tuple[float, float]:
    """RSS (listener and its store writer) after 1,000 and after 100,000 answered requests.

    Requests are counted as the lines `listen --json` writes, one per request.
    """
    data = folder / "data-memory.json"
    write_data(data, 1)
    tokens = folder / "tokens-memory.tsv"
    write_tokens(tokens, 110_000, "memory")
    port = free_port()
    output = folder / "memory.out"
    command = [sys.executable, "-m", "avasam_cli", "listen", "--json", "--port", str(port)]
    marks = {1_000: 0.0, 100_000: 0.0}
    with running(command, port, env, output) as pid:
        # Runs until stopped below, once the listener has printed 100,000 lines.
        load = subprocess.Popen(
            wrk_command(port, tokens, data, 600, connections), stdout=subprocess.DEVNULL
        )
        try:
            seen = 0
            with output.open("rb") as lines:
                while not marks[100_000] and load.poll() is None:
                    seen += lines.read().count(b"\n")
                    for mark, measured in list(marks.items()):
                        if seen >= mark and not measured:
                            marks[mark] = rss_mb(pid)
                    time.sleep(0.2)
        finally:
            load.terminate()
            load.wait()
    if not all(marks.values()):
        raise RuntimeError(f"the load stopped early (wrk exit {load.returncode}): {marks}")
    return marks[1_000], marks[100_000]


def wal_peak(folder: Path, env: dict[str, str], options: argparse.Namespace) -> tuple[float, float]:
    """Largest size of the store's WAL file during a long wrk run of 1-item bodies, and its
    size a few seconds after the load stops (idle checkpoints should truncate it), in MB."""
    data = folder / "data-wal.json"
    write_data(data, 1)
    tokens = folder / "tokens-wal.tsv"
    write_tokens(tokens, int(options.wal_duration * 16_000), "wal")
    port = free_port()
    wal = Path(env["AVASAM_HOME"]) / "data" / "events.sqlite3-wal"
    command = [sys.executable, "-m", "avasam_cli", "listen", "--json", "--port", str(port)]

    def size() -> float:
        with contextlib.suppress(FileNotFoundError):
            return wal.stat().st_size / 1e6
        return 0.0

    peak = 0.0
    with running(command, port, env, folder / "wal.out"):
        load = subprocess.Popen(
            wrk_command(port, tokens, data, options.wal_duration, options.connections),
            stdout=subprocess.DEVNULL,
        )
        while load.poll() is None:
            peak = max(peak, size())
            time.sleep(0.05)
        time.sleep(5)
        idle = size()
    tokens.unlink()
    return peak, idle


def server_command(server: str, port: int, shop_port: int) -> list[str]:
    """bare: bench/bare_app.py; listener: `avasam listen --json`; forward: the same with
    --forward-to the shop (its delivery runner forwards every update while wrk runs);
    page: the listener with its inspector, a page's event stream open; workers2: with
    --workers 2; fast: with --durability normal (no sync of the WAL per committed batch);
    pg and pg-workers2: the same two on a PostgreSQL store."""
    if server == "bare":
        return [sys.executable, str(HERE / "bare_app.py"), str(port)]
    command = [sys.executable, "-m", "avasam_cli", "listen", "--json", "--port", str(port)]
    if server == "forward":
        command += ["--forward-to", f"http://127.0.0.1:{shop_port}/webhooks/stock"]
    if server == "baseline":
        return [*command, "--no-inspect"]
    if server.endswith("workers2"):
        command += ["--workers", "2"]
    if server == "metrics":
        command += ["--metrics-port", str(port + METRICS_OFFSET)]
    if server == "fast":
        command += ["--durability", "normal"]
    if server != "page":
        command.append("--no-inspect")
    return command


# Targets (issue #25): the listener's share of a bare app's throughput on the same machine.
LISTENER_TARGET = 0.6
BUSY_TARGET = 0.5  # with --forward-to (its runner forwarding), or the inspector's stream open
POSTGRES_TARGET = 0.45
METRICS_OFFSET = 2  # the metrics port of the `metrics` row: its webhook port + 2
SCRAPE_EVERY = 1.0  # seconds; Prometheus's default is 15 s, so this is the harsher case


@contextlib.contextmanager
def scraped(metrics_port: int | None) -> Iterator[None]:
    """What being watched costs: GET /metrics every SCRAPE_EVERY while wrk runs."""
    if metrics_port is None:
        yield
        return
    stop, scrapes = threading.Event(), [0]

    def scrape() -> None:
        # One client for every scrape, as a Prometheus server is one long-lived client:
        # `httpx.get` builds a new one each time, which took 34-55 ms of this machine's
        # CPU (its TLS context), paid by the row as the bench's own load
        # (docs/performance.md, 2026-12-07, evening).
        with httpx.Client(timeout=10) as client:
            while not stop.wait(SCRAPE_EVERY):
                answer = client.get(f"http://127.0.0.1:{metrics_port}/metrics")
                counted = "avasam_webhooks_received" in answer.text
                scrapes[0] += answer.status_code == 200 and counted

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        yield
    finally:
        stop.set()
        scraper.join(15)
        if not scrapes[0]:
            raise RuntimeError("no scrape of /metrics succeeded")


@contextlib.contextmanager
def postgres(options: argparse.Namespace) -> Iterator[Any]:
    """The bench's own PostgreSQL server (tests/postgres.py), or None without one."""
    sys.path.insert(0, str(HERE.parent))
    from tests.postgres import binaries, running_server

    if options.skip_postgres or binaries() is None:
        print("PostgreSQL rows skipped: " + ("--skip-postgres" if options.skip_postgres
              else "PostgreSQL is not installed (apt-get install postgresql)"))  # fmt: skip
        yield None
        return
    with running_server(durable=True) as server:
        yield server


PAGE_TOKEN = "bench-inspector-token"  # noqa: S105 - the bench's own inspector page


def settle_the_disk() -> None:
    """Write out what the kernel still holds to write, so that no row shares the disk with
    an earlier one's leftovers.  Rows' output files were once kept until their next round
    (a 1,000-item row prints about 800 MB): the kernel began writing gigabytes of them
    back in the middle of later rows, whose commits then waited for the disk, and whose
    writer spent up to a half more CPU a request (docs/performance.md, 2026-12-07).
    Deleted at the row's end, they are never written; this is for whatever else is left."""
    if hasattr(os, "sync"):  # not on Windows, where the bench does not run
        os.sync()


@contextlib.contextmanager
def page_open(inspect_port: int | None) -> Iterator[None]:
    """What an open inspector page costs: its event stream, read as it comes."""
    if inspect_port is None:
        yield
        return
    stop = threading.Event()
    rows = [0]

    def read() -> None:
        url = f"http://127.0.0.1:{inspect_port}/api/stream?token={PAGE_TOKEN}"
        deadline = time.monotonic() + 10
        while True:  # the page's process may still be starting when the receiver is up
            try:
                with httpx.stream("GET", url, timeout=httpx.Timeout(10, read=None)) as stream:
                    for line in stream.iter_lines():
                        rows[0] += line.startswith("id: ")
                        if stop.is_set():
                            return
                return
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop.set()
        if not rows[0]:
            raise RuntimeError("the inspector's stream sent no rows")


def throughput(folder: Path, env: dict[str, str], options: argparse.Namespace) -> bool:
    """Alternating rounds of bare and listener under wrk; True when a target is missed."""
    runs: dict[tuple[int, str], list[dict[str, float]]] = {}
    # The shop that `listen --forward-to` forwards to: another bare app, up throughout.
    shop_port = free_port()
    shop = running([sys.executable, str(HERE / "bare_app.py"), str(shop_port)], shop_port, env,
                   folder / "shop.out")  # fmt: skip
    with shop, postgres(options) as database:
        for items, rate in ((1, 30_000), (1000, 3_000)):
            data = folder / f"data-{items}.json"
            write_data(data, items)
            # Every request of a run distinct, its warm-up's too (wrk starts each run at the
            # first line): an id sent again is a duplicate, answered by a path of its own.
            # Each run has a fresh store, so these files serve every server and round.
            warm_up = folder / f"tokens-{items}-warm-up.tsv"
            write_tokens(warm_up, int(WARM_UP * rate), f"warm-up-{items}")
            tokens = folder / f"tokens-{items}.tsv"
            count = int(options.duration * rate)
            write_tokens(tokens, count, f"run-{items}")
            # Alternating rounds: the machine's speed drifts, and the servers share it.
            servers = (
                ["bare", "listener", "fast", "metrics", "forward", "page", "workers2"]
                if items == 1
                else ["bare", "listener", "fast", "metrics"]
            )
            if database is not None:
                servers += ["pg", "pg-workers2"] if items == 1 else ["pg"]
            if options.baseline:
                servers.insert(2, "baseline")
            if options.servers:
                servers = [s for s in servers if s in options.servers.split(",")]
            for _ in range(options.rounds):
                for server in servers:
                    port = free_port()
                    command = server_command(server, port, shop_port)
                    # A fresh store each time: the forward jobs of one run are not the next's.
                    shutil.rmtree(folder / "home", ignore_errors=True)
                    store = {"AVASAM_STORE": database.fresh_schema()} if server[:2] == "pg" else {}
                    if server == "baseline":  # the same listener, from the other checkout
                        store["PYTHONPATH"] = str(Path(options.baseline).resolve())
                    with (
                        running(command, port, {**env, **store}, folder / f"{server}.out") as pid,
                        page_open(port + 1 if server == "page" else None),
                        scraped(port + METRICS_OFFSET if server == "metrics" else None),
                    ):
                        wrk(port, warm_up, data, WARM_UP, options.connections)
                        before = usage_by_role(pid)
                        figures = wrk(port, tokens, data, options.duration, options.connections)
                        after = usage_by_role(pid)
                    if figures["requests"] > count and server != "bare":
                        print(f"note: {server} was sent more requests than the {count} distinct "
                              "ids, so some were duplicates", file=sys.stderr)  # fmt: skip
                    for name, used in after.items():  # per answered request: us, faults
                        spent = (used - before.get(name, 0.0)) / max(figures["requests"], 1)
                        figures[name] = spent * 1e6 if name.startswith("cpu_") else spent
                    runs.setdefault((items, server), []).append(figures)
                    # The next row must not pay for this one's work: its store and output
                    # go, and what is left to write reaches the disk before the next starts.
                    shutil.rmtree(folder / "home", ignore_errors=True)
                    (folder / f"{server}.out").unlink(missing_ok=True)
                    if "AVASAM_STORE" in store:
                        database.drop_schema(store["AVASAM_STORE"])
                    settle_the_disk()
    return report(runs, options)


def report_variants(
    runs: dict[tuple[int, str], list[dict[str, float]]],
    results: dict[tuple[int, str], dict[str, float]],
) -> bool:
    """Each variant of the listener against the plain one run next to it; True when a
    target is missed."""
    failed = False
    variants = (
        ("metrics", f"--metrics-port (scraped every {SCRAPE_EVERY:g} s)", 0.95),
        ("fast", "--durability normal", None),  # reported: it decided the default
    )
    for items, (server, label, target) in itertools.product((1, 1000), variants):
        if (items, server) in runs and (items, "listener") in runs:
            # Each round's variant against the plain listener, run next to it.
            pairs = zip(runs[(items, server)], runs[(items, "listener")], strict=True)
            per_round = sorted(new["rps"] / old["rps"] for new, old in pairs)
            ratio = statistics.median(per_round)
            verdict = "reported)"
            if target is not None:
                failed |= ratio < target
                verdict = f"target >= {target}) {'PASS' if ratio >= target else 'FAIL'}"
            bare = results.get((items, "bare"))
            of_bare = f", {results[(items, server)]['rps'] / bare['rps']:.2f}x bare" if bare else ""
            print(
                f"ratio listener {label}/listener, {items} items: {ratio:.2f} (per round "
                f"{per_round[0]:.2f}-{per_round[-1]:.2f}; {verdict}{of_bare}"
            )
    return failed


def machine() -> str:
    """The processor, its cores and the time: the ratios of the same code differ from one
    machine of the same size to another (docs/performance.md, 2026-12-06)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # Linux names the model here; platform often does not
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{model}, {os.cpu_count()} cores, {when}"


def report(
    runs: dict[tuple[int, str], list[dict[str, float]]], options: argparse.Namespace
) -> bool:
    """Medians, spreads and ratios of the rounds; True when a target is missed."""
    failed = False
    results = {
        key: {name: statistics.median(run.get(name, 0.0) for run in values) for name in values[0]}
        for key, values in runs.items()
    }
    print(
        f"medians of {options.rounds} alternating rounds of {options.duration:.0f} s, "
        f"{options.connections} connections, on {machine()}"
    )
    print(
        f"{'payload':<12}{'server':<12}{'req/s':>8}{'min-max req/s':>16}{'p99 ms':>9}{'non-2xx':>9}"
    )
    for (items, server), figures in results.items():
        rates = [run["rps"] for run in runs[(items, server)]]
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        print(
            f"{items:>5} items  {server:<12}{figures['rps']:>8.0f}{spread:>16}"
            f"{figures['p99_ms']:>9.2f}{figures['non_2xx']:>9.0f}"
        )
        failed |= figures["non_2xx"] > 0
    print("CPU per request, microseconds (page faults per request), medians of the rounds, "
          "by process:")  # fmt: skip
    for (items, server), values in runs.items():
        names = {name for run in values for name in run}
        median = {name: statistics.median(run.get(name, 0.0) for run in values) for name in names}
        shares = [
            f"{name[4:]} {median[name]:.0f} ({median.get('faults_' + name[4:], 0.0):.1f})"
            for name in sorted(names)
            if name.startswith("cpu_")
        ]
        print(f"{items:>5} items  {server:<12}{', '.join(shares)}")
    if options.baseline:
        for items in (1, 1000):
            if (items, "baseline") not in runs:
                continue
            # Each round's listener against the baseline run next to it.
            pairs = zip(runs[(items, "listener")], runs[(items, "baseline")], strict=True)
            per_round = sorted(new["rps"] / old["rps"] for new, old in pairs)
            print(
                f"listener/baseline ({options.baseline}), {items} items: "
                f"{statistics.median(per_round):.2f} (per round "
                f"{per_round[0]:.2f}-{per_round[-1]:.2f}; reported)"
            )
    failed |= report_variants(runs, results)
    if options.servers:
        return failed
    for items in (1, 1000):
        ratio = results[(items, "listener")]["rps"] / results[(items, "bare")]["rps"]
        verdict = "PASS" if ratio >= LISTENER_TARGET else "FAIL"
        failed |= ratio < LISTENER_TARGET
        # Each round's own ratio (the two ran a minute apart): the run-to-run spread.
        per_round = [
            listener["rps"] / bare["rps"]
            for listener, bare in zip(runs[(items, "listener")], runs[(items, "bare")], strict=True)
        ]
        print(
            f"ratio listener/bare, {items} items: {ratio:.2f} (target >= {LISTENER_TARGET}) "
            f"{verdict}; "
            f"per round {min(per_round):.2f}-{max(per_round):.2f}"
        )
    for server, label in (("forward", "--forward-to"), ("page", "with the inspector open")):
        ratio = results[(1, server)]["rps"] / results[(1, "bare")]["rps"]
        failed |= ratio < BUSY_TARGET
        print(
            f"ratio listener {label}/bare, 1 items: {ratio:.2f} (target >= {BUSY_TARGET}) "
            f"{'PASS' if ratio >= BUSY_TARGET else 'FAIL'}"
        )
    p99 = results[(1, "listener")]["p99_ms"]
    failed |= not p99 <= 20
    print(
        f"p99, 1 item, {options.connections} connections: {p99:.2f} ms (target <= 20) "
        f"{'PASS' if p99 <= 20 else 'FAIL'}"
    )
    for server in ("workers2", "pg-workers2"):
        if (1, server) in results:
            alone = results[(1, "pg" if server == "pg-workers2" else "listener")]["rps"]
            print(
                f"--workers 2, {'PostgreSQL' if server == 'pg-workers2' else 'SQLite'}: "
                f"{results[(1, server)]['rps'] / results[(1, 'bare')]['rps']:.2f}x bare, "
                f"{results[(1, server)]['rps'] / alone:.2f}x one process (reported)"
            )
    if (1, "pg") in results:
        for items in (1, 1000):
            ratio = results[(items, "pg")]["rps"] / results[(items, "bare")]["rps"]
            failed |= ratio < POSTGRES_TARGET
            print(
                f"ratio listener on PostgreSQL/bare, {items} items: {ratio:.2f} "
                f"(target >= {POSTGRES_TARGET}) {'PASS' if ratio >= POSTGRES_TARGET else 'FAIL'}"
            )
        p99 = results[(1, "pg")]["p99_ms"]
        failed |= not p99 <= 30
        print(
            f"p99 on PostgreSQL, 1 item: {p99:.2f} ms (target <= 30) "
            f"{'PASS' if p99 <= 30 else 'FAIL'}"
        )

    return failed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate bare and listener this many times; medians are reported",
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-wal", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run the listener from this checkout (e.g. a git worktree of main) in "
        "each round, and report listener/baseline: what a change costs, measured side by side",
    )
    parser.add_argument(
        "--servers",
        help="only these rows, e.g. bare,listener,baseline (the targets are then not judged)",
    )
    parser.add_argument(
        "--wal-duration", type=float, default=60.0, help="seconds of load for the WAL peak"
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install wrk` (Debian package wrk)", file=sys.stderr)
        return 2

    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        env = {
            **os.environ,
            "AVASAM_HOME": str(folder / "home"),
            "PYTHONPATH": str(HERE.parent),  # this checkout's code (--baseline: the other's)
            "AVASAM_VERIFICATION_TOKEN": TOKEN,
            "AVASAM_INSPECTOR_TOKEN": PAGE_TOKEN,
        }
        if not options.skip_throughput:
            failed |= throughput(folder, env, options)
        if not options.skip_memory:
            early, late = memory_growth(folder, env, options.connections)
            growth = late - early
            failed |= growth > 20
            print(
                f"resident memory: {early:.1f} MB after 1,000 requests, {late:.1f} MB after "
                f"100,000: +{growth:.1f} MB (target <= 20) {'PASS' if growth <= 20 else 'FAIL'}"
            )
        if not options.skip_wal:
            peak, idle = wal_peak(folder, env, options)
            failed |= peak > 64
            print(
                f"WAL file over {options.wal_duration:.0f} s of 1-item load: peak {peak:.1f} MB "
                f"(target <= 64) {'PASS' if peak <= 64 else 'FAIL'}; {idle:.1f} MB when idle"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
