"""`edgeline audit`: units by state/line/station/time, one unit's timeline, export, chain verification.

Responsible for: the arguments (the runners, queries and presentation are in pipeline.cli.audit_run,
imported on use).
Not responsible for: the queries themselves (pipeline.db.audit) or writing audit records.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from pipeline.domain.model import UnitState

RUN = "pipeline.cli.audit_run"
CHECK_HELP = (
    "Check the line's invariants against DPS and the IoT hub: every unit in one known state that its "
    "audit trail and DPS agree with, one enrollment per registration ID, nothing flashed or assigned "
    "without a verified read-back, no transition applied twice, an intact hash chain, a drained outbox. "
    "Prints one line per violation (unit, rule, what to do) and a summary; exit 1 on any violation. "
    "Run it on a line at rest (units still moving are reported as behind). Reads only."
)
STATES = tuple(state.value for state in UnitState)


def register(sub: Any) -> None:
    """Add the `audit` command group."""
    parser = sub.add_parser(
        "audit",
        help="audit queries and hash-chain verification",
        description="Query what happened to units (by state, line, station, time, or one unit's trail), "
        "export units or audit records, and verify the audit log's hash chain. Reads the database of "
        "database_url (default: .edgeline/edgeline.db in the current folder, where `edgeline demo` "
        "writes too).",
    )
    audit_sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    units = audit_sub.add_parser(
        "units",
        help="list units by state, station, line and time",
        description="List units; --since/--until bound the time of their last change. The table is "
        "compact (stage durations, failure reason shortened); --format json or csv gives every field.",
    )
    _add_filters(units)
    units.add_argument("--limit", type=int, default=None, help="at most this many units")

    _add_format(units, ("table", "json", "csv"), "table")
    units.set_defaults(func=f"{RUN}:units")
    unit = audit_sub.add_parser(
        "unit",
        help="one unit and its audit trail",
        description="Show a unit found by registration ID, serial or MAC (any format).",
    )
    unit.add_argument("key", metavar="REGISTRATION_ID|SERIAL|MAC")
    _add_format(unit, ("table", "json"), "table")
    unit.set_defaults(func=f"{RUN}:unit")
    verify = audit_sub.add_parser(
        "verify",
        help="verify the audit log's hash chain (exit 1 if broken)",
        description="Walk the whole audit log in order and check every record's hash and its link to the "
        "previous one, and the stored chain head. Exit 0 if intact; exit 1 naming the first bad record.",
    )
    verify.set_defaults(func=f"{RUN}:verify")
    export = audit_sub.add_parser(
        "export",
        help="export units or audit records as CSV or JSON",
        description="Write every field of the selected units (or audit records, --what records) as CSV "
        "or JSON to stdout or --output FILE, for spreadsheets and archiving.",
    )
    export.add_argument("--what", choices=("units", "records"), default="units", help="what to export")
    _add_filters(export)
    _add_format(export, ("csv", "json"), "csv")
    export.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(func=f"{RUN}:export")
    from pipeline.cli import audit_sign_cmd  # keygen, export-signed, verify-export

    audit_sign_cmd.register_subcommands(audit_sub)
    check = audit_sub.add_parser(
        "check", help="check the line's invariants (exit 1 on a violation)", description=CHECK_HELP
    )
    _add_format(check, ("text", "json"), "text")
    check.set_defaults(func=f"{RUN}:check")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", choices=STATES, metavar="STATE", help=f"one of: {', '.join(STATES)}")
    parser.add_argument("--station", help="station name (must be one present in the database)")
    parser.add_argument("--line", help="line name (must be one present in the database)")
    parser.add_argument("--since", type=_timestamp, help="ISO 8601 time (UTC if no zone), inclusive")
    parser.add_argument("--until", type=_timestamp, help="ISO 8601 time (UTC if no zone), exclusive")
    parser.add_argument(
        "--overdue",
        action="store_true",
        help="only units flashed longer than assignment_overdue_seconds ago and still not assigned by DPS",
    )


def _add_format(parser: argparse.ArgumentParser, choices: tuple[str, ...], default: str) -> None:
    parser.add_argument(
        "--format", choices=choices, default=default, help=f"output format (default: {default})"
    )


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-30T08:00:00Z or 2026-11-30"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
