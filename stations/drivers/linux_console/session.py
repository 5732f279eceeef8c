"""A logged-in shell on a Linux serial console, running one framed command at a time.

Responsible for: waking the console (CR), answering `login:` / `Password:` with the configured
credentials (bounded retries on `Login incorrect`), putting the shell into a known state (a unique
marker prompt, no echo, umask 077, C locale) and running commands framed by
`stations.drivers.linux_console.parsing.frame_command` with a per-command timeout.
Not responsible for: which commands to run or what their output means
(`stations.drivers.linux_console.driver`), retrying commands (the driver decides what is idempotent), or the
serial port itself (`stations.link`). Portable: no POSIX-only imports.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from stations.drivers.linux_console.parsing import (
    CommandResult,
    ConsoleState,
    frame_command,
    parse_framed,
    prompt_state,
)
from stations.errors import NoResponse, StationError
from stations.link import SerialLink

__all__ = ["CommandFailed", "ConsoleCredentials", "ConsoleSession", "LoginFailed"]

_SETTLE_S = 0.15  # a prompt is only trusted once the console has been quiet this long
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class ConsoleCredentials:
    """User name and password for the device's console login; the password never shows in repr."""

    username: str
    password: str = field(repr=False)


class LoginFailed(StationError):
    """The console refused the credentials on every allowed attempt (fix the user or password)."""

    retryable = False


class CommandFailed(StationError):
    """A console command ended with a non-zero exit code; `reason` names it and its output tail."""

    def __init__(self, command: str, result: CommandResult, *, retryable: bool) -> None:
        self.reason = f"`{command}` exited with {result.rc}: {result.tail() or 'no output'}"
        super().__init__(self.reason)
        self.retryable = retryable


class ConsoleSession:
    """Log in over a `SerialLink` and run shell commands; see module docstring."""

    def __init__(
        self,
        link: SerialLink,
        credentials: ConsoleCredentials,
        *,
        login_attempts: int = 3,
        prompt_timeout: float = 5.0,
        wake_interval: float = 1.0,
    ) -> None:
        self.link = link
        self._credentials = credentials
        self._login_attempts = max(1, login_attempts)
        self._prompt_timeout = prompt_timeout
        self._wake_interval = wake_interval
        self._nonce = secrets.token_hex(4)
        self.marker_prompt = f"EDGELINE-{self._nonce}$ "
        self._seq = 0
        self._ready = False

    def invalidate(self) -> None:
        """Forget that the shell is ready (after a timeout): the next command re-checks the prompt."""
        self._ready = False

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run `command` in the logged-in shell; NoResponse if it does not finish within `timeout` s."""
        self.ensure_ready()
        return self._run(command, timeout)

    def send(self, command: str) -> None:
        """Type `command` without waiting for it (for commands that take the console away: reboot)."""
        self.ensure_ready()
        self._send(command + "\r")
        self._ready = False

    def ensure_ready(self) -> None:
        """Wake the console, log in if needed and set the shell up, unless already done."""
        if self._ready:
            return
        self.link.reset_input()
        state = self._wake()
        if state is not ConsoleState.MARKER:
            self._login(state)
            self._setup()
        self._ready = True

    # --- steps --------------------------------------------------------------------------------

    def _wake(self) -> ConsoleState:
        deadline = time.monotonic() + self._prompt_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self._send("\r")
            state, _ = self._await_prompt(min(self._wake_interval, remaining))
            if state is ConsoleState.CONTINUATION:
                self._send("\x03")  # a half-typed command from before: abandon it
            elif state is not None:
                return state
        raise NoResponse(
            f"console showed no login or shell prompt within {self._prompt_timeout:.1f} s: "
            "check the baud rate and that a getty runs on this port"
        )

    def _login(self, state: ConsoleState) -> None:
        failures, sent_password = 0, False
        while state is not ConsoleState.SHELL and state is not ConsoleState.MARKER:
            if sent_password and state in (ConsoleState.LOGIN, ConsoleState.PASSWORD):
                failures += 1  # asked again after the password: that attempt was refused
                if failures >= self._login_attempts:
                    raise LoginFailed(
                        f"console login as {self._credentials.username!r} refused "
                        f"{failures} times: check the console user and password"
                    )
            sent_password = state is ConsoleState.PASSWORD
            answer = {
                ConsoleState.LOGIN: self._credentials.username + "\r",
                ConsoleState.PASSWORD: self._credentials.password + "\r",
            }.get(state, "\x03")
            self._send(answer)
            next_state, _ = self._await_prompt(self._prompt_timeout)
            if next_state is None:
                raise NoResponse(f"console gave no prompt after the {state.value} prompt was answered")
            state = next_state

    def _setup(self) -> None:
        result = self._run(
            f"stty -echo; export PS1='{self.marker_prompt}' PS2='> ' LC_ALL=C PAGER=cat "
            "SYSTEMD_PAGER=cat; umask 077",
            self._prompt_timeout,
        )
        if result.rc != 0:
            raise CommandFailed("shell setup", result, retryable=False)

    # --- I/O ----------------------------------------------------------------------------------

    def _run(self, command: str, timeout: float) -> CommandResult:
        self._seq += 1
        tag = f"{self._nonce}.{self._seq}"
        self._send(frame_command(command, tag) + "\r")
        received = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            received += self.link.read_available(_POLL_S)
            result = parse_framed(received.decode("utf-8", "replace"), tag)
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                self._ready = False
                name = command.split(" ", 1)[0]
                raise NoResponse(f"console did not finish `{name} ...` within {timeout:.1f} s")

    def _await_prompt(self, timeout: float) -> tuple[ConsoleState | None, str]:
        """Read until a prompt shows and the console stays quiet; (None, text) on timeout."""
        received = bytearray()
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            chunk = self.link.read_available(_POLL_S)
            now = time.monotonic()
            if chunk:
                received += chunk
                quiet_since = now
            text = received.decode("utf-8", "replace")
            state = prompt_state(text, self.marker_prompt)
            if state is not None and now - quiet_since >= _SETTLE_S:
                return state, text
        return None, received.decode("utf-8", "replace")

    def _send(self, text: str) -> None:
        self.link.write_line(text.encode("utf-8"))
