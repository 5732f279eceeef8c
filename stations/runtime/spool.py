"""The station's offline spool: every station event is on disk before anyone tries to send it.

Responsible for: appending encoded events durably (write + fsync) to an append-only journal
(`events.jsonl`), remembering which ones the broker acknowledged in a second journal (`sent.jsonl`),
keeping *held* events (outcomes the pipeline must confirm: `config.flashed`) after the broker's
acknowledgement until the pipeline's own acknowledgement is recorded in a third journal (`acked.jsonl`),
telling the sender which held events are due to be sent again,
listing the pending ones in the order they were spooled, bounding the spool's size, and compacting
both journals when they can be. A crash at any point loses nothing: a torn last line (the process died
mid-write) is ignored and cut off, and an event whose `sent` mark did not reach the disk is simply sent
again, byte for byte the same payload, so the pipeline drops it by its CloudEvent id.
Not responsible for: talking to the broker (`stations.runtime.spool_sender`), encoding events (the agent), or
guarding against two station processes sharing one spool folder (give each station its own).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stations.errors import StationError

log = logging.getLogger(__name__)
EVENTS, SENT, ACKED = "events.jsonl", "sent.jsonl", "acked.jsonl"
DEFAULT_MAX_EVENTS = 10_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class SpoolError(StationError):
    """The spool folder cannot be used (unwritable, full)."""


class SpoolFull(SpoolError):
    """The spool reached its bound: the broker has been unreachable for too long."""


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    """One encoded station event waiting for (or past) the broker's acknowledgement."""

    seq: int
    event_id: str
    topic: str
    payload: bytes
    hold: bool = False  # kept after the broker's PUBACK until the pipeline acknowledges it

    def line(self) -> bytes:
        body: dict[str, Any] = {
            "seq": self.seq,
            "id": self.event_id,
            "topic": self.topic,
            "payload": self.payload.decode(),
        }
        if self.hold:
            body["hold"] = True
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"


