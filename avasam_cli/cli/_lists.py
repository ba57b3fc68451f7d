"""What the commands reading Avasam's lists share (`stock list`, `products list`,
`reconcile`): their options, reading every page, and printing rows."""

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from avasam_cli.errors import OperationFailed

if TYPE_CHECKING:
    from avasam_cli.api.client import Page

PageSizeOption = Annotated[
    int, typer.Option(help="Rows asked for per page of Avasam's list.", min=1, max=10_000)
]


CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")]


def fetch_all(pages: Iterator["Page"], what: str) -> list[Any]:
    """Every row of a paged list (`what` names it), with a progress bar on stderr."""
    from rich.progress import Progress

    from avasam_cli import output

    rows: list[Any] = []
    console = output.make_console(stderr=True)
    # Off a terminal a progress bar only leaves blank lines in logs.
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"reading Avasam's {what}", total=None)
        for page in pages:
            rows += page.rows
            progress.update(task, completed=len(rows), total=page.total)
    return rows


def print_rows(lines: Iterable[dict[str, object]], as_json: bool, as_csv: bool) -> None:
    """JSON lines, CSV, or an aligned table; every row a dict with the same keys."""
    import csv
    import json

    from avasam_cli import output

    rows = list(lines)
    if as_json:
        for row in rows:
            output.out(json.dumps(row))
        return
    if as_csv:
        if rows:
            writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return
    if rows:
        shown = [[("" if v is None else str(v)) for v in row.values()] for row in rows]
        output.table([list(rows[0]), *shown])


def show_listed(
    rows: list[Any],
    skus: list[str] | None,
    line: Callable[[Any], dict[str, object]],
    as_json: bool,
    as_csv: bool,
    what: str,
) -> None:
    """The rows of Avasam's `what` (only `skus`, if given) as `line` makes them, and how
    many; OperationFailed naming a SKU asked for that is not in the list."""
    from avasam_cli import output

    wanted = set(skus or ())
    shown = [row for row in rows if not wanted or row.sku in wanted]
    print_rows(map(line, shown), as_json, as_csv)
    output.info(f"{output.plural(len(shown), 'SKU')} shown of {len(rows)} in the {what}.")
    missing = sorted(wanted - {row.sku for row in rows})
    if missing:
        raise OperationFailed(f"not in Avasam's {what}: {', '.join(missing)}")
