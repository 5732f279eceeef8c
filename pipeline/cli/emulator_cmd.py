"""`edgeline emulator`: run the DPS + IoT Hub emulator until SIGINT/SIGTERM.

Prints where to reach it (DPS service connection string, device endpoint, ID scope, one connection
string per emulated hub, the CA file) — emulator credentials, never production ones.
The runner is pipeline.cli.emulator_run, imported on use.
Not responsible for: the emulator itself (pipeline.emulator).
"""

from __future__ import annotations

from typing import Any

DEFAULT_PORT = 5080
DEFAULT_HUBS = ("edgeline-hub-1.azure-devices.net",)
SERVICE_KEY_ENV = "EDGELINE_EMULATOR_SERVICE_KEY"


def register(sub: Any) -> None:
    """Add the `emulator` command."""
    parser = sub.add_parser(
        "emulator",
        help="run the DPS + IoT Hub emulator",
        description="Serve the DPS service and device APIs (plain HTTP, or HTTPS with --tls) on one port, "
        "and each emulated IoT hub's registry over HTTPS on its own port. Runs until Ctrl-C or SIGTERM. "
        f"The DPS service key is random per start unless {SERVICE_KEY_ENV} holds a base64 key (16-64 bytes), "
        "so that other containers can be given the emulator's connection string in advance.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"DPS port (default: {DEFAULT_PORT}; 0 = any)"
    )
    parser.add_argument("--id-scope", default="0ne00000001", help="the emulated DPS ID scope")
    parser.add_argument(
        "--hub",
        action="append",
        dest="hubs",
        metavar="HOSTNAME",
        help="an emulated IoT hub host name (repeatable; default: edgeline-hub-1.azure-devices.net)",
    )
    parser.add_argument(
        "--hub-port",
        action="append",
        type=int,
        dest="hub_ports",
        metavar="PORT",
        help="HTTPS port of each --hub, in the same order (default: any free port)",
    )
    parser.add_argument(
        "--allocation",
        choices=("hashed", "static"),
        default="hashed",
        help="service-level allocation policy (default: hashed)",
    )
    parser.add_argument(
        "--state-file", help="load DPS records from this JSON file at start, save them at exit"
    )
    parser.add_argument(
        "--cert-dir", help="where to write ca.pem and the server certificate (default: a temp dir)"
    )
    parser.add_argument("--tls", action="store_true", help="serve the DPS APIs over HTTPS too")
    parser.add_argument(
        "--operations-per-minute", type=int, default=1000, help="service API quota (0 = none)"
    )
    parser.add_argument(
        "--registrations-per-minute", type=int, default=1000, help="register quota (0 = none)"
    )
    parser.add_argument("--polls-per-device-per-10s", type=int, default=5, help="poll quota (0 = none)")
    parser.add_argument(
        "--assign-delay", type=float, default=0.0, help="seconds a registration stays 'assigning'"
    )
    parser.set_defaults(func="pipeline.cli.emulator_run:run")
