"""`avasam reconcile`: did we miss a webhook?  Avasam's stock (and prices) now against the
last webhooks, and with --fix, Avasam's values sent on to the shop."""

from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.cli._context import client_for, settings
from avasam_cli.cli._deliver import (
    ForwardCaOption,
    ForwardHeaderOption,
    ForwardInsecureOption,
    ForwardTimeoutOption,
)
from avasam_cli.cli._lists import CsvOption, PageSizeOption
from avasam_cli.cli._options import BaseUrlOption, since_time
from avasam_cli.defaults import DEFAULT_FORWARD_TIMEOUT
from avasam_cli.errors import AlreadyReported, OperationFailed, UsageError

if TYPE_CHECKING:
    from avasam_cli.api.client import AvasamClient
    from avasam_cli.api.reconcile import Line, Report
    from avasam_cli.cli._deliver import DeliveryConfig
    from avasam_cli.config import Settings
    from avasam_cli.paths import StoreLocation

SHOWN_NEVER_RECEIVED = 10
# What each kind is called in Avasam's lists and in the messages.
LIST_NAMES = {"stock": "stock list", "price": "product list"}


def reconcile(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="Only webhooks received since then: 24h, 7d or a date (2026-11-01)."),
    ] = None,
    prices: Annotated[
        bool,
        typer.Option(
            "--prices", help="Also compare prices: the product list against price webhooks."
        ),
    ] = False,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Send the shop Avasam's value for each SKU that differs or was never "
            "received, through the outbox (never acknowledged).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --fix: list what would be sent, send nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --fix: send without asking first.")
    ] = False,
    forward_to: Annotated[
        str | None,
        typer.Option(help="With --fix: the shop's URL (default: the profile's forward_to)."),
    ] = None,
    forward_timeout: ForwardTimeoutOption = DEFAULT_FORWARD_TIMEOUT,
    forward_header: ForwardHeaderOption = None,
    forward_ca: ForwardCaOption = None,
    forward_insecure: ForwardInsecureOption = False,
    page_size: PageSizeOption = 1000,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per SKU that differs, then a summary.")
    ] = False,
    as_csv: CsvOption = False,
    base_url: BaseUrlOption = None,
) -> None:
    """Compare Avasam's stock (and prices) with the last webhooks; exit 1 if any differ.

    With --fix, exit 0 once the shop has every value sent, 1 if a delivery failed.
    """
    from avasam_cli.net import checked_url
    from avasam_cli.paths import locations

    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    fix_options = {"--dry-run": dry_run, "--yes": yes, "--forward-to": forward_to is not None}
    for option, given in fix_options.items():
        if given and not fix:
            raise UsageError(f"{option} goes with --fix")
    if forward_to is not None:
        checked_url(forward_to, "--forward-to", "http://127.0.0.1:3000/avasam")
    after = since_time(since)
    where = locations()
    resolved = settings(ctx, base_url=base_url, forward_to=forward_to)
    target = resolved.get("forward_to") if fix else None
    if fix and target is None:
        raise UsageError(
            "--fix sends Avasam's values to your shop: give --forward-to URL, or save it with "
            "`avasam configure --forward-to URL`"
        )
    with client_for(resolved, where) as client:
        reports = _compare(client, where.store_file, after, page_size, prices)
    differs = _show(reports, after, as_json, as_csv)
    if fix:
        assert target is not None
        from avasam_cli.cli._deliver import delivery_config, saved_forward_headers

        config = delivery_config(
            "1s", 1, "1h", forward_timeout, forward_header, forward_ca, forward_insecure,
            saved_forward_headers(resolved),
        )  # fmt: skip  # one attempt now: what fails stays pending for the next runner
        behind = [line for report in reports for line in report.lines if line.behind]
        _fix(behind, target, resolved, dry_run, yes, config)
        if not dry_run:
            return
    if differs:
        raise AlreadyReported


