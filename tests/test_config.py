"""Profiles, precedence, masking, file modes and broken config files."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from avasam_cli.cli import configure as configure_module
from avasam_cli.config import ConfigFile, mask, resolve
from avasam_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError
from avasam_cli.paths import locations
from tests.conftest import Cli
from tests.helpers import at_terminal

CONSUMER = "ck_live_0123456789abcdef"
SECRET = "sk_live_secret_fedcba9876543210"
TOKEN = "vt_" + "x" * 40 + "WXYZ"


def config_file() -> Path:
    return locations().config_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_exit_code_table() -> None:
    """The documented exit codes are what the error classes carry."""
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE) == (0, 1, 2)
    assert ConfigError("x").exit_code == 2


def test_round_trip_keeps_other_profiles(cli: Cli) -> None:
    """Values saved by configure come back from the file, other profiles untouched."""
    result = cli("configure", "--consumer-key", CONSUMER, "--secret-key", SECRET)
    assert result.exit_code == 0, result.output
    result = cli("-p", "staging", "configure", "--base-url", "http://127.0.0.1:9000/")
    assert result.exit_code == 0, result.output
    stored = ConfigFile(config_file())
    assert stored.profile("default") == {"consumer_key": CONSUMER, "secret_key": SECRET}
    assert stored.profile("staging") == {"base_url": "http://127.0.0.1:9000"}
    assert stored.profile_names() == ["default", "staging"]


def test_precedence_flag_env_profile_default(monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    """flag > environment > profile > default, for every value."""
    cli("configure", "--consumer-key", "from-profile-1234", "--base-url", "https://profile.example")
    config = ConfigFile(config_file())
    settings = resolve(config, environ={})
    assert settings.values["consumer_key"].source == "profile"
    assert settings.values["secret_key"].source == "unset"
    assert settings.get("base_url") == "https://profile.example"

    env = {"AVASAM_CONSUMER_KEY": "from-env-5678", "AVASAM_BASE_URL": "https://env.example"}
    settings = resolve(config, environ=env)
    assert (settings.get("consumer_key"), settings.values["consumer_key"].source) == (
        "from-env-5678",
        "environment",
    )
    settings = resolve(config, flags={"consumer_key": "from-flag-9999"}, environ=env)
    assert settings.values["consumer_key"].source == "flag"
    assert settings.get("consumer_key") == "from-flag-9999"
    assert settings.get("base_url") == "https://env.example"

    empty = resolve(ConfigFile(config_file().with_name("none.toml")), environ={})
    assert (empty.get("base_url"), empty.values["base_url"].source) == (
        "https://app.avasam.com",
        "default",
    )
    monkeypatch.setenv("AVASAM_BASE_URL", "https://env.example")
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["base_url"] == {"value": "https://env.example", "source": "environment"}


def test_profile_choice_flag_over_environment(monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    """--profile beats AVASAM_PROFILE, which beats 'default'."""
    cli("-p", "env-profile", "configure", "--consumer-key", "env-profile-key")
    cli("-p", "flag-profile", "configure", "--consumer-key", "flag-profile-key")
    monkeypatch.setenv("AVASAM_PROFILE", "env-profile")
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["profile"] == {"value": "env-profile", "source": "environment"}
    shown = json.loads(cli("-p", "flag-profile", "config", "show", "--json").stdout)
    assert shown["profile"] == {"value": "flag-profile", "source": "flag"}
    assert shown["consumer_key"]["value"] == mask("flag-profile-key")


def test_invalid_profile_name_is_usage_error(cli: Cli) -> None:
    """A profile name that cannot be a TOML key safely is refused with exit 2."""
    result = cli("-p", "bad name!", "config", "show")
    assert result.exit_code == 2
    assert "invalid profile name" in result.stderr


def test_masking_in_every_output(monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    """No command prints a full secret: configure, config show and its JSON."""
    outputs = [
        cli(
            "configure",
            "--consumer-key",
            CONSUMER,
            "--secret-key",
            SECRET,
            "--verification-token",
            TOKEN,
        ),
        cli("config", "show"),
        cli("config", "show", "--json"),
    ]
    monkeypatch.setenv("AVASAM_SECRET_KEY", SECRET + "env")
    outputs.append(cli("config", "show"))
    outputs.append(cli("configure", "--secret-key", SECRET))
    for result in outputs:
        assert result.exit_code == 0, result.output
        for secret in (CONSUMER, SECRET, TOKEN):
            assert secret not in result.output
    assert "****WXYZ" in outputs[1].stdout
    assert mask("short") == "****"


def test_file_and_folder_modes(cli: Cli) -> None:
    """Folders are 0700, the config file 0600; a too-open file is warned about and tightened."""
    assert cli("configure", "--secret-key", SECRET).exit_code == 0
    path = config_file()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    path.chmod(0o644)
    result = cli("config", "show")
    assert "readable by other users" in result.stderr
    assert cli("configure", "--consumer-key", CONSUMER).exit_code == 0
    assert mode(path) == 0o600
    assert not list(path.parent.glob("*.tmp")), "no temporary file left behind"


def test_secrets_from_stdin(cli: Cli) -> None:
    """`-` reads secrets from standard input, one line each in field order."""
    result = cli(
        "configure",
        "--secret-key",
        "-",
        "--verification-token",
        "-",
        input=f"{SECRET}\n{TOKEN}\n",
    )
    assert result.exit_code == 0, result.output
    assert ConfigFile(config_file()).profile("default") == {
        "secret_key": SECRET,
        "verification_token": TOKEN,
    }


def test_secret_from_empty_stdin_is_usage_error(cli: Cli) -> None:
    """An empty standard input for `-` is a clear usage error; nothing is written."""
    result = cli("configure", "--secret-key", "-", input="")
    assert result.exit_code == 2
    assert "standard input" in result.stderr
    assert not config_file().exists()


def test_generate_verification_token(cli: Cli) -> None:
    """A 32-byte URL-safe token is saved and printed once with the paste instruction."""
    result = cli("configure", "--generate-verification-token")
    assert result.exit_code == 0, result.output
    token = ConfigFile(config_file()).profile("default")["verification_token"]
    assert len(token) >= 43 and all(c.isalnum() or c in "-_" for c in token)
    assert result.stdout.strip() == token
    assert result.output.count(token) == 1
    assert "Paste it into Avasam" in result.stderr
    second = cli("configure", "--generate-verification-token")
    assert ConfigFile(config_file()).profile("default")["verification_token"] != token
    assert second.exit_code == 0


def test_generate_and_explicit_token_conflict(cli: Cli) -> None:
    """Asking for a generated token and giving one is a usage error."""
    result = cli("configure", "--generate-verification-token", "--verification-token", TOKEN)
    assert result.exit_code == 2
    assert not config_file().exists()


def test_short_token_is_accepted_with_warning(cli: Cli) -> None:
    """A token under 32 bytes is saved, with a warning naming the fix."""
    result = cli("configure", "--verification-token", "short-token")
    assert result.exit_code == 0
    assert "at least 32" in result.stderr
    assert ConfigFile(config_file()).profile("default")["verification_token"] == "short-token"


@pytest.mark.parametrize(
    "url",
    [
        "app.avasam.com",
        "ftp://app.avasam.com",
        "https://",
        "https://host/?q=1",
        "https://host:99999",
        "https://exa mple.com",
    ],
)
def test_malformed_base_url_writes_nothing(cli: Cli, url: str) -> None:
    """A malformed base URL is refused with exit 2 and the file is not touched."""
    cli("configure", "--consumer-key", CONSUMER)
    before = config_file().read_bytes()
    result = cli("configure", "--base-url", url, "--secret-key", SECRET)
    assert result.exit_code == 2, result.output
    assert "malformed base URL" in result.stderr
    assert config_file().read_bytes() == before


def test_corrupt_config_is_reported_and_kept(cli: Cli) -> None:
    """A config file that is not TOML gives its path and the parse error, exit 2, untouched."""
    path = config_file()
    path.parent.mkdir(parents=True)
    path.write_text("[profiles.default\nconsumer_key = 1\n")
    for args in (("config", "show"), ("configure", "--secret-key", SECRET)):
        result = cli(*args)
        assert result.exit_code == 2
        assert str(path) in result.stderr and "not valid TOML" in result.stderr
        assert "Traceback" not in result.output
    assert path.read_text() == "[profiles.default\nconsumer_key = 1\n"


def test_wrongly_typed_value_is_config_error(cli: Cli) -> None:
    """A profile value that is not a string is reported, not crashed on."""
    path = config_file()
    path.parent.mkdir(parents=True)
    path.write_text("[profiles.default]\nconsumer_key = 1\n")
    result = cli("config", "show")
    assert result.exit_code == 2
    assert "must be a string" in result.stderr
    assert "`avasam --profile default configure`" in result.stderr  # a command that works


def test_unreadable_config_is_config_error(cli: Cli) -> None:
    """A config path that cannot be read is a configuration error naming the path."""
    path = config_file()
    path.mkdir(parents=True)  # a folder where the file should be
    result = cli("config", "show")
    assert result.exit_code == 2
    assert str(path) in result.stderr


def test_missing_config_shows_defaults(cli: Cli) -> None:
    """With no config file, show works and reports unset values and defaults."""
    result = cli("config", "show")
    assert result.exit_code == 0, result.output
    assert "(not set)" in result.stdout and "https://app.avasam.com" in result.stdout
    assert not config_file().exists()


def test_avasam_home_isolation(isolated_home: Path, cli: Cli) -> None:
    """AVASAM_HOME holds the config, cache and data folders."""
    paths = json.loads(cli("config", "path", "--json").stdout)
    for key in ("config_file", "cache_dir", "data_dir", "event_store"):
        assert paths[key].startswith(str(isolated_home))
    cli("configure", "--consumer-key", CONSUMER)
    assert (isolated_home / "config" / "config.toml").exists()


def test_interactive_prompts_keep_current_values(monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    """On a terminal, configure prompts; Enter keeps a value, shown masked; secrets hidden."""
    cli("configure", "--consumer-key", CONSUMER, "--secret-key", SECRET)
    asked: list[tuple[str, str, bool]] = []
    answers = iter(["", "new-secret-key-0000", TOKEN, ""])

    def fake_prompt(label: str, shown: str, hidden: bool) -> str:
        asked.append((label, shown, hidden))
        return next(answers)

    monkeypatch.setattr(configure_module, "_stdin_is_terminal", lambda: True)
    monkeypatch.setattr(configure_module, "_prompt", fake_prompt)
    result = cli("configure")
    assert result.exit_code == 0, result.output
    assert asked == [
        ("Consumer key", mask(CONSUMER), False),
        ("Secret key", mask(SECRET), True),
        ("Verification token", "", True),
        ("Base url", "https://app.avasam.com", False),  # the default is shown
    ]
    assert ConfigFile(config_file()).profile("default") == {
        "consumer_key": CONSUMER,
        "secret_key": "new-secret-key-0000",
        "verification_token": TOKEN,
    }


def test_no_terminal_no_prompt(cli: Cli) -> None:
    """Without a terminal and without values, configure changes nothing and does not wait."""
    result = cli("configure", input="should-not-be-read\n")
    assert result.exit_code == 0
    assert "Nothing changed" in result.stderr
    assert not config_file().exists()


def test_require_names_the_fix(cli: Cli) -> None:
    """A missing value names a command that works, and the environment variable."""
    import re
    import shlex

    settings = resolve(ConfigFile(Path("/nonexistent/config.toml")), "staging", environ={})
    with pytest.raises(ConfigError) as caught:
        settings.require("verification_token")
    assert "AVASAM_VERIFICATION_TOKEN" in caught.value.message
    quoted = re.search(r"`(avasam [^`]+)`", caught.value.message)
    assert quoted is not None
    assert quoted[1] == "avasam --profile staging configure --generate-verification-token"
    ran = cli(*shlex.split(quoted[1])[1:])
    assert ran.exit_code == 0, ran.output


def test_write_is_atomic_on_failure(monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    """If writing fails midway, the previous file survives whole."""
    cli("configure", "--consumer-key", CONSUMER)
    before = config_file().read_bytes()

    def broken_replace(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("avasam_cli.paths.os.replace", broken_replace)
    result = cli("configure", "--secret-key", SECRET)
    assert result.exit_code == 1
    assert "disk full" in result.stderr and "previous file was kept" in result.stderr
    assert config_file().read_bytes() == before
    assert not list(config_file().parent.glob("*.tmp"))


def test_avasam_home_and_its_folders_are_private(cli: Cli, isolated_home: Path) -> None:
    """The AVASAM_HOME folder itself is created 0700, like the folders inside it."""
    assert cli("configure", "--consumer-key", "ck-1234567").exit_code == 0
    assert isolated_home.stat().st_mode & 0o777 == 0o700
    assert (isolated_home / "config").stat().st_mode & 0o777 == 0o700


def test_symlinked_config_folder_is_refused(cli: Cli, isolated_home: Path, tmp_path: Path) -> None:
    """A config folder that is a link is refused with an explanation, its target untouched."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    isolated_home.mkdir(mode=0o700)
    (isolated_home / "config").symlink_to(shared)
    result = cli("configure", "--consumer-key", "ck-1234567")
    assert result.exit_code == 2
    assert "symbolic link" in result.stderr and "Traceback" not in result.output
    assert shared.stat().st_mode & 0o777 == 0o755
    assert not (shared / "config.toml").exists()


