"""The Avasam API client: its transport (timeouts, retries, size caps), rate-limit waits,
and the calls a seller makes.

Decisions where Avasam's documentation is silent are each in one place: how the token
is sent (`tokens`), the acknowledgement's path and body and the lists' paging
(`endpoints`), what a failure means (`failures`).  It knows no terminal and no
profiles: the CLI builds it (`cli._context`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

import httpx

from avasam_cli import __version__
from avasam_cli.api.endpoints import (
    ACKNOWLEDGE_PATH,
    FIRST_PAGE,
    PRODUCT_LIST_PATH,
    STOCK_LIST_PATH,
    TOKEN_PATH,
    Page,
    ProductRow,
    StockRow,
    acknowledge_body,
    product_page,
    stock_page,
)
from avasam_cli.api.failures import REFUSED_CREDENTIALS, failure_for, refused_both_ways, scrubbed
from avasam_cli.api.tokens import (
    AUTH_SCHEME_LABELS,
    AUTH_SCHEMES,
    AUTO,
    EXPIRY_MARGIN_SECONDS,
    CachedToken,
    TokenCache,
    authorization,
    cache_key_for,
    is_sendable_token,
    other_scheme,
    parse_expiry,
)
from avasam_cli.errors import ApiError
from avasam_cli.text import excerpt, without_password

# Importers of the client find these here too.
__all__ = [
    "ACKNOWLEDGE_PATH", "AUTH_SCHEMES", "AUTH_SCHEME_LABELS", "AUTO", "CUT", "FIRST_PAGE",
    "MAX_ANSWER_BYTES", "PRODUCT_LIST_PATH", "REFUSED_CREDENTIALS", "STOCK_LIST_PATH",
    "TOKEN_PATH", "AvasamClient", "CachedToken", "Page", "ProductRow", "StockRow",
    "TokenCache", "WaitBudget", "WaitBudgetSpent", "acknowledge_body", "authorization",
    "cache_key_for", "failure_for", "is_sendable_token", "parse_expiry", "product_page",
    "refused_both_ways", "scrubbed", "stock_page",
]  # fmt: skip

USER_AGENT = f"avasam-cli/{__version__}"
# Connection failures worth another try: refused or reset, timed out, closed unanswered.
RETRIED_ERRORS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
TIMEOUT = httpx.Timeout(15.0, connect=5.0)  # for each connect and each read
# The whole of one request, answer included: a server that trickles bytes cannot hold a
# command longer.  With TRIES and the back-off, a call takes at most about 3 x 30 s + 2 s.
REQUEST_DEADLINE = 30.0
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # more is cut off: no answer we read is larger
CUT = "avasam_cut"  # in a response's extensions: True when MAX_ANSWER_BYTES cut it
TRIES = 3
BACKOFF_SECONDS = 0.5
MAX_RETRY_AFTER = 30.0


_SECONDS = re.compile(r"[0-9]{1,9}")
_FRAMING_HEADERS = (b"content-encoding", b"content-length", b"transfer-encoding")


class WaitBudgetSpent(Exception):
    """The next retry would wait past the budget a long run was given."""


class WaitBudget:
    """A `sleep` for the client that waits at most `seconds` in total over many calls.

    Each call already bounds its own retries; a run of thousands of calls against a
    rate-limited API also needs a bound on the whole.  `on_wait` hears each wait first.
    """

    pause = staticmethod(time.sleep)

    def __init__(self, seconds: float, on_wait: Callable[[float], None] = lambda _: None) -> None:
        self.left = seconds
        self.on_wait = on_wait

    def sleep(self, seconds: float) -> None:
        if seconds > self.left:
            raise WaitBudgetSpent
        self.left -= seconds
        self.on_wait(seconds)
        self.pause(seconds)


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
        auth_scheme: str = AUTO,
        cache_prefix: str | None = None,
    ) -> None:
        if auth_scheme not in (AUTO, *AUTH_SCHEMES):
            raise ValueError(f"auth_scheme must be {AUTO} or one of {AUTH_SCHEMES}")
        self.base_url = base_url.rstrip("/")
        self.consumer_key = consumer_key
        self.secret_key = secret_key
        self.cache = cache
        self.cache_key = cache_key
        self.cache_prefix = cache_prefix  # entries under it are replaced by a new token
        self.clock = clock
        self.sleep = sleep
        self.auth_scheme = auth_scheme
        self.scheme_used: str | None = None  # the form of the last accepted call
        self._tokens: list[str] = []  # tokens this client used or was issued: never printed
        self._transport = transport
        self.http = self._new_http()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AvasamClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        sink: BinaryIO | None = None,
    ) -> httpx.Response:
        """One request, with retries on connection errors, 5xx and 429 (Retry-After)."""
        url = self.base_url + path
        shown = self.shown_url(path)
        for attempt in range(1, TRIES + 1):
            try:
                response = self._exchange(method, url, body, headers, params, sink)
            except httpx.TransportError as error:
                if attempt == TRIES or not isinstance(error, RETRIED_ERRORS):
                    raise failure_for(error, shown) from None
                self.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
                continue
            if (response.status_code >= 500 or response.status_code == 429) and attempt < TRIES:
                self.sleep(self._retry_delay(response, attempt))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(
        self,
        method: str,
        url: str,
        body: Any,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        sink: BinaryIO | None = None,
    ) -> httpx.Response:
        """One request within REQUEST_DEADLINE, its answer read up to MAX_ANSWER_BYTES (an
        answer cut there says so: `CUT` in its extensions), or written whole to `sink`.

        A timer closes the connection when the deadline passes, wherever the exchange is
        (even in the middle of a head that arrives one byte at a time).
        """
        import threading

        if self.http.is_closed:  # closed by an earlier deadline
            self.http = self._new_http()
        aborted = threading.Event()

        def abort() -> None:
            aborted.set()
            self.http.close()

        timer = threading.Timer(REQUEST_DEADLINE, abort)
        timer.daemon = True
        timer.start()
        try:
            with self.http.stream(
                method, url, json=body, headers=dict(headers), params=dict(params or {}) or None
            ) as streamed:
                content = bytearray()
                cut = False
                if sink is not None:  # a retry starts the file afresh
                    sink.seek(0)
                    sink.truncate()
                for chunk in streamed.iter_bytes():
                    if sink is not None:
                        sink.write(chunk)
                        continue
                    content += chunk
                    if len(content) > MAX_ANSWER_BYTES:
                        del content[MAX_ANSWER_BYTES:]
                        cut = True
                        break
                kept = [  # the content is decoded and complete already
                    (name, value)
                    for name, value in streamed.headers.raw
                    if name.lower() not in _FRAMING_HEADERS
                ]
                return httpx.Response(
                    streamed.status_code,
                    headers=kept,
                    content=bytes(content),
                    request=streamed.request,
                    extensions={CUT: cut},
                )
        except (httpx.HTTPError, RuntimeError) as error:
            if aborted.is_set():
                raise httpx.ReadTimeout(
                    f"no complete answer within {REQUEST_DEADLINE:g} s"
                ) from error
            raise
        finally:
            timer.cancel()

    def _new_http(self) -> httpx.Client:
        return httpx.Client(
            transport=self._transport, timeout=TIMEOUT, headers={"User-Agent": USER_AGENT}
        )

    @staticmethod
    def _retry_delay(response: httpx.Response, attempt: int) -> float:
        retry_after = response.headers.get("retry-after", "").strip()
        if _SECONDS.fullmatch(retry_after):  # ASCII digits only: `isdigit` accepts "²"
            return min(float(retry_after), MAX_RETRY_AFTER)
        return float(BACKOFF_SECONDS * 2 ** (attempt - 1))

    def token_entry(self, renew: bool = False) -> tuple[CachedToken, bool]:
        """The access token (cached, else issued now) and whether it was issued now."""
        cached = None if renew else self.cache.get(self.cache_key)
        if cached is not None and cached.expires_at - EXPIRY_MARGIN_SECONDS > self.clock():
            self._tokens.append(cached.access_token)
            return cached, False
        body = {"consumer_key": self.consumer_key, "secret_key": self.secret_key}
        response = self._send("POST", TOKEN_PATH, body, {})
        if not response.is_success:
            raise failure_for(response, self.shown_url(TOKEN_PATH), self.secrets())
        try:
            answer = response.json()
            token, expires_at = answer["access_token"], parse_expiry(answer["expires_at"])
        except (ValueError, KeyError, TypeError, OverflowError):
            # Never the answer itself in the message: it may hold the access token.
            raise ApiError(
                f"unexpected answer from {self.shown_url(TOKEN_PATH)}: no access_token and "
                "expires_at in the expected form (see the README's decisions)",
                response.status_code,
            ) from None
        if isinstance(token, str):
            self._tokens.append(token)
        if not is_sendable_token(token):
            raise ApiError(
                f"{self.shown_url(TOKEN_PATH)} answered with an access token that cannot be "
                "sent in a header (empty, spaces, line breaks or non-ASCII characters)",
                response.status_code,
            )
        customer_id = answer.get("customerId")
        entry = CachedToken(
            token,
            expires_at,
            # A new token keeps the form the old one was accepted in.
            cached.scheme if cached is not None else None,
            None if customer_id is None else str(customer_id),
            cached.scheme_learned_at if cached is not None else None,
        )
        self.cache.put(self.cache_key, entry, replaces=self.cache_prefix)
        return entry, True

    def shown_url(self, path: str) -> str:
        """The URL of `path` as messages show it (no password from the base URL)."""
        return without_password(self.base_url + path)

    def secrets(self) -> list[str]:
        """What must never be printed or stored: the keys and every token this client held."""
        return [self.consumer_key, self.secret_key, *self._tokens]

    def scrub(self, text: str) -> str:
        return scrubbed(text, self.secrets())

    def access_token(self, renew: bool = False) -> str:
        return self.token_entry(renew)[0].access_token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        sink: BinaryIO | None = None,
    ) -> httpx.Response:
        """An authenticated call, whatever Avasam answers (token refusals aside); with a
        `sink`, the answer's body is written there whole instead of kept.

        A refused token is renewed once; under `auto`, a refused new token is tried in
        the other form once, and the form accepted is remembered with the token.
        """
        entry, fresh = self.token_entry()
        scheme = self.auth_scheme if self.auth_scheme != AUTO else entry.scheme or AUTH_SCHEMES[0]

        def send(token: CachedToken, form: str) -> httpx.Response:
            auth = authorization(token.access_token, form)
            return self._send(method, path, body, auth, params, sink)

        refused = (401,) if self.auth_scheme != AUTO else (401, 403)
        response = send(entry, scheme)
        if response.status_code in refused and not fresh:
            self.cache.clear(self.cache_key)
            entry, fresh = self.token_entry(renew=True)
            response = send(entry, scheme)
        if response.status_code in refused and self.auth_scheme == AUTO:
            other = other_scheme(scheme)
            retried = send(entry, other)
            if retried.status_code in refused:
                raise refused_both_ways(retried.status_code, self.shown_url(path))
            scheme, response = other, retried
        if response.is_success:
            self.scheme_used = scheme
            if self.auth_scheme == AUTO and entry.scheme != scheme:
                learned = entry._replace(scheme=scheme, scheme_learned_at=self.clock())
                self.cache.put(self.cache_key, learned)
        return response

    def call(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """An authenticated POST; any answer but 2xx is an ApiError."""
        response = self.request("POST", path, dict(body))
        if not response.is_success:
            raise failure_for(response, self.shown_url(path), self.secrets())
        return response

    def acknowledge(self, request_id: str) -> str:
        """Acknowledge one stock update; returns a short description of Avasam's answer."""
        response = self.call(ACKNOWLEDGE_PATH, acknowledge_body(request_id))
        return f"{response.status_code} {excerpt(self.scrub(response.text), 80)}".strip()

    def stock_pages(self, page_size: int) -> Iterator[Page]:
        """Every page of the seller's stock list, until a page comes back short."""
        return self._pages(
            STOCK_LIST_PATH, lambda page: {"limit": page_size, "page": page}, page_size, stock_page
        )

    def product_pages(self, page_size: int) -> Iterator[Page]:
        """Every page of the seller's product list (SKU and Price), until one comes back short."""
        return self._pages(
            PRODUCT_LIST_PATH,
            lambda page: {"Page": page, "Limit": page_size},
            page_size,
            product_page,
        )

    def _pages(
        self,
        path: str,
        body_for: Callable[[int], dict[str, int]],
        page_size: int,
        parse: Callable[[Any], Page],
    ) -> Iterator[Page]:
        page = FIRST_PAGE
        previous: list[Any] | None = None
        url = self.shown_url(path)
        while True:
            response = self.call(path, body_for(page))
            try:
                current = parse(response.json())
            except ValueError as error:
                raise ApiError(
                    f"unexpected list from {url} ({error}): "
                    f"{excerpt(self.scrub(response.text), 200)}",
                    response.status_code,
                ) from None
            if current.rows == previous:  # a page number past the end, answered with the last
                return
            yield current
            if len(current.rows) < page_size:
                return
            previous = current.rows
            page += 1
