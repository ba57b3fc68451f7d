"""A real PostgreSQL server for the tests and the benchmarks: initdb and pg_ctl in a
temporary folder, on a free loopback port, as a non-root user (initdb refuses root:
`runuser -u postgres` when running as root)."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

REQUIRED_ENV = "AVASAM_TEST_REQUIRE_POSTGRES"  # set by .ci/run: a missing server fails
MISSING = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
_schemas = itertools.count()


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, url: str, start: list[str], stop: list[str]) -> None:
        self.url = url  # postgresql://postgres@127.0.0.1:PORT/postgres
        self._start, self._stop = start, stop
        self._schemas: dict[str, str] = {}  # fresh_schema's URLs -> their schemas

    def stop(self) -> None:
        """Stop the server (fast: its sessions are cut off), as a crash or failover would."""
        subprocess.run(self._stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        subprocess.run(self._start, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)

    def fresh_schema(self) -> str:
        """A URL whose tables live in a new, empty schema: one test's own store."""
        import psycopg

        name = f"t{os.getpid()}_{next(_schemas)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        url = f"{self.url}?options={quote(f'-c search_path={name}')}"
        self._schemas[url] = name
        return url

    def drop_schema(self, url: str) -> None:
        """Drop the schema of a `fresh_schema` URL, then write out what the server still
        holds in memory (CHECKPOINT), so that nothing of this store's work is left for the
        server to do later: autovacuum reading its tables, a checkpoint writing them."""
        import psycopg

        name = self._schemas.pop(url)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            conn.execute("CHECKPOINT")


@contextlib.contextmanager
def running_server(durable: bool = False) -> Iterator[Server]:
    """A server for as long as the block runs.  Not `durable`: no fsync (tests); durable:
    PostgreSQL's defaults (benchmarks).  RuntimeError when it cannot start."""
    folder_of_binaries = binaries()
    if folder_of_binaries is None:
        raise RuntimeError(MISSING)
    folder = Path(tempfile.mkdtemp(prefix="avasam-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data = folder / "data"
    port = _free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c full_page_writes=off"
    pg_ctl = str(folder_of_binaries / "pg_ctl")
    start = _as_server_user(
        [pg_ctl, "-D", str(data), "-o", options, "-w", "-s", "-l", str(folder / "log"), "start"]
    )
    stop = _as_server_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "-s", "stop"])
    try:
        for command in (
            _as_server_user(
                [str(folder_of_binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                 "trust", "--no-sync", "-E", "UTF8", "--locale", "C"]
            ),
            start,
        ):  # fmt: skip
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    except subprocess.CalledProcessError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(
            f"PostgreSQL did not start: {error.stderr.decode(errors='replace')}"
        ) from None
    try:
        yield Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", start, stop)
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-s", "stop"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
