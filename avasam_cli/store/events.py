"""The records of the store: a request as the receiver hands it over, as stored, as shown.

No I/O and no backend here: every store implementation and every reader
(`listen`'s printer, `events`, later the inspector) shares these shapes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, NamedTuple

from avasam_cli.webhooks.contract import HTTP_STATUS, PREVIOUS_TOKEN, REUSED_DETAIL, Reason

# A verified update whose request id was verified for the other kind: how the store
# refuses it (http_status, reason, detail).
REUSED_ANSWER = (HTTP_STATUS[Reason.REQUEST_ID_REUSED], Reason.REQUEST_ID_REUSED.value,
                 REUSED_DETAIL)  # fmt: skip

# `avasam send-test` (and `reconcile --fix`) mark what they make: such an update is stored
# and forwarded like any other, shown as a test event, and never acknowledged to Avasam,
# which did not send it.
TEST_MARKER = "x-avasam-cli-test"


def is_test_event(headers_json: str) -> bool:
    """Whether stored headers (a JSON list, names lower-case) carry send-test's marker."""
    return f'"{TEST_MARKER}"' in headers_json


# `doctor --public-url` marks its probe as a test and as a probe: it only checks that the
# URL pasted into Avasam reaches the listener, so it is neither forwarded nor acknowledged.
PROBE_MARKER = "x-avasam-cli-probe"


def is_probe(headers_json: str) -> bool:
    return f'"{PROBE_MARKER}"' in headers_json


# Header names that may carry credentials: stored as "[redacted]", and never forwarded.
_SECRET_HEADER_MARKERS = ("pass", "sig", "auth", "token", "secret", "key", "cookie")
REDACTED = "[redacted]"


class WireRequest(NamedTuple):
    """One answered-or-refused request, as the receiver hands it to the store writer."""

    received: float  # Unix time
    kind: str
    status: str  # what verification concluded: "verified" or "rejected"
    http_status: int
    reason: str | None
    detail: str | None
    request_id: str | None
    item_count: int | None
    items_as_sent: bool  # see VerifiedUpdate: the printer may take the items' bytes
    client: str | None
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(slots=True)
class Event:
    """One received request, as stored and as printed (`data_json` only for printing)."""

    received_at: str
    kind: str
    status: str  # "verified", "duplicate" or "rejected"
    http_status: int
    headers_json: str
    body: bytes
    # A refusal's reason code; on a verified update, PREVIOUS_TOKEN when the previous
    # verification token of a rotation verified it.
    reason: str | None = None
    detail: str | None = None
    request_id: str | None = None
    item_count: int | None = None
    client: str | None = None
    data_json: bytes | None = field(default=None, repr=False)  # the verified items, as JSON
    items_as_sent: bool = field(default=False, repr=False)  # for printing; not stored
    id: int | None = None
    store_error: str | None = None

    def refuse_as_reused(self) -> None:
        """Its request id was verified for the other kind: refused, as the store decided."""
        self.status = "rejected"
        self.http_status, self.reason, self.detail = REUSED_ANSWER

    @classmethod
    def from_wire(cls, request: WireRequest) -> Event:
        return cls(
            received_at=datetime.fromtimestamp(request.received, UTC).isoformat(
                timespec="milliseconds"
            ),
            kind=request.kind,
            status=request.status,
            http_status=request.http_status,
            headers_json=redacted_headers(request.headers),
            body=request.body,
            reason=request.reason,
            detail=request.detail,
            request_id=request.request_id,
            item_count=request.item_count,
            items_as_sent=request.items_as_sent,
            client=request.client,
        )

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(name, value) for name, value in json.loads(self.headers_json)]


@dataclass(slots=True)
class StoredEvent(Event):
    """An event read back from the store, with what happened after its answer."""

    ack_status: str | None = None  # None (not tried), "acknowledged" or "failed"
    ack_at: str | None = None
    ack_detail: str | None = None
    forward_status: str | None = None
    forward_detail: str | None = None


