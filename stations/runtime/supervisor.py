"""Which ports a station serves: a fixed list, a watched folder of port links, USB matches (hot-plug).

A pseudo-terminal does not enumerate as a USB device, so tests and the demo "plug" a device by putting
a link to its tty into the watched folder and "unplug" it by removing the link. Real lines list ports
(`/dev/ttyUSB0`, `COM3`, `socket://…`) or match USB VID:PID[:serial glob] (`stations.runtime.usb_ports`),
enumerated every second: a new matching port gets a worker, a vanished one ends its worker.
Not responsible for: what happens on a port (`stations.runtime.port_worker`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from stations.drivers.port import DriverFactory
from stations.runtime.agent import StationAgent
from stations.runtime.port_worker import PortWorker
from stations.runtime.usb_ports import UsbMatch

UsbLister = Callable[[Sequence[UsbMatch]], list[str]]

log = logging.getLogger(__name__)


class StationSupervisor:
    """Starts one PortWorker per present port and forgets workers whose port went away."""

    def __init__(
        self,
        agent: StationAgent,
        open_driver: DriverFactory,
        *,
        ports: Iterable[str] = (),
        watch_dir: Path | None = None,
        scan_interval: float = 0.25,
        usb: Sequence[UsbMatch] = (),
        usb_interval: float = 1.0,
        list_usb: UsbLister | None = None,
    ) -> None:
        self.agent = agent
        self._open_driver = open_driver
        self._fixed = list(ports)
        self._watch_dir = watch_dir
        self._scan_interval = scan_interval
        self._workers: dict[str, PortWorker] = {}
        self._thread: threading.Thread | None = None
        self._usb, self._usb_interval = list(usb), usb_interval
        self._list_usb = list_usb
        self._usb_present: set[str] = set()
        self._usb_thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving (fixed ports at once, the watched folder continuously)."""
        for port in self._fixed:
            self._spawn(port, lambda: True)
        if self._watch_dir is not None:
            self._watch_dir.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._watch, name="port-watch", daemon=True)
            self._thread.start()
        if self._usb:
            self._usb_thread = threading.Thread(target=self._watch_usb, name="usb-watch", daemon=True)
            self._usb_thread.start()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the workers after the agent was told to stop."""
        for thread in (self._thread, self._usb_thread):
            if thread is not None:
                thread.join(timeout)
        for worker in list(self._workers.values()):
            worker.join(timeout)

    def _spawn(self, port: str, still_present: Callable[[], bool]) -> None:
        worker = PortWorker(self.agent, port, self._open_driver, still_present)
        self._workers[port] = worker
        worker.start()

    def _watch(self) -> None:
        assert self._watch_dir is not None
        while not self.agent.stopping.is_set():
            try:
                names = sorted(os.listdir(self._watch_dir))
            except OSError as exc:
                log.warning("cannot list port folder %s: %s", self._watch_dir, exc.strerror)
                names = []
            for name in names:
                path = str(self._watch_dir / name)
                current = self._workers.get(path)
                if current is None or not current.is_alive():
                    self._spawn(path, _exists(path))
            for path in [p for p, w in self._workers.items() if not w.is_alive()]:
                if not os.path.lexists(path):
                    del self._workers[path]
            self.agent.stopping.wait(self._scan_interval)

    def _watch_usb(self) -> None:
        if self._list_usb is None:
            from stations.runtime.usb_ports import present_usb_ports

            self._list_usb = present_usb_ports
        known: set[str] = set()
        while not self.agent.stopping.is_set():
            try:
                present = set(self._list_usb(self._usb))
            except OSError as exc:
                log.warning("cannot enumerate USB serial ports: %s", exc)
                present = known
            self._usb_present = present
            for port in sorted(present - known):
                log.info("USB port %s plugged in (matches %s)", port, ", ".join(map(str, self._usb)))
            for port in sorted(known - present):
                log.info("USB port %s unplugged", port)
            for port in sorted(present):
                current = self._workers.get(port)
                if current is None or not current.is_alive():
                    self._spawn(port, self._usb_still_present(port))
            known = present
            self.agent.stopping.wait(self._usb_interval)

    def _usb_still_present(self, port: str) -> Callable[[], bool]:
        return lambda: port in self._usb_present


def _exists(path: str) -> Callable[[], bool]:
    return lambda: os.path.lexists(path)