def test_plain_http_base_url_to_another_machine_is_refused(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys would cross the network in clear: http:// is for loopback unless allowed."""
    refused = cli("configure", "--base-url", "http://api.example.com")
    assert refused.exit_code == 2
    assert "in clear" in refused.stderr and "--allow-insecure-base-url" in refused.stderr
    assert not (locations().config_file).exists()
    assert cli("configure", "--base-url", "http://127.0.0.1:9000").exit_code == 0
    assert cli("configure", "--base-url", "http://localhost:9000").exit_code == 0
    allowed = cli("configure", "--base-url", "http://api.example.com", "--allow-insecure-base-url")
    assert allowed.exit_code == 0, allowed.output
    monkeypatch.setenv("AVASAM_BASE_URL", "http://other.example.com")
    monkeypatch.setenv("AVASAM_ALLOW_INSECURE_BASE_URL", "false")
    monkeypatch.setenv("AVASAM_CONSUMER_KEY", "ck-1")
    monkeypatch.setenv("AVASAM_SECRET_KEY", "sk-1")
    used = cli("ack", "a")
    assert used.exit_code == 2 and "in clear" in used.stderr


def write_config(text: str) -> Path:
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_misspelled_keys_are_named_with_their_line(cli: Cli) -> None:
    """Unknown keys and tables: a warning with file, line and the closest name, for every
    command (here `events list`, which reads no setting)."""
    path = write_config(
        '[profiles.default]\nconsumer_key = "ck"\nverification_tokn = "abc"\n\n'
        '[profile.staging]\nconsumer_key = "x"\n'
    )
    result = cli("config", "show")
    assert f"{path}:3: unknown key 'verification_tokn' in [profiles.default] (did you mean " \
        "verification_token?)" in result.stderr  # fmt: skip
    assert f"{path}:5: unknown table or key 'profile' (did you mean profiles?)" in result.stderr
    assert result.stderr.count("verification_tokn") == 1  # said once


def test_listen_never_replaces_a_misspelled_token(cli: Cli) -> None:
    """With a near-miss key, `listen` stops (exit 2) instead of generating a new token."""
    path = write_config('[profiles.default]\nverification_tokn = "the-real-one"\n')
    result = cli("listen", "--port", "0")
    assert result.exit_code == 2
    assert f"{path}:2: 'verification_tokn' looks like a misspelled verification_token" in (
        result.stderr
    )
    assert "verification_token =" not in path.read_text()  # nothing generated or saved


def test_natural_toml_types_are_accepted(cli: Cli) -> None:
    """A port written as an integer, a yes/no as a boolean; shown as such in --json."""
    write_config("[profiles.default]\nlisten_port = 20603\nallow_insecure_base_url = true\n")
    result = cli("config", "show", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["listen_port"]["value"] == 20603
    assert document["allow_insecure_base_url"]["value"] is True


@pytest.mark.parametrize(
    ("where", "origin"),
    [
        ("environment", "the environment variable AVASAM_BASE_URL"),
        ("profile", "[profiles.default] base_url"),
    ],
)
def test_bad_values_name_their_source_and_diagnostics_still_run(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, where: str, origin: str
) -> None:
    if where == "environment":
        monkeypatch.setenv("AVASAM_BASE_URL", "app.avasam.com")
    else:
        write_config('[profiles.default]\nbase_url = "app.avasam.com"\n')
    failing = cli("ack", "x")
    assert failing.exit_code == 2
    assert "malformed base URL 'app.avasam.com'" in failing.stderr and origin in failing.stderr
    shown = cli("config", "show")
    assert shown.exit_code == 1
    assert "base_url" in shown.stdout and origin in shown.stderr  # the table, then the problem
    doctor = cli("doctor", "--offline")
    assert doctor.exit_code == 1
    assert "FAIL  setting base_url: malformed base URL" in doctor.stdout
    assert "event store writable" in doctor.stdout  # the other checks ran


def test_an_unknown_profile_is_an_error_with_the_closest_name(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config('[profiles.default]\nconsumer_key = "a"\n[profiles.staging]\nconsumer_key = "b"\n')
    for args in (["-p", "stagging", "listen"], ["-p", "stagging", "config", "show"],
                 ["-p", "stagging", "events", "list"]):  # fmt: skip
        result = cli(*args)
        assert result.exit_code == 2
        assert "no profile 'stagging'" in result.stderr
        assert "did you mean staging?" in result.stderr
        assert "`avasam --profile stagging configure`" in result.stderr
    monkeypatch.setenv("AVASAM_PROFILE", "stagging")
    assert "(from AVASAM_PROFILE)" in cli("config", "show").stderr
    created = cli("-p", "stagging", "configure", "--consumer-key", "c")
    assert created.exit_code == 0, created.output  # configure creates it
    assert cli("-p", "stagging", "config", "show").exit_code == 0


def test_a_bad_answer_is_asked_again_and_nothing_typed_is_lost(
    monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    asked: list[str] = []
    answers = iter([CONSUMER, SECRET, TOKEN, "app.avasam.com", "https://eu.avasam.example"])

    def fake_prompt(label: str, shown: str, hidden: bool) -> str:
        asked.append(label)
        return next(answers)

    monkeypatch.setattr(configure_module, "_stdin_is_terminal", lambda: True)
    monkeypatch.setattr(configure_module, "_prompt", fake_prompt)
    result = cli("configure")
    assert result.exit_code == 0, result.output
    assert asked.count("Base url") == 2 and "try again" in result.stderr
    saved = ConfigFile(config_file()).profile("default")
    assert saved["secret_key"] == SECRET and saved["base_url"] == "https://eu.avasam.example"


def test_a_weak_token_does_not_silently_replace_a_strong_one(cli: Cli) -> None:
    assert cli("configure", "--verification-token", TOKEN).exit_code == 0
    refused = cli("configure", "--verification-token", "short")
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert ConfigFile(config_file()).profile("default")["verification_token"] == TOKEN
    forced = cli("configure", "--verification-token", "short", "--force")
    assert forced.exit_code == 0
    assert "A running `avasam listen` takes it up within seconds" in forced.stderr
    assert ConfigFile(config_file()).profile("default")["verification_token"] == "short"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("send-test", "--url", "127.0.0.1:20002/webhooks/stock"),
         "--url '127.0.0.1:20002/webhooks/stock': it has no http:// or https:// in front; "
         "for example --url http://127.0.0.1:20002/webhooks/stock"),
        (("events", "replay", "1", "--to", "localhost:3000"),
         "--to 'localhost:3000': it has no http:// or https:// in front; "
         "for example --to http://localhost:3000"),
        (("listen", "--forward-price-to", "ftp://shop"),
         "--forward-price-to 'ftp://shop': it must start with http:// or https://"),
        (("send-test", "--url", "http://my shop/x"), "--url 'http://my shop/x': it contains"),
        (("ack", "--pending", "--base-url", "https://app.avasam.com/api/"),
         "leave out the /api at the end (the API paths add it): https://app.avasam.com"),
        (("listen", "--host", "not a host"),
         "invalid listener host 'not a host': it is neither an IP address nor a host name; "
         "for example 127.0.0.1 (from --host)"),
        (("configure", "--listen-host", "not a host"), "invalid listener host 'not a host'"),
        (("send-test", "--host", "bad_host!"), "invalid listener host 'bad_host!'"),
    ],
)  # fmt: skip
def test_urls_and_hosts_are_checked_in_one_place(
    cli: Cli, args: tuple[str, ...], expected: str
) -> None:
    """Every URL and host from the command line is checked before use: exit 2, the
    option, the problem and an example of a good value (no httpx wording)."""
    result = cli(*args)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, said
    assert expected in said
    assert "protocol" not in said and "Traceback" not in result.output
    assert not config_file().exists() or "not a host" not in config_file().read_text()


def test_secret_dash_at_a_terminal_is_asked_for_without_echo(isolated_home: Path) -> None:
    """`configure --secret-key -` with a terminal on stdin names what it waits for, and
    what is typed is not echoed; the secret is saved."""
    import os

    secret = "typed-secret-" + "x" * 20
    env = {**os.environ, "AVASAM_HOME": str(isolated_home)}
    run = at_terminal(
        ["configure", "--secret-key", "-"], env, b"(not shown): ", f"{secret}\n".encode()
    )
    assert b"Secret key (not shown): " in run.prompt  # printed once echo is off
    assert run.code == 0, run.err
    assert secret.encode() not in run.echoed + run.out + run.err
    assert f'secret_key = "{secret}"' in config_file().read_text()


def test_the_event_store_is_chosen_by_flag_environment_or_profile(
    cli: Cli, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--store, then AVASAM_STORE, then the profile's `store`, then the data folder's file;
    a path or sqlite:///PATH; a PostgreSQL server that cannot be reached is exit 2, its
    password masked."""
    from tests.helpers import store_event

    stores = {name: tmp_path / f"{name}.sqlite3" for name in ("flag", "env", "profile")}
    for name, path in stores.items():
        store_event(path, f"in-{name}")

    def listed(*args: str) -> set[str]:
        result = cli(*args, "events", "list", "--json")
        assert result.exit_code == 0, result.output
        return {json.loads(line)["requestId"] for line in result.stdout.splitlines()}

    assert listed() == set()
    assert cli("configure", "--store", str(stores["profile"])).exit_code == 0
    assert listed() == {"in-profile"}
    monkeypatch.setenv("AVASAM_STORE", f"sqlite:///{stores['env']}")
    assert listed() == {"in-env"}
    assert listed("--store", str(stores["flag"])) == {"in-flag"}
    refused = cli("--store", "postgresql://me:s3cret@db.example/avasam", "events", "list")
    assert refused.exit_code == 2
    assert "cannot connect to the event store postgresql://me:****@db.example" in refused.stderr
    assert "s3cret" not in refused.stderr
    hostless = cli("--store", "postgresql://me:s3cret@/avasam", "events", "list")
    assert hostless.exit_code == 2 and "names its server" in hostless.stderr
    assert "(from --store)" in hostless.stderr and "s3cret" not in hostless.stderr
    monkeypatch.setenv("AVASAM_STORE", str(tmp_path))  # a folder
    folder = cli("events", "list")
    assert folder.exit_code == 2 and "is a folder" in folder.stderr
    assert "AVASAM_STORE" in folder.stderr


def test_listen_and_its_helpers_use_the_chosen_store(isolated_home: Path, tmp_path: Path) -> None:
    """`listen --store FILE`: the receiver stores there, and its delivery runner works on
    the same outbox (a forward job waits there, with its failed attempt)."""
    import httpx

    from tests.helpers import JSON_HEADERS, TOKEN, ListenProcess, free_port, signed_body, store_rows

    chosen = tmp_path / "chosen.sqlite3"
    down = f"http://127.0.0.1:{free_port()}/shop"
    listener = ListenProcess(isolated_home, "--forward-to", down, env={"AVASAM_STORE": str(chosen),
                             "AVASAM_VERIFICATION_TOKEN": TOKEN})  # fmt: skip
    try:
        httpx.post(f"{listener.url}/webhooks/stock", content=signed_body(request_id="chosen-1"),
                   headers=JSON_HEADERS, timeout=10)  # fmt: skip
        deadline = time.monotonic() + 20
        while b"kept in the outbox" not in listener.captured["err"]:
            assert time.monotonic() < deadline, listener.captured["err"]
            time.sleep(0.05)
    finally:
        listener.stop()
    assert [row["request_id"] for row in store_rows(chosen)] == ["chosen-1"]
    assert not (isolated_home / "data" / "events.sqlite3").exists()
