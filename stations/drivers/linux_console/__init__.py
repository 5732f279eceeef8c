"""Devices that are plain Linux machines on a serial console (docs/console-driver.md).

`driver` (commands), `session` (login, framed commands), `parsing` (pure), `simulator` +
`simulated_shell` (a getty and shell on a pseudo-terminal). Entry point `linux-console`.
"""

from stations.drivers.linux_console.driver import linux_console_driver

__all__ = ["linux_console_driver"]
