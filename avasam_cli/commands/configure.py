"""`avasam configure`: store credentials and the verification token in a profile."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TextIO

from avasam_cli import output
from avasam_cli.config import (
    ENV_VARS,
    FIELDS,
    LABELS,
    NORMALIZERS,
    PROMPTED_FIELDS,
    SECRET_FIELDS,
    ConfigFile,
    choose_profile,
    generate_verification_token,
    mask,
    token_length_warning,
)
from avasam_cli.errors import UsageError

STDIN_MARKER = "-"
HIDDEN_FIELDS = frozenset({"secret_key", "verification_token"})
# Prompt(label, current value shown, hide input) -> the answer, "" to keep the current value.
Prompt = Callable[[str, str, bool], str]

PASTE_INSTRUCTION = (
    "Paste it into Avasam: Settings > User management > your API user > webhook section > "
    "Verification token, then click Save."
)


def read_stdin_values(given: Mapping[str, str | None], stdin: TextIO) -> dict[str, str | None]:
    """Replace each `-` with the next line of standard input, in the order of FIELDS."""
    resolved = dict(given)
    for name in FIELDS:
        if resolved.get(name) != STDIN_MARKER:
            continue
        line = stdin.readline()
        if not line:
            raise UsageError(
                f"--{name.replace('_', '-')} - expects the {LABELS[name]} on standard input, "
                "which was empty: pipe it in, e.g. `printf '%s\\n' \"$TOKEN\" | avasam configure "
                f"--{name.replace('_', '-')} -`"
            )
        resolved[name] = line.rstrip("\r\n")
    return resolved


def prompt_for_values(current: Mapping[str, str], prompt: Prompt) -> dict[str, str]:
    answers: dict[str, str] = {}
    for name in PROMPTED_FIELDS:
        value = current.get(name, "")
        shown = mask(value) if name in SECRET_FIELDS and value else value
        answer = prompt(LABELS[name].capitalize(), shown, name in HIDDEN_FIELDS).strip()
        if answer:
            answers[name] = answer
    return answers


def run(
    *,
    config: ConfigFile,
    profile_flag: str | None,
    given: Mapping[str, str | None],
    generate_token: bool,
    interactive: bool,
    stdin: TextIO,
    prompt: Prompt,
) -> None:
    profile, _ = choose_profile(profile_flag, os.environ)
    current = config.profile(profile)  # a corrupt file stops us here, before anything is written
    if generate_token and given.get("verification_token"):
        raise UsageError(
            "--generate-verification-token and --verification-token both set the token: "
            "give one of them"
        )
    values = read_stdin_values(given, stdin)
    updates = {name: value for name, value in values.items() if value is not None}
    if not updates and not generate_token and interactive:
        updates = prompt_for_values(current, prompt)
    for name, value in updates.items():
        if not value.strip():
            raise UsageError(f"the {LABELS[name]} is empty: give a value or leave the option out")
    for name, normalize in NORMALIZERS.items():
        if name in updates:
            updates[name] = normalize(updates[name])
    if generate_token:
        updates["verification_token"] = generate_verification_token()
    elif "verification_token" in updates:
        warning = token_length_warning(updates["verification_token"])
        if warning:
            output.warn(warning)

    for warning in config.warnings:
        output.warn(warning)
    if not updates:
        output.info(f"Nothing changed in profile '{profile}' ({config.path}).")
        return
    config.save_profile(profile, updates)
    output.info(f"Saved profile '{profile}' to {config.path}")
    for name in FIELDS:
        if name in updates and not (generate_token and name == "verification_token"):
            shown = mask(updates[name]) if name in SECRET_FIELDS else updates[name]
            output.info(f"  {LABELS[name]}: {shown}")
        if name in updates and os.environ.get(ENV_VARS[name]):
            output.warn(f"{ENV_VARS[name]} is set and overrides the saved {LABELS[name]}")
    if generate_token:
        output.info("New verification token (shown once):")
        output.out(updates["verification_token"])
        output.info(PASTE_INSTRUCTION)
