"""Every HTTP or network failure of the API client becomes one of our errors, here and
only here, with no secret in its words."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from avasam_cli.api.endpoints import TOKEN_PATH
from avasam_cli.api.tokens import AUTH_SCHEME_LABELS
from avasam_cli.errors import ApiError, CredentialsRefused, NetworkError
from avasam_cli.text import excerpt

REFUSED_CREDENTIALS = (
    "the consumer key or secret key was refused: check them in Avasam under "
    "Settings > User management > API keys"
)


def refused_both_ways(status: int, url: str) -> ApiError:
    return ApiError(
        f"Avasam refused a new access token in both forms ({AUTH_SCHEME_LABELS['raw']}, "
        f"and {AUTH_SCHEME_LABELS['bearer']}) for {url} ({status}): check the API user's access "
        "rights in Avasam; if you know the form your account expects, set it with "
        "`avasam configure --auth-scheme raw` (or bearer)",
        status,
    )


def scrubbed(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret in it (keys, access tokens) replaced by ****: answers from
    elsewhere may echo what we sent, and excerpts are printed and stored."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "****")
    return text


def failure_for(
    error: Exception | httpx.Response, url: str, secrets: Iterable[str | None] = ()
) -> ApiError | NetworkError:
    """Every HTTP or network failure becomes one of our errors, here and only here."""
    if isinstance(error, httpx.Response):
        status = error.status_code
        if status in (401, 403) and error.request.url.path.endswith(TOKEN_PATH):
            return CredentialsRefused(REFUSED_CREDENTIALS, status)
        if status in (401, 403):
            return ApiError(
                f"Avasam refused the request to {url} ({status}): the API user may lack the "
                "right; check its access rights in Avasam",
                status,
            )
        shown = excerpt(scrubbed(error.text, secrets), 200)
        return ApiError(f"unexpected answer from {url}: {status} {shown}", status)
    if isinstance(error, httpx.TimeoutException):
        return NetworkError(f"{url} did not answer in time: try again, or check the base URL")
    if isinstance(error, httpx.RemoteProtocolError):
        return NetworkError(f"{url} closed the connection without an answer: try again later")
    if isinstance(error, httpx.ConnectError):
        return NetworkError(
            f"cannot reach {url}: check your connection and the base URL (`avasam config show`)"
        )
    return NetworkError(f"the request to {url} failed: {type(error).__name__}")
