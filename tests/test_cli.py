"""The CLI as a whole: version, help, start-up imports, completions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avasam_cli import __version__
from tests.conftest import Cli

ROOT = Path(__file__).resolve().parent.parent
HEAVY_MODULES = ("httpx", "starlette", "uvicorn", "jwt", "sqlite3", "rich")


def test_version(cli: Cli) -> None:
    """--version prints the package version."""
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"avasam-cli {__version__}"


def test_python_dash_m() -> None:
    """`python -m avasam_cli` runs the same CLI."""
    result = subprocess.run(
        [sys.executable, "-m", "avasam_cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


def test_help_lists_every_command_with_summary(cli: Cli) -> None:
    """Each command appears in --help with its one-line summary, and has examples."""
    result = cli("--help")
    assert result.exit_code == 0
    assert "configure" in result.stdout and "Store API keys" in result.stdout
    commands = [
        ("configure",),
        ("config", "show"),
        ("config", "path"),
        ("listen",),
        ("sign-test-payload",),
        ("send-test",),
        ("verify",),
        ("ack",),
        ("events", "list"),
        ("events", "show"),
        ("events", "replay"),
        ("doctor",),
        ("api",),
        ("stock", "list"),
        ("products", "list"),
        ("reconcile",),
    ]
    for name in ("listen", "sign-test-payload", "send-test", "verify", "ack", "doctor", "events"):
        assert name in result.stdout
    for args in commands:
        sub = cli(*args, "--help")
        assert sub.exit_code == 0
        assert "Examples:" in sub.stdout


def test_importing_cli_skips_heavy_modules() -> None:
    """Importing the CLI module does not import the heavy libraries (start-up time)."""
    code = (
        "import sys, avasam_cli.cli; "
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_are_current(shell: str) -> None:
    """completions/ matches what the CLI generates now (regenerate: see the README)."""
    env = {**os.environ, "_AVASAM_COMPLETE": f"source_{shell}"}
    result = subprocess.run(
        [sys.executable, "-m", "avasam_cli"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    expected = (ROOT / "completions" / f"avasam.{shell}").read_text()
    generated = result.stdout.replace("python -m avasam_cli", "avasam")
    assert generated == expected, f"completions/avasam.{shell} is out of date"


def test_completion_answers_command_names() -> None:
    """The bash completion protocol completes command names."""
    env = {
        **os.environ,
        "_AVASAM_COMPLETE": "complete_bash",
        "COMP_WORDS": "avasam conf",
        "COMP_CWORD": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "avasam_cli"], capture_output=True, text=True, env=env
    )
    assert set(result.stdout.split()) == {"configure", "config"}


def test_unknown_option_is_usage_error(cli: Cli) -> None:
    """Click's usage errors keep exit code 2."""
    result = cli("configure", "--no-such-option")
    assert result.exit_code == 2


def test_kinds_registry_drives_the_cli_and_the_receiver() -> None:
    """The CLI's kind choices and the receiver's default paths come from the one registry."""
    from avasam_cli.cli._options import Kind
    from avasam_cli.receiver.app import ReceiverSettings
    from avasam_cli.webhooks.kinds import KIND_NAMES, KINDS

    assert [kind.value for kind in Kind] == list(KIND_NAMES)
    assert ReceiverSettings("token").paths == {n: k.default_path for n, k in KINDS.items()}


def test_plain_avasam_shows_the_help_and_succeeds(cli: Cli) -> None:
    result = cli()
    assert result.exit_code == 0
    assert "send-test" in result.stdout and "listen" in result.stdout


def test_verify_on_a_terminal_says_what_it_expects(isolated_home: Path) -> None:
    """No file and a terminal on stdin: an explanation and exit 2, not a silent wait."""
    import pty

    controller, terminal = pty.openpty()
    try:
        run = subprocess.run(
            [sys.executable, "-m", "avasam_cli", "verify"],
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "AVASAM_VERIFICATION_TOKEN": "t" * 40},
        )
    finally:
        os.close(controller)
        os.close(terminal)
    assert run.returncode == 2
    assert "avasam verify body.json" in run.stderr