def _compare(
    client: "AvasamClient",
    store_file: "StoreLocation",
    after: str | None,
    page_size: int,
    prices: bool,
) -> "list[Report]":
    """A report per kind: Avasam's list against the webhooks stored since `after`."""
    from avasam_cli.api.reconcile import reconcile as compare
    from avasam_cli.api.reconcile import sightings
    from avasam_cli.cli._lists import fetch_all
    from avasam_cli.store.base import open_store

    lists = {"stock": client.stock_pages}
    if prices:
        lists["price"] = client.product_pages
    avasam: dict[str, dict[str, float | None]] = {}
    for kind, pages in lists.items():
        rows = fetch_all(pages(page_size), LIST_NAMES[kind])
        avasam[kind] = {row.sku: row[1] for row in rows}  # the stock, or the price
    with open_store(store_file, read_only=True) as store:
        return [
            compare(values, sightings(store.verified_since(kind, after), kind), kind)
            for kind, values in avasam.items()
        ]


def _show(reports: "list[Report]", after: str | None, as_json: bool, as_csv: bool) -> bool:
    """Print each report as asked; whether any SKU differs."""
    import json

    from avasam_cli import output
    from avasam_cli.api.reconcile import DIFFERS
    from avasam_cli.cli._lists import print_rows

    reported = [line for report in reports for line in report.lines if line.status != "agrees"]
    if as_json:
        for line in reported:
            output.out(json.dumps(line.as_json()))
        for report in reports:
            output.out(json.dumps({"summary": report.summary(), "kind": report.kind}))
    elif as_csv:
        print_rows((_csv_row(line) for line in reported), as_json=False, as_csv=True)
    else:
        for report in reports:
            if len(reports) > 1:  # say which comparison each table belongs to
                output.info(f"{report.kind.capitalize()}: Avasam's {LIST_NAMES[report.kind]} "
                            f"against the {report.kind} webhooks")  # fmt: skip
            _show_report(report, after)
    return any(report.summary()[DIFFERS] for report in reports)


def _csv_row(line: "Line") -> dict[str, object]:
    """One shape for every kind: the values under `avasam` and `webhook`."""
    row = line.as_json()
    return {
        "sku": line.sku,
        "status": line.status,
        "avasam": line.avasam,
        "webhook": line.webhook.value if line.webhook else None,
        "updatedOn": row["updatedOn"],
        "received_at": row["received_at"],
        "requestId": row["requestId"],
        "kind": line.kind,
    }


def _show_report(report: "Report", after: str | None) -> None:
    from avasam_cli import output
    from avasam_cli.api.reconcile import DIFFERS, NEVER_RECEIVED, NOT_IN_AVASAM

    listed = LIST_NAMES[report.kind]
    differing = report.of(DIFFERS)
    if differing:
        table = [("sku", "avasam", "webhook", "updatedOn", "received", "request id")]
        for line in differing:
            assert line.webhook is not None
            table.append(
                (
                    line.sku,
                    str(line.avasam),
                    str(line.webhook.value),
                    line.webhook.updated_on,
                    line.webhook.received_at[:19].replace("T", " "),
                    line.webhook.request_id,
                )
            )
        # Never a request id (`events show` takes it): the received time goes first.
        if output.table(table, shrink=((3, 10), (4, 10), (0, 8)), drop=(4,)):
            output.info(output.CUT_NOTE)
    for status, label in (
        (NEVER_RECEIVED, f"never received by {report.kind} webhook"),
        (NOT_IN_AVASAM, f"received by {report.kind} webhook but not in Avasam's {listed}"),
    ):
        skus = [line.sku for line in report.of(status)]
        if skus:
            more = len(skus) - SHOWN_NEVER_RECEIVED
            shown = ", ".join(skus[:SHOWN_NEVER_RECEIVED]) + (
                f" and {more} more" if more > 0 else ""
            )
            output.info(f"{label}: {shown}")
    summary = report.summary()
    window = f" since {after[:19].replace('T', ' ')} UTC" if after else ""
    agrees, differs = summary["agrees"], summary["differs"]
    output.info(
        f"{output.plural(summary['skus'], 'SKU')} in Avasam's {listed}: "
        f"{summary['compared']} compared with the last {report.kind} webhook{window}, "
        f"{agrees} {'agrees' if agrees == 1 else 'agree'}, "
        f"{differs} {'differs' if differs == 1 else 'differ'}, "
        f"{summary['never_received']} never received by webhook."
    )
    if differing:
        output.info(
            f"A difference means a {report.kind} webhook was missed or not applied: check the "
            f"listener's history (`avasam events list --kind {report.kind}`), or send the shop "
            "Avasam's values with `avasam reconcile --fix`."
        )


