"""`SimulatedConsole`: a fake Linux serial console on a real pseudo-terminal (POSIX only).

Responsible for: what a getty + shell look like from the serial side: a banner and `login:`,
`Password:` (not echoed), `Login incorrect`, a prompt, echo of typed input until `stty -echo`,
CR/LF handling, Ctrl-C; line-level faults (noise, dropped or duplicated output lines, a slow
device, vanishing mid-flash, logins that need a retry); and calling `on_boot(config path)` after
`reboot` or `iotedge system restart`, like `SimulatedDevice`.
Not responsible for: what commands do (`stations.drivers.linux_console.simulated_shell`) or pty plumbing
(`stations.simulation.pseudo_terminal`). Importing works everywhere; `start()` refuses on Windows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stations.drivers.linux_console.session import ConsoleCredentials
from stations.drivers.linux_console.simulated_shell import SimulatedShell
from stations.simulation.pseudo_terminal import PtySimulator, SimulatorUnavailable

__all__ = ["DEFAULT_CREDENTIALS", "ConsoleFaults", "SimulatedConsole", "SimulatorUnavailable"]

DEFAULT_CREDENTIALS = ConsoleCredentials("root", "edgeline")


@dataclass
class ConsoleFaults:
    """Switchable faults; change fields at any time, the console reads them per line."""

    noise: bool = False  # a garbage line before every command's output
    drop_lines: int = 0  # swallow the next N lines of command output (markers included)
    duplicate_lines: bool = False  # print every output line twice
    latency_s: float = 0.0  # think this long before each command's output (slow device)
    disconnect_after_chunks: int | None = None  # vanish on the Nth `printf ... >>` command
    corrupt_write: bool = False  # `base64 -d` stores bytes that differ from what was sent
    wrong_hash: bool = False  # `sha256sum` prints a digest that is not the stored file's
    failed_logins: int = 0  # answer the next N correct logins with `Login incorrect`
    edge_runtime_error: bool = False  # `iotedge system status` / `iotedge check` show a broken runtime


class SimulatedConsole(PtySimulator):
    """A Linux console on a pty; same constructor shape as `SimulatedDevice`."""

    what = "simulated console"

    def __init__(
        self,
        serial: str,
        mac: str,
        model: str,
        firmware: str,
        flash_dir: Path,
        *,
        on_boot: Callable[[Path], None] | None = None,
        baud: int | None = None,
        faults: ConsoleFaults | None = None,
        credentials: ConsoleCredentials = DEFAULT_CREDENTIALS,
    ) -> None:
        super().__init__(flash_dir, on_boot=on_boot, baud=baud)
        self.faults = faults or ConsoleFaults()
        self.credentials = credentials
        self.shell = SimulatedShell(
            _identity_files(serial, mac, model, firmware), self.flash_dir, self.faults
        )
        self._state = "login"
        self._user = ""
        self._chunks_seen = 0
        self._pending = bytearray()

    def _started(self) -> None:
        """Every Linux has a /tmp; the console greets with its banner and `login:`."""
        (self.flash_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self._pending = bytearray()
        self._print(b"\r\nEdgeOS 1.0 edge ttyS0\r\n\r\nedge login: ")

    def _is_scratch(self, relative: Path) -> bool:
        return relative.parts[0] == "tmp"

    # --- input --------------------------------------------------------------------------------

    def _received(self, data: bytes, arrived: float) -> None:
        self._rx_uart.wait_for(len(data), arrived)
        self._pending += data
        while (line := _pop_line(self._pending)) is not None and not self._stop.is_set():
            self._on_line(line)

    def _on_line(self, raw: bytes) -> None:
        if raw == b"\x03":
            self._print(b"^C\r\n" + self._prompt())
            return
        line = raw.decode("utf-8", "replace")
        if self._state != "password" and self.shell.echo_enabled:
            self._print(raw + b"\r\n")
        if self._state == "login":
            self._user = line.strip()
            if self._user:
                self._state = "password"
            self._print(b"Password: " if self._user else b"edge login: ")
        elif self._state == "password":
            self._check_login(line)
        elif self._state == "shell":
            self._run(line)

    def _check_login(self, password: str) -> None:
        expected = self.credentials
        ok = (self._user, password) == (expected.username, expected.password)
        if ok and self.faults.failed_logins > 0:
            self.faults.failed_logins -= 1
            ok = False
        if not ok:
            self._state = "login"
            self._print(b"\r\nLogin incorrect\r\nedge login: ")
            return
        self._state = "shell"
        self.shell.echo_enabled = True
        self._print(b"\r\nLast login: today on ttyS0\r\n# motd: edge device #1\r\n" + self._prompt())

    def _run(self, line: str) -> None:
        if "printf " in line:  # a base64 chunk being appended
            self._chunks_seen += 1
            limit = self.faults.disconnect_after_chunks
            if limit and self._chunks_seen >= limit:
                self.stop()  # like a pulled USB cable
                return
        output = self.shell.execute(line) if line.strip() else b""
        if self.faults.latency_s:
            self._stop.wait(self.faults.latency_s)
        self._emit(output)
        if self.shell.reboot_requested or self.shell.restart_requested:
            self._boot()
        else:
            self._print(self._prompt())

    # --- output -------------------------------------------------------------------------------

    def _emit(self, output: bytes) -> None:
        faults = self.faults
        if faults.noise and output:
            self._print(_noise())
        for line in output.splitlines():
            if faults.drop_lines > 0:
                faults.drop_lines -= 1
                continue
            self._print(line + b"\r\n")
            if faults.duplicate_lines:
                self._print(line + b"\r\n")

    def _boot(self) -> None:
        rebooting = self.shell.reboot_requested
        self.shell.reboot_requested = self.shell.restart_requested = False
        self._booted(self.shell.committed)
        if not rebooting:
            self._print(self._prompt())
            return
        self._state = "login"
        self.shell.prompt, self.shell.echo_enabled = "root@edge:~# ", True
        self._print(b"reboot: Restarting system\r\n\r\nEdgeOS 1.0 edge ttyS0\r\n\r\nedge login: ")

    def _prompt(self) -> bytes:
        return self.shell.prompt.encode() if self._state == "shell" else b"edge login: "

    def _print(self, data: bytes) -> None:
        self._outbox.put(data)


def _pop_line(pending: bytearray) -> bytes | None:
    """Take one typed line (ended by CR, LF or CR LF) or a lone Ctrl-C out of `pending`."""
    for index, byte in enumerate(pending):
        if byte == 0x03:
            del pending[: index + 1]
            return b"\x03"
        if byte in (0x0A, 0x0D):
            line = bytes(pending[:index])
            skip = 2 if pending[index : index + 2] == b"\r\n" else 1
            del pending[: index + skip]
            return line
    return None


def _identity_files(serial: str, mac: str, model: str, firmware: str) -> dict[str, bytes]:
    """What sysfs, the device tree, DMI and os-release say on this unit (device tree strings end in NUL)."""
    return {
        "/sys/class/net/eth0/address": f"{mac.lower()}\n".encode(),
        "/proc/device-tree/serial-number": f"{serial}\0".encode(),
        "/sys/class/dmi/id/product_serial": f"{serial}\n".encode(),
        "/proc/device-tree/model": f"{model}\0".encode(),
        "/etc/os-release": f'NAME="EdgeOS"\nPRETTY_NAME="{firmware}"\n'.encode(),
    }


def _noise() -> bytes:
    """A garbage line (wrong-baud bytes) or a kernel message, as consoles print between commands."""
    if random.random() < 0.5:
        return b"[   12.345678] usb 1-1: new high-speed USB device number 3\r\n"
    return b"\x1b\x00" + bytes(random.randint(0x80, 0xFF) for _ in range(random.randint(3, 30))) + b"\r\n"
