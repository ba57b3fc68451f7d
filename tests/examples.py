"""The runner of the documentation's console examples (README.md and docs/).

A ```console block is a transcript: `$ command` lines, each followed by what it prints.
The runner plays a page's blocks in order, in a home folder of their own (`/home/me`
in the text), with a stand-in Avasam API and, where the text names them, real local
servers: the ports the text shows (8787 for the listener, 8788 for its inspector,
3000 for the shop, 9464 for metrics) are free ports here, put back in the output.

- `$ avasam listen ...` (or any command ending in `&`) runs in the background; the
  lines after it are what it prints until it is ready.  A later block that starts
  without a `$` is more of its output; `^C` stops it (SIGINT), and the lines after
  are what it prints as it stops.
- What differs from run to run is written as any example of it and compared as a
  kind: ids, times, latencies, tokens, JWTs, a generated secret.
- A line `...` stands for any number of lines.
- Lines are as wide as they come (COLUMNS=1000): a terminal would wrap them at its
  width, which the text cannot know.  Blank lines are not compared.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# What varies between runs, and the placeholder both sides are compared as.
VARYING = [
    (re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+"), "<jwt>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"go-live-<uuid>"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?( UTC)?"),
     "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)? ms\b"), "<ms>"),
    (re.compile(r"\b\d+(\.\d+)? s\b(?= \()"), "<s>"),
    (re.compile(r"\?token=[\w-]+"), "?token=<token>"),
    (re.compile(r"(?<![\w-])[A-Za-z0-9_-]{43}(?![\w-])"), "<secret>"),
    (re.compile(r"\d+(\.\d+)? req/s"), "<rate>"),
    (re.compile(r"\bin \d+(\.\d+)? s:"), "in <s>:"),
    (re.compile(r"\d+ answered requests/s"), "<n> answered requests/s"),
    (re.compile(r"from 127\.0\.0\.1:\d+"), "from 127.0.0.1:<port>"),
    # A generated token's mask: its last four characters (the typed keys' are checked).
    (re.compile(r"(verification token: \*{4})[\w-]{4}\b"), r"\1<tail>"),
    (re.compile(r"avasam-cli \d+\.\d+\.\d+"), "avasam-cli <version>"),
    (re.compile(r"https://stub-\d+-words\.trycloudflare\.com"), "https://<tunnel>"),
]  # fmt: skip
# The ports the text shows, and what stands behind them in a run.
PORTS = {"listener": 8787, "inspector": 8788, "shop": 3000, "metrics": 9464, "proxy": 8080}
READY_MARK = "Ready. Press Ctrl-C to stop."
WAIT = 20.0  # seconds for a background command's next lines


@dataclass
class Step:
    command: str | None  # None: more output of the background command
    expected: list[str] = field(default_factory=list)


@dataclass
class Example:
    page: Path
    line: int  # where the block starts
    steps: list[Step]


def examples_in(page: Path) -> list[Example]:
    """Every ```console block of a Markdown page, as steps."""
    found, lines = [], page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```console":
            index += 1
            continue
        start, body = index + 1, []
        index += 1
        while lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        steps: list[Step] = []
        for text in body:
            if text.startswith("$ "):
                steps.append(Step(text[2:]))
            elif steps and steps[-1].command is not None and steps[-1].command.endswith("\\"):
                steps[-1].command = steps[-1].command[:-1] + text.strip()
            else:
                if not steps:
                    steps.append(Step(None))
                steps[-1].expected.append(text)
        found.append(Example(page, start, steps))
    return found


def as_written(lines: list[str], sandbox: Path, ports: dict[int, int]) -> list[str]:
    """What a run printed, with its folders and ports as the text shows them."""
    out = []
    for raw in lines:
        # This install's `avasam` (a service's ExecStart) is written as a venv's in the home.
        text = raw.rstrip().replace(str(Path(sys.executable).parent), "/home/me/.venv/bin")
        text = text.replace(str(sandbox), "")
        for shown, real in ports.items():
            text = text.replace(f":{real}", f":{shown}").replace(f"port {real}", f"port {shown}")
        out.append(text)
    return out


