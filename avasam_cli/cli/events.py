"""`avasam events list|show|replay`: the history of everything received."""

import json
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from avasam_cli.cli._context import group, settings
from avasam_cli.cli._options import KIND_CHOICES, Kind, ListenerHostOption, ListenerPortOption
from avasam_cli.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    from avasam_cli.store.events import StoredEvent


class Status(StrEnum):
    """What the listener decided about a request."""

    verified = "verified"
    duplicate = "duplicate"
    rejected = "rejected"


StatusOption = Annotated[Status | None, typer.Option(help="Only requests with this verdict.")]


def _find(key: str) -> "StoredEvent":
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store

    with open_store(locations().store_file, read_only=True) as store:
        event = store.find(key)
    if event is None:
        raise UsageError(f"no stored event has id or request id {key!r}: see `avasam events list`")
    return event


def _status_and_detail(status: str | None, detail: str | None, at: str = "") -> str:
    """ "200 ok" for a status and a detail that starts with it again ("200 ok"), once."""
    shown = status or "-"
    rest = (detail or "").strip()
    if status and rest.startswith(status):
        rest = rest[len(status) :].strip()
    return f"{shown}{at} {rest}".rstrip()


def _ack_state(event: "StoredEvent") -> str:
    from avasam_cli.store.events import is_test_event
    from avasam_cli.webhooks.kinds import KINDS

    if is_test_event(event.headers_json):
        return "never (test)"  # made by avasam-cli, not sent by Avasam
    awaited = event.kind in KINDS and KINDS[event.kind].acknowledged and event.status == "verified"
    return event.ack_status or ("pending" if awaited else "")


def _row(event: "StoredEvent") -> tuple[str, ...]:
    shown = event.status if event.status != "rejected" else f"rejected ({event.reason})"
    return (
        str(event.id),
        event.received_at[:19].replace("T", " "),
        event.kind,
        shown,
        (event.request_id or "-")
        # A rejected body's request id is what it claimed, never verified.
        + (" (unverified)" if event.status == "rejected" and event.request_id else ""),
        "" if event.item_count is None else str(event.item_count),
        _ack_state(event),
    )


