"""A simulated device on a real pseudo-terminal, so stations and tests talk to a real tty.

Responsible for: a pty pair (the station opens `.port`, e.g. /dev/pts/N, with `PySerialLink`; the
simulator holds the other end), reader/writer threads, UART pacing at a chosen baud rate (a pty
has none), line-level faults (noise, drops, duplicates, corrupted replies, latency, garbage,
vanishing mid-flash) and calling `on_boot` after a reboot with a committed config.
Not responsible for: what a request does (see `stations.drivers.line_protocol.simulated_firmware`) or DPS
registration (the `on_boot` callback's job). POSIX only: importing works everywhere, `start()` refuses on
Windows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from stations.drivers.line_protocol.protocol import IdentityReply, Reply, encode_reply
from stations.drivers.line_protocol.simulated_firmware import TMP_PREFIX, Faults, SimulatedFirmware
from stations.line_buffer import LineBuffer
from stations.simulation.pseudo_terminal import PtySimulator, SimulatorUnavailable

__all__ = ["Faults", "SimulatedDevice", "SimulatorUnavailable"]


class SimulatedDevice(PtySimulator):
    """A device speaking the line protocol on a pty; see module docstring."""

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
        faults: Faults | None = None,
        max_file_bytes: int = 64 * 1024,
    ) -> None:
        super().__init__(flash_dir, on_boot=on_boot, baud=baud)
        self.faults = faults or Faults()
        self.firmware = SimulatedFirmware(
            IdentityReply(0, serial, mac, model, firmware),
            self.flash_dir,
            self.faults,
            max_file_bytes=max_file_bytes,
        )
        self._chunks_seen = 0
        self._buffer = LineBuffer()

    def _started(self) -> None:
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self._buffer = LineBuffer()

    def _is_scratch(self, relative: Path) -> bool:
        return relative.name.startswith(TMP_PREFIX)

    def _received(self, data: bytes, arrived: float) -> None:
        self._buffer.feed(data)
        while (line := self._buffer.pop_line()) is not None and not self._stop.is_set():
            self._rx_uart.wait_for(len(line), arrived)  # a UART delivers each line once its last byte is in
            self._on_line(line)

    def _on_line(self, line: bytes) -> None:
        faults = self.faults
        if line[2:5] == b" D ":  # a DATA line (cheap check; the firmware parses it properly)
            self._chunks_seen += 1
            if faults.disconnect_after_chunks and self._chunks_seen >= faults.disconnect_after_chunks:
                self._vanish()
                return
        if faults.garbage:
            self._outbox.put(_noise())
            return
        reply = self.firmware.handle_line(line)
        if faults.latency_s:
            self._stop.wait(faults.latency_s)  # interruptible, so stop() never waits on it
        self._send(reply)
        if self.firmware.reboot_requested:
            self._reboot()

    def _send(self, reply: Reply) -> None:
        faults = self.faults
        if faults.noise:
            self._outbox.put(_noise())
        if faults.flood_bytes > 0:
            self._outbox.put(b"\xfe" * faults.flood_bytes + b"\n")
            faults.flood_bytes = 0
        if faults.drop_replies > 0:
            faults.drop_replies -= 1
            return
        line = encode_reply(reply)
        if faults.corrupt_replies > 0:
            faults.corrupt_replies -= 1
            line = line[:-2] + (b"0" if line[-2:-1] != b"0" else b"1") + b"\n"
        self._outbox.put(line)
        if faults.duplicate_replies:
            self._outbox.put(line)

    def _reboot(self) -> None:
        self.firmware.reboot_requested = False
        self._booted(self.firmware.committed)

    def _vanish(self) -> None:
        """Drop off the bus mid-operation, like a pulled USB cable."""
        self.stop()


def _noise() -> bytes:
    """A line of random bytes, like a boot ROM banner at the wrong baud rate."""
    size = random.randint(3, 40)
    return bytes(random.choice([*range(0, 10), *range(11, 256)]) for _ in range(size)) + b"\n"
