"""The driver registry: device families pluggable by third parties through Python entry points.

A driver family registers, in group `edgeline.drivers`, a factory `(**options) -> (port ->
DeviceDriver)`; edgeline's own are `line-protocol` and `linux-console` (see pyproject.toml). A
third party adds one in its own package's metadata, e.g.
`[project.entry-points."edgeline.drivers"] acme-bootloader = "acme_edgeline:driver_factory"`.
Not responsible for: what a driver does, or which options a CLI offers (pipeline/cli/station_cmd.py).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from stations.drivers.port import DriverFactory

__all__ = ["GROUP", "DriverFactory", "UnknownDriver", "available_drivers", "load_driver_factory"]

GROUP = "edgeline.drivers"


class UnknownDriver(LookupError):
    """No driver of that name is installed; the message lists those that are."""


def available_drivers() -> list[str]:
    """Names of every installed driver family, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_driver_factory(name: str, **options: Any) -> DriverFactory:
    """Build the port -> driver factory of driver family `name` with `options`."""
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(available_drivers()) or "none (is edgeline installed?)"
        raise UnknownDriver(f"unknown driver {name!r}; available: {known}")
    make = matches[0].load()
    factory: DriverFactory = make(**options)
    return factory
