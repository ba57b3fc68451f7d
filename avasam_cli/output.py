"""All terminal output is made here.

Quick commands write plain lines (importing rich costs start-up time they
cannot afford); long-running ones get rich consoles from `make_console`, which
the renderers take as a parameter so tests can hand in a `StringIO` console.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from avasam_cli.store.events import is_test_event
from avasam_cli.webhooks.contract import PREVIOUS_TOKEN  # standard library only

if TYPE_CHECKING:
    import orjson
    from rich.console import Console
    from rich.table import Table

    from avasam_cli.store.events import Event

_STYLES = {"red": "31", "yellow": "33", "green": "32", "bold": "1", "dim": "2"}


def colour_enabled(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def styled(text: str, style: str, stream: TextIO) -> str:
    if not colour_enabled(stream):
        return text
    return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"


def terminal_columns(stream: TextIO) -> int | None:
    """The width to wrap messages at: $COLUMNS, else the terminal's; None when piped."""
    from avasam_cli.logs import json_logs

    if json_logs():  # one record per message, however wide
        return None
    given = os.environ.get("COLUMNS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None


def fitted(message: str, stream: TextIO, label: str = "") -> str:
    """`label message`, wrapped at spaces to the terminal's width; a line's own indent is
    kept, and continuation lines of a labelled message are indented by two more.

    Only spaces outside `backquotes` are break points, so commands and URLs stay whole;
    piped output (no width) keeps its lines whole for logs and grep.
    """
    import re
    import textwrap

    head = f"{label} " if label else ""
    width = terminal_columns(stream)
    if width is None:
        text = head + message
    else:
        lines = []
        # A `quoted command` is one word to the wrapper: its spaces become NULs until after.
        message = re.sub(r"`[^`\n]*`", lambda quoted: quoted[0].replace(" ", "\0"), message)
        for number, line in enumerate(message.split("\n")):
            own = line[: len(line) - len(line.lstrip())]
            lines.append(
                textwrap.fill(
                    line.strip(),
                    width=max(width - 1, 40),
                    initial_indent=(head if number == 0 else "") + own,
                    subsequent_indent=("  " if label else "") + own,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        text = "\n".join(lines).replace("\0", " ")
    return styled(label, _LABEL_STYLES[label], stream) + text[len(label) :] if label else text


_LABEL_STYLES = {"Error:": "red", "Warning:": "yellow"}


def error(message: str) -> None:
    print(fitted(message, sys.stderr, "Error:"), file=sys.stderr)


def warn(message: str) -> None:
    print(fitted(message, sys.stderr, "Warning:"), file=sys.stderr)


def info(message: str) -> None:
    """A human note on stderr, so stdout stays clean for data."""
    print(fitted(message, sys.stderr), file=sys.stderr)


def out(message: str = "") -> None:
    print(message)


def check_line(passed: bool | None, text: str) -> None:
    """One line of a checklist: PASS, FAIL, or skip (None)."""
    label = {True: ("PASS", "green"), False: ("FAIL", "red"), None: ("skip", "dim")}[passed]
    print(f"{styled(label[0], label[1], sys.stdout)}  {text}")


CUT_NOTE = "Columns were cut or left out to fit the terminal: --json shows them whole."


def table(
    rows: Sequence[Sequence[str]],
    stream: TextIO | None = None,
    shrink: Sequence[tuple[int, int]] = (),
    drop: Sequence[int] = (),
) -> bool:
    """Columns aligned with spaces; the first row is the header.

    On a terminal too narrow for the table, the `shrink` columns (index, narrowest
    width), in that order, are cut to fit, with "…"; if that is not enough, the `drop`
    columns, in that order, are left out.  Returns whether any was cut or left out.
    """
    from avasam_cli.text import inert

    target = stream or sys.stdout
    # Cells may come from requests: made inert when measured and when printed, rather
    # than copied (a listing can hold 100,000 rows).
    natural = [max(len(inert(row[i])) for row in rows) for i in range(len(rows[0]))]
    # A column is never cut narrower than its header: the header says what it holds.
    whole_headers = [(column, max(narrowest, len(rows[0][column]))) for column, narrowest in shrink]

    def fitted(columns: list[int]) -> list[int]:
        at = {column: place for place, column in enumerate(columns)}
        cuts = [(at[column], width) for column, width in whole_headers if column in at]
        return fitted_widths([natural[column] for column in columns], target, cuts)

    kept = list(range(len(natural)))
    widths = fitted(kept)
    for column in drop:  # what no cut can make fit: a column not needed to act on a row
        room = terminal_columns(target)
        if not room or sum(widths) + 2 * (len(widths) - 1) <= room:
            break
        kept.remove(column)
        widths = fitted(kept)
    for index, row in enumerate(rows):
        line = table_line([row[column] for column in kept], widths)
        print(styled(line, "bold", target) if index == 0 else line, file=target)
    return widths != natural


def fitted_widths(
    widths: Sequence[int], stream: TextIO, shrink: Sequence[tuple[int, int]]
) -> list[int]:
    """`widths`, with the `shrink` columns narrowed as far as needed to fit the terminal."""
    fitted = list(widths)
    room = terminal_columns(stream)
    excess = sum(fitted) + 2 * (len(fitted) - 1) - room if room else 0
    for column, narrowest in shrink:
        cut = min(max(excess, 0), max(fitted[column] - narrowest, 0))
        fitted[column] -= cut
        excess -= cut
    return fitted


def table_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One row: each cell made inert, padded or cut (with "…") to its column's width."""
    from avasam_cli.text import inert

    shown = (_cell(inert(cell), width) for cell, width in zip(cells, widths, strict=True))
    return "  ".join(shown).rstrip()


def _cell(text: str, width: int) -> str:
    """`text` padded to `width`, or cut to it with "…": a URL in its middle (its host and
    its path's end both say which target it is), anything else at its end."""
    if len(text) <= width:
        return text.ljust(width)
    if "://" in text and width >= 9:
        head = (width - 1) // 2
        return text[:head] + "…" + text[len(text) - (width - 1 - head) :]
    return text[: width - 1] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def make_console(stderr: bool = False) -> Console:
    """A rich console; colour and markup follow the terminal and NO_COLOR."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


# --- Received events (`avasam listen`) ------------------------------------------------
MAX_TABLE_ROWS = 20
TABLE_INDENT = 10
_STATUS_STYLE = {"verified": "green", "duplicate": "yellow", "rejected": "red"}


class EventPrinter:
    """Prints committed events (`listen`) and counts them for the stop summary."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, events: Sequence[Event], compact: bool = False) -> None:
        raise NotImplementedError

    def count(self, events: Sequence[Event]) -> None:
        for event in events:
            key = "not stored" if event.store_error else event.status
            self.counts[key] = self.counts.get(key, 0) + 1

    def count_earlier(self, counts: Mapping[str, int]) -> None:
        """What an earlier printer of this run counted (restarted: the summary is whole)."""
        for key, count in counts.items():
            self.counts[key] = self.counts.get(key, 0) + count

    def summary(self) -> str:
        if not self.counts:
            return "no requests received"
        total = sum(self.counts.values())
        parts = ", ".join(f"{count} {status}" for status, count in sorted(self.counts.items()))
        return f"{total} received ({parts})"


class BytesEventPrinter(EventPrinter):
    """A printer whose output for a batch is made whole before it is written: made where
    the batch was committed (`render`, cheap), written where a blocked output can wait
    (`write`, on the printer's thread)."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self.stream = stream

    def render(self, events: Sequence[Event]) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        self.stream.write(data)
        self.stream.flush()

    def __call__(self, events: Sequence[Event], compact: bool = False) -> None:
        self.write(self.render(events))


class JsonEventPrinter(BytesEventPrinter):
    """One JSON object per line on a binary stream, flushed once per committed batch."""

    def render(self, events: Sequence[Event]) -> bytes:
        import orjson

        from avasam_cli.store.events import event_json

        line = orjson.OPT_APPEND_NEWLINE  # written with the line: no copy to add it
        return b"".join(orjson.dumps(event_json(e, _data_fragment(e)), option=line) for e in events)


class LogEventPrinter(BytesEventPrinter):
    """`--log-format json` without --json: one log record per request on stderr."""

    def render(self, events: Sequence[Event]) -> bytes:
        from avasam_cli.logs import record

        lines = []
        for event in events:
            verdict, level = event.status, "warning" if event.status == "rejected" else "info"
            if event.store_error is not None and verdict != "rejected":
                verdict, level = "unstored", "error"
            said = f"{event.kind} update {event.request_id or '-'}: {verdict}"
            if event.reason:
                said += f" ({event.reason})"
            lines.append(record(
                said, "webhook", level=level, id=event.id, request_id=event.request_id,
                kind=event.kind, verdict=verdict, reason=event.reason,
                http_status=event.http_status, items=event.item_count, client=event.client,
                detail=event.store_error or event.detail, test=is_test_event(event.headers_json),
            ))  # fmt: skip
        return "".join(line + "\n" for line in lines).encode()


def _data_fragment(event: Event) -> orjson.Fragment | None:
    """The verified items, already JSON, spliced in as they are (no re-encoding)."""
    if event.status != "verified" or event.store_error is not None:
        return None
    import orjson

    return orjson.Fragment(event.data_json or b"[]")


class HumanEventPrinter(EventPrinter):
    """A header line per request and, for verified updates, a table of items."""

    def __init__(self, console: Console, errors: Console) -> None:
        super().__init__()
        self.console = console
        self.errors = errors
        self._store_failing = False

    def __call__(self, events: Sequence[Event], compact: bool = False) -> None:
        """Print `events`; `compact` leaves out the item tables (the output is falling behind)."""
        failure = next((e.store_error for e in events if e.store_error), None)
        if failure and not self._store_failing:
            self.errors.print(
                f"[red]Error:[/] the event store cannot be written ({failure}); verified "
                "updates are answered 503 so that Avasam retries them."
            )
        elif not failure and self._store_failing:
            self.errors.print("[green]The event store is writable again.[/]")
        self._store_failing = failure is not None
        for event in events:
            # One write per block: the listener's follow-up lines ("Acknowledged ...",
            # written by another process) then land between blocks, never inside one.
            with self.console.capture() as block:
                self.print_event(event, compact)
            self.console.file.write(block.get())
            self.console.file.flush()

    def print_event(self, event: Event, compact: bool = False) -> None:
        from rich.markup import escape
        from rich.padding import Padding
        from rich.text import Text

        from avasam_cli.text import inert

        time = event.received_at[11:19]
        status = event.status
        if event.store_error is not None and status != "rejected":
            label = "[red]not stored (503)[/]"
        elif status == "rejected":
            label = f"[red]rejected {event.http_status} {escape(inert(event.reason or ''))}[/]"
        else:
            label = f"[{_STATUS_STYLE[status]}]{status}[/]"
            if event.reason == PREVIOUS_TOKEN:  # a rotation's grace: tell Avasam the new one
                label += " [yellow](previous token)[/]"
        request_id = escape(inert(event.request_id or "-"))
        if status == "rejected" and event.request_id:
            request_id += " [dim](unverified)[/]"
        items = "" if event.item_count is None else f"  {plural(event.item_count, 'item')}"
        if is_test_event(event.headers_json):  # send-test's: never acknowledged
            items += "  [dim](test)[/]"
        self.console.print(f"{time}  [bold]{event.kind.upper():5}[/]  {label}  {request_id}{items}")
        if status == "rejected" and event.detail:
            detail = Text(inert(event.detail), style="dim")
            self.console.print(Padding(detail, (0, 0, 0, TABLE_INDENT), expand=False))
        if not compact and status == "verified" and event.item_count and event.store_error is None:
            import orjson

            items = orjson.loads(event.data_json or b"[]")
            shown: Any = (
                items_table(event.kind, items)
                if isinstance(items, list)
                else Text(str(items), style="dim")  # a note instead of items
            )
            self.console.print(Padding(shown, (0, 0, 0, TABLE_INDENT), expand=False))


def items_table(kind: str, items: Sequence[dict[str, Any]]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    from avasam_cli.text import inert
    from avasam_cli.webhooks.kinds import KINDS

    value_column = KINDS[kind].value_field
    extra = sorted(
        {key for item in items[:MAX_TABLE_ROWS] for key in item}
        - {"sku", value_column, "updatedOn"}
    )
    table = Table(box=None, padding=(0, 2), pad_edge=False, show_edge=False)
    table.add_column("sku")
    table.add_column(value_column, justify="right")
    table.add_column("updatedOn")
    for key in extra:
        table.add_column(escape(inert(key)))
    for item in items[:MAX_TABLE_ROWS]:
        cells = [item.get("sku"), item.get(value_column), item.get("updatedOn")]
        cells += [item.get(key, "") for key in extra]
        table.add_row(*(escape(inert(str(cell))) for cell in cells))
    if len(items) > MAX_TABLE_ROWS:
        table.add_row(f"... and {len(items) - MAX_TABLE_ROWS} more", "", "")
    return table
