"""`avasam events list|show|replay`: the history of everything received."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from avasam_cli import output
from avasam_cli.errors import OperationFailed, UsageError


def _row_dict(row: Any, with_body: bool) -> dict[str, Any]:
    record = {key: row[key] for key in row.keys() if key not in ("body", "headers")}  # noqa: SIM118 - sqlite3.Row is not a dict
    record["headers"] = json.loads(row["headers"])
    if with_body:
        record["body"] = row["body"].decode("utf-8", "replace")
    return record


def list_events(
    store_path: Path, limit: int, kind: str | None, status: str | None, as_json: bool
) -> None:
    from avasam_cli.store import EventStore

    with EventStore(store_path) as store:
        rows = store.latest(limit, kind, status)
    if as_json:
        for row in rows:
            output.out(json.dumps(_row_dict(row, with_body=False)))
        return
    if not rows:
        output.info("No events stored yet: run `avasam listen` and `avasam send-test`.")
        return
    table = [("id", "received", "kind", "status", "request id", "items", "ack")]
    for row in rows:
        status = row["status"] if row["status"] != "rejected" else f"rejected ({row['reason']})"
        ack = row["ack_status"] or (
            "pending" if row["kind"] == "stock" and row["status"] == "verified" else ""
        )
        table.append(
            (
                str(row["id"]),
                row["received_at"][:19].replace("T", " "),
                row["kind"],
                status,
                row["request_id"] or "-",
                "" if row["item_count"] is None else str(row["item_count"]),
                ack,
            )
        )
    output.table(table)


def _find(store_path: Path, key: str) -> Any:
    from avasam_cli.store import EventStore

    with EventStore(store_path) as store:
        row = store.find(key)
    if row is None:
        raise UsageError(f"no stored event has id or request id {key!r}: see `avasam events list`")
    return row


def show(store_path: Path, key: str, raw: bool) -> None:
    row = _find(store_path, key)
    if raw:
        sys.stdout.buffer.write(row["body"])
        sys.stdout.flush()
        return
    record = _row_dict(row, with_body=False)
    output.out(
        f"Event {row['id']}: {row['kind']} {row['status']} (HTTP {row['http_status']}) "
        f"received {row['received_at']} from {row['client'] or '?'}"
    )
    output.out(f"request id:   {row['request_id'] or '-'}")
    if row["reason"]:
        output.out(f"refused:      {row['reason']}: {row['detail']}")
    output.out(
        f"acknowledged: {row['ack_status'] or '-'} {row['ack_at'] or ''} "
        f"{row['ack_detail'] or ''}".rstrip()
    )
    output.out(
        f"forwarded:    {row['forward_status'] or '-'} {row['forward_detail'] or ''}".rstrip()
    )
    output.out("headers:")
    for name, value in record["headers"]:
        output.out(f"  {name}: {value}")
    output.out("body:")
    try:
        output.out(json.dumps(json.loads(row["body"]), indent=2))
    except ValueError:
        output.out(row["body"].decode("utf-8", "replace"))


def replay(store_path: Path, key: str, url: str | None, default_base: str, timeout: float) -> None:
    from avasam_cli.commands.simulate import post_and_show
    from avasam_cli.defaults import DEFAULT_WEBHOOK_PATHS
    from avasam_cli.followup import HOP_BY_HOP

    row = _find(store_path, key)
    target = url or default_base + DEFAULT_WEBHOOK_PATHS[row["kind"]]
    headers = [
        (name, value)
        for name, value in json.loads(row["headers"])
        if name not in HOP_BY_HOP and value != "[redacted]"
    ]
    response = post_and_show(target, row["body"], headers, timeout, url_option="--to")
    if not response.is_success:
        raise OperationFailed(f"the receiver answered {response.status_code}, not 2xx")
