"""`avasam api`: an authenticated call to any seller endpoint, as `gh api` does for GitHub."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from avasam_cli.cli._context import client_for, settings
from avasam_cli.cli._options import BaseUrlOption
from avasam_cli.errors import OperationFailed, UsageError


def _read_data(data: str) -> Any:
    """--data as JSON: literal, @FILE, or - for standard input."""
    import json
    from pathlib import Path

    if data == "-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        try:
            text = Path(data[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read --data {data}: {error.strerror or error}") from None
    else:
        text = data
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageError(
            f"--data is not valid JSON ({error}): give JSON, @FILE or -, "
            """for example --data '{"limit": 10, "page": 0}'"""
        ) from None


def _typed(value: str) -> Any:
    """A --field value: true, false, null and numbers as themselves, anything else a string."""
    literals: dict[str, Any] = {"true": True, "false": False, "null": None}
    if value in literals:
        return literals[value]
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _fields(typed: list[str], raw: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for pairs, convert in ((typed, _typed), (raw, str)):
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UsageError(
                    f"--field {pair!r} must be key=value, for example --field limit=10"
                )
            fields[key] = convert(value)
    return fields


def _path(path: str) -> str:
    if "://" in path:
        raise UsageError(
            f"give a path such as /apiseeker/Products/SellerStockList, not a URL ({path}): "
            "the base URL comes from --base-url or the profile"
        )
    return path if path.startswith("/") else "/" + path


def _show_answer(response: Any, include: bool, scrub: Callable[[str], str]) -> None:
    """The answer on stdout (its head on stderr with --include), with our own credentials
    (keys, access tokens) masked wherever it echoes them."""
    import json

    from avasam_cli import output

    if include:
        output.info(f"HTTP/1.1 {response.status_code} {response.reason_phrase}")
        for name, value in response.headers.items():
            output.info(scrub(f"{name}: {value}"))
        output.info("")
    try:
        document = response.json()
    except ValueError:
        if response.content:
            text = scrub(response.text)
            sys.stdout.write(text)
            sys.stdout.write("" if text.endswith("\n") else "\n")
        return
    pretty = sys.stdout.isatty()
    output.out(scrub(json.dumps(document, indent=2 if pretty else None, ensure_ascii=False)))


def api(
    ctx: typer.Context,
    path: Annotated[
        str, typer.Argument(help="The endpoint's path, e.g. /apiseeker/Products/SellerStockList.")
    ],
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            "-X",
            help="HTTP method (default: POST with a body, else GET).",
            metavar="METHOD",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="The JSON body: literal JSON, @FILE, or - for standard input.",
            metavar="JSON|@FILE|-",
        ),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            "-F",
            help="A body field key=value; true, false, null and numbers keep their type "
            "(query parameters for GET). Repeatable.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    raw_field: Annotated[
        list[str] | None,
        typer.Option(
            "--raw-field",
            "-f",
            help="A field key=value, always a string. Repeatable.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    include: Annotated[
        bool, typer.Option("--include", "-i", help="Show the status line and headers on stderr.")
    ] = False,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the answer's body to this file, whole, however large (stdout shows "
            "at most 8 MiB).",
            metavar="FILE",
        ),
    ] = None,
    base_url: BaseUrlOption = None,
) -> None:
    """Call any seller API endpoint with your keys; the JSON answer goes to stdout."""
    import json

    from avasam_cli.paths import locations
    from avasam_cli.text import excerpt

    target = _path(path)
    fields = _fields(field or [], raw_field or [])
    if data is not None and fields:
        raise UsageError("give the body with --data or with --field, not both")
    body = _read_data(data) if data is not None else None
    chosen = (method or ("POST" if body is not None or fields else "GET")).upper()
    if not chosen.isalpha():
        raise UsageError(f"-X {method!r} is not an HTTP method: use GET, POST, PUT or DELETE")
    params = None
    if fields and chosen == "GET":
        params = {
            key: json.dumps(value) if not isinstance(value, str) else value
            for key, value in fields.items()
        }
    elif fields:
        body = fields
    from avasam_cli.api.client import CUT, MAX_ANSWER_BYTES

    with client_for(settings(ctx, base_url=base_url), locations()) as client:
        if output_file is not None:
            _save_answer(client, chosen, target, body, params, output_file, include)
            return
        response = client.request(chosen, target, body, params)
        shown = excerpt(client.scrub(response.text), 200)
        if response.extensions.get(CUT):  # nothing partial on stdout: it would not parse
            raise OperationFailed(
                f"{chosen} {target}: the answer is over {MAX_ANSWER_BYTES // 2**20} MiB, the "
                "most shown on stdout; `--output FILE` writes it whole"
            )
        _show_answer(response, include, client.scrub)
    if not response.is_success:
        raise OperationFailed(f"{chosen} {target} answered {response.status_code}: {shown}")


def _save_answer(
    client: Any,
    method: str,
    target: str,
    body: Any,
    params: dict[str, str] | None,
    path: Path,
    include: bool,
) -> None:
    """`--output FILE`: the answer's body streamed to the file, whole; a line on stderr."""
    from avasam_cli import output
    from avasam_cli.text import excerpt

    try:
        sink = path.open("wb")
    except OSError as error:
        raise UsageError(f"cannot write --output {path}: {error.strerror or error}") from None
    with sink:
        response = client.request(method, target, body, params, sink=sink)
        size = sink.tell()
    if include:
        output.info(f"HTTP/1.1 {response.status_code} {response.reason_phrase}")
        for name, value in response.headers.items():
            output.info(client.scrub(f"{name}: {value}"))
    if not response.is_success:
        said = excerpt(client.scrub(path.read_bytes()[:4096].decode("utf-8", "replace")), 200)
        raise OperationFailed(f"{method} {target} answered {response.status_code}: {said}")
    output.info(f"Wrote the answer ({size:,} bytes) to {path}.")


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n"
        "  avasam api /apiseeker/Products/SellerStockList -F limit=5 -F page=0\n\n"
        """  avasam api /apiseeker/Products/GetSellerProductList -d '{"Limit": 10}'\n\n"""
        "  avasam api /api-seller/Product/AcknowledgeStockUpdate -d @ack.json -i",
    )(api)
