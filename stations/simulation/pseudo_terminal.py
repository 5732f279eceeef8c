"""Pseudo-terminal plumbing shared by the simulators (`SimulatedDevice`, `SimulatedConsole`).

Responsible for: opening a raw pty pair, pacing bytes like a UART (a pty has no baud rate), a writer
loop that never wedges when the station stops reading, and `PtySimulator`, the lifecycle every
simulator shares (start/stop on a fresh pty, `.port`, reader and writer threads, the stored files,
calling `on_boot` in the background).
Not responsible for: what a simulated device says (the simulators). POSIX only at run time:
importing works everywhere, `open_raw_pty()` refuses on Windows.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Self

if sys.platform != "win32":
    import tty

__all__ = ["PtySimulator", "SimulatorUnavailable", "Uart", "open_raw_pty", "pump_outbox"]

_BITS_PER_BYTE = 10  # start + 8 data + stop


class SimulatorUnavailable(RuntimeError):
    """The simulator cannot run here (it needs POSIX pseudo-terminals)."""


class Uart:
    """Pace bytes like a UART at `baud` (None: no pacing); one instance per direction."""

    def __init__(self, baud: int | None) -> None:
        self._per_byte = _BITS_PER_BYTE / baud if baud else 0.0
        self._busy_until = 0.0

    def wait_for(self, nbytes: int, started: float | None = None) -> None:
        """Sleep until `nbytes` more bytes would have crossed the wire."""
        if not self._per_byte:
            return
        now = time.monotonic()
        self._busy_until = max(self._busy_until, started or now) + nbytes * self._per_byte
        if self._busy_until > now:
            time.sleep(self._busy_until - now)


def open_raw_pty(what: str) -> tuple[int, int, str]:
    """Open a pty pair in raw mode: (master fd, slave fd, station-side tty path)."""
    if sys.platform == "win32":
        raise SimulatorUnavailable(f"{what} needs POSIX pseudo-terminals; run it on Linux/macOS")
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no CR/LF translation: bytes as a UART would carry them
    os.set_blocking(master, False)  # a station that stops reading must not wedge the writer
    return master, slave, os.ttyname(slave)


def pump_outbox(
    outbox: queue.Queue[bytes | None],
    master: Callable[[], int | None],
    stop: threading.Event,
    baud: int | None,
) -> None:
    """Write queued bytes to the pty master (paced) until a None arrives or the pty closes."""
    uart = Uart(baud)
    while (data := outbox.get()) is not None:
        uart.wait_for(len(data))
        while data and not stop.is_set() and (fd := master()) is not None:
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                stop.wait(0.01)  # pty buffer full: the station is not reading yet
            except OSError:
                return


class PtySimulator(ABC):
    """A simulated device on its own pty: subclasses say what it does with the bytes it receives.

    `start()` opens a fresh pty pair (so a stopped simulator can start again) and the reader and
    writer threads; `stop()` closes it, so the station sees the port vanish like a pulled cable.
    """

    what = "simulated device"  # for messages and thread names

    def __init__(self, flash_dir: Path, *, on_boot: Callable[[Path], None] | None, baud: int | None) -> None:
        self.flash_dir = Path(flash_dir)
        self.on_boot = on_boot
        self.baud = baud
        self._fds: tuple[int, int] | None = None
        self._port = ""
        self._stop = threading.Event()
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._rx_uart = Uart(baud)

    @property
    def port(self) -> str:
        """Path of the station-side tty, e.g. /dev/pts/7 (valid after `start()`)."""
        if not self._port:
            raise SimulatorUnavailable(f"{self.what} not started: call start() first")
        return self._port

    def start(self) -> Self:
        """Open the pty pair and start answering; returns self."""
        master, slave, self._port = open_raw_pty(type(self).__name__)
        self._fds = (master, slave)
        self._stop.clear()
        self._outbox = queue.Queue()
        self._rx_uart = Uart(self.baud)
        self._started()
        tag = self.what.split()[-1]
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"{tag}-rx {self._port}", daemon=True),
            threading.Thread(target=self._write_loop, name=f"{tag}-tx {self._port}", daemon=True),
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
        fds, self._fds = self._fds, None
        for fd in fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def flashed_files(self) -> dict[str, bytes]:
        """Return every stored file as {device path: content as stored} (scratch files left out)."""
        return {
            "/" + path.relative_to(self.flash_dir).as_posix(): path.read_bytes()
            for path in sorted(self.flash_dir.rglob("*"))
            if path.is_file() and not self._is_scratch(path.relative_to(self.flash_dir))
        }

    @abstractmethod
    def _started(self) -> None:
        """Prepare the device's storage and first output; the threads start right after."""

    @abstractmethod
    def _received(self, data: bytes, arrived: float) -> None:
        """Handle bytes the station sent (`arrived`: when they were read), on the reader thread."""

    @abstractmethod
    def _is_scratch(self, relative: Path) -> bool:
        """Whether a stored file is temporary (a staged write), not part of what was flashed."""

    def _booted(self, committed: Path | None) -> None:
        """Call `on_boot(committed)` on its own thread, as a device boots after the station moved on."""
        callback = self.on_boot
        if committed is not None and callback is not None:
            threading.Thread(
                target=callback, args=(committed,), name=f"{self.what} boot", daemon=True
            ).start()

    def _read_loop(self) -> None:
        while not self._stop.is_set() and (fds := self._fds) is not None:
            ready, _, _ = select.select([fds[0]], [], [], 0.05)
            if not ready:
                continue
            arrived = time.monotonic()
            try:
                data = os.read(fds[0], 4096)
            except OSError:
                continue  # EIO while no station has the port open: keep waiting
            self._received(data, arrived)

    def _write_loop(self) -> None:
        pump_outbox(self._outbox, lambda: self._fds[0] if self._fds else None, self._stop, self.baud)
