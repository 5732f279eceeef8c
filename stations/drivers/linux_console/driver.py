"""`LinuxConsoleDriver`: IoT Edge devices that are plain Linux machines on a serial console.

Responsible for: the commands that identify such a device (MAC from sysfs, serial from the device
tree, DMI or a file, model and OS best effort), write a config through base64 chunks and an atomic
`mv`, prove it with `sha256sum`, optionally `iotedge config apply`, and reboot; and mapping their
outcomes onto the station's errors (timeouts -> NoResponse, exit codes -> FlashError, a vanished
console -> LinkError). See docs/console-driver.md.
Not responsible for: logging in or framing commands (`stations.drivers.linux_console.session`), parsing output
(`stations.drivers.linux_console.parsing`), or the serial port (`stations.link`). Portable: no POSIX-only
imports.

Invariant: `write_config` returns only a digest that `sha256sum` printed for the stored file AND
that equals SHA-256(content). Anything else is a `FlashError`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import posixpath
import secrets
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from stations.drivers.linux_console.edge_checks import EdgeCheckOutcome, run_edge_checks
from stations.drivers.linux_console.parsing import (
    CommandResult,
    ParseError,
    is_permanent_failure,
    parse_sha256sum,
    pretty_name,
    single_value,
)
from stations.drivers.linux_console.session import (
    CommandFailed,
    ConsoleCredentials,
    ConsoleSession,
    LoginFailed,
)
from stations.drivers.port import DeviceDriver, DeviceInfo
from stations.errors import FlashError, FlashInterrupted, NoResponse, PortVanished, StationError
from stations.link import PySerialLink, SerialLink

__all__ = [
    "SERIAL_SOURCES",
    "CommandFailed",
    "ConsoleCredentials",
    "ConsoleOptions",
    "LinuxConsoleDriver",
    "LoginFailed",
    "linux_console_driver",
]

_T = TypeVar("_T")

SERIAL_SOURCES = {
    "device-tree": "/proc/device-tree/serial-number",
    "dmi": "/sys/class/dmi/id/product_serial",
}
_MODEL_FILES = ("/proc/device-tree/model", "/sys/class/dmi/id/product_name")


@dataclass(frozen=True, slots=True)
class ConsoleOptions:
    """How to talk to one product's console; defaults suit a Debian/Yocto device on eth0."""

    iface: str = "eth0"
    serial_source: str = "device-tree"  # "device-tree", "dmi", or an absolute file path
    sudo: bool = False  # prefix privileged commands with `sudo -n` (needs NOPASSWD)
    apply: bool = False  # run `iotedge config apply` after a verified write (IoT Edge 1.2+)
    edge_checks: bool = False  # then `iotedge system status` + `iotedge check`; a failure is a FAIL
    check_timeout: float = 90.0  # `iotedge check` probes DPS and the hub: it can take a while
    reboot: Literal["reboot", "iotedge-restart"] = "reboot"
    command_timeout: float = 5.0
    retries: int = 2  # extra tries of read-only commands
    flash_attempts: int = 3
    chunk_chars: int = 512  # base64 characters per `printf` line: well under any tty line limit
    login_attempts: int = 3
    prompt_timeout: float = 5.0

    def serial_path(self) -> str:
        """The file holding the serial number."""
        path = SERIAL_SOURCES.get(self.serial_source, self.serial_source)
        if not path.startswith("/"):
            known = ", ".join(SERIAL_SOURCES)
            raise ValueError(f"serial source {self.serial_source!r}: use {known} or an absolute path")
        return path