def normalized(lines: list[str], sandbox: Path, ports: dict[int, int]) -> list[str]:
    out = []
    for written in as_written(lines, sandbox, ports):
        if not written:
            continue  # rich 13.0 (the floor) leaves a blank line after a progress display
        for pattern, placeholder in VARYING:
            written = pattern.sub(placeholder, written)  # noqa: PLW2901 - each in turn
        out.append(written)
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """`expected` against `actual`, a `...` line standing for any number of lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[start:]) for start in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


class Background:
    """A command left running; its stdout and stderr in one stream, as a terminal shows."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command.removesuffix('&').strip()}"], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.read = 0  # lines compared so far
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def until(
        self, done: Callable[[list[str]], bool], mark: str | None = None, seconds: float = WAIT
    ) -> list[str]:
        """The new lines once `done(new lines)` holds, or up to the line `mark` (the rest
        are left for the next look), or whatever came when the time is up."""
        deadline = time.monotonic() + seconds
        while True:
            new = self.lines[self.read :]
            if mark is not None and mark in new:
                new = new[: new.index(mark) + 1]
                break
            if done(new):
                break
            if time.monotonic() > deadline or self.process.poll() is not None:
                if self.process.poll() is not None:  # its last lines: read once the pipe ends
                    self.reader.join(10)
                new = self.lines[self.read :]
                break
            time.sleep(0.05)
        self.read += len(new)
        return new

    def interrupt(self) -> list[str]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        new = self.lines[self.read :]
        self.read = len(self.lines)
        return new


@contextlib.contextmanager
def sandbox(folder: Path, env: dict[str, str]) -> Iterator[tuple[Path, dict[str, str]]]:
    """A home folder of its own (`/home/me`), the environment to run in."""
    home = folder / "home" / "me"
    home.mkdir(parents=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AVASAM_", "XDG_"))}
    stubs = [env["STUB_PATH"]] if "STUB_PATH" in env else []  # stand-in tunnel tools
    path = os.pathsep.join([*stubs, str(Path(sys.executable).parent), base.get("PATH", "")])
    yield home, {**base, "HOME": str(home), "PATH": path, "NO_COLOR": "1", "COLUMNS": "1000",
                 "PYTHONUNBUFFERED": "1", **env}  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)


def run_page(examples: list[Example], home: Path, env: dict[str, str],
             ports: dict[int, int]) -> list[str]:  # fmt: skip
    """Play a page's examples in order; the differences found, described."""
    problems: list[str] = []
    background: Background | None = None
    sandbox_root = home.parent.parent

    record = os.environ.get("EXAMPLES_RECORD")  # a file: what each step printed, to read

    def compare(example: Example, what: str, expected: list[str], actual: list[str]) -> None:
        if record:
            with open(record, "a", encoding="utf-8") as out:
                shown = "\n".join(as_written(actual, sandbox_root, ports))
                out.write(f"== {example.page.name}:{example.line} {what}\n{shown}\n")
        want = normalized(expected, sandbox_root, ports)
        got = normalized(actual, sandbox_root, ports)
        if not matches(want, got):
            problems.append(
                f"{example.page.name}:{example.line}: {what}\n  expected:\n    "
                + "\n    ".join(want)
                + "\n  got:\n    "
                + "\n    ".join(got)
            )

    def shown_as(expected: list[str]) -> Callable[[list[str]], bool]:
        """Whether the lines so far are those expected: what is waited for."""
        want = normalized(expected, sandbox_root, ports)
        return lambda new: matches(want, normalized(new, sandbox_root, ports))

    def real(command: str) -> str:
        for shown, actual in ports.items():
            command = re.sub(rf"(?<=[:= ]){shown}\b", str(actual), command)
        return command

    try:
        for example in examples:
            for step in example.steps:
                if step.command is None:  # more of the background command's output
                    if background is None:
                        problems.append(f"{example.page.name}:{example.line}: no command runs")
                        continue
                    cut = step.expected.index("^C") if "^C" in step.expected else None
                    before = step.expected[:cut]
                    compare(example, "output", before, background.until(shown_as(before)))
                    if cut is not None:
                        compare(example, "at ^C", step.expected[cut + 1 :], background.interrupt())
                        background = None
                    continue
                command = real(step.command)
                if command.startswith("avasam listen") or command.endswith("&"):
                    if background is not None:
                        background.interrupt()
                    background = Background(command, env, home)
                    got = background.until(shown_as(step.expected), READY_MARK)
                    compare(example, f"$ {step.command}", step.expected, got)
                    continue
                # One stream, unbuffered (PYTHONUNBUFFERED): in the order a terminal shows.
                ran = subprocess.run(["bash", "-c", command], cwd=home, env=env, timeout=120,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
                shown = ran.stdout.decode("utf-8", "replace").splitlines()
                compare(example, f"$ {step.command}", step.expected, shown)
    finally:
        if background is not None:
            background.interrupt()
    return problems
