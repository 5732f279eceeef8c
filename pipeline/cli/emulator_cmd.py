"""`edgeline emulator`: run the DPS + IoT Hub emulator until SIGINT/SIGTERM.

Prints where to reach it (DPS service connection string, device endpoint, ID scope, one connection
string per emulated hub, the CA file) — emulator credentials, never production ones.
Not responsible for: the emulator itself (pipeline.emulator).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.domain.keys import KeyFormatError, SecretKey
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator

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
    parser.set_defaults(func=_run)


def _config(args: argparse.Namespace) -> EmulatorConfig:
    hubs = tuple(args.hubs or DEFAULT_HUBS)
    hub_ports = tuple(args.hub_ports or ())
    if hub_ports and len(hub_ports) != len(hubs):
        raise CommandError("give one --hub-port per --hub, in the same order", exit_code=2)
    return EmulatorConfig(
        service_key=_service_key(),
        host=args.host,
        port=args.port,
        id_scope=args.id_scope,
        hubs=hubs,
        allocation_policy=args.allocation,
        operations_per_minute=args.operations_per_minute,
        registrations_per_minute=args.registrations_per_minute,
        polls_per_device_per_10s=args.polls_per_device_per_10s,
        assign_delay_seconds=args.assign_delay,
        tls=args.tls,
        hub_ports=hub_ports,
        cert_dir=args.cert_dir,
        state_file=args.state_file,
    )


def _service_key() -> SecretKey | None:
    """A fixed DPS service-policy key from the environment (compose), else None: a new one per start."""
    text = os.environ.get(SERVICE_KEY_ENV, "").strip()
    if not text:
        return None
    try:
        return SecretKey.from_base64(text, what=SERVICE_KEY_ENV)
    except KeyFormatError as exc:
        raise CommandError(f"{exc}; e.g. `head -c32 /dev/urandom | base64`", exit_code=2) from None


def _announce(emu: RunningEmulator) -> None:
    lines = [
        "edgeline DPS + IoT Hub EMULATOR is running (test credentials, not a real Azure service):",
        f"  DPS service connection string (emulator): {emu.service_connection_string}",
        f"  device global endpoint (emulator):        {emu.device_endpoint}",
        f"  ID scope (emulator):                      {emu.id_scope}",
        f"  CA certificate for the HTTPS ports:       {emu.ca_file}",
    ]
    lines += [f"  hub {hub} (emulator): {emu.hub_connection_string(hub)}" for hub in emu.config.hubs]
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        emu = start_emulator(config)
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {config.host}:{config.port} ({exc.strerror}); try another --port"
        ) from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _announce(emu)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        emu.stop()
    print("emulator stopped", flush=True)
    return EXIT_OK
