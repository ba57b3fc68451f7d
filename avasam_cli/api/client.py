"""The Avasam API client: access tokens (cached), retries, and errors a seller understands.

Decisions where Avasam's documentation is silent are the constants and small
functions below (how the token is sent, the acknowledgement's path and body,
the stock list's paging), each in one place.  It knows no terminal and no
profiles: the CLI builds it (`cli._context`).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeGuard

import httpx

from avasam_cli import __version__
from avasam_cli.errors import ApiError, ConfigError, CredentialsRefused, NetworkError
from avasam_cli.paths import is_too_open, write_secret_file
from avasam_cli.text import excerpt, without_password

TOKEN_PATH = "/api/auth/request-token"  # noqa: S105 - a path, not a password
ACKNOWLEDGE_PATH = "/api-seller/Product/AcknowledgeStockUpdate"
STOCK_LIST_PATH = "/apiseeker/Products/SellerStockList"
PRODUCT_LIST_PATH = "/apiseeker/Products/GetSellerProductList"
# Avasam's documented example bodies ask for {"limit": 10, "page": 0} (stock) and
# {"Page": 0, "Limit": 10} (products): pages count from 0, and each list spells its own.
FIRST_PAGE = 0
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
# A cached access token is renewed this long before Avasam says it expires.
EXPIRY_MARGIN_SECONDS = 60.0
REFUSED_CREDENTIALS = (
    "the consumer key or secret key was refused: check them in Avasam under "
    "Settings > User management > API keys"
)


# --- How the access token is sent -------------------------------------------------------
# Avasam's help page says only "with a valid token".  Public evidence, not Avasam's word:
# live probes recorded by a public integration against a real seller account (August 2026)
# found `Authorization: <token>` (no prefix) accepted while `Authorization: Bearer <token>`
# and a `Token:` header were refused; other public clients agree or try several forms.  So
# `auto` (the default) sends the raw token first, `Bearer` second: a fresh token's first
# call goes out raw; when a freshly issued token is refused (401 or 403) the other form is
# tried once, and the form accepted is remembered with the token (and when it was learned).
# `bearer` and `raw` force one form (profile `auth_scheme`, AVASAM_AUTH_SCHEME,
# `configure --auth-scheme`).  The names are also in `defaults.AUTH_SCHEME_CHOICES`.
AUTO = "auto"
AUTH_SCHEMES = ("raw", "bearer")  # the order `auto` tries them in
AUTH_SCHEME_LABELS = {"bearer": "Authorization: Bearer <token>", "raw": "Authorization: <token>"}


def authorization(access_token: str, scheme: str = AUTH_SCHEMES[0]) -> dict[str, str]:
    """The header carrying the access token in `scheme` ("bearer" or "raw")."""
    if scheme == "raw":
        return {"Authorization": access_token}
    return {"Authorization": f"Bearer {access_token}"}


_SECONDS = re.compile(r"[0-9]{1,9}")
_FRAMING_HEADERS = (b"content-encoding", b"content-length", b"transfer-encoding")


_SENDABLE_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")


def is_sendable_token(token: object) -> TypeGuard[str]:
    """A token that can go in a header as it is: printable ASCII, no spaces, no CR or LF."""
    return isinstance(token, str) and _SENDABLE_TOKEN.fullmatch(token) is not None


def cache_key_for(profile: str, base_url: str, consumer_key: str) -> tuple[str, str]:
    """The token cache key, and the prefix shared by the same profile and base URL.

    A hash of the consumer key (never the key) is part of it: after the keys change, the
    old token is not used, and it is dropped at the next write.
    """
    import hashlib

    prefix = f"{profile}|{base_url}|"
    return prefix + hashlib.sha256(consumer_key.encode()).hexdigest()[:16], prefix


def _other_scheme(scheme: str) -> str:
    return AUTH_SCHEMES[1 - AUTH_SCHEMES.index(scheme)]


def acknowledge_body(request_id: str) -> dict[str, str]:
    """The acknowledgement's body (our decision: the webhook's request id)."""
    return {"requestId": request_id}


class StockRow(NamedTuple):
    sku: str
    stock: int | float | None


class ProductRow(NamedTuple):
    sku: str
    price: int | float | None
    fields: dict[str, Any]  # the whole row as Avasam sent it (`products list --json`)


class Page(NamedTuple):
    rows: list[Any]  # StockRow or ProductRow
    total: int | None  # when Avasam says how many there are in all


def _listed_rows(answer: Any) -> tuple[list[dict[str, Any]], int | None]:
    """The rows of a list answer, and its total if given: a bare array, or an object
    holding one as `data`/`items`/`rows`/`result` beside an optional `total` (keys in any
    case; our decision: the documented wrappers disagree with what live accounts answer)."""
    rows: Any = answer
    total = None
    if isinstance(answer, dict):
        lowered = {str(key).lower(): value for key, value in answer.items()}
        rows = next((lowered[k] for k in ("data", "items", "rows", "result") if k in lowered), None)
        if isinstance(lowered.get("total"), int):
            total = lowered["total"]
    if not isinstance(rows, list):
        raise ValueError("no list of rows")
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError("a row is not an object")
    return rows, total


def _sku_and_number(row: dict[str, Any], number: str) -> tuple[str, int | float | None]:
    """A row's SKU and one numeric field, both looked up in any case (`SKU`, `Sku`)."""
    fields = {str(key).lower(): value for key, value in row.items()}
    sku, value = fields.get("sku"), fields.get(number)
    if not isinstance(sku, str) or not (
        value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    ):
        raise ValueError(f"a row has no SKU or no numeric {number.capitalize()}")
    return sku, value


