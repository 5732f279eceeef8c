"""`edgeline demo`: run a simulated line end to end and show live progress and a summary.

Responsible for: the arguments (the runner is pipeline.cli.demo_run, imported on use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the `demo` command."""
    parser = sub.add_parser(
        "demo",
        help="run a whole simulated line (stations, devices, workers, DPS emulator) and report",
        description="Run K stations with N simulated devices on pseudo-terminals through every stage: scan, "
        "key, "
        "DPS enrollment, encrypted config flash with read-back, device registration with DPS, assignment. "
        "Uses EDGELINE_DATABASE_URL and EDGELINE_MQTT_URL if set, else an embedded broker and the SQLite "
        "file "
        "of the state directory (.edgeline/edgeline.db in the current folder, replaced by each demo run; "
        "a database file the demo did not create is never touched), so that `edgeline audit units` in the "
        "same folder shows the demo's units afterwards. Always the built-in DPS + IoT Hub emulator. "
        "Exits 0 only if every unit reached `assigned`.",
    )
    parser.add_argument("--units", type=int, default=10, help="simulated devices (default 10)")
    parser.add_argument("--stations", type=int, default=2, help="stations (default 2)")
    parser.add_argument(
        "--fixtures", type=int, default=4, help="devices plugged into a station at once (default 4)"
    )
    parser.add_argument(
        "--mode", choices=["group", "individual"], help="enrollment mode (default: setting, group)"
    )
    parser.add_argument(
        "--edge-version", choices=["1.2", "1.1"], help="IoT Edge config flavour (default 1.2)"
    )
    parser.add_argument(
        "--keep-devices",
        type=Path,
        metavar="DIR",
        help="keep each device's flashed files in DIR/<registration id>/",
    )
    parser.add_argument(
        "--approval",
        action="store_true",
        help="ask a stub MES (a local HTTP webhook) to approve each unit before it gets its key",
    )
    parser.add_argument("--baud", type=int, help="pace simulated serial lines like a UART at this baud rate")
    parser.add_argument(
        "--timeout",
        type=float,
        help="give up after this many seconds (default: 1.5 s per unit, at least 120)",
    )
    parser.add_argument(
        "--web",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="serve the live dashboard here while the demo runs and print its link with a token "
        "(default: a free port on 127.0.0.1)",
    )
    parser.add_argument("--no-web", action="store_true", help="do not serve the dashboard")
    parser.set_defaults(func="pipeline.cli.demo_run:demo")