class Spool:
    """A crash-safe FIFO of encoded events in one folder; thread-safe."""

    def __init__(
        self, folder: Path, *, max_events: int = DEFAULT_MAX_EVENTS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.folder = folder
        self.max_events, self.max_bytes = max_events, max_bytes
        self._lock = threading.RLock()  # re-entered by predicates evaluated under `changed`
        self.changed = threading.Condition(self._lock)
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            events, sent_seqs = _read_journal(folder / EVENTS), _read_journal(folder / SENT)
            acked_seqs = _read_journal(folder / ACKED)
            acked = {int(r["seq"]) for r in acked_seqs}
            self._next_seq = 1 + max((int(r["seq"]) for r in [*events, *sent_seqs, *acked_seqs]), default=0)
            sent = {int(r["seq"]) for r in sent_seqs}
            known = [e for e in map(_event, events) if e is not None and e.seq not in acked]
            self._pending = [e for e in known if e.seq not in sent]
            # Held events sent before the restart: due to be sent again at once.
            self._held: dict[str, tuple[SpooledEvent, float, int]] = {
                e.event_id: (e, float("-inf"), 0) for e in known if e.hold and e.seq in sent
            }
            self._pending_ids = {e.event_id for e in self._pending}
            self._bytes = sum(len(e.line()) for e in self._pending)
            self._compact()
        except OSError as exc:
            raise SpoolError(f"cannot use spool folder {folder}: {exc.strerror or exc}") from None
        if self._pending:
            log.info("spool %s: %d event(s) from before the restart to send", folder, len(self._pending))

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def append(self, event_id: str, topic: str, payload: bytes, *, hold: bool = False) -> SpooledEvent:
        """Write one event durably (fsync) and queue it; raise SpoolFull past the bound.

        A `hold` event stays after the broker acknowledged it, until `acknowledge(event_id)`.
        """
        with self._lock:
            event = SpooledEvent(self._next_seq, event_id, topic, payload, hold)
            line = event.line()
            if len(self._pending) >= self.max_events or self._bytes + len(line) > self.max_bytes:
                raise SpoolFull(
                    f"station spool {self.folder} is full ({len(self._pending)} events, "
                    f"{self._bytes // 1024} KiB unsent): the MQTT broker has been unreachable too long; "
                    "fix the broker connection (setting mqtt_url) — nothing spooled so far is lost"
                )
            try:
                _append_durably(self.folder / EVENTS, line)
            except OSError as exc:
                raise SpoolError(
                    f"cannot write to spool {self.folder}: {exc.strerror or exc} (free disk space?)"
                ) from None
            self._next_seq += 1
            self._pending.append(event)
            self._pending_ids.add(event_id)
            self._bytes += len(line)
            self.changed.notify_all()
            return event

    def is_pending(self, event_id: str) -> bool:
        """Whether an event with this id is spooled and not yet acknowledged (by the broker, or if held,
        by the pipeline)."""
        with self._lock:
            return event_id in self._pending_ids or event_id in self._held

    def held(self) -> list[SpooledEvent]:
        """Held events the broker took but the pipeline has not acknowledged yet, oldest first."""
        with self._lock:
            return sorted((e for e, _, _ in self._held.values()), key=lambda e: e.seq)

    def resends(self, event_id: str) -> int:
        """How often a held event was sent again since it was first sent (or since the restart)."""
        with self._lock:
            entry = self._held.get(event_id)
            return entry[2] if entry else 0

    def due_again(self, now: float, interval: float) -> list[SpooledEvent]:
        """Held events last sent `interval` seconds or more before `now` (monotonic), oldest first."""
        with self._lock:
            due = [e for e, sent_at, _ in self._held.values() if now - sent_at >= interval]
            return sorted(due, key=lambda e: e.seq)

    def sent_again(self, event: SpooledEvent, now: float) -> None:
        """Note that a held event was just sent again (the broker acknowledged it)."""
        with self._lock:
            entry = self._held.get(event.event_id)
            if entry is not None:
                self._held[event.event_id] = (event, now, entry[2] + 1)

    def acknowledge(self, event_id: str) -> bool:
        """Record durably that the pipeline acknowledged held event `event_id`; False if not held here."""
        with self._lock:
            entry = self._held.get(event_id)
            event = entry[0] if entry else next((e for e in self._pending if e.event_id == event_id), None)
            if event is None or not event.hold:
                return False
            _append_durably(self.folder / ACKED, json.dumps({"seq": event.seq}).encode() + b"\n")
            self._held.pop(event_id, None)
            if event in self._pending:
                self._drop_pending(event)
            if not self._pending:
                self._compact()
            self.changed.notify_all()
            return True

    def first(self) -> SpooledEvent | None:
        """The oldest unsent event, if any."""
        with self._lock:
            return self._pending[0] if self._pending else None

    def pending(self) -> list[SpooledEvent]:
        """Every unsent event, oldest first."""
        with self._lock:
            return list(self._pending)

    def mark_sent(self, event: SpooledEvent, now: float = 0.0) -> None:
        """Record durably that the broker acknowledged `event` (at monotonic `now`, for held events)."""
        with self._lock:
            if event not in self._pending:  # acknowledged by the pipeline before the PUBACK was noted
                return
            _append_durably(self.folder / SENT, json.dumps({"seq": event.seq}).encode() + b"\n")
            self._drop_pending(event)
            if event.hold:
                self._held[event.event_id] = (event, now, 0)
            if not self._pending:
                self._compact()
            self.changed.notify_all()

    def _drop_pending(self, event: SpooledEvent) -> None:
        self._pending = [e for e in self._pending if e.seq != event.seq]
        self._pending_ids = {e.event_id for e in self._pending}
        self._bytes -= len(event.line())

    def _compact(self) -> None:
        """Rewrite the journals to hold only unsent and held events (sequence numbers keep increasing)."""
        events, sent, acked = self.folder / EVENTS, self.folder / SENT, self.folder / ACKED
        held = sorted((e for e, _, _ in self._held.values()), key=lambda e: e.seq)
        _replace_durably(events, b"".join(e.line() for e in [*held, *self._pending]))
        # Only now may the old marks go: a crash in between leaves stale marks for numbers that are
        # never reused (the next number is computed from the journals), so nothing is resent. Held
        # events keep their sent marks (they are re-sent on their timer, not as new events).
        _replace_durably(sent, b"".join(json.dumps({"seq": e.seq}).encode() + b"\n" for e in held))
        _replace_durably(acked, b"")


def _event(record: dict[str, Any]) -> SpooledEvent | None:
    try:
        return SpooledEvent(
            int(record["seq"]),
            str(record["id"]),
            str(record["topic"]),
            str(record["payload"]).encode(),
            record.get("hold") is True,
        )
    except (KeyError, TypeError, ValueError):
        log.warning("spool: skipping a malformed record")
        return None


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a journal; a torn last line (crash mid-append) is cut off."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        log.warning("spool %s: ignoring a torn last record (%d bytes)", path, len(data) - len(complete))
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
            os.fsync(handle.fileno())
    records = []
    for raw in complete.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            log.warning("spool %s: skipping an unreadable record", path)
            continue
        if isinstance(record, dict) and "seq" in record:
            records.append(record)
    return records


def _append_durably(path: Path, line: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_durably(path: Path, content: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory; NTFS journals the rename itself
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