def list_events(
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1)] = 20,
    kind: Annotated[Kind | None, typer.Option(help=f"Only {KIND_CHOICES}.")] = None,
    status: StatusOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Show the last --limit oldest first, then each new one as it is stored, "
            "by any listener sharing the store, until Ctrl-C.",
        ),
    ] = False,
    test: Annotated[
        bool | None,
        typer.Option(
            "--test/--no-test",
            help="Only test events (made by send-test, never acknowledged), or none of them.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List received requests, newest first."""
    from avasam_cli import output
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store
    from avasam_cli.store.events import event_json

    chosen = kind.value if kind else None
    verdict = status.value if status else None
    if follow:
        _follow(limit, chosen, verdict, as_json, test)
        return
    with open_store(locations().store_file, read_only=True) as store:
        if as_json:  # streamed: one row, body included, at a time
            for event in store.latest(limit, chosen, verdict, test=test):
                output.out(json.dumps(event_json(event)))
            return
        # The table needs only the columns: no body or headers are read, and each row is
        # turned into its cells at once.
        table: list[tuple[str, ...]] = [LIST_HEADER]
        table += map(_row, store.latest(limit, chosen, verdict, with_body=False, test=test))
        total = sum(store.count_by_status().values()) if len(table) == 1 else 0
    if len(table) == 1 and total:
        wanted = " ".join(part for part in (verdict, chosen) if part)
        output.info(f"No {wanted} events among {total:,} stored.")
        return
    if len(table) == 1:
        output.info("No events stored yet: run `avasam listen` and `avasam send-test`.")
        return
    # At 80 columns the request ids (then the reasons) are cut: the id column is what
    # `events show` takes, and --json keeps everything whole.
    if output.table(table, shrink=LIST_SHRINK):
        output.info(output.CUT_NOTE)


LIST_HEADER = ("id", "received (UTC)", "kind", "status", "request id", "items", "ack")
LIST_SHRINK = ((4, 9), (3, 8))  # (column, narrowest): request ids first, then reasons
# --follow cannot measure rows still to come: room for a six-digit id, the longest
# status (a rejection with its reason) and a UUID.
FOLLOW_WIDTHS = (6, 19, 5, 33, 36, 5, 7)
FOLLOW_SHRINK = ((3, 9), (4, 9))  # statuses first: most are short
FOLLOW_POLL_SECONDS = 0.25
FOLLOW_BATCH = 500


def _follow(
    limit: int, kind: str | None, status: str | None, as_json: bool, test: bool | None
) -> None:
    """`events list --follow`: the last `limit` rows oldest first, then each new row as
    it is committed, by whichever process, until Ctrl-C (exit 130)."""
    import time

    from avasam_cli import output
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store
    from avasam_cli.store.events import event_json
    from avasam_cli.store.follow import Follower

    path = locations().store_file
    if not path.exists():
        output.info(f"No event store yet at {path}: waiting for the first event.")
    try:
        while not path.exists():
            time.sleep(FOLLOW_POLL_SECONDS)
        widths = output.fitted_widths(FOLLOW_WIDTHS, sys.stdout, FOLLOW_SHRINK)
        if not as_json:
            output.out(output.styled(output.table_line(LIST_HEADER, widths), "bold", sys.stdout))
        with open_store(path, read_only=True) as store:
            shown = list(store.latest(limit, kind, status, with_body=as_json, test=test))[::-1]
        follower = Follower(
            lambda: open_store(path, read_only=True),
            (shown[-1].id or 0) if shown else 0,
            FOLLOW_BATCH,
            lambda reader, last, n: list(reader.after(last, n, kind, status, as_json, test)),
            say=output.warn,
        )
        while True:
            for event in shown:
                line = json.dumps(event_json(event)) if as_json else None
                output.out(line or output.table_line(_row(event), widths))
            sys.stdout.flush()
            shown = follower.new_rows()
            if not shown:
                follower.wait(FOLLOW_POLL_SECONDS)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def show(
    key: Annotated[str, typer.Argument(help="The event's id or request id.")],
    raw: Annotated[bool, typer.Option(help="Print the stored body exactly, nothing else.")] = False,
) -> None:
    """Show one stored request: headers, body, verification, acknowledgement."""

    from avasam_cli import output
    from avasam_cli.delivery.catch_up import is_catch_up
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store
    from avasam_cli.store.jobs import is_test_event
    from avasam_cli.text import inert
    from avasam_cli.webhooks.contract import PREVIOUS_TOKEN

    event = _find(key)
    if raw:  # byte for byte, for files and pipes: the caller asked for the stored bytes
        sys.stdout.buffer.write(event.body)
        sys.stdout.flush()
        return

    def say(text: str) -> None:  # everything below may hold text from the request
        output.out(inert(text))

    say(
        f"Event {event.id}: {event.kind} {event.status} (HTTP {event.http_status}) "
        f"received {event.received_at} from {event.client or '?'}"
    )
    unverified = " (claimed by the body, not verified)" if event.status == "rejected" else ""
    say(f"request id:   {event.request_id or '-'}{unverified if event.request_id else ''}")
    if event.reason == PREVIOUS_TOKEN:
        say("token:        verified with the previous verification token (a rotation's grace)")
    elif event.reason:
        say(f"refused:      {event.reason}: {event.detail}")
    ack_at = f" {event.ack_at}" if event.ack_at else ""
    say(f"acknowledged: {_status_and_detail(event.ack_status, event.ack_detail, ack_at)}")
    say(f"forwarded:    {_status_and_detail(event.forward_status, event.forward_detail)}")
    if is_catch_up(event.headers_json):
        say("catch-up:     made by `avasam reconcile --fix` from Avasam's values, so never "
            "acknowledged to Avasam")  # fmt: skip
    elif is_test_event(event.headers_json):
        say("test event:   sent by `avasam send-test`, so never acknowledged to Avasam")
    if event.status == "verified" and event.request_id:
        with open_store(locations().store_file, read_only=True) as store:
            again = store.duplicates_of(event.kind, event.request_id)
            jobs = store.deliveries(event_id=event.id)
            attempts = {job.id: store.delivery_attempts(job.id) for job in jobs}
        if again:  # how a seller sees that Avasam retried
            say(f"received again: {output.plural(len(again), 'time')}, answered as duplicates")
            for received_at, client in again:
                say(f"  {received_at} from {client or '?'}")
        for job in reversed(jobs):
            where = "" if job.job == "acknowledge" else f" to {job.target}"
            tried = output.plural(len(attempts[job.id]), "attempt")  # all, retries included
            say(f"delivery {job.id}: {job.job}{where}: {job.state}, {tried}")
            for at, status, latency, excerpt in attempts[job.id]:
                took = f" {latency:.0f} ms" if latency is not None else ""
                say(f"  {at}  {status}{took}  {excerpt}".rstrip())
    say("headers:")
    for name, value in event.headers:
        say(f"  {name}: {value}")
    say("body:")
    try:
        say(json.dumps(json.loads(event.body), indent=2))
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to indent
        say(event.body.decode("utf-8", "replace"))


def replay(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The event's id or request id.")],
    to: Annotated[
        str | None, typer.Option(help="Where to send it (default: the local listener).")
    ] = None,
    resign: Annotated[
        bool,
        typer.Option(
            "--resign",
            help="Send the stored items as a new update: a new request id, signed now with "
            "the profile's verification token.",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.", min=0.1)] = 10.0,
    host: ListenerHostOption = None,
    port: ListenerPortOption = None,
) -> None:
    """Send a stored request again, body and headers as received, and show the answer."""
    from avasam_cli import output
    from avasam_cli.cli._context import local_endpoint
    from avasam_cli.cli._send import post_and_show
    from avasam_cli.delivery.replay import replay_headers
    from avasam_cli.net import checked_url
    from avasam_cli.webhooks.kinds import KINDS

    if to is not None and (host or port):
        raise UsageError("give --to, or --host/--port for the local listener, not both")
    if to is not None:
        to = checked_url(to, "--to", "https://my-shop.example/avasam/stock")
    event = _find(key)
    if to is None and event.kind not in KINDS:
        raise UsageError(
            f"event {event.id} went to no endpoint (it was answered 404): give --to URL"
        )
    target = to or local_endpoint(ctx, host, port, event.kind)
    headers = replay_headers(event)
    body = event.body
    if resign:
        body, request_id = _resigned(ctx, event)
        output.info(
            f"Re-signed the items of event {event.id} as a new update: request id "
            f"{request_id}, signed now with the verification token of profile "
            f"'{settings(ctx).profile}'."
        )
    if to is not None:  # to a shop: signed as the outbox signs its forwards
        from avasam_cli.delivery.signature import message_id, secrets_for_run, signature_headers
        from avasam_cli.paths import locations

        secrets = secrets_for_run(settings(ctx), locations().config_file)()
        headers += signature_headers(secrets, message_id(event.kind, event.request_id, to), body)
    response = post_and_show(target, body, headers, timeout, url_option="--to")
    if not resign:
        from avasam_cli.delivery.replay import replay_outcome

        outcome = replay_outcome(response.text)
        if outcome is not None:
            output.info(REPLAY_HINTS[outcome])
    if not response.is_success:
        raise OperationFailed(f"the receiver answered {response.status_code}, not 2xx")


def _resigned(ctx: typer.Context, event: "StoredEvent") -> tuple[bytes, str]:
    """The stored items in a freshly signed envelope: (body, its new request id)."""
    from avasam_cli.cli._context import verification_token_for
    from avasam_cli.delivery.replay import resigned, stored_items

    items = stored_items(event)
    if items is None:
        raise UsageError(
            f"event {event.id} holds no list of items to re-sign (its body is not an Avasam "
            "update): replay it as it is, without --resign"
        )
    return resigned(items, verification_token_for(ctx, None))


# What a plain replay's answer means, and the way on, for `events replay`.
REPLAY_HINTS = {
    "duplicate": (
        "Answered duplicate: the receiver has this request id already, so it passed "
        "nothing on. `--resign` sends the items as a new update."
    ),
    "expired": (
        "Refused as expired: the stored token's lifetime is over (Avasam's tokens last "
        "minutes). `--resign` signs the items afresh with a new request id."
    ),
}


def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Delete what was received before this: a duration (30d, 12h) or a date.",
            show_default=False,
        ),
    ],
    status: StatusOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say how many would go.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete old events and give their space back to the disk.

    Stock updates still waiting to be acknowledged are kept, whatever their age.
    """
    from avasam_cli import output
    from avasam_cli.cli._options import since_time
    from avasam_cli.paths import locations
    from avasam_cli.store.base import open_store

    verdict = status.value if status else None
    before = since_time(older_than, "--older-than")
    assert before is not None
    with open_store(locations().store_file) as store:
        doomed, kept = store.count_prunable(before, verdict)
        what = f"{verdict} events" if verdict else "events"
        cutoff = before[:19].replace("T", " ")
        if kept:
            output.info(
                f"Keeping {kept:,} verified stock updates from before {cutoff} UTC: their "
                "acknowledgement is pending (`avasam ack --pending` sends it)."
            )
        if not doomed:
            output.info(f"No {what} received before {cutoff} UTC to delete.")
            return
        if dry_run:
            output.info(f"Would delete {doomed:,} {what} received before {cutoff} UTC.")
            return
        if not yes:
            _confirm(f"Delete {doomed:,} {what} received before {cutoff} UTC?")
        deleted = _with_progress(
            "deleting", doomed, _batches(lambda: store.prune(before, verdict), doomed)
        )
        _with_progress("reclaiming space", None, store.reclaim_space())
    output.info(f"Deleted {deleted:,} {what} received before {cutoff} UTC.")


def _batches(step: Callable[[], int], total: int) -> Iterator[tuple[int, int]]:
    done = 0
    while done < total and (went := step()):
        done += went
        yield done, total


def _with_progress(label: str, total: int | None, steps: Iterator[tuple[int, int]]) -> int:
    """Run `steps`, showing their (done, total) on a terminal; the last `done`."""
    from rich.progress import Progress

    from avasam_cli import output

    console = output.make_console(stderr=True)
    done = 0
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=total)
        for done, of in steps:
            progress.update(task, completed=done, total=of)
    return done


def _confirm(question: str) -> None:
    """Ask on a terminal; in a script, --yes is the only way on."""
    if not sys.stdin.isatty():
        raise UsageError(f"{question[:-1]}: add --yes to confirm (stdin is not a terminal)")
    if not typer.confirm(question, default=False, err=True):
        raise OperationFailed("nothing was deleted")


def register(app: typer.Typer) -> None:
    events_app = group("Browse and replay everything the listener received.")
    events_app.command(
        "list",
        epilog="Examples:\n\n  avasam events list\n\n"
        "  avasam events list --kind stock --status rejected --json",
    )(list_events)
    events_app.command(
        "show",
        epilog="Examples:\n\n  avasam events show 42\n\n  avasam events show REQUEST_ID --raw",
    )(show)
    events_app.command(
        "replay",
        epilog="Examples:\n\n  avasam events replay 42\n\n"
        "  avasam events replay REQUEST_ID --to https://shop.example/avasam/stock",
    )(replay)
    events_app.command(
        "prune",
        epilog="Examples:\n\n  avasam events prune --older-than 30d\n\n"
        "  avasam events prune --older-than 7d --status rejected --yes",
    )(prune)
    app.add_typer(events_app, name="events")
