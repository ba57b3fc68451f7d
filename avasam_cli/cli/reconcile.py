"""`avasam reconcile`: did we miss a webhook?  Avasam's stock now against the last webhooks."""

from typing import Annotated

import typer

from avasam_cli.cli._context import client_for, settings
from avasam_cli.cli._options import BaseUrlOption, since_time
from avasam_cli.cli.stock import CsvOption, PageSizeOption
from avasam_cli.errors import AlreadyReported, UsageError

SHOWN_NEVER_RECEIVED = 10


def reconcile(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="Only webhooks received since then: 24h, 7d or a date (2026-11-01)."),
    ] = None,
    page_size: PageSizeOption = 1000,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per SKU that differs, then a summary.")
    ] = False,
    as_csv: CsvOption = False,
    base_url: BaseUrlOption = None,
) -> None:
    """Compare Avasam's stock with the last quantity webhooks reported; exit 1 if any differ."""
    import json

    from avasam_cli import output
    from avasam_cli.api.reconcile import DIFFERS, NEVER_RECEIVED, NOT_IN_AVASAM
    from avasam_cli.api.reconcile import reconcile as compare
    from avasam_cli.cli.stock import fetch_stock, print_rows
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store

    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    after = since_time(since)
    where = locations()
    with open_store(where.store_file, read_only=True) as store:
        sightings = store.stock_sightings(after)
    with client_for(settings(ctx, base_url=base_url), where) as client:
        rows = fetch_stock(client, page_size)
    report = compare(rows, sightings)
    reported = [line for line in report.lines if line.status != "agrees"]
    summary = report.summary()
    if as_json:
        for line in reported:
            output.out(json.dumps(line.as_json()))
        output.out(json.dumps({"summary": summary}))
    elif as_csv:
        print_rows((line.as_json() for line in reported), as_json=False, as_csv=True)
    else:
        differing = report.of(DIFFERS)
        if differing:
            table = [("sku", "avasam", "webhook", "updatedOn", "received", "request id")]
            for line in differing:
                assert line.webhook is not None
                table.append(
                    (
                        line.sku,
                        str(line.avasam_stock),
                        str(line.webhook.quantity),
                        line.webhook.updated_on,
                        line.webhook.received_at[:19].replace("T", " "),
                        line.webhook.request_id,
                    )
                )
            output.table(table)
        for status, label in (
            (NEVER_RECEIVED, "never received by webhook"),
            (NOT_IN_AVASAM, "received by webhook but not in Avasam's stock list"),
        ):
            skus = [line.sku for line in report.of(status)]
            if skus:
                more = len(skus) - SHOWN_NEVER_RECEIVED
                listed = ", ".join(skus[:SHOWN_NEVER_RECEIVED]) + (
                    f" and {more} more" if more > 0 else ""
                )
                output.info(f"{label}: {listed}")
        window = f" since {after[:19].replace('T', ' ')} UTC" if after else ""
        output.info(
            f"{summary['skus']} SKUs in Avasam's stock list: {summary['compared']} compared with "
            f"the last webhook{window}, {summary['agrees']} agree, {summary['differs']} differ, "
            f"{summary['never_received']} never received by webhook."
        )
    if summary[DIFFERS]:
        if not as_json and not as_csv:
            output.info(
                "A difference means a stock webhook was missed or not applied: check the "
                "listener's history (`avasam events list --kind stock`)."
            )
        raise AlreadyReported


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n  avasam reconcile\n\n  avasam reconcile --since 7d --json\n\n"
        "  avasam reconcile --csv > differences.csv",
    )(reconcile)
