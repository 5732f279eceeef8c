"""`edgeline station run` options that choose the device driver (and, with --simulate, the simulator).

Responsible for: the `--driver`, `--console-*` and `--sim-driver` arguments, turning them into a
driver factory through the `edgeline.drivers` entry points, and into the matching simulator for
`--simulate`. The console password is read from an environment variable, never from the command
line (it would show in `ps` and shell history).
Not responsible for: what drivers do (`stations.*_driver`) or running the station (`station_cmd`).
"""

from __future__ import annotations

import argparse
import functools
import os
from typing import TYPE_CHECKING, Any

from pipeline.cli.main import CommandError

if TYPE_CHECKING:  # the station modules load only when `station run` runs (see pipeline.cli.main)
    from stations.drivers.port import DeviceFactory
    from stations.drivers.registry import DriverFactory

__all__ = ["add_driver_arguments", "driver_factory", "sim_device_factory"]

SIM_DRIVERS = ("line-protocol", "linux-console")
SIM_PASSWORD = "edgeline"  # what simulated consoles accept when no password variable is given


def add_driver_arguments(run: argparse.ArgumentParser) -> None:
    """Add the driver and console options to `station run`."""
    run.add_argument(
        "--driver",
        metavar="NAME",
        help="device driver (entry point in group edgeline.drivers): line-protocol (default), "
        "linux-console, or one a plug-in installs; with --simulate: the --sim-driver",
    )
    run.add_argument("--console-user", default="root", help="linux-console: login user (default root)")
    run.add_argument(
        "--console-password-env",
        metavar="VAR",
        help="linux-console: environment variable holding the login password",
    )
    run.add_argument(
        "--console-serial-source",
        default="device-tree",
        help="linux-console: device-tree (default), dmi, or an absolute file path holding the serial",
    )
    run.add_argument("--console-iface", default="eth0", help="linux-console: interface whose MAC is read")
    run.add_argument(
        "--console-sudo", action="store_true", help="linux-console: run privileged commands with sudo -n"
    )
    run.add_argument(
        "--console-apply",
        action="store_true",
        help="linux-console: run `iotedge config apply` after a verified write (IoT Edge 1.2+)",
    )
    run.add_argument(
        "--console-edge-checks",
        action="store_true",
        help="linux-console: after writing (and applying) the config, run `iotedge system status` and "
        "`iotedge check --output json` on the device; a failed check fails the unit with its words",
    )
    run.add_argument(
        "--sim-driver",
        choices=SIM_DRIVERS,
        default="line-protocol",
        help="with --simulate: simulate line-protocol devices (default) or Linux consoles",
    )


def _driver_name(args: argparse.Namespace) -> str:
    name: str = args.driver or (args.sim_driver if args.simulate else "line-protocol")
    if args.simulate and name != args.sim_driver:
        raise CommandError(f"--driver {name} cannot talk to --sim-driver {args.sim_driver}", exit_code=2)
    return name


def _console_password(args: argparse.Namespace) -> str:
    variable = args.console_password_env
    if variable is None:
        if args.simulate:
            return SIM_PASSWORD
        raise CommandError("linux-console needs --console-password-env VAR", exit_code=2)
    password = os.environ.get(variable)
    if password is None:
        raise CommandError(
            f"environment variable {variable} (--console-password-env) is not set", exit_code=2
        )
    return password


def driver_factory(args: argparse.Namespace) -> DriverFactory:
    """The port -> driver factory the options ask for."""
    from stations.drivers.registry import UnknownDriver, load_driver_factory

    name = _driver_name(args)
    options: dict[str, Any] = {"baudrate": args.baud}
    if name == "linux-console":
        options |= {
            "username": args.console_user,
            "password": _console_password(args),
            "serial_source": args.console_serial_source,
            "iface": args.console_iface,
            "sudo": args.console_sudo,
            "apply": args.console_apply,
            "edge_checks": args.console_edge_checks,
        }
    try:
        return load_driver_factory(name, **options)
    except (UnknownDriver, ValueError) as exc:
        raise CommandError(str(exc), exit_code=2) from None


def sim_device_factory(args: argparse.Namespace) -> DeviceFactory:
    """The simulator `--simulate` plugs in, accepting the credentials the driver will use."""
    if args.sim_driver != "linux-console":
        from stations.drivers.line_protocol.simulator import SimulatedDevice

        return SimulatedDevice
    from stations.drivers.linux_console.session import ConsoleCredentials
    from stations.drivers.linux_console.simulator import SimulatedConsole

    credentials = ConsoleCredentials(args.console_user, _console_password(args))
    return functools.partial(SimulatedConsole, credentials=credentials)
