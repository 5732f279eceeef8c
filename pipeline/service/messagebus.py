"""Which handler acts on which message: the explicit map the consumer dispatches on."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.bus.cloudevents import Envelope
from pipeline.domain.events import (
    ConfigFlashed,
    FlashFailed,
    Message,
    ScanRejected,
    UnitEnrolled,
    UnitKeyed,
    UnitScanned,
)
from pipeline.service import configuring, enrolling, flashing, keying
from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork

Handler = Callable[[Context, Envelope], None]
# Run once before a batch's handlers, in its transaction, with the batch's messages of one type.
BatchPreparer = Callable[[UnitOfWork, Context, list[Envelope]], None]

HANDLERS: dict[type[Message], Handler] = {
    UnitScanned: keying.handle_scanned,
    UnitKeyed: enrolling.handle_keyed,
    UnitEnrolled: configuring.handle_enrolled,
    ConfigFlashed: flashing.handle_flashed,
    FlashFailed: flashing.handle_flash_failed,
    ScanRejected: flashing.handle_scan_rejected,
}

BATCH_PREPARERS: dict[type[Message], BatchPreparer] = {
    UnitScanned: keying.prepare_scans,
}

# Messages only a station may send; they must arrive on that station's own topic prefix.
STATION_MESSAGES: frozenset[type[Message]] = frozenset(
    {UnitScanned, ConfigFlashed, FlashFailed, ScanRejected}
)
