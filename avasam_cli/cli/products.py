"""`avasam products list`: the seller's products and prices as Avasam reports them now."""

from typing import Annotated

import typer

from avasam_cli.cli._context import client_for, group, settings
from avasam_cli.cli._options import BaseUrlOption
from avasam_cli.cli.stock import CsvOption, PageSizeOption
from avasam_cli.errors import OperationFailed, UsageError


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
    from avasam_cli import output
    from avasam_cli.cli.stock import fetch_all, print_rows
    from avasam_cli.paths import locations

    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    with client_for(settings(ctx, base_url=base_url), locations()) as client:
        rows = fetch_all(client.product_pages(page_size), "product list")
    wanted = set(sku or ())
    shown = [row for row in rows if not wanted or row.sku in wanted]
    if as_json:
        lines = (
            {"sku": row.sku, "price": row.price}
            | {k: v for k, v in row.fields.items() if str(k).lower() not in ("sku", "price")}
            for row in shown
        )
    else:
        lines = ({"sku": row.sku, "price": row.price} for row in shown)
    print_rows(lines, as_json, as_csv)
    output.info(f"{output.plural(len(shown), 'SKU')} shown of {len(rows)} in the product list.")
    missing = sorted(wanted - {row.sku for row in rows})
    if missing:
        raise OperationFailed(f"not in Avasam's product list: {', '.join(missing)}")


def register(app: typer.Typer) -> None:
    products_app = group("Read the seller's products and prices as Avasam reports them.")
    products_app.command(
        "list",
        epilog="Examples:\n\n  avasam products list\n\n"
        "  avasam products list --sku MUG-RED --json\n\n"
        "  avasam products list --csv > prices.csv",
    )(list_products)
    app.add_typer(products_app, name="products")
