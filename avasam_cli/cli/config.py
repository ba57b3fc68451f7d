"""`avasam config show` and `avasam config path`."""

from typing import TYPE_CHECKING

import typer

from avasam_cli.cli._context import config_file, group, profile_flag, say_config_warnings
from avasam_cli.cli._options import JsonOption
from avasam_cli.errors import AlreadyReported

if TYPE_CHECKING:
    from avasam_cli.config import ConfigFile, Settings
    from avasam_cli.paths import Locations


def show_settings(settings: "Settings", config: "ConfigFile", as_json: bool) -> None:
    import json

    from avasam_cli import output
    from avasam_cli.config import FIELDS, typed_value

    say_config_warnings(config)
    if as_json:
        document: dict[str, dict[str, str | int | bool | None]] = {
            "profile": {"value": settings.profile, "source": settings.profile_source}
        }
        for name in FIELDS:
            setting = settings.values[name]
            document[name] = {
                "value": typed_value(name, setting.shown) if setting.value else None,
                "source": setting.source,
                **({"problem": setting.problem} if setting.problem else {}),
            }
        output.out(json.dumps(document, indent=2))
        if any(setting.problem for setting in settings.values.values()):
            raise AlreadyReported
        return
    rows = [("setting", "value", "source"), ("profile", settings.profile, settings.profile_source)]
    rows += [(name, settings.values[name].shown, settings.values[name].source) for name in FIELDS]
    output.table(rows)
    problems = [setting.problem for setting in settings.values.values() if setting.problem]
    for problem in problems:
        output.error(problem)
    if problems:
        raise AlreadyReported


def show_paths(where: "Locations", as_json: bool) -> None:
    import json

    from avasam_cli import output

    entries = {
        "config_file": str(where.config_file),
        "cache_dir": str(where.cache_dir),
        "data_dir": str(where.data_dir),
        "event_store": str(where.store_file),
    }
    if as_json:
        output.out(json.dumps(entries, indent=2))
        return
    output.table([("what", "path"), *entries.items()])


def show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show every effective value and where it came from; secrets masked."""
    from avasam_cli.config import resolve

    config = config_file()
    show_settings(resolve(config, profile_flag(ctx), lenient=True), config, as_json)


def path(as_json: JsonOption = False) -> None:
    """Show where the config file, the token cache and the event store live."""
    from avasam_cli.paths import locations

    show_paths(locations(), as_json)


def register(app: typer.Typer) -> None:
    config_app = group("Show the effective configuration and where avasam keeps its files.")
    config_app.command(
        "show", epilog="Examples:\n\n  avasam config show\n\n  avasam -p staging config show --json"
    )(show)
    config_app.command(
        "path", epilog="Examples:\n\n  avasam config path\n\n  avasam config path --json"
    )(path)
    app.add_typer(config_app, name="config")
