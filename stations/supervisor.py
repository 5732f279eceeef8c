"""Which ports a station serves: a fixed list, or a watched folder of port links (hot-plug).

A pseudo-terminal does not enumerate as a USB device, so tests and the demo "plug" a device by putting
a link to its tty into the watched folder and "unplug" it by removing the link. Real lines list ports
(`/dev/ttyUSB0`, `COM3`, `socket://…`) or, in a later version, match USB VID:PID.
Not responsible for: what happens on a port (`stations.port_worker`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from stations.agent import StationAgent
from stations.port_worker import DriverFactory, PortWorker

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
    ) -> None:
        self.agent = agent
        self._open_driver = open_driver
        self._fixed = list(ports)
        self._watch_dir = watch_dir
        self._scan_interval = scan_interval
        self._workers: dict[str, PortWorker] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving (fixed ports at once, the watched folder continuously)."""
        for port in self._fixed:
            self._spawn(port, lambda: True)
        if self._watch_dir is not None:
            self._watch_dir.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._watch, name="port-watch", daemon=True)
            self._thread.start()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the workers after the agent was told to stop."""
        if self._thread is not None:
            self._thread.join(timeout)
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


def _exists(path: str) -> Callable[[], bool]:
    return lambda: os.path.lexists(path)
