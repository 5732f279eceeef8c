"""Build the Sparkplug publisher from settings: its own MQTT session (with the NDEATH will) and DB reader.

Responsible for: resolving `sparkplug_*` settings (broker default = `mqtt_url`, edge node default = the
line) into a `SparkplugPublisher`. Not responsible for: when it runs (`edgeline up`, `edgeline sparkplug`).
"""

from __future__ import annotations

import os
import socket

from pipeline.bus.paho import PahoBus
from pipeline.config import ConfigError, Settings
from pipeline.db.line_state import SqlLineState
from pipeline.db.session import Database

try:
    from pipeline.sparkplug.publisher import Session, SparkplugPublisher
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
    if exc.name != "pysparkplug":
        raise
    raise ConfigError(
        "sparkplug_enabled needs the pysparkplug package: pip install --no-deps 'pysparkplug==0.6.1' "
        "(it declares paho-mqtt<2 for a client edgeline does not use)"
    ) from None


def edge_node_id(settings: Settings) -> str:
    """The Sparkplug edge node ID: `sparkplug_edge_node_id`, or the line's name."""
    node = settings.sparkplug_edge_node_id or settings.line
    if not node or any(c in node for c in "/+#"):
        raise ConfigError(
            f"sparkplug_edge_node_id (EDGELINE_SPARKPLUG_EDGE_NODE_ID) {node!r} must be a non-empty name "
            "without '/', '+' or '#'"
        )
    return node


def build_sparkplug(settings: Settings, database: Database) -> SparkplugPublisher:
    """A publisher for the configured line; raises ConfigError naming a missing broker URL."""
    url = settings.sparkplug_mqtt_url or settings.mqtt_url
    if not url:
        raise ConfigError(
            "sparkplug_enabled needs a broker: set sparkplug_mqtt_url (EDGELINE_SPARKPLUG_MQTT_URL) or "
            "mqtt_url (EDGELINE_MQTT_URL), e.g. mqtt://127.0.0.1:1883"
        )
    node = edge_node_id(settings)
    session = Session(settings.sparkplug_group_id, node, settings.state_dir / f"sparkplug-bdseq-{node}")
    client_id = f"edgeline-sparkplug-{node}-{socket.gethostname()}-{os.getpid()}"[:64]
    bus = PahoBus.from_url(url, client_id, clean_session=True)
    bus.renew_will_on_connect(session.next_will)
    return SparkplugPublisher(
        bus,
        SqlLineState(database, settings.line),
        group=settings.sparkplug_group_id,
        node=node,
        session=session,
        interval=settings.sparkplug_interval_seconds,
    )
