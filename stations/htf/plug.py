"""The OpenHTF plug: one `SequencedStation` per test run, configured by `station_plug(...)`.

OpenHTF builds plugs itself, without arguments, so configuration travels in a subclass made by
`station_plug`; phases declare the base `EdgelineStation` and a test swaps in the configured subclass
with `phase.with_plugs(station=...)` (which `provisioning_phases` does for you).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from openhtf.plugs import BasePlug

from stations.drivers.port import DeviceDriver
from stations.runtime.config import StationConfig
from stations.sequenced import SequencedStation


@dataclass(frozen=True, slots=True)
class PlugSettings:
    """What the plug needs: the station, the broker, the device's port and how to open it."""

    station: StationConfig
    mqtt_url: str
    port: str
    open_driver: Callable[[str], DeviceDriver]
    config_timeout: float = 120.0
    assign_timeout: float = 600.0  # the optional `wait_assigned` phase


class EdgelineStation(BasePlug):  # type: ignore[misc]
    """The station as an OpenHTF plug (base class: use `station_plug` to configure it)."""

    auto_placeholder = True  # lets `phase.with_plugs(station=<configured subclass>)` substitute it
    settings: PlugSettings | None = None

    def __init__(self) -> None:
        super().__init__()
        if self.settings is None:
            raise RuntimeError("EdgelineStation is not configured: use station_plug(PlugSettings(...))")
        self.station = SequencedStation(
            self.settings.station, self.settings.mqtt_url, self.settings.open_driver
        )
        self.station.start()

    def tearDown(self) -> None:
        self.station.stop()


def station_plug(settings: PlugSettings) -> type[EdgelineStation]:
    """A plug class bound to `settings`."""
    return type("ConfiguredEdgelineStation", (EdgelineStation,), {"settings": settings})