def stock_page(answer: Any) -> Page:
    """Rows `{SKU, Stock}` from a stock-list answer (see `_listed_rows`)."""
    rows, total = _listed_rows(answer)
    return Page([StockRow(*_sku_and_number(row, "stock")) for row in rows], total)


def product_page(answer: Any) -> Page:
    """Rows holding a `SKU` and a numeric `Price` from a product-list answer; every other
    field is kept."""
    rows, total = _listed_rows(answer)
    return Page([ProductRow(*_sku_and_number(row, "price"), row) for row in rows], total)


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


def parse_expiry(text: str) -> float:
    """Avasam's `2021-12-22T17:36:19.8066912+00:00` as a Unix time."""
    return float(datetime.fromisoformat(text).timestamp())


class CachedToken(NamedTuple):
    access_token: str
    expires_at: float  # Unix time
    scheme: str | None = None  # the form Avasam accepted it in, once known
    customer_id: str | None = None  # Avasam's customerId, when the token answer has one
    scheme_learned_at: float | None = None  # Unix time `auto` learned the form


class TokenCache:
    """Access tokens per profile and base URL, in a 0600 JSON file in the cache folder,
    each with the form Avasam accepted it in and the customer id, when known."""

    def __init__(self, path: Path, warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.warn = warn
        self._warned = False

    MAX_SIZE = 1 << 20  # a cache holds a few tokens: anything larger is not ours

    def _read(self) -> dict[str, Any]:
        """The cache's entries; {} when it is missing or unreadable as JSON.  Only a regular
        file is read (a FIFO would hang, /dev/zero never ends), and only up to MAX_SIZE."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise ConfigError(
                f"cannot read the token cache {self.path}: {error.strerror}; check its "
                "permissions, or remove it (it is rebuilt on the next call)"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ConfigError(
                f"the token cache {self.path} is {what}: remove it (it is rebuilt on the "
                "next call), or set AVASAM_HOME elsewhere"
            )
        if self.warn is not None and not self._warned and is_too_open(self.path):
            self._warned = True
            self.warn(
                f"token cache {self.path} is readable by other users; it will be "
                "tightened to 0600 on the next write"
            )
        try:
            with open(self.path, "rb") as handle:
                document = json.loads(handle.read(self.MAX_SIZE + 1)[: self.MAX_SIZE])
        except (OSError, ValueError, RecursionError):
            return {}
        return document if isinstance(document, dict) else {}

    def get(self, key: str) -> CachedToken | None:
        """The entry for `key`; None (and the entry dropped) when it is not a usable token."""
        entry = self._read().get(key)
        if entry is None:
            return None
        token = entry.get("access_token") if isinstance(entry, dict) else None
        expires = entry.get("expires_at") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or not is_sendable_token(token)
            or not isinstance(expires, int | float)
            or not math.isfinite(expires)
        ):
            self.clear(key)
            return None
        scheme = entry.get("scheme")
        customer_id = entry.get("customer_id")
        learned = entry.get("scheme_learned_at")
        known = scheme in AUTH_SCHEMES
        return CachedToken(
            token,
            float(expires),
            scheme if known else None,
            customer_id if isinstance(customer_id, str) else None,
            float(learned) if known and isinstance(learned, int | float) else None,
        )

    def put(self, key: str, entry: CachedToken, replaces: str | None = None) -> None:
        """Store `entry` under `key`, dropping every entry whose key starts with `replaces`
        (the same profile and base URL under other keys)."""
        document = self._read()
        if replaces is not None:
            document = {k: v for k, v in document.items() if not k.startswith(replaces)}
        document[key] = {
            name: value for name, value in entry._asdict().items() if value is not None
        }
        write_secret_file(self.path, json.dumps(document, indent=2))

    def clear(self, key: str) -> None:
        document = self._read()
        if document.pop(key, None) is not None:
            write_secret_file(self.path, json.dumps(document, indent=2))


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
            other = _other_scheme(scheme)
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
