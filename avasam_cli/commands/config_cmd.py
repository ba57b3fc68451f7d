"""`avasam config show` and `avasam config path`."""

from __future__ import annotations

import json

from avasam_cli import output
from avasam_cli.config import FIELDS, ConfigFile, Settings
from avasam_cli.paths import Locations


def show(settings: Settings, config: ConfigFile, as_json: bool) -> None:
    for warning in config.warnings:
        output.warn(warning)
    if as_json:
        document: dict[str, dict[str, str | None]] = {
            "profile": {"value": settings.profile, "source": settings.profile_source}
        }
        for name in FIELDS:
            setting = settings.values[name]
            document[name] = {
                "value": setting.shown if setting.value else None,
                "source": setting.source,
            }
        output.out(json.dumps(document, indent=2))
        return
    rows = [("setting", "value", "source"), ("profile", settings.profile, settings.profile_source)]
    rows += [(name, settings.values[name].shown, settings.values[name].source) for name in FIELDS]
    output.table(rows)


def paths(where: Locations, as_json: bool) -> None:
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
