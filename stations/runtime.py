"""Builds and runs one station process: bus client with last will, agent, port supervisor, simulators.

The composition root of a station; it imports pyserial-based parts only through `stations.link`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bus.paho import PahoBus
from pipeline.bus.ports import Bus
from pipeline.crypto.station_key import StationKeyPair
from stations.agent import StationAgent, status_message
from stations.config import StationConfig
from stations.driver import DeviceDriver, LineProtocolDriver
from stations.link import PySerialLink
from stations.results import PortResult
from stations.stages import StageHook
from stations.supervisor import StationSupervisor
from stations.usb_ports import UsbMatch


def line_protocol_driver(baudrate: int) -> Callable[[str], DeviceDriver]:
    """A driver factory opening the port with pyserial and speaking edgeline's line protocol."""

    def open_driver(port: str) -> DeviceDriver:
        return LineProtocolDriver(PySerialLink(port, baudrate=baudrate))

    return open_driver


@dataclass
class StationProcess:
    """A running station: call `stop()` to go offline cleanly."""

    agent: StationAgent
    bus: Bus
    supervisor: StationSupervisor
    results: list[PortResult] = field(default_factory=list)

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
    on_stage: StageHook | None = None,
) -> StationProcess:
    """Connect to the broker (with an offline last will), announce presence and serve the ports."""
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
    )
    agent = StationAgent(config, bus, keypair, on_result=sink, on_stage=on_stage)  # opens the spool
    bus.connect()
    agent.start()
    supervisor = StationSupervisor(
        agent,
        open_driver or line_protocol_driver(config.baudrate),
        ports=ports or [],
        watch_dir=watch_dir,
        usb=usb,
    )
    supervisor.start()
    return StationProcess(agent=agent, bus=bus, supervisor=supervisor, results=results)
