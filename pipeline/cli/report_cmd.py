"""`edgeline report shift`: write a shift report (CSV + HTML) for a time window, on demand.

Responsible for: arguments and output paths. The same report is written by `edgeline web` at every
shift boundary (setting `shift_boundaries`, into `report_dir`).
Not responsible for: the statistics or rendering (pipeline.reports.shift).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUN = "pipeline.cli.report_run"


def register(sub: Any) -> None:
    """Add the `report` command group."""
    parser = sub.add_parser(
        "report",
        help="shift reports (CSV + HTML)",
        description="Reports for quality and line leads; `shift`: units, yield per station, failure Pareto "
        "and stage durations of one shift.",
    )
    report_sub = parser.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    cmd = report_sub.add_parser(
        "shift",
        help="units, yield per station, failure Pareto and stage durations of a shift",
        description="Write shift-<start>.csv and .html for units scanned in [--since, --until). Without "
        "--since: the last complete shift by the setting shift_boundaries (UTC).",
    )
    cmd.add_argument("--since", type=_timestamp, help="ISO 8601 (UTC if no zone)")
    cmd.add_argument("--until", type=_timestamp, help="ISO 8601 (UTC if no zone); default: now")
    cmd.add_argument("--output-dir", type=Path, help="default: setting report_dir, else STATE_DIR/reports")
    cmd.set_defaults(func=f"{RUN}:_shift")


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time, e.g. 2026-12-03T06:00") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
