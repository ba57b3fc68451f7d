"""Where avasam keeps its files, and how files holding secrets are written.

Config lives in the platform's user config folder, the API token cache in the
user cache folder and the event store in the user data folder.  `AVASAM_HOME`
relocates all three into one folder (tests, CI, sandboxes).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from avasam_cli.errors import ConfigError

APP_NAME = "avasam"
HOME_ENV = "AVASAM_HOME"
PRIVATE_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600


@dataclass(frozen=True)
class DatabaseUrl:
    """A store on a PostgreSQL server: its URL, shown (str) without its password."""

    url: str

    def __str__(self) -> str:
        from avasam_cli.text import without_password

        return without_password(self.url)

    def exists(self) -> bool:
        return True  # the server's database: it is created by whoever runs the server


# Where the events live: a SQLite file, or a PostgreSQL database.
StoreLocation = Path | DatabaseUrl


def spelled_out(location: StoreLocation) -> str:
    """`location` as --store takes it, a password included: for a child process's
    environment (private to our user, unlike its argv), never to show."""
    return location.url if isinstance(location, DatabaseUrl) else str(location)


@dataclass(frozen=True)
class Locations:
    config_dir: Path
    cache_dir: Path
    data_dir: Path
    store: StoreLocation | None = None  # chosen with --store, AVASAM_STORE or the profile

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def store_file(self) -> StoreLocation:
        return self.store or self.data_dir / "events.sqlite3"


# The store this run chose (root --store, AVASAM_STORE, or the profile): see choose_store.
_chosen_store: list[StoreLocation | None] = [None]


def choose_store(path: StoreLocation | None) -> None:
    """Set (or clear) the event store for this run; the CLI's root does, once."""
    _chosen_store[0] = path


def locations() -> Locations:
    home = os.environ.get(HOME_ENV)
    store = _chosen_store[0]
    if home:
        base = Path(home).expanduser()
        return Locations(base / "config", base / "cache", base / "data", store)
    import platformdirs

    return Locations(
        Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        store,
    )


def make_missing_dirs(path: Path) -> Path:
    """Create `path` and every missing folder above it, each readable by the owner only.
    Folders that exist are left exactly as they are: they may be shared (/tmp) or belong
    to another user."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR_MODE)
    return path


def ensure_private_dir(path: Path) -> Path:
    """Create `path` readable by the owner only, and every missing folder above it too
    (AVASAM_HOME among them); tighten `path` itself, avasam's own folder for secrets.  A
    `path` that is a symbolic link is refused: its mode would be changed on the link's
    target, which may be shared."""
    if path.is_symlink():
        raise ConfigError(
            f"{path} is a symbolic link; avasam keeps secrets there and will not change the "
            "permissions of a folder it does not own: point AVASAM_HOME at a real folder, "
            "or replace the link with a folder"
        )
    make_missing_dirs(path)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def create_private_file(path: Path) -> bool:
    """Create `path`, empty, at mode 0600 from its first moment (SQLite gives a store's
    -wal and -shm files the mode of the store); False when it exists already."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE))
    except FileExistsError:
        return False
    return True


def is_too_open(path: Path) -> bool:
    """True when a secret file can be read or written by group or others."""
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)
    except FileNotFoundError:
        return False


def write_secret_file(path: Path, content: str) -> None:
    """Write atomically at mode 0600: a reader sees the old file or the new, never half."""
    ensure_private_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if sys.platform != "win32":  # there the folder's ACL keeps it private
            os.fchmod(fd, SECRET_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
