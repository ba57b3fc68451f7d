"""Every test runs with its own AVASAM_HOME, no AVASAM_* from the outside, a fixed width."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from avasam_cli.cli import app
from tests.standin import Avasam, running_avasam


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("AVASAM_"):
            monkeypatch.delenv(name)
    home = tmp_path / "avasam-home"
    monkeypatch.setenv("AVASAM_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    from avasam_cli.paths import choose_store

    choose_store(None)  # a --store chosen by an earlier in-process run must not leak
    from tests.helpers import ListenProcess, stop_leftovers

    before = len(ListenProcess.started)  # a module's shared listeners are not this test's
    yield home
    choose_store(None)
    stop_leftovers(before)


class Cli:
    """Runs `avasam` in-process, with stdout and stderr kept apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(app, list(args), input=input, prog_name="avasam")


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def avasam(monkeypatch: pytest.MonkeyPatch) -> Iterator[Avasam]:
    """A real local stand-in for the Avasam API, with the environment pointing at it."""
    # Retries are exercised, not waited for: the waits themselves have unit tests.
    monkeypatch.setattr("avasam_cli.api.client.BACKOFF_SECONDS", 0.0)
    monkeypatch.setattr("avasam_cli.api.client.MAX_RETRY_AFTER", 0.0)
    with running_avasam() as state:
        monkeypatch.setenv("AVASAM_BASE_URL", state.url)
        monkeypatch.setenv("AVASAM_CONSUMER_KEY", state.consumer_key)
        monkeypatch.setenv("AVASAM_SECRET_KEY", state.secret_key)
        yield state


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One real PostgreSQL server for the session (skipped where it is not installed,
    unless .ci/run asks for it)."""
    from tests.postgres import MISSING, REQUIRED_ENV, binaries, running_server

    if binaries() is None:
        if os.environ.get(REQUIRED_ENV):
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    with running_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Each store backend in turn: a SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return tmp_path / "s.sqlite3"
    from avasam_cli.paths import DatabaseUrl

    server = request.getfixturevalue("postgres_server")
    return DatabaseUrl(server.fresh_schema())


@pytest.fixture
def postgres_store(postgres_server: Any) -> Any:
    """The URL of a fresh PostgreSQL store (its own schema), as --store takes it."""
    return postgres_server.fresh_schema()