@functools.lru_cache(maxsize=32)
def stored_event_maker(columns: tuple[str, ...]) -> Callable[[Sequence[Any]], StoredEvent]:
    """A StoredEvent from a row of `columns` (a cursor's names), built by position:
    a fifth of the time of keywords, on every row a listing or the live stream reads.
    A column that is no field, or a field without a default left out, is a TypeError,
    as the keywords would have been."""
    at = {name: index for index, name in enumerate(columns)}
    picks: list[tuple[int | None, Any]] = []
    for each in fields(StoredEvent):
        if each.name in at:
            picks.append((at.pop(each.name), None))
        elif each.default is not MISSING:
            picks.append((None, each.default))
        else:
            raise TypeError(f"a stored event needs its {each.name!r}")
    if at:
        raise TypeError(f"{sorted(at)} are not fields of a stored event")

    def make(row: Sequence[Any]) -> StoredEvent:
        return StoredEvent(*[default if index is None else row[index] for index, default in picks])

    return make


class Sighting(NamedTuple):
    """One item of a verified update: what a webhook said a SKU's stock or price was."""

    sku: str
    value: float  # the quantity (stock) or the price
    updated_on: str
    received_at: str
    request_id: str


def row_id(text: str) -> int | None:
    """`text` as a row id: ASCII digits (`isdigit` also takes "²") below 2**63, the largest
    id either database holds; None otherwise (then it may be a request id)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    number = int(text)
    return number if number < 2**63 else None


def is_credential_header(name: str) -> bool:
    """Whether a header's (lower-case) name suggests it carries a credential."""
    return any(marker in name for marker in _SECRET_HEADER_MARKERS)


def redacted_headers(raw: list[tuple[bytes, bytes]]) -> str:
    """The headers as stored: `json.dumps` of [name, value] pairs, names lower-case and
    credentials redacted; written piece by piece, with what each name needs (its JSON
    opening, whether it is a credential) worked out once: a quarter of json.dumps's time,
    on every request the store writer commits."""
    pieces = []
    for name, value in raw:
        known = _HEADER_NAMES.get(name)
        if known is None:
            if len(_HEADER_NAMES) >= _HEADER_NAMES_MAX:  # names are the senders' to choose
                _HEADER_NAMES.clear()
            text = name.decode("latin-1").lower()
            known = _HEADER_NAMES[name] = (
                "[" + _json_string(text) + ", ",
                is_credential_header(text),
            )
        opening, secret = known
        pieces.append(
            opening + (_REDACTED_JSON if secret else _json_string(value.decode("latin-1"))) + "]"
        )
    return "[" + ", ".join(pieces) + "]"


_HEADER_NAMES: dict[bytes, tuple[str, bool]] = {}
_HEADER_NAMES_MAX = 1024
_json_string = json.encoder.encode_basestring_ascii  # json.dumps's own, for a str
_REDACTED_JSON = _json_string(REDACTED)


def event_json(event: Event, data: Any = None) -> dict[str, Any]:
    """The one machine-readable shape of an event (`listen --json`, `events list --json`).

    `data` is the verified items, when the caller has them (already serialised as an
    `orjson.Fragment` on the listener's hot path).
    """
    record: dict[str, Any] = {
        "id": event.id,
        "received_at": event.received_at,
        "kind": event.kind,
        "status": event.status,
        "http_status": event.http_status,
        "requestId": event.request_id,
        "test": is_test_event(event.headers_json),
    }
    if event.store_error is not None:
        record["store_error"] = event.store_error
    if event.status == "verified" and event.store_error is None:
        # Which verification token verified it (a rotation's previous one, in its grace).
        record["token"] = "previous" if event.reason == PREVIOUS_TOKEN else "current"
        if data is not None:
            record["data"] = data
        else:
            record["items"] = event.item_count
    elif event.status == "duplicate":
        record["reason"] = "duplicate"
        record["items"] = event.item_count
    else:
        record["reason"] = event.reason
        record["detail"] = event.detail
    if isinstance(event, StoredEvent):
        record["client"] = event.client
        record["headers"] = event.headers
        record["acknowledgement"] = {
            "status": event.ack_status,
            "at": event.ack_at,
            "detail": event.ack_detail,
        }
        record["forward"] = {"status": event.forward_status, "detail": event.forward_detail}
    return record
