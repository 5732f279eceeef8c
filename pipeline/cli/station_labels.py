"""Wire unit labels into `edgeline station run` when `label_printer` is set (off by default)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli.main import CommandError
from pipeline.cli.station_output import StationOutput
from pipeline.config import Settings
from stations.runtime.config import StationConfig

if TYPE_CHECKING:
    from stations.labels.spooler import LabelSpooler


def start_labels(settings: Settings, config: StationConfig, output: StationOutput) -> LabelSpooler | None:
    """Start the label queue and hook it to the station's results; None when labels are off."""
    if not settings.label_printer:
        return None
    from stations.labels.printers import printer_from_spec
    from stations.labels.spooler import LabelSpooler

    try:
        printer = printer_from_spec(settings.label_printer)
    except ValueError as exc:
        raise CommandError(f"{exc} (EDGELINE_LABEL_PRINTER)", exit_code=2) from None
    queue_dir = Path(settings.label_queue_dir) if settings.label_queue_dir else _beside(config.key_file)
    preview = Path(settings.label_preview_dir) if settings.label_preview_dir else None
    try:
        spooler = LabelSpooler(
            printer,
            queue_dir,
            product=config.product,
            station=config.name,
            preview_dir=preview,
            on_notice=lambda text: print(f"edgeline station {config.name}: {text}", file=sys.stderr),
        )
    except OSError as exc:
        raise CommandError(f"label_queue_dir {queue_dir}: {exc.strerror or exc}", exit_code=2) from None
    output.extra.append(spooler.on_result)
    return spooler.start()


def _beside(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".labels")