class LinuxConsoleDriver(DeviceDriver):
    """`DeviceDriver` for a Linux shell on a serial console; see module docstring."""

    def __init__(
        self, link: SerialLink, credentials: ConsoleCredentials, options: ConsoleOptions | None = None
    ) -> None:
        self._options = options or ConsoleOptions()
        self._serial_path = self._options.serial_path()
        self._session = ConsoleSession(
            link,
            credentials,
            login_attempts=self._options.login_attempts,
            prompt_timeout=self._options.prompt_timeout,
        )
        self._lock = threading.Lock()
        self.last_edge_check: EdgeCheckOutcome | None = None  # what the device-side checks said

    def identify(self) -> DeviceInfo:
        with self._lock:
            mac = self._value(f"/sys/class/net/{self._options.iface}/address", "MAC address")
            serial = self._value(self._serial_path, "serial number")
            model = next(filter(None, (self._maybe(path, "model") for path in _MODEL_FILES)), "unknown")
            try:
                firmware = self._query("cat /etc/os-release", pretty_name)
            except (CommandFailed, NoResponse):  # best effort: identity is serial + MAC
                firmware = "unknown"
            return DeviceInfo(serial=serial, mac=mac, model=model, firmware=firmware)

    def write_config(self, path: str, content: bytes) -> str:
        _check_path(path)
        expected = hashlib.sha256(content).hexdigest()
        with self._lock:
            self.last_edge_check = None
            problem = "no attempt made"
            for _ in range(max(1, self._options.flash_attempts)):
                stored, problem = self._attempt(path, content, expected)
                if stored is not None:
                    self._apply()
                    self._edge_checks()
                    return stored
            raise FlashError(
                f"could not write and verify {path} in {self._options.flash_attempts} attempts; "
                f"last: {problem}",
                retryable=True,
            )

    def reboot(self) -> None:
        with self._lock:
            if self._options.reboot == "iotedge-restart":
                self._must(self._sudo("iotedge system restart"))
            else:
                self._session.send(self._sudo("reboot"))  # the console goes away: no prompt to wait for
                # ...but wait (briefly) for its first output, so the line was taken in before the
                # operator pulls the cable; a console that stays silent is not an error.
                with contextlib.suppress(StationError):
                    self._session.link.read_available(1.0)

    def close(self) -> None:
        with self._lock:
            self._session.link.close()

    # --- flashing -----------------------------------------------------------------------------

    def _attempt(self, path: str, content: bytes, expected: str) -> tuple[str | None, str]:
        """One write: (verified digest, "") on success, (None, why) if another attempt may help."""
        try:
            stored = self._transfer(path, content)
        except PortVanished as exc:
            raise FlashInterrupted(f"console vanished while flashing {path}: {exc}") from exc
        except CommandFailed as exc:
            if not exc.retryable:
                raise FlashError(f"cannot flash {path}: {exc.reason}", retryable=False) from exc
            return None, exc.reason
        except (NoResponse, ParseError) as exc:
            self._session.invalidate()
            return None, str(exc)
        if stored == expected:
            return stored, ""
        return None, f"read-back of {path} gives SHA-256 {stored[:16]}..., expected {expected[:16]}..."

    def _transfer(self, path: str, content: bytes) -> str:
        """Stage base64 in /tmp, decode to `path.tmp`, chmod 600, mv into place; return sha256sum's digest."""
        staging = f"/tmp/edgeline-{secrets.token_hex(4)}.b64"
        encoded = base64.b64encode(content).decode("ascii")
        size = max(4, self._options.chunk_chars - self._options.chunk_chars % 4)
        self._must(f"rm -f {staging} && touch {staging}")
        for start in range(0, len(encoded), size):
            self._must(f"printf '%s' '{encoded[start : start + size]}' >> {staging}")
        self._must(self._sudo(install_command(staging, path)))
        digest = self._query(self._sudo(f"sha256sum {shlex.quote(path)}"), _digest_of(path))
        self._must(f"rm -f {staging}")  # it holds the device key: do not leave it behind
        return digest

    def _apply(self) -> None:
        if self._options.apply:
            try:
                self._must(self._sudo("iotedge config apply"))
            except CommandFailed as exc:
                raise FlashError(f"config verified but {exc.reason}", retryable=False) from exc

    def _edge_checks(self) -> None:
        """The article's closing checks, on the device; FlashError with their words if one fails."""
        if self._options.edge_checks:
            timeout = max(self._options.check_timeout, self._options.command_timeout)
            self.last_edge_check = run_edge_checks(lambda c: self._session.run(self._sudo(c), timeout))

    # --- commands -----------------------------------------------------------------------------

    def _must(self, command: str) -> CommandResult:
        """Run a command once; CommandFailed on a non-zero exit code."""
        result = self._session.run(command, self._options.command_timeout)
        if result.rc != 0:
            permanent = is_permanent_failure(" ".join(result.lines))
            raise CommandFailed(_short(command), result, retryable=not permanent)
        return result

    def _query(self, command: str, parse: Callable[[CommandResult], _T]) -> _T:
        """Run a read-only command and parse its output, retrying timeouts and garbled output."""
        problem = ""
        for _ in range(self._options.retries + 1):
            try:
                return parse(self._must(command))
            except (NoResponse, ParseError) as exc:
                problem = str(exc)
        raise NoResponse(
            f"no usable answer to `{_short(command)}` after {self._options.retries + 1} tries: {problem}"
        )

    def _value(self, path: str, what: str) -> str:
        return self._query(self._sudo(f"cat {shlex.quote(path)}"), lambda r: single_value(r, what))

    def _maybe(self, path: str, what: str) -> str | None:
        try:
            return self._value(path, what)
        except (CommandFailed, NoResponse):
            return None

    def _sudo(self, command: str) -> str:
        return f"sudo -n sh -c {shlex.quote(command)}" if self._options.sudo else command


def install_command(staging: str, path: str) -> str:
    """Shell command decoding `staging` into `path` atomically with mode 0600."""
    target, tmp = shlex.quote(path), shlex.quote(path + ".tmp")
    directory = shlex.quote(posixpath.dirname(path))
    return f"mkdir -p {directory} && base64 -d {staging} > {tmp} && chmod 600 {tmp} && mv -f {tmp} {target}"


def _digest_of(path: str) -> Callable[[CommandResult], str]:
    return lambda result: parse_sha256sum(result, path)


def _check_path(path: str) -> None:
    parts = path.split("/")
    if not path.startswith("/") or path.endswith("/") or any(p in (".", "..") for p in parts):
        raise FlashError(f"{path[:64]!r} is not an absolute file path", retryable=False)
    if any(ord(c) < 0x20 for c in path):
        raise FlashError(f"{path[:64]!r} contains control characters", retryable=False)


def _short(command: str) -> str:
    return command if len(command) <= 60 else command[:57] + "..."


def linux_console_driver(
    baudrate: int = 115_200,
    *,
    username: str,
    password: str,
    **options: object,
) -> Callable[[str], DeviceDriver]:
    """Driver factory (entry point `linux-console`): open the port with pyserial, log in on its console."""
    credentials = ConsoleCredentials(username, password)
    settings = ConsoleOptions(**options)  # type: ignore[arg-type]
    settings.serial_path()  # a bad serial source fails at start-up, not on the first device

    def open_driver(port: str) -> DeviceDriver:
        return LinuxConsoleDriver(PySerialLink(port, baudrate=baudrate), credentials, settings)

    return open_driver
