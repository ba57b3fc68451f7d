"""Key casing of webhook bodies: the names we know, matched without regard to case.

Avasam's help page writes the webhook in camelCase (`requestId`, `sku`); its API
answers in PascalCase (`SKU`, `Stock`, `Price`), and a .NET serializer reads keys
in any case.  So a body may come either way: every key that names a field of the
envelope or of an item is read under its canonical (camelCase) name, and an object
holding two keys that differ only in case is refused as ambiguous (a second value
smuggled past a reader that looks at one of them).  The decision is
`contract.KEYS_MATCH_ANY_CASE`; the raw body is always stored as it came.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from avasam_cli.webhooks.kinds import KINDS


class Names:
    """The canonical spellings of one object's known keys, looked up by lower case."""

    __slots__ = ("by_lower", "canonical")

    def __init__(self, names: Iterable[str]) -> None:
        self.by_lower = {name.lower(): name for name in names}
        self.canonical = frozenset(self.by_lower.values())

    def spelled_canonically(self, keys: Iterable[str]) -> bool:
        """Whether no key names a known field in another casing (so nothing to rename)."""
        by_lower = self.by_lower
        return all(by_lower.get(key.lower(), key) == key for key in keys)


ENVELOPE_NAMES = Names(("requestId", "on", "token", "data"))
ITEM_NAMES: Mapping[str, Names] = {
    name: Names(("sku", kind.value_field, "updatedOn")) for name, kind in KINDS.items()
}
# For a body stored under no kind of ours (a stray path): every item name of every kind.
ANY_ITEM_NAMES = Names(name for names in ITEM_NAMES.values() for name in names.canonical)


class AmbiguousKeys(ValueError):
    """Two keys of one object that name the same field in different casings."""

    def __init__(self, first: str, second: str, index: int | None = None) -> None:
        super().__init__(f"{first!r} and {second!r}")
        self.first = first
        self.second = second
        self.index = index  # the item's position, for an item


def canonical(obj: dict[str, Any], names: Names) -> dict[str, Any]:
    """`obj` with each key that names one of `names` in another casing renamed to it;
    `obj` itself (no copy) when every known key is spelled canonically already."""
    # The common case first, as one set operation: only canonical names.
    if obj.keys() <= names.canonical or names.spelled_canonically(obj):
        return obj
    renamed: dict[str, Any] = {}
    spelled: dict[str, str] = {}  # canonical name -> the key that gave it
    for key, value in obj.items():
        name = names.by_lower.get(key.lower(), key)
        if name in spelled:
            raise AmbiguousKeys(spelled[name], key)
        spelled[name] = key
        renamed[name] = value
    return renamed


def canonical_items(kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every item (all objects) under canonical names; the same list when nothing changes.

    The keys of all items are gathered once, in C: the common case, camelCase
    throughout, costs one set union however many items there are.
    """
    names = ITEM_NAMES.get(kind, ANY_ITEM_NAMES)
    keys: set[str] = set().union(*items)
    if keys <= names.canonical or names.spelled_canonically(keys):
        return items
    result = []
    for index, item in enumerate(items):
        try:
            result.append(canonical(item, names))
        except AmbiguousKeys as clash:
            raise AmbiguousKeys(clash.first, clash.second, index) from None
    return result


def readable_body(raw: bytes, kind: str) -> Any:
    """A stored body as the views show it: JSON with the envelope's and items' known keys
    under their canonical names.  Lenient, for display: what cannot be renamed (not
    JSON, an ambiguous object) is returned as parsed, or None when it is not JSON."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict:
        return document
    try:
        document = canonical(document, ENVELOPE_NAMES)
        data = document.get("data")
        if type(data) is list and data and set(map(type, data)) == {dict}:
            document = {**document, "data": canonical_items(kind, data)}
    except AmbiguousKeys:
        pass
    return document


def stored_items(raw: bytes, kind: str) -> list[Any] | None:
    """The items of a stored body under canonical names; None when it holds no list."""
    document = readable_body(raw, kind)
    data = document.get("data") if isinstance(document, dict) else None
    return data if isinstance(data, list) else None


def items_as_sent(raw: bytes) -> bytes | None:
    """The `data` array of a body verified as `items_as_sent` (see VerifiedUpdate), its
    bytes as they came, when they can be printed as they are; else None (parse it).

    For a 1,000-item update this is a search where parsing the body and writing its items
    again costs the printer more than the rest of the commit.  A quote inside a JSON
    string is escaped, so `"data":` is a key named data (or ends a key such as `x\\"data`,
    which such a body has not), and there the envelope's.  Its value ends at the last `]`
    when only `}` follows: a key after it holds a string (requestId, on, token), whose
    closing quote would come after any `]` in it.
    """
    start = raw.find(b'"data":')
    if start < 0:
        return None
    end = raw.rfind(b"]") + 1
    items = raw[start + len(b'"data":') : end].strip()
    if not items.startswith(b"[") or raw[end:].strip() != b"}":
        return None
    return None if b"\n" in items or b"\r" in items else items  # one JSON line each


_PASCAL = {"requestId": "RequestId", "on": "On", "token": "Token", "data": "Data"}


def pascal_case(name: str) -> str:
    return _PASCAL.get(name, name[:1].upper() + name[1:])


def recased(body: dict[str, Any], casing: str) -> dict[str, Any]:
    """A body built in camelCase, written in `casing` ("camel" or "pascal"): the signer's
    way of testing both spellings a receiver may meet."""
    if casing == "camel":
        return body
    items = body.get("data")
    out = {pascal_case(key): value for key, value in body.items()}
    if isinstance(items, list):
        out["Data"] = [
            {pascal_case(key): value for key, value in item.items()}
            if isinstance(item, dict)
            else item
            for item in items
        ]
    return out
