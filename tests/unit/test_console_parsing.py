"""Pure console parsing against captured console output (prompts, framing, noise, echoes)."""

from __future__ import annotations

import pytest

from stations.drivers.linux_console.parsing import (
    CommandResult,
    ConsoleState,
    ParseError,
    frame_command,
    is_noise,
    is_permanent_failure,
    login_rejected,
    parse_framed,
    parse_sha256sum,
    pretty_name,
    prompt_state,
    single_value,
)

MARKER = "EDGELINE-1a2b3c4d$ "
TAG = "1a2b3c4d.7"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    ("captured", "state"),
    [
        ("\r\nUbuntu 22.04.4 LTS edge ttyS0\r\n\r\nedge login: ", ConsoleState.LOGIN),
        ("root\r\nPassword: ", ConsoleState.PASSWORD),
        ("\r\nLogin incorrect\r\nedge login: ", ConsoleState.LOGIN),
        ("Last login: Mon\r\nroot@edge:~# ", ConsoleState.SHELL),
        ("pi@raspberrypi:~ $ ", ConsoleState.SHELL),
        ("\x1b[01;32mroot@edge\x1b[00m:\x1b[01;34m~\x1b[00m# ", ConsoleState.SHELL),
        ("__EL_RC_x_0__\r\n" + MARKER, ConsoleState.MARKER),
        ("> ", ConsoleState.CONTINUATION),
        ("# motd line ending in a hash #\r\n", None),  # a finished line is never a prompt
        ("Welcome to edge login:\r\n", None),
        ("", None),
        ("[  OK  ] Started Getty on ttyS0.", None),
    ],
)
def test_prompt_state(captured: str, state: ConsoleState | None) -> None:
    assert prompt_state(captured, MARKER) == state


@pytest.mark.parametrize(
    ("captured", "rejected"),
    [("\r\nLogin incorrect\r\nedge login: ", True), ("su: Authentication failure", True), ("# ", False)],
)
def test_login_rejected(captured: str, rejected: bool) -> None:
    assert login_rejected(captured) is rejected


def _echoed(command: str) -> str:
    return frame_command(command, TAG) + "\r\n"


@pytest.mark.parametrize(
    ("captured", "expected"),
    [
        # echo on: the typed line is echoed but its split markers never match
        (
            _echoed("cat /sys/class/net/eth0/address")
            + f"__EL_BEGIN_{TAG}__\r\na1:b2:c3:d4:e5:f6\r\n__EL_RC_{TAG}_0__\r\n{MARKER}",
            CommandResult(0, ("a1:b2:c3:d4:e5:f6",)),
        ),
        # device-tree strings end in NUL and no newline: the RC marker follows on the same line
        (f"{MARKER}__EL_BEGIN_{TAG}__\r\nSN123\x00__EL_RC_{TAG}_0__\r\n", CommandResult(0, ("SN123",))),
        # noise, kernel messages and duplicated lines
        (
            f"\x1b\x00\xff\xfe\r\n__EL_BEGIN_{TAG}__\r\n__EL_BEGIN_{TAG}__\r\n"
            "[   12.345678] usb 1-1: new device\r\nvalue\r\nvalue\r\n"
            f"__EL_RC_{TAG}_0__\r\n__EL_RC_{TAG}_0__\r\n",
            CommandResult(0, ("value", "value")),
        ),
        # stale output of an earlier command is ignored
        (
            f"__EL_BEGIN_1a2b3c4d.6__\r\nold\r\n__EL_RC_1a2b3c4d.6_0__\r\n"
            f"__EL_BEGIN_{TAG}__\r\ncat: /x: No such file or directory\r\n__EL_RC_{TAG}_1__\r\n",
            CommandResult(1, ("cat: /x: No such file or directory",)),
        ),
        (f"__EL_BEGIN_{TAG}__\r\npartial output", None),
        (_echoed("true"), None),
    ],
)
def test_parse_framed(captured: str, expected: CommandResult | None) -> None:
    assert parse_framed(captured, TAG) == expected


def test_lost_start_marker_is_a_parse_error_not_partial_output() -> None:
    with pytest.raises(ParseError, match="lost its start marker"):
        parse_framed(f"value\r\n__EL_RC_{TAG}_0__\r\n", TAG)


def test_frame_command_refuses_unsafe_tags() -> None:
    with pytest.raises(ValueError):
        frame_command("true", "x; rm -rf /")


@pytest.mark.parametrize(
    ("line", "noise"),
    [
        ("a1:b2:c3:d4:e5:f6", False),
        ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"', False),
        ("Modèle à l'usine", False),
        ("\x1b\xff", True),
        ("abc\ufffd", True),
        ("[    3.141592] random: crng init done", True),
    ],
)
def test_is_noise(line: str, noise: bool) -> None:
    assert is_noise(line) is noise


@pytest.mark.parametrize(
    ("lines", "value"),
    [(("SN-1",), "SN-1"), (("SN-1", "SN-1"), "SN-1"), ((" SN-1 ",), "SN-1")],
)
def test_single_value(lines: tuple[str, ...], value: str) -> None:
    assert single_value(CommandResult(0, lines), "serial") == value


@pytest.mark.parametrize("lines", [(), ("a", "b")])
def test_single_value_refuses_missing_or_ambiguous(lines: tuple[str, ...]) -> None:
    with pytest.raises(ParseError, match="serial"):
        single_value(CommandResult(0, lines), "serial")


@pytest.mark.parametrize(
    ("lines", "digest"),
    [
        ((f"{SHA}  /etc/aziot/config.toml",), SHA),
        ((f"{SHA}  /etc/aziot/config.toml", f"{SHA}  /etc/aziot/config.toml"), SHA),
        ((f"{SHA} */etc/aziot/config.toml",), SHA),
    ],
)
def test_parse_sha256sum(lines: tuple[str, ...], digest: str) -> None:
    assert parse_sha256sum(CommandResult(0, lines), "/etc/aziot/config.toml") == digest


@pytest.mark.parametrize(
    "lines",
    [
        (),
        (f"{SHA}  /etc/other.toml",),
        (f"{SHA[:-1]}  /etc/aziot/config.toml",),
        (f"{SHA}  /etc/aziot/config.toml", f"{'0' * 64}  /etc/aziot/config.toml"),
    ],
)
def test_parse_sha256sum_refuses(lines: tuple[str, ...]) -> None:
    with pytest.raises(ParseError):
        parse_sha256sum(CommandResult(0, lines), "/etc/aziot/config.toml")


def test_pretty_name() -> None:
    lines = ('NAME="Debian GNU/Linux"', 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"')
    assert pretty_name(CommandResult(0, lines)) == "Debian GNU/Linux 12 (bookworm)"
    with pytest.raises(ParseError):
        pretty_name(CommandResult(0, ("NAME=x",)))


@pytest.mark.parametrize(
    ("output", "permanent"),
    [
        ("mkdir: cannot create directory '/etc/aziot': Permission denied", True),
        ("sudo: a password is required", True),
        ("sh: /etc/aziot/config.toml.tmp: Read-only file system", True),
        ("base64: invalid input", False),
        ("sh: /tmp/edgeline-1.b64: No such file or directory", False),
    ],
)
def test_is_permanent_failure(output: str, permanent: bool) -> None:
    assert is_permanent_failure(output) is permanent
