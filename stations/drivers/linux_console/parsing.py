"""Pure parsing of what a Linux serial console prints: prompts, framed command output, values.

Responsible for: deciding which prompt a console is showing (`login:`, `Password:`, a shell, our own
marker prompt), framing a shell command with unique start/exit-code markers and cutting its output
back out of a noisy stream (echoed input, kernel messages, garbage bytes, duplicated lines), and
reading the few values the console driver needs (`sha256sum` lines, `/etc/os-release`).
Every parser raises `ParseError` (from `stations.errors`) on input it cannot trust.
Not responsible for: I/O, timeouts or retries (see `stations.drivers.linux_console.session`) nor which
commands to run (see `stations.drivers.linux_console.driver`). No I/O and no POSIX-only imports here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from stations.errors import ParseError

__all__ = [
    "CommandResult",
    "ConsoleState",
    "ParseError",
    "frame_command",
    "is_noise",
    "is_permanent_failure",
    "login_rejected",
    "parse_framed",
    "parse_sha256sum",
    "pretty_name",
    "prompt_state",
    "single_value",
]

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]")
_KERNEL_LOG_RE = re.compile(r"^\s*\[\s*\d+\.\d+\]")
_SHA_LINE_RE = re.compile(r"^\\?([0-9a-f]{64}) [ *](.+)$")
_PERMANENT_RE = re.compile(
    r"permission denied|read-only file system|no space left|operation not permitted"
    r"|a password is required|not found|not in the sudoers",
    re.IGNORECASE,
)


class ConsoleState(Enum):
    """What the console is waiting for, judged from its last (unterminated) line."""

    LOGIN = "login"
    PASSWORD = "password"
    SHELL = "shell"  # some shell prompt (the device's own PS1)
    MARKER = "marker"  # our own unique prompt: a session we already set up
    CONTINUATION = "continuation"  # PS2 `> `: the shell waits for the rest of a command


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A finished command: its exit code and its cleaned output lines (stdout and stderr)."""

    rc: int
    lines: tuple[str, ...]

    def tail(self, count: int = 3) -> str:
        """The last `count` output lines as one line, for error messages."""
        return " | ".join(self.lines[-count:])[-300:]


def _strip(text: str) -> str:
    return _ANSI_RE.sub("", text.replace("\x00", ""))


def prompt_state(text: str, marker_prompt: str | None = None) -> ConsoleState | None:
    """Classify the console from the text after our last input; None if no prompt is showing.

    Prompts never end in a newline, so only the last, unterminated line counts: a motd line that
    happens to end in `#` or `login:` cannot be mistaken for a prompt.
    """
    tail = re.split(r"[\r\n]", _strip(text))[-1].rstrip()
    if not tail:
        return None
    if marker_prompt and tail.endswith(marker_prompt.rstrip()):
        return ConsoleState.MARKER
    lowered = tail.lower()
    if lowered.endswith("login:"):
        return ConsoleState.LOGIN
    if lowered.endswith("password:"):
        return ConsoleState.PASSWORD
    if tail == ">":
        return ConsoleState.CONTINUATION
    if tail[-1] in "$#%>":
        return ConsoleState.SHELL
    return None


def login_rejected(text: str) -> bool:
    """True if the console said the last login attempt failed."""
    lowered = _strip(text).lower()
    return "login incorrect" in lowered or "authentication failure" in lowered


def _begin_marker(tag: str) -> str:
    return f"__EL_BEGIN_{tag}__"


def frame_command(command: str, tag: str) -> str:
    """Wrap `command` so its output is cut out by start/exit-code markers unique to `tag`.

    The markers are typed split by `""`, so an echo of the typed line never contains them: only
    the shell's output does.
    """
    if not re.fullmatch(r"[0-9A-Za-z.]+", tag):
        raise ValueError("tag must be alphanumeric")
    return f'echo "__EL_BEGIN_""{tag}__"; {command}; echo "__EL_RC_{tag}_$?""__"'


def is_noise(line: str) -> bool:
    """True for lines that cannot be command output: control bytes, undecodable bytes, printk lines."""
    if _KERNEL_LOG_RE.match(line):
        return True
    return any((ord(c) < 0x20 and c != "\t") or c in "\x7f\ufffd" for c in line)


def parse_framed(text: str, tag: str) -> CommandResult | None:
    """Cut the output of the command framed with `tag` out of `text`; None while it has not ended.

    Raises ParseError if the exit-code marker arrived but the start marker did not (a dropped
    line), so a caller never takes partial output for the whole.
    """
    rc_match = re.search(rf"__EL_RC_{re.escape(tag)}_(\d{{1,3}})__", text)
    if rc_match is None:
        return None
    begin = text.rfind(_begin_marker(tag), 0, rc_match.start())
    if begin < 0:
        raise ParseError(f"output of command {tag} lost its start marker (dropped line?)")
    body = _strip(text[begin : rc_match.start()])
    lines = [line for line in re.split(r"\r?\n|\r", body) if line.strip()]
    kept = tuple(line.rstrip() for line in lines if tag not in line and not is_noise(line))
    return CommandResult(int(rc_match.group(1)), kept)


def single_value(result: CommandResult, what: str) -> str:
    """The one value a `cat` printed (duplicated lines collapse); ParseError if none or several."""
    values = list(dict.fromkeys(line.strip() for line in result.lines))
    if len(values) != 1:
        raise ParseError(f"expected one line of {what}, got {len(values)}")
    return values[0]


def parse_sha256sum(result: CommandResult, path: str) -> str:
    """The digest `sha256sum path` printed for `path`; ParseError if absent or contradictory."""
    digests = {
        match.group(1)
        for line in result.lines
        if (match := _SHA_LINE_RE.match(line.strip())) and match.group(2) == path
    }
    if len(digests) != 1:
        raise ParseError(f"expected one SHA-256 of {path}, got {len(digests)}")
    return digests.pop()


def pretty_name(result: CommandResult) -> str:
    """PRETTY_NAME from `/etc/os-release` content (quotes removed); ParseError if missing."""
    for line in result.lines:
        key, _, value = line.strip().partition("=")
        if key == "PRETTY_NAME" and value:
            return value.strip().strip("\"'")
    raise ParseError("no PRETTY_NAME in /etc/os-release")


def is_permanent_failure(output: str) -> bool:
    """True if a failed command's output says retrying cannot help (permissions, full or RO disk)."""
    return bool(_PERMANENT_RE.search(output))