def _fix(
    behind: "list[Line]",
    target: str,
    resolved: "Settings",
    dry_run: bool,
    yes: bool,
    config: "DeliveryConfig",
) -> None:
    """Queue Avasam's values for the SKUs behind, to `target`, and deliver them now."""
    import sys

    from avasam_cli import output

    if not behind:
        output.info("Nothing to send: the shop has had every value Avasam reports.")
        return
    count = output.plural(len(behind), "SKU")
    if dry_run:
        for line in behind:
            output.out(f"would send  {line.kind:5}  {line.sku}  {line.avasam}  ({line.status})")
        output.info(f"Dry run: {count} would be sent to {target}; nothing was sent.")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"--fix would send Avasam's current values for {count} to {target}: add --yes "
                "to send them without being asked"
            )
        question = f"Send Avasam's current values for {count} to {target}?"
        if not typer.confirm(question, default=False, err=True):
            raise OperationFailed("nothing was sent")
    _send_catch_up(behind, target, resolved, config)


def _send_catch_up(
    behind: "list[Line]", target: str, resolved: "Settings", config: "DeliveryConfig"
) -> None:
    """Through the outbox: stored with their forward jobs, then one pass of forwards (those
    queued before them to the same target go first, as always)."""
    from avasam_cli import output
    from avasam_cli.cli._deliver import run_once
    from avasam_cli.delivery.catch_up import queue_catch_up
    from avasam_cli.delivery.runner import DeliveryRunner
    from avasam_cli.delivery.signature import secrets_for_run
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store
    from avasam_cli.store.deliveries import runner_name
    from avasam_cli.store.jobs import FORWARD

    token = resolved.require("verification_token")
    with open_store(locations().store_file) as store:
        events = queue_catch_up(store, behind, target, token)
        for event in events:
            items = output.plural(event.item_count or 0, "SKU")
            output.info(f"Queued {event.kind} update {event.request_id} ({items}) for {target}.")
        runner = DeliveryRunner(
            store,
            runner_name(),
            output.info,
            rules=config.rules,
            timeout=config.timeout,
            extra_headers=config.headers,
            verify=config.verify,
            only=FORWARD,
            forward_secrets=secrets_for_run(resolved, locations().config_file),
        )
        run_once(runner, len(events))
        undelivered = [
            job
            for event in events
            for job in store.deliveries(event_id=event.id)
            if job.state != "delivered"
        ]
    if undelivered:
        raise OperationFailed(
            f"{output.plural(len(undelivered), 'catch-up update')} not delivered to {target}: "
            "kept in the outbox (`avasam deliveries list`; `avasam deliveries run` tries again)"
        )
    output.info(
        f"The shop at {target} has Avasam's values for {output.plural(len(behind), 'SKU')}."
    )


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n  avasam reconcile\n\n  avasam reconcile --since 7d --json\n\n"
        "  avasam reconcile --prices --csv > differences.csv\n\n"
        "  avasam reconcile --fix --forward-to http://127.0.0.1:3000/avasam",
    )(reconcile)
