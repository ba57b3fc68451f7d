"""The registry of Avasam's webhook kinds: everything that differs between stock and price.

The receiver's paths, the item rules, the signer's sample items, the printer's
columns and which updates are acknowledged all derive from `KINDS`; a new
kind is one entry here (plus its CLI options).  Standard library only: the
CLI reads this module at start-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeGuard

# Each item rule returns None for a valid item, else (field, what it must be).  The field
# path is only built for the error: the rules run for every item of every update.
Problem = tuple[str, str] | None
ItemRule = Callable[[dict[str, Any]], Problem]


def is_iso_datetime(value: Any) -> bool:
    """ISO 8601 date and time; seven fractional digits (.NET) parse, date alone does not."""
    if type(value) is not str or len(value) <= 10:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# Identifiers (SKUs, request ids) are shown on terminals and pages: no control characters.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
IDENTIFIER_RULE = "a non-empty string without control characters"


def is_identifier(value: Any) -> TypeGuard[str]:
    """A non-empty string, not only spaces, without control characters."""
    if type(value) is not str or not value or value.isspace():
        return False
    if value.isascii():  # where only the control characters are not printable
        return value.isprintable()
    return CONTROL_CHARACTERS.search(value) is None


_SKU_RULE = ("sku", IDENTIFIER_RULE)
_UPDATED_ON_RULE = ("updatedOn", "an ISO 8601 date and time")


def _sku_and_time_problem(item: dict[str, Any]) -> Problem:
    if not is_identifier(item.get("sku")):
        return _SKU_RULE
    return None if is_iso_datetime(item.get("updatedOn")) else _UPDATED_ON_RULE


def stock_item_problem(item: dict[str, Any]) -> Problem:
    """`{sku: str, quantity: int >= 0, updatedOn: DateTime}`; further fields are kept."""
    quantity = item.get("quantity")
    if type(quantity) is not int or quantity < 0:
        return ("quantity", "an integer >= 0")
    return _sku_and_time_problem(item)


def price_item_problem(item: dict[str, Any]) -> Problem:
    """`{sku: str, price: number >= 0, updatedOn: DateTime}`; further fields are kept."""
    price: Any = item.get("price")
    if type(price) not in (int, float) or not math.isfinite(price) or price < 0:
        return ("price", "a finite number >= 0")
    return _sku_and_time_problem(item)


class WebhookKind:
    """One kind of webhook.  A plain class: a dataclass would cost start-up time (bench/)."""

    __slots__ = (
        "acknowledged",
        "default_path",
        "default_value",
        "finite_values",
        "item_problem",
        "name",
        "value_field",
        "value_types",
    )

    def __init__(
        self,
        *,
        name: str,
        default_path: str,
        value_field: str,
        value_types: frozenset[type],
        default_value: float,
        item_problem: ItemRule,
        acknowledged: bool,
        finite_values: bool = False,
    ) -> None:
        self.name = name
        self.default_path = default_path
        self.value_field = value_field  # the item's number: what the update changes
        self.value_types = value_types
        self.default_value = default_value  # for test items made by the signer
        self.item_problem = item_problem
        self.acknowledged = acknowledged  # whether Avasam expects an acknowledgement
        self.finite_values = finite_values  # floats must also be finite


KINDS: Mapping[str, WebhookKind] = {
    kind.name: kind
    for kind in (
        WebhookKind(
            name="stock",
            default_path="/webhooks/stock",
            value_field="quantity",
            value_types=frozenset({int}),
            default_value=10,
            item_problem=stock_item_problem,
            acknowledged=True,
        ),
        WebhookKind(
            name="price",
            default_path="/webhooks/price",
            value_field="price",
            value_types=frozenset({int, float}),
            default_value=9.99,
            item_problem=price_item_problem,
            acknowledged=False,
            finite_values=True,
        ),
    )
}
KIND_NAMES = tuple(KINDS)
# The kind stored for a request to a path that is no endpoint (answered 404): not a
# webhook kind, but every request is kept.
STRAY_KIND = "other"
ACKNOWLEDGED_KINDS = tuple(name for name, kind in KINDS.items() if kind.acknowledged)


def guess_kind(item: Any) -> str:
    """The kind whose value field an item carries (the first kind when it cannot tell)."""
    if isinstance(item, dict):
        matches = [kind.name for kind in KINDS.values() if kind.value_field in item]
        if len(matches) == 1:
            return matches[0]
    return KIND_NAMES[0]
