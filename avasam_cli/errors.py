"""One error hierarchy for the whole tool, and the exit-code table.

Every expected failure is raised as an `AvasamError`; the CLI boundary
(`avasam_cli.cli.GuardedGroup`) turns it into one red line on stderr and its exit code.
No expected failure ever reaches the user as a traceback.
"""

from __future__ import annotations

# The exit-code table, written down once (the README repeats it and a test asserts it).
EXIT_OK = 0
EXIT_FAILED = 1  # the operation was attempted and failed (network, refused, invalid payload)
EXIT_USAGE = 2  # the command cannot run as asked: bad option, missing or broken configuration


class AvasamError(Exception):
    """Base of every error the tool expects; `str(error)` is the message shown."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(AvasamError):
    """The command line asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class ConfigError(AvasamError):
    """Configuration is missing, malformed or unreadable."""

    exit_code = EXIT_USAGE


class OperationFailed(AvasamError):
    """The operation ran and did not succeed."""

    exit_code = EXIT_FAILED


class AlreadyReported(OperationFailed):
    """The failure was printed already (a verdict on stdout): exit 1, nothing more to say."""

    def __init__(self) -> None:
        super().__init__("")


class StoreError(OperationFailed):
    """The event store could not be opened, read or written."""


class StoreUnavailable(StoreError):
    """The store cannot be used at all as configured: its server refuses or cannot be
    reached, or its driver is not installed (exit 2: fix the configuration)."""

    exit_code = EXIT_USAGE


class NetworkError(OperationFailed):
    """A remote host could not be reached, or did not answer in time."""


class ApiError(OperationFailed):
    """The Avasam API (or a stand-in) answered with an error."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class CredentialsRefused(ApiError):
    """Avasam refused the consumer key or the secret key: no later call can succeed."""
