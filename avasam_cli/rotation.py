"""Rolling secrets: the verification token and the forward secret, each with a grace period
in which the previous one still counts, and following a profile while a long run goes on.

A rotation keeps the old value as the profile's `previous_*` setting until a time
(`*_until`, ISO 8601 in UTC), so whichever side changes first (Avasam's webhook
settings or our profile; the shop's secret or ours) nothing is refused meanwhile:
the model is Stripe's rolling webhook secrets.  Standard library only.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_GRACE = 24 * 3600  # seconds the previous value still counts after a rotation
FORWARD_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix; the Standard Webhooks spelling of a signing secret
# The profile settings of each rotating secret: (current, previous, previous counts until).
VERIFICATION_TOKEN = (
    "verification_token",
    "previous_verification_token",
    "previous_token_until",
)
FORWARD_SECRET = ("forward_secret", "previous_forward_secret", "previous_forward_secret_until")


@dataclass(frozen=True, slots=True)
class Rolling:
    """A secret in force now, and the one it replaced while that still counts."""

    current: str
    previous: str | None = None
    previous_until: float | None = None  # Unix time; None: no previous

    def previous_counts(self, now: float) -> bool:
        return self.previous is not None and (
            self.previous_until is not None and now <= self.previous_until
        )

    def in_force(self, now: float) -> list[str]:
        """The current value, then the previous one while it counts."""
        if self.previous is not None and self.previous_counts(now):
            return [self.current, self.previous]
        return [self.current]


def until_text(moment: float) -> str:
    """A Unix time as the profile keeps it and messages show it."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def parse_until(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def rolling_from(values: Mapping[str, str | None], names: tuple[str, str, str]) -> Rolling | None:
    """The rolling secret a profile's (or a run's) settings describe; None without one."""
    current_name, previous_name, until_name = names
    current = values.get(current_name)
    if not current:
        return None
    previous = values.get(previous_name) or None
    until = parse_until(values.get(until_name)) if previous else None
    return Rolling(current, previous if until is not None else None, until)


def rotated(
    old: str, new: str, grace: float, now: float, names: tuple[str, str, str]
) -> dict[str, str]:
    """The profile updates of a rotation from `old` to `new`, the old one counting for
    `grace` seconds more (0: it ends now, and is only kept to say why it is refused)."""
    current_name, previous_name, until_name = names
    return {current_name: new, previous_name: old, until_name: until_text(now + grace)}


def new_forward_secret() -> str:
    """`whsec_` and the base64 of 32 random bytes, as Standard Webhooks libraries take it."""
    return FORWARD_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def forward_secret_problem(secret: str) -> str | None:
    """Why `secret` is not a usable Standard Webhooks secret, or None."""
    body = secret.removeprefix(FORWARD_SECRET_PREFIX)
    try:
        key = base64.b64decode(body, validate=True)
    except ValueError:
        return "it must be whsec_ followed by base64"
    return None if len(key) >= 24 else "its key must be at least 24 bytes"


def profile_reader(profile: str, names: tuple[str, str, str]) -> Callable[[Path], Rolling | None]:
    """How a `ProfileWatch` reads the rolling secret `names` of `profile` from the file."""

    def read(path: Path) -> Rolling | None:
        from avasam_cli.config import ConfigFile

        return rolling_from(ConfigFile(path).profile(profile), names)

    return read


class ProfileWatch:
    """Follows one profile of the config file for a long run (the receiver, a runner): each
    `changed()` looks at the file at most every `interval` seconds and returns the new
    rolling secret when what `read` derives from the file has changed, else None."""

    def __init__(
        self,
        path: Path,
        read: Callable[[Path], Rolling | None],
        current: Rolling | None,
        interval: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.path = path
        self.read = read
        self.current = current
        self.interval = interval
        self.clock = clock or time.monotonic
        self._stamp = self._file_stamp()
        self._looked = self.clock()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    def changed(self) -> Rolling | None:
        now = self.clock()
        if now - self._looked < self.interval:
            return None
        self._looked = now
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            found = self.read(self.path)
        except Exception:  # a file half-written or broken: keep what we have
            return None
        if found is None or found == self.current:
            return None
        self.current = found
        return found


def followed(
    path: Path, profile: str, names: tuple[str, str, str], current: Rolling | None
) -> Callable[[], Rolling | None]:
    """The rolling secret `names` of `profile` as it is now: each call looks at the file
    at most every second (a `ProfileWatch`), for runs that use it now and then."""
    watch = ProfileWatch(path, profile_reader(profile, names), current)

    def now() -> Rolling | None:
        watch.changed()
        return watch.current

    return now