def _all_command_paths() -> list[tuple[str, ...]]:
    import typer.main

    from avasam_cli.cli import app

    def walk(command: object, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = [path]
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            found += walk(sub, (*path, name))
        return found

    return walk(typer.main.get_command(app), ())


def test_every_help_screen_reads_at_80_columns(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """No line wider than 80 columns, no option name cut, and every value named in our
    words (no `<str>`, `<bool>` or `list[...]` from the library)."""
    monkeypatch.setenv("COLUMNS", "80")
    paths = _all_command_paths()
    assert len(paths) > 15
    for path in paths:
        result = cli(*path, "--help")
        assert result.exit_code == 0, path
        for line in result.stdout.splitlines():
            assert len(line) <= 80, f"{' '.join(path)} --help: {line!r}"
        for leak in ("<str>", "<bool>", "list[", "<int", "<float", "…"):
            assert leak not in result.stdout, f"{' '.join(path)} --help shows {leak}"
    send_test = " ".join(cli("send-test", "--help").stdout.split())
    assert "--verification-token TOKEN" in send_test
    assert "--tamper TAMPER" in send_test and "One of: signature," in send_test
    events_list = " ".join(cli("events", "list", "--help").stdout.split())
    assert "--status STATUS" in events_list and "verified, duplicate, rejected" in events_list


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("send-test", "--tamper", "signatur"),
            "--tamper takes signature, request-id, expired, alg-none or wrong-token, "
            "not 'signatur'; did you mean signature?",
        ),
        (("send-test", "--count", "0"), "--count takes a whole number of at least 1, not '0'; "
         "for example --count 1"),
        (("send-test", "--port=abc"), "--port takes a whole number from 1 to 65535, not 'abc'"),
        (("send-test", "--timeout", "x"), "--timeout takes a number of at least 0.1, not 'x'; "
         "for example --timeout 10"),
        (("send-test", "stok"), "KIND takes stock or price, not 'stok'; did you mean stock?"),
        (("events", "list", "--status", "verifed"),
         "--status takes verified, duplicate or rejected, not 'verifed'; did you mean verified?"),
    ],
)  # fmt: skip
def test_refused_values_are_explained_in_our_words(
    cli: Cli, args: tuple[str, ...], expected: str
) -> None:
    """The option, what it accepts, the closest valid value; exit 2; no library wording."""
    result = cli(*args)
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert expected in said
    assert "Value error" not in said and "Input should" not in said


def test_messages_wrap_at_spaces_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns a long message wraps between words, never inside a command or URL,
    and continuation lines of an error are indented; piped (no width) it stays whole."""
    import io

    from avasam_cli.output import fitted

    url = "https://my-shop.example/avasam/webhooks/stock-updates-from-avasam"
    message = (
        f"the forward target {url} answered 502 twice; check the shop, then run "
        "`avasam events replay 42 --to URL` to resend it\n    an indented second line that "
        "is long enough to need wrapping as well, keeping its own indent"
    )
    monkeypatch.setenv("COLUMNS", "80")
    lines = fitted(message, io.StringIO(), "Error:").splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].startswith("Error: the forward target")
    assert any(url in line for line in lines)
    assert any("`avasam events replay 42 --to URL`" in line for line in lines)
    assert lines[1].startswith("  ") and not lines[1].startswith("   ")
    indented = [line for line in lines if "indented" in line or "keeping" in line]
    assert indented[0].startswith("    an indented") and indented[-1].startswith("      ")
    monkeypatch.delenv("COLUMNS")
    assert fitted(message, io.StringIO(), "Error:") == f"Error: {message}"


def test_the_new_token_notice_fits_80_columns(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`configure --generate-verification-token` prints the token and where to paste it,
    each line within 80 columns and the token on a line of its own."""
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("configure", "--generate-verification-token")
    assert result.exit_code == 0, result.stderr
    said = result.stdout + result.stderr
    # A path longer than the terminal gets a line of its own, unbroken.
    assert all(len(line) <= 80 or " " not in line.strip() for line in said.splitlines()), said
    assert "Settings > User management" in " ".join(said.split())


def test_every_command_quoted_in_a_message_exists() -> None:
    """Each `avasam ...` quoted in the source (messages, hints) names a real command, and
    each of its options is one that command takes (#9: no advice that fails)."""
    import re

    import typer.main

    from avasam_cli.cli import app

    root = typer.main.get_command(app)
    quoted: set[str] = set()
    for source in (ROOT / "avasam_cli").rglob("*.py"):
        for found in re.finditer(r"`avasam ([^`]+)`", source.read_text()):
            quoted.add(re.sub(r"\{[^}]*\}", "X", found[1]))
    assert len(quoted) > 15
    for text in sorted(quoted):
        words = text.replace("\\n", " ").split()
        command: object = root
        index = 0
        while index < len(words):
            word = words[index]
            if word in ("-p", "--profile"):
                index += 2
                continue
            subcommands = getattr(command, "commands", None)
            if subcommands is None or word.startswith("-"):
                break
            for name in word.split("|"):  # `avasam events list|show` in a docstring
                assert name in subcommands, f"`avasam {text}`: no command {name!r}"
            command = subcommands[word.split("|")[0]]
            index += 1
        params = command.params  # type: ignore[attr-defined]
        known = {"--help", "-h"} | {o for p in params for o in p.opts + p.secondary_opts}
        for word in words[index:]:
            if word.startswith("-") and word != "-":
                option = word.split("=", 1)[0]
                assert option in known, f"`avasam {text}`: {option} is not an option"
