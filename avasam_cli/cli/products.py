"""`avasam products list`: the seller's products and prices as Avasam reports them now."""

from typing import Annotated, Any

import typer

from avasam_cli.cli._context import client_for, group, settings
from avasam_cli.cli._lists import CsvOption, PageSizeOption
from avasam_cli.cli._options import BaseUrlOption
from avasam_cli.errors import UsageError


def list_products(
    ctx: typer.Context,
    sku: Annotated[
        list[str] | None, typer.Option("--sku", help="Only this SKU (repeat for several).")
    ] = None,
    page_size: PageSizeOption = 1000,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON object per line, with every field Avasam sent."),
    ] = False,
    as_csv: CsvOption = False,
    base_url: BaseUrlOption = None,
) -> None:
    """List every product's SKU and price (GetSellerProductList, every page); exit 1 when a
    --sku asked for is not in it."""
    from avasam_cli.cli._lists import fetch_all, show_listed
    from avasam_cli.paths import locations

    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    with client_for(settings(ctx, base_url=base_url), locations()) as client:
        rows = fetch_all(client.product_pages(page_size), "product list")

    def line(row: Any) -> dict[str, object]:
        shown: dict[str, object] = {"sku": row.sku, "price": row.price}
        if as_json:  # every other field Avasam sent, under its own name
            shown |= {k: v for k, v in row.fields.items() if str(k).lower() not in shown}
        return shown

    show_listed(rows, sku, line, as_json, as_csv, "product list")


def register(app: typer.Typer) -> None:
    products_app = group("Read the seller's products and prices as Avasam reports them.")
    products_app.command(
        "list",
        epilog="Examples:\n\n  avasam products list\n\n"
        "  avasam products list --sku MUG-RED --json\n\n"
        "  avasam products list --csv > prices.csv",
    )(list_products)
    app.add_typer(products_app, name="products")
