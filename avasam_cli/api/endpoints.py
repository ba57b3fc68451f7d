"""The seller API's endpoints as we call them (our decisions where Avasam is silent: the
acknowledgement's body, the lists' paging and shapes), and the rows read from them."""

from __future__ import annotations

from typing import Any, NamedTuple

TOKEN_PATH = "/api/auth/request-token"  # noqa: S105 - a path, not a password


ACKNOWLEDGE_PATH = "/api-seller/Product/AcknowledgeStockUpdate"


STOCK_LIST_PATH = "/apiseeker/Products/SellerStockList"


PRODUCT_LIST_PATH = "/apiseeker/Products/GetSellerProductList"


# Avasam's documented example bodies ask for {"limit": 10, "page": 0} (stock) and
# {"Page": 0, "Limit": 10} (products): pages count from 0, and each list spells its own.
FIRST_PAGE = 0


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
