"""The runner of `edgeline emulator` (arguments: pipeline.cli.emulator_cmd); imported on use."""

from __future__ import annotations

import argparse
import os
import signal
import threading

from pipeline.cli.emulator_cmd import DEFAULT_HUBS, SERVICE_KEY_ENV
from pipeline.cli.main import EXIT_OK, CommandError
from pipeline.domain.keys import KeyFormatError, SecretKey
from pipeline.emulator.server import EmulatorConfig, RunningEmulator, start_emulator


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


def run(args: argparse.Namespace) -> int:
    """Serve the emulator until SIGINT/SIGTERM."""
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
