"""A simulated device on a real pseudo-terminal, so stations and tests talk to a real tty.

Responsible for: a pty pair (the station opens `.port`, e.g. /dev/pts/N, with `PySerialLink`; the
simulator holds the other end), reader/writer threads, UART pacing at a chosen baud rate (a pty
has none), line-level faults (noise, drops, duplicates, corrupted replies, latency, garbage,
vanishing mid-flash) and calling `on_boot` after a reboot with a committed config.
Not responsible for: what a request does (see `stations.sim_firmware`) or DPS registration (the
`on_boot` callback's job). POSIX only: importing works everywhere, `start()` refuses on Windows.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stations.framing import LineBuffer
from stations.protocol import IdentityReply, Reply, encode_reply
from stations.sim_firmware import TMP_PREFIX, Faults, SimulatedFirmware
from stations.sim_pty import SimulatorUnavailable, open_raw_pty, pump_outbox
from stations.sim_pty import Uart as _Uart

__all__ = ["Faults", "SimulatedDevice", "SimulatorUnavailable"]


class SimulatedDevice:
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
        self.faults = faults or Faults()
        self.flash_dir = Path(flash_dir)
        self.firmware = SimulatedFirmware(
            IdentityReply(0, serial, mac, model, firmware),
            self.flash_dir,
            self.faults,
            max_file_bytes=max_file_bytes,
        )
        self.on_boot = on_boot
        self.baud = baud
        self._fds: tuple[int, int] | None = None
        self._port = ""
        self._stop = threading.Event()
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._chunks_seen = 0

    @property
    def port(self) -> str:
        """Path of the station-side tty, e.g. /dev/pts/7 (valid after `start()`)."""
        if not self._port:
            raise SimulatorUnavailable("simulated device not started: call start() first")
        return self._port

    def start(self) -> SimulatedDevice:
        """Open the pty pair and start answering; returns self."""
        master, slave, self._port = open_raw_pty("SimulatedDevice")
        self._fds = (master, slave)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._outbox = queue.Queue()
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"sim-rx {self._port}", daemon=True),
            threading.Thread(target=self._write_loop, name=f"sim-tx {self._port}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the threads and close the pty (the station sees the port vanish)."""
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)
        self._close_fds()

    def __enter__(self) -> SimulatedDevice:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def flashed_files(self) -> dict[str, bytes]:
        """Return every stored file as {device path: content as stored}."""
        return {
            "/" + path.relative_to(self.flash_dir).as_posix(): path.read_bytes()
            for path in sorted(self.flash_dir.rglob("*"))
            if path.is_file() and not path.name.startswith(TMP_PREFIX)
        }

    # --- threads ------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        buffer, uart = LineBuffer(), _Uart(self.baud)
        while not self._stop.is_set() and self._fds is not None:
            master = self._fds[0]
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            arrived = time.monotonic()
            try:
                data = os.read(master, 4096)
            except OSError:
                continue  # EIO while no station has the port open: keep waiting
            buffer.feed(data)
            while (line := buffer.pop_line()) is not None and not self._stop.is_set():
                uart.wait_for(len(line), arrived)  # a UART delivers each line once its last byte is in
                self._on_line(line)

    def _write_loop(self) -> None:
        pump_outbox(self._outbox, lambda: self._fds[0] if self._fds else None, self._stop, self.baud)

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
        committed, callback = self.firmware.committed, self.on_boot
        if committed is not None and callback is not None:
            threading.Thread(target=callback, args=(committed,), name="sim-boot", daemon=True).start()

    def _vanish(self) -> None:
        """Drop off the bus mid-operation, like a pulled USB cable."""
        self.stop()

    def _close_fds(self) -> None:
        fds, self._fds = self._fds, None
        for fd in fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)


def _noise() -> bytes:
    """A line of random bytes, like a boot ROM banner at the wrong baud rate."""
    size = random.randint(3, 40)
    return bytes(random.choice([*range(0, 10), *range(11, 256)]) for _ in range(size)) + b"\n"
