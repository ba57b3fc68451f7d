"""How the command line reads: help that fits 80 columns, and parameter errors in our words.

Help is click's plain two-column layout (rich's six-column panels cut option
names at 80 columns), with a metavar that names what each option takes. A value
the parser refuses is explained here: the option, what it accepts, and the
closest value that would work, instead of the validation library's wording.

Typer up to 0.24 hands click its types (`param.type`); later releases keep the
annotation (`param.type_descriptor`). `_shape` reads both, so the floors
pinned in CI and the newest releases read the same.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

import typer

# A few options whose name alone does not say what they take.
METAVARS = {
    "--on": "TIME",
    "--older-than": "AGE",
    "--since": "AGE|DATE",
    "--retain": "AGE",
    "--data-file": "FILE",
    "--request-id": "ID",
    "--to": "URL",
    "--forward-ca": "FILE",
    "--forward-header": "'NAME: VALUE'",
    "--port": "PORT",
    "--inspect-port": "PORT",
}


@dataclass(frozen=True)
class Shape:
    kind: str  # "choice", "int", "float" or "text"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


def _choice_text(choice: Any) -> str:
    return str(choice.value) if isinstance(choice, Enum) else str(choice)


def _shape(param: Any) -> Shape:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        annotation = descriptor.annotation
        if getattr(annotation, "__origin__", None) is list:
            annotation = annotation.__args__[0]
        if descriptor.is_choice:
            return Shape("choice", tuple(_choice_text(c) for c in descriptor.choices or ()))
        kind = {int: "int", float: "float"}.get(annotation, "text")
        return Shape(kind, low=getattr(param, "min", None), high=getattr(param, "max", None))
    click_type = param.type
    if hasattr(click_type, "choices"):
        return Shape("choice", tuple(_choice_text(c) for c in click_type.choices))
    name = getattr(click_type, "name", "")
    kind = "int" if name.startswith("integer") else "float" if name.startswith("float") else "text"
    return Shape(kind, low=getattr(click_type, "min", None), high=getattr(click_type, "max", None))


def _long_name(param: Any) -> str:
    opts: list[str] = param.opts
    return next((opt for opt in opts if opt.startswith("--")), opts[0])


# Longer than this, a list of choices would push the help text off its column.
CHOICES_METAVAR_WIDTH = 26


def metavar_for(param: Any) -> str:
    if param.param_type_name == "argument":
        return str(param.name).upper()
    name = _long_name(param)
    if name in METAVARS:
        return METAVARS[name]
    shape = _shape(param)
    if shape.kind == "choice":
        listed = f"[{'|'.join(shape.choices)}]"
        return listed if len(listed) <= CHOICES_METAVAR_WIDTH else name.rsplit("-", 1)[-1].upper()
    if shape.kind == "int":
        return "N"
    if shape.kind == "float":
        return "SECONDS" if "time" in name or "wait" in name or "leeway" in name else "NUMBER"
    if name.endswith("-to") or name.endswith("url"):
        return "URL"
    return name.rsplit("-", 1)[-1].upper()


def tidy(command: Any) -> Any:
    """Give every value-taking parameter a metavar that says what it takes (once)."""
    if command is None or getattr(command, "_avasam_tidy", False):
        return command
    command._avasam_tidy = True
    if command.epilog and command.epilog.startswith(EXAMPLES):
        command.epilog = examples(*command.epilog[len(EXAMPLES) :].split("\n\n"))
    for param in command.params:
        if param.param_type_name == "argument" and not _shape(param).choices:
            # Typer >= 0.29 adds the annotation (`<list[str]>`) after an argument's name.
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010
        if param.metavar is None and not getattr(param, "is_flag", False):
            param.metavar = metavar_for(param)
            choices = _shape(param).choices
            is_listed = param.metavar == f"[{'|'.join(choices)}]"
            if choices and not is_listed and param.param_type_name == "option":
                param.help = f"{param.help or ''} One of: {', '.join(choices)}.".strip()
    return command


EXAMPLES = "Examples:"


def examples(*commands: str) -> str:
    """The epilog's example commands, one per line (`\\b`: click does not rewrap them)."""
    lines = (f"  {line.strip()}" for line in commands if line.strip())
    return f"{EXAMPLES}\n\n\b\n" + "\n".join(lines)


def given_value(param: Any, args: list[str]) -> str | None:
    """What the command line gave `param` (the last occurrence), if it can be told."""
    found = None
    for index, arg in enumerate(args):
        for opt in param.opts:
            if arg == opt and index + 1 < len(args):
                found = args[index + 1]
            elif arg.startswith(opt + "="):
                found = arg[len(opt) + 1 :]
    return found


def _number_range(shape: Shape) -> str:
    low, high = shape.low, shape.high
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f" of at least {low:g}"
    if high is not None:
        return f" of at most {high:g}"
    return ""


def _closest_number(shape: Shape, value: str | None, default: Any) -> str | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        number = None
    if number is None:  # nothing to be close to: the default, if it is a number
        if not isinstance(default, int | float) or isinstance(default, bool):
            return None
        number = float(default)
    if shape.low is not None:
        number = max(number, shape.low)
    if shape.high is not None:
        number = min(number, shape.high)
    return str(int(number)) if shape.kind == "int" else f"{number:g}"


class RefusedValue(typer.BadParameter):
    """A refused value, said in our words (which already name the option)."""

    def format_message(self) -> str:
        return self.message


def reworded(error: typer.BadParameter, args: list[str]) -> RefusedValue | None:
    """Our wording for a value the parser refused, or None to keep the original."""
    param = error.param
    if param is None:
        return None
    shape = _shape(param)
    if shape.kind == "text":
        return None
    is_option = param.param_type_name == "option"
    name = _long_name(param) if is_option else param.name.upper()
    value = given_value(param, args) if is_option else None
    if value is None:
        quoted = re.search(r"'(.*?)' is not", error.message)
        value = quoted[1] if quoted else None
    got = f", not {value!r}" if value is not None else ""
    if shape.kind == "choice":
        accepted = ", ".join(shape.choices[:-1]) + f" or {shape.choices[-1]}"
        close = difflib.get_close_matches(value or "", shape.choices, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return RefusedValue(f"{name} takes {accepted}{got}{hint}", ctx=error.ctx, param=param)
    what = "a whole number" if shape.kind == "int" else "a number"
    closest = _closest_number(shape, value, param.default)
    example = f"; for example {name} {closest}" if closest is not None and is_option else ""
    message = f"{name} takes {what}{_number_range(shape)}{got}{example}"
    return RefusedValue(message, ctx=error.ctx, param=param)
