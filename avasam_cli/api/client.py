"""The Avasam API client: access tokens (cached), retries, and errors a seller understands.

Decisions where Avasam's documentation is silent are the constants below
(how the token is sent, the acknowledgement's path and body), each in one place.
It knows no terminal and no profiles: the CLI builds it (`cli._context`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from avasam_cli import __version__
from avasam_cli.errors import ApiError, CredentialsRefused, NetworkError
from avasam_cli.paths import is_too_open, write_secret_file
from avasam_cli.text import excerpt

TOKEN_PATH = "/api/auth/request-token"  # noqa: S105 - a path, not a password
ACKNOWLEDGE_PATH = "/api-seller/Product/AcknowledgeStockUpdate"
USER_AGENT = f"avasam-cli/{__version__}"
# Connection failures worth another try: refused or reset, timed out, closed unanswered.
RETRIED_ERRORS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
TRIES = 3
BACKOFF_SECONDS = 0.5
MAX_RETRY_AFTER = 30.0
# A cached access token is renewed this long before Avasam says it expires.
EXPIRY_MARGIN_SECONDS = 60.0
REFUSED_CREDENTIALS = (
    "the consumer key or secret key was refused: check them in Avasam under "
    "Settings > User management > API keys"
)


def authorization(access_token: str) -> dict[str, str]:
    """How the access token is sent (our decision: a Bearer token)."""
    return {"Authorization": f"Bearer {access_token}"}


def acknowledge_body(request_id: str) -> dict[str, str]:
    """The acknowledgement's body (our decision: the webhook's request id)."""
    return {"requestId": request_id}


def failure_for(error: Exception | httpx.Response, url: str) -> ApiError | NetworkError:
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
        shown = excerpt(error.text, 200)
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


def parse_expiry(text: str) -> float:
    """Avasam's `2021-12-22T17:36:19.8066912+00:00` as a Unix time."""
    return float(datetime.fromisoformat(text).timestamp())


class TokenCache:
    """Access tokens per profile and base URL, in a 0600 JSON file in the cache folder."""

    def __init__(self, path: Path, warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.warn = warn
        self._warned = False

    def _read(self) -> dict[str, Any]:
        if self.warn is not None and not self._warned and is_too_open(self.path):
            self._warned = True
            self.warn(
                f"token cache {self.path} is readable by other users; it will be "
                "tightened to 0600 on the next write"
            )
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return document if isinstance(document, dict) else {}

    def get(self, key: str) -> tuple[str, float] | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        token, expires = entry.get("access_token"), entry.get("expires_at")
        if not isinstance(token, str) or not isinstance(expires, int | float):
            return None
        return token, float(expires)

    def put(self, key: str, token: str, expires_at: float) -> None:
        document = self._read()
        document[key] = {"access_token": token, "expires_at": expires_at}
        write_secret_file(self.path, json.dumps(document, indent=2))

    def clear(self, key: str) -> None:
        document = self._read()
        if document.pop(key, None) is not None:
            write_secret_file(self.path, json.dumps(document, indent=2))


class AvasamClient:
    """Calls the seller API with a cached access token, retries and mapped errors."""

    def __init__(
        self,
        base_url: str,
        consumer_key: str,
        secret_key: str,
        cache: TokenCache,
        cache_key: str,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.consumer_key = consumer_key
        self.secret_key = secret_key
        self.cache = cache
        self.cache_key = cache_key
        self.clock = clock
        self.sleep = sleep
        self.http = httpx.Client(
            transport=transport, timeout=TIMEOUT, headers={"User-Agent": USER_AGENT}
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AvasamClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> httpx.Response:
        """POST with retries on connection errors, 5xx and 429 (honouring Retry-After)."""
        url = self.base_url + path
        for attempt in range(1, TRIES + 1):
            try:
                response = self.http.post(url, json=dict(body), headers=dict(headers))
            except httpx.TransportError as error:
                if attempt == TRIES or not isinstance(error, RETRIED_ERRORS):
                    raise failure_for(error, url) from None
                self.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
                continue
            if (response.status_code >= 500 or response.status_code == 429) and attempt < TRIES:
                self.sleep(self._retry_delay(response, attempt))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _retry_delay(response: httpx.Response, attempt: int) -> float:
        retry_after = response.headers.get("retry-after", "")
        if retry_after.strip().isdigit():
            return min(float(retry_after), MAX_RETRY_AFTER)
        return float(BACKOFF_SECONDS * 2 ** (attempt - 1))

    def access_token(self, renew: bool = False) -> str:
        cached = None if renew else self.cache.get(self.cache_key)
        if cached is not None and cached[1] - EXPIRY_MARGIN_SECONDS > self.clock():
            return cached[0]
        body = {"consumer_key": self.consumer_key, "secret_key": self.secret_key}
        response = self._send(TOKEN_PATH, body, {})
        if not response.is_success:
            raise failure_for(response, self.base_url + TOKEN_PATH)
        try:
            answer = response.json()
            token, expires_at = answer["access_token"], parse_expiry(answer["expires_at"])
        except (ValueError, KeyError, TypeError):
            shown = excerpt(response.text, 200)
            raise ApiError(
                f"unexpected answer from {self.base_url + TOKEN_PATH}: {shown}",
                response.status_code,
            ) from None
        self.cache.put(self.cache_key, token, expires_at)
        return str(token)

    def call(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """An authenticated call; a 401 renews the token once and tries again."""
        response = self._send(path, body, authorization(self.access_token()))
        if response.status_code == 401:
            self.cache.clear(self.cache_key)
            response = self._send(path, body, authorization(self.access_token(renew=True)))
        if not response.is_success:
            raise failure_for(response, self.base_url + path)
        return response

    def acknowledge(self, request_id: str) -> str:
        """Acknowledge one stock update; returns a short description of Avasam's answer."""
        response = self.call(ACKNOWLEDGE_PATH, acknowledge_body(request_id))
        return f"{response.status_code} {excerpt(response.text, 80)}".strip()
