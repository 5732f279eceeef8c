"""A station's own settings: who it is, where its devices are, how to reach the pipeline.

Stations never import the database; they know the pipeline only through the bus (STYLE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.domain.identity import DEFAULT_TEMPLATE, MacPolicy

DEFAULT_MAC_POLICY = MacPolicy()  # any OUI, locally administered allowed; group MACs always refused


@dataclass(frozen=True, slots=True)
class StationConfig:
    """Identity and behaviour of one test station."""

    name: str
    line: str
    key_file: Path
    product: str = "default"
    batch: str | None = None
    registration_id_template: str = DEFAULT_TEMPLATE
    topic_root: str = "edgeline"
    baudrate: int = 115200
    flash_timeout_seconds: float = 300.0
    flash_attempts: int = 3
    # While waiting for its config a port re-sends its scan (same event id, so never a second unit):
    # a scan published while no worker was subscribed yet would otherwise be lost.
    rescan_interval_seconds: float = 15.0
    poll_interval_seconds: float = 1.0
    # Offline spool of outgoing events (stations.runtime.spool); None: `<key file>.spool` beside the key file.
    spool_dir: Path | None = None
    spool_max_events: int = 10_000
    # MAC admission rules, the same as the pipeline's `mac_*` settings: a refused MAC is never published.
    mac_policy: MacPolicy = DEFAULT_MAC_POLICY
    # A `config.flashed` stays spooled after the broker's PUBACK and is re-sent (same event id) this
    # often until the pipeline's `flash.recorded` acknowledgement arrives (a broker may lose what it
    # acknowledged, e.g. Mosquitto killed between two autosaves).
    flash_ack_resend_seconds: float = 30.0
    flash_ack_max_resends: int = 2880  # then (a day at 30 s) give up with an error line: DPS still tells
