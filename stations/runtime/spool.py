"""The station's offline spool: every station event is on disk before anyone tries to send it.

Responsible for: appending encoded events durably (write + fsync) to an append-only journal
(`events.jsonl`), remembering which ones the broker acknowledged in a second journal (`sent.jsonl`),
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
EVENTS, SENT = "events.jsonl", "sent.jsonl"
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

    def line(self) -> bytes:
        body = {"seq": self.seq, "id": self.event_id, "topic": self.topic, "payload": self.payload.decode()}
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
            self._next_seq = 1 + max((int(r["seq"]) for r in [*events, *sent_seqs]), default=0)
            sent = {int(r["seq"]) for r in sent_seqs}
            self._pending = [e for e in map(_event, events) if e is not None and e.seq not in sent]
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

    def append(self, event_id: str, topic: str, payload: bytes) -> SpooledEvent:
        """Write one event durably (fsync) and queue it; raise SpoolFull past the bound."""
        with self._lock:
            event = SpooledEvent(self._next_seq, event_id, topic, payload)
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
        """Whether an event with this id is spooled and not yet acknowledged by the broker."""
        with self._lock:
            return event_id in self._pending_ids

    def first(self) -> SpooledEvent | None:
        """The oldest unsent event, if any."""
        with self._lock:
            return self._pending[0] if self._pending else None

    def pending(self) -> list[SpooledEvent]:
        """Every unsent event, oldest first."""
        with self._lock:
            return list(self._pending)

    def mark_sent(self, event: SpooledEvent) -> None:
        """Record durably that the broker acknowledged `event`."""
        with self._lock:
            _append_durably(self.folder / SENT, json.dumps({"seq": event.seq}).encode() + b"\n")
            self._pending = [e for e in self._pending if e.seq != event.seq]
            self._pending_ids = {e.event_id for e in self._pending}
            self._bytes -= len(event.line())
            if not self._pending:
                self._compact()
            self.changed.notify_all()

    def _compact(self) -> None:
        """Rewrite the journals to hold only unsent events (sequence numbers keep increasing)."""
        events, sent = self.folder / EVENTS, self.folder / SENT
        _replace_durably(events, b"".join(e.line() for e in self._pending))
        # Only now may the sent marks go: a crash in between leaves stale marks for numbers that are
        # never reused (the next number is computed from both journals), so nothing is resent.
        _replace_durably(sent, b"")


def _event(record: dict[str, Any]) -> SpooledEvent | None:
    try:
        return SpooledEvent(
            int(record["seq"]), str(record["id"]), str(record["topic"]), str(record["payload"]).encode()
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
