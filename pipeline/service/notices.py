"""Messages the pipeline sends one station about its units: flash acknowledgements and notices.

Responsible for: queueing `flash.recorded` (the end-to-end acknowledgement of a `config.flashed`
event) and `unit.notice` (assigned, overdue, ...) in the outbox of the caller's unit of work, so they
are published only after that transaction committed.
Not responsible for: deciding when to send them (the recorder and the confirmer do).
"""

from __future__ import annotations

from pipeline.bus.topics import TopicError
from pipeline.domain.events import FlashRecorded, UnitNotice
from pipeline.domain.model import Unit
from pipeline.service.context import Context
from pipeline.service.unit_of_work import UnitOfWork


def acknowledge_flash(
    uow: UnitOfWork,
    ctx: Context,
    *,
    line: str,
    station: str,
    registration_id: str,
    event_id: str,
    outcome: str,
) -> None:
    """Tell `station` its `config.flashed` event `event_id` is recorded, so it may forget it."""
    message = FlashRecorded(
        registration_id=registration_id, station=station, event_id=event_id, outcome=outcome[:200]
    )
    try:
        ctx.emit(uow, message, ctx.topics.station_command(line, station, FlashRecorded.NAME))
    except TopicError:  # a station name no topic can carry never sent a valid event: nobody to answer
        return


def notify_station(uow: UnitOfWork, ctx: Context, unit: Unit, *, kind: str, reason: str, final: bool) -> None:
    """Send the unit's station a `unit.notice` of `kind` (shown to the operator on that port)."""
    message = UnitNotice(
        registration_id=unit.registration_id,
        station=unit.station,
        kind=kind,
        state=unit.state.value,
        reason=reason[:900],
        final=final,
    )
    try:
        ctx.emit(uow, message, ctx.topics.station_command(unit.line, unit.station, UnitNotice.NAME))
    except TopicError:
        return
