"""Delivery throughput: `avasam deliveries run` draining pending forward jobs, against a
plain loop of httpx.AsyncClient posts of the same bodies to the same app.

Usage: python bench/deliveries.py [--jobs 5000] [--rounds 3] [--baseline DIR]

The target is bench/bare_app.py (uvicorn, one process).  Each round makes a fresh
store of JOBS verified stock updates with a forward job each, then times, in turn:
the plain loop (in this process, one post after the other, as ordered delivery must
go), and the `avasam deliveries run` command (a new process: its start-up is
counted against it).  Medians of the rounds, with their range; target: deliveries
>= 0.6x the loop.  `--baseline DIR` also runs another checkout's `deliveries run` in
every round, its order against this one's alternating, and reports this/baseline per
round: what a change to the runner costs, measured side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from avasam_cli.store.base import open_store
from avasam_cli.store.events import Event
from avasam_cli.store.jobs import Plan

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from listener import free_port, running  # noqa: E402

TARGET_RATIO = 0.6
HEADERS = [["content-type", "application/json"], ["user-agent", "Avasam-Webhooks"]]


def bodies(count: int, prefix: str) -> list[bytes]:
    item = {"sku": "AVS-1", "quantity": 7, "updatedOn": "2026-11-28T10:00:00.0000000+00:00"}
    return [
        json.dumps({"requestId": f"{prefix}-{n}", "token": "t", "data": [item]}).encode()
        for n in range(count)
    ]


def fill_store(path: Path, payloads: list[bytes], url: str) -> None:
    events = [
        Event(
            received_at="2026-11-28T10:00:00.000+00:00",
            kind="stock",
            status="verified",
            http_status=200,
            headers_json=json.dumps(HEADERS),
            body=body,
            request_id=json.loads(body)["requestId"],
            item_count=1,
        )
        for body in payloads
    ]
    with open_store(path) as store:
        store.insert(events, Plan({"stock": url}))


async def plain_loop(url: str, payloads: list[bytes]) -> None:
    headers = dict(HEADERS)
    async with httpx.AsyncClient() as client:
        for body in payloads:
            response = await client.post(url, content=body, headers=headers)
            response.raise_for_status()


def timed_run(store: Path, payloads: list[bytes], url: str, env: dict[str, str]) -> float:
    """`avasam deliveries run` over a fresh store of `payloads`: jobs per second."""
    store.unlink(missing_ok=True)
    fill_store(store, payloads, url)
    start = time.perf_counter()
    # In the scratch folder: `python -m` puts its folder first on the path, and from a
    # checkout that would run the checkout's code whatever PYTHONPATH (--baseline) says.
    subprocess.run(
        [sys.executable, "-m", "avasam_cli", "deliveries", "run"],
        env=env, check=True, capture_output=True, cwd=store.parent.parent,
    )  # fmt: skip
    rate = len(payloads) / (time.perf_counter() - start)
    with open_store(store, read_only=True) as check:
        counts = check.delivery_counts()
    if counts != {"delivered": len(payloads)}:
        raise SystemExit(f"not all delivered: {counts}")
    return rate


def spread(rates: list[float]) -> str:
    return f"{min(rates):.0f}-{max(rates):.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another checkout whose runner to run beside")
    options = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/stock"
    loop_rates: list[float] = []
    runs: dict[str, list[float]] = {"this": [], "baseline": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        env = {**os.environ, "AVASAM_HOME": str(folder / "home"), "NO_COLOR": "1",
               "PYTHONPATH": str(HERE.parent)}  # fmt: skip
        envs = {"this": env}
        if options.baseline:
            envs["baseline"] = {**env, "PYTHONPATH": str(Path(options.baseline).resolve())}
        store = folder / "home" / "data" / "events.sqlite3"
        with running([sys.executable, str(HERE / "bare_app.py"), str(port)], port, env,
                     folder / "bare.out"):  # fmt: skip
            for round_ in range(options.rounds):
                payloads = bodies(options.jobs, f"round-{round_}")
                start = time.perf_counter()
                asyncio.run(plain_loop(url, payloads))
                loop_rates.append(options.jobs / (time.perf_counter() - start))
                order = list(envs) if round_ % 2 == 0 else list(reversed(envs))
                for name in order:
                    runs[name].append(timed_run(store, payloads, url, envs[name]))
    loop_rate, run_rate = statistics.median(loop_rates), statistics.median(runs["this"])
    ratio = run_rate / loop_rate
    print(f"medians of {options.rounds} rounds of {options.jobs} jobs (range)")
    print(f"plain httpx.AsyncClient loop   {loop_rate:8.0f} posts/s  {spread(loop_rates)}")
    print(f"avasam deliveries run          {run_rate:8.0f} jobs/s   {spread(runs['this'])}"
          " (start-up included)")  # fmt: skip
    if options.baseline:
        base = runs["baseline"]
        print(f"baseline deliveries run        {statistics.median(base):8.0f} jobs/s   "
              f"{spread(base)}")  # fmt: skip
        pairs = [mine / theirs for mine, theirs in zip(runs["this"], base, strict=True)]
        print(f"this/baseline: {statistics.median(pairs):.2f} "
              f"(per round {min(pairs):.2f}-{max(pairs):.2f})")  # fmt: skip
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"ratio deliveries/loop: {ratio:.2f} (target >= {TARGET_RATIO}) {verdict}")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
