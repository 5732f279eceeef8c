"""`edgeline station init|add|run`: a station's identity, its registration, and the station process.

Responsible for: the arguments (the runners are in pipeline.cli.station_run, imported on use).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.cli.driver_options import add_driver_arguments
from pipeline.cli.station_broker import add_broker_arguments

RUN = "pipeline.cli.station_run"


def register(sub: Any) -> None:
    """Add the `station` command group."""
    station = sub.add_parser(
        "station",
        help="test-station commands (init, add, run)",
        description="A test station's key pair (init), its registration with the pipeline (add), and the "
        "station process that reads devices on serial ports and flashes their configs (run).",
    )
    cmds = station.add_subparsers(dest="station_command", metavar="SUBCOMMAND", required=True)

    init = cmds.add_parser(
        "init",
        help="create this station's key pair and print its public key",
        description="Create the station's X25519 key pair. The private key file is written "
        "with mode 0600 and never leaves the station; give the printed public key to "
        "`edgeline station add` on the pipeline side.",
    )
    init.add_argument("--key-file", required=True, type=Path, help="where to write the private key")
    init.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing key file (old configs in flight can then no longer be opened)",
    )
    init.set_defaults(func=f"{RUN}:init")

    add = cmds.add_parser(
        "add",
        help="register a station (name, line, public key) with the pipeline",
        description="Register a station so the configurer can encrypt configs to it. "
        "Run where EDGELINE_DATABASE_URL points at the pipeline's database.",
    )
    add.add_argument("name", help="station name, as in its topics (letters, digits, '-', '_', '.')")
    add.add_argument("--line", help="production line (default: setting `line`)")
    add.add_argument("--public-key", required=True, help="the text `edgeline station init` printed")
    add_broker_arguments(add)
    add.set_defaults(func=f"{RUN}:add")

    run = cmds.add_parser(
        "run",
        help="run a station on real ports or simulated devices",
        description="Serve devices on serial ports: read identity, publish the scan, write "
        "the encrypted config the pipeline sends, verify its SHA-256 by read-back, report PASS "
        "or FAIL. Ports: --port (repeatable; /dev/ttyUSB0, COM3, socket://host:port, "
        "rfc2217://host:port), --usb VID:PID[:SERIAL_GLOB] (repeatable; USB serial adapters "
        "matched every second, hot-plug) and/or --watch-dir (a folder of links to ports; hot-plug). "
        "The station starts even when the MQTT broker is unreachable: it says so in one line, "
        "serves the ports, keeps the events in an on-disk spool (--spool-dir) and keeps connecting; "
        "when the broker is back it announces itself and sends them. "
        "On a terminal a live table shows every port; otherwise one line per result. "
        "Exit codes: 0 stopped cleanly (or every simulated device passed), 1 a device "
        "failed in --simulate mode (or another runtime error), 2 bad usage or settings (also: a "
        "--port that does not exist or is in use), 3 the MQTT broker URL is malformed.",
    )
    _add_run_arguments(run)
    run.set_defaults(func=f"{RUN}:run")


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--name", required=True, help="this station's name (must be registered: `station add`)")
    run.add_argument("--line", help="production line (default: setting `line`)")
    run.add_argument("--key-file", required=True, type=Path, help="private key written by `station init`")
    run.add_argument("--port", action="append", default=[], metavar="PORT", help="a serial port (repeatable)")
    run.add_argument("--watch-dir", type=Path, help="folder whose entries are links to ports (hot-plug)")
    run.add_argument(
        "--usb",
        action="append",
        default=[],
        metavar="VID:PID[:SERIAL_GLOB]",
        help="serve USB serial ports with this vendor:product id in hex, optionally only serial "
        "numbers matching a glob, e.g. 0403:6001:FT* (repeatable; case-insensitive; hot-plug)",
    )
    run.add_argument(
        "--spool-dir",
        type=Path,
        help="where events wait while the broker is unreachable (default: KEY_FILE.spool beside the key)",
    )
    run.add_argument(
        "--jsonl", type=Path, metavar="FILE", help="append one JSON object per device result to FILE"
    )
    run.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    run.add_argument("--batch", help="production batch recorded with each unit")
    run.add_argument(
        "--flash-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the pipeline's config after a scan (default 300)",
    )
    run.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="plug N simulated devices (pseudo-terminals) into --watch-dir, then exit (POSIX only)",
    )
    run.add_argument(
        "--devices-dir", type=Path, help="with --simulate: where simulated devices keep their flash"
    )
    run.add_argument(
        "--fixtures", type=int, default=4, help="with --simulate: devices plugged at once (default 4)"
    )
    run.add_argument(
        "--serial-prefix",
        default="",
        help="with --simulate: prefix of simulated serial numbers (the same prefix gives the same MACs, "
        "so a restarted station re-plugs the same devices)",
    )
    run.add_argument(
        "--sim-hostile",
        metavar="KIND[,KIND...]",
        help="with --simulate: every Nth device misbehaves, taking these kinds in turn: garbage, binary, "
        "long-line, slow, vanish, bad-serial, zero-mac, broadcast-mac, multicast-mac, conflict",
    )
    run.add_argument(
        "--sim-hostile-every",
        type=int,
        default=3,
        metavar="N",
        help="with --sim-hostile: every Nth device (default 3)",
    )
    add_driver_arguments(run)
