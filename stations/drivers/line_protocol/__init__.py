"""Devices running edgeline's factory firmware, spoken to with docs/device-protocol.md.

`driver` (station side), `framing` + `protocol` (pure codec), `connection` (seq/retries), `simulator` +
`simulated_firmware` (the device side, on a pseudo-terminal). Entry point `line-protocol`.
"""

from stations.drivers.line_protocol.driver import line_protocol_driver

__all__ = ["line_protocol_driver"]
