"""The station's label queue: every label is on disk until a printer took it, so none is lost.

Responsible for: writing a PASS unit's label (and its PNG preview) to the queue folder at once, and a
thread that sends queued labels in order, retrying with a capped backoff while the printer is away and
telling the operator why. Not responsible for: the layout (`zpl`) or the transport (`printers`).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from stations.labels.printers import LabelPrinter, PrinterError
from stations.labels.qr_preview import write_qr_png
from stations.labels.zpl import UnitLabel, render_zpl
from stations.runtime.results import PortResult

log = logging.getLogger(__name__)
Notice = Callable[[str], None]
_RETRY_INITIAL, _RETRY_MAX = 0.5, 30.0


class LabelSpooler:
    """Queue labels on disk and print them from one thread; use `on_result` as a station result sink."""

    def __init__(
        self,
        printer: LabelPrinter,
        folder: Path,
        *,
        product: str,
        station: str = "",
        preview_dir: Path | None = None,
        on_notice: Notice | None = None,
    ) -> None:
        self.printer, self.folder = printer, folder
        self.product, self.station, self.preview_dir = product, station, preview_dir
        self._on_notice = on_notice or (lambda text: log.warning("%s", text))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = itertools.count(int(time.time() * 1000))
        self._problem: str | None = None
        self.printed: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="labels", daemon=True)

    def start(self) -> LabelSpooler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def pending(self) -> list[Path]:
        """Labels written but not yet printed, oldest first."""
        return sorted(self.folder.glob("*.zpl"))

    def on_result(self, result: PortResult) -> None:
        """Queue a label for a PASS with a known identity; anything else has no label."""
        if result.outcome != "PASS" or not (result.registration_id and result.serial and result.mac):
            return
        label = UnitLabel(
            registration_id=result.registration_id,
            serial=result.serial,
            mac=result.mac,
            product=self.product,
            printed_on=date.today(),
            station=self.station,
        )
        self.enqueue(label)

    def enqueue(self, label: UnitLabel) -> Path:
        """Write the label to the queue (atomically) and its preview, then wake the sender."""
        name = f"{next(self._seq):015d}-{label.registration_id}"
        partial = self.folder / f".{name}.partial"
        partial.write_text(render_zpl(label), encoding="utf-8")
        path = self.folder / f"{name}.zpl"
        os.replace(partial, path)
        if self.preview_dir is not None:
            write_qr_png(label.registration_id, self.preview_dir / f"{label.registration_id}.png")
        self._wake.set()
        return path

    def _run(self) -> None:
        delay = _RETRY_INITIAL
        while not self._stop.is_set():
            self._wake.clear()
            if self._drain():
                delay = _RETRY_INITIAL
                self._wake.wait()
            else:
                self._wake.wait(delay)
                delay = min(delay * 2, _RETRY_MAX)

    def _drain(self) -> bool:
        """Send every queued label in order; False if the printer refused one (it stays queued)."""
        for path in self.pending():
            if self._stop.is_set():
                return True
            try:
                self.printer.send(path.stem, path.read_bytes())
            except PrinterError as exc:
                self._tell(f"label for {_unit(path)} queued ({len(self.pending())} waiting): {exc}; retrying")
                return False
            except OSError:  # removed by another process meanwhile
                continue
            path.unlink(missing_ok=True)
            self.printed.append(_unit(path))
            if self._problem is not None:
                self._tell(None)
        return True

    def _tell(self, problem: str | None) -> None:
        if problem == self._problem:
            return
        self._problem = problem
        self._on_notice(problem or f"labels: {self.printer.describe()} is back, queue sent")


def _unit(path: Path) -> str:
    return path.stem.split("-", 1)[1]
