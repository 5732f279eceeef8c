"""Builds and runs one station process: bus client with last will, agent, port supervisor, simulators.

The composition root of a station; it imports pyserial-based parts only through `stations.link`.
A station starts whether or not the broker is reachable: ports are served at once, events wait in the
spool, and the bus keeps connecting in the background (`PahoBus.start_background`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import Bus
from pipeline.bus.url import TlsFiles
from pipeline.crypto.station_key import StationKeyPair
from stations.drivers.line_protocol.driver import line_protocol_driver
from stations.drivers.port import DeviceDriver
from stations.runtime.agent import StationAgent, status_message
from stations.runtime.config import StationConfig
from stations.runtime.results import PortResult
from stations.runtime.stages import StageHook
from stations.runtime.supervisor import StationSupervisor, UsbLister
from stations.runtime.usb_ports import UsbMatch


@dataclass
class StationProcess:
    """A running station: call `stop()` to go offline cleanly.

    `broker_unreachable` says why the broker could not be reached at start (None if it could): the
    station then runs anyway, spooling its events until the connection comes up.
    """

    agent: StationAgent
    bus: Bus
    supervisor: StationSupervisor
    results: list[PortResult] = field(default_factory=list)
    broker_unreachable: str | None = None

    def stop(self) -> None:
        self.agent.stop()
        self.supervisor.join()
        self.bus.close()


def start_station(
    config: StationConfig,
    mqtt_url: str,
    *,
    ports: list[str] | None = None,
    watch_dir: Path | None = None,
    client_id: str | None = None,
    clean_session: bool = False,
    on_result: Callable[[PortResult], None] | None = None,
    open_driver: Callable[[str], DeviceDriver] | None = None,
    usb: Sequence[UsbMatch] = (),
    list_usb: UsbLister | None = None,
    on_stage: StageHook | None = None,
    connect_timeout: float = 5.0,
    tls: TlsFiles | None = None,
) -> StationProcess:
    """Serve the ports and connect to the broker (offline last will), waiting up to `connect_timeout`.

    An unreachable broker is not an error: the station is returned serving its ports, with
    `broker_unreachable` set, and announces itself when the connection comes up. Raises BusError only
    for a malformed `mqtt_url`; `list_usb` replaces USB enumeration (tests).
    """
    keypair = StationKeyPair.load(config.key_file)
    results: list[PortResult] = []
    lock = threading.Lock()

    def sink(result: PortResult) -> None:
        with lock:
            results.append(result)
        if on_result is not None:
            on_result(result)

    bus = PahoBus.from_url(
        mqtt_url,
        client_id or f"edgeline-station-{config.name}",
        will=status_message(config, online=False),
        clean_session=clean_session,
        tls=tls,
    )
    agent = StationAgent(config, bus, keypair, on_result=sink, on_stage=on_stage)  # opens the spool
    agent.start()  # before connecting: the subscription and presence then come with the first CONNACK
    bus.start_background()
    supervisor = StationSupervisor(
        agent,
        open_driver or line_protocol_driver(config.baudrate),
        ports=ports or [],
        watch_dir=watch_dir,
        usb=usb,
        list_usb=list_usb,
    )
    supervisor.start()
    unreachable = None if bus.wait_connected(connect_timeout) else bus.why_disconnected()
    return StationProcess(agent, bus, supervisor, results, broker_unreachable=unreachable)
