"""`avasam stock list`: the seller's stock as Avasam reports it now, every page."""

from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.cli._context import client_for, group, settings
from avasam_cli.cli._lists import CsvOption, PageSizeOption, fetch_all, show_listed
from avasam_cli.cli._options import BaseUrlOption
from avasam_cli.errors import UsageError

if TYPE_CHECKING:
    from avasam_cli.api.client import AvasamClient, StockRow


def fetch_stock(client: "AvasamClient", page_size: int) -> list["StockRow"]:
    """Every row of the stock list, with a progress bar on stderr."""
    return fetch_all(client.stock_pages(page_size), "stock list")


def list_stock(
    ctx: typer.Context,
    sku: Annotated[
        list[str] | None, typer.Option("--sku", help="Only this SKU (repeat for several).")
    ] = None,
    page_size: PageSizeOption = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    as_csv: CsvOption = False,
    base_url: BaseUrlOption = None,
) -> None:
    """List the stock Avasam reports for every SKU (SellerStockList, every page); exit 1
    when a --sku asked for is not in it."""
    from avasam_cli.paths import locations

    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    with client_for(settings(ctx, base_url=base_url), locations()) as client:
        rows = fetch_stock(client, page_size)
    show_listed(
        rows, sku, lambda r: {"sku": r.sku, "stock": r.stock}, as_json, as_csv, "stock list"
    )


def register(app: typer.Typer) -> None:
    stock_app = group("Read the seller's stock as Avasam reports it.")
    stock_app.command(
        "list",
        epilog="Examples:\n\n  avasam stock list\n\n  avasam stock list --sku MUG-RED --json\n\n"
        "  avasam stock list --csv > stock.csv",
    )(list_stock)
    app.add_typer(stock_app, name="stock")
