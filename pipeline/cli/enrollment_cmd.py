"""`edgeline enrollment show|disable|enable|delete REGISTRATION_ID`: revoke or restore one unit.

Responsible for: arguments and help texts that state the consequences (the runners, which print the
results, are in pipeline.cli.enrollment_run, imported on use).
Not responsible for: the DPS and database changes (pipeline.service.revocation) or wiring
(pipeline.bootstrap).
"""

from __future__ import annotations

from typing import Any

RUN = "pipeline.cli.enrollment_run"

DISABLE_HELP = (
    "Revoke a unit (scrap, RMA, stolen): its device can no longer provision, and the unit becomes "
    "`revoked`. Individual mode: the enrollment is disabled (keys kept; DPS answers `disabled`). Group "
    "mode: a device cannot be disabled inside its group, so a disabled individual enrollment with random "
    "keys is created for its registration ID; it takes precedence over the group, and the device's "
    "token is refused (401). A unit already assigned also has its IoT hub device identity disabled when "
    "IoT hub connection strings are configured (otherwise disable it in the hub yourself). "
    "A revoked unit is refused when rescanned until `enrollment enable`."
)
ENABLE_HELP = (
    "Undo `disable`. Individual mode: the enrollment is enabled again (same device key). Group mode: the "
    "overriding disabled individual enrollment made by `disable` is deleted, so the group accepts the "
    "device again. An assigned unit's IoT hub device identity is enabled again (if hub connection "
    "strings are configured). The unit goes from `revoked` to `scanned` (a human release): rescan it "
    "at a station (rework) to take it through the line to `assigned` again."
)
DELETE_HELP = (
    "Individual mode only: delete the unit's enrollment from DPS (permanent; the device gets 401), "
    "disable its IoT hub device identity if it was assigned (and hub connection strings are "
    "configured), and mark the unit `revoked`. Refused in group mode, where deleting would let the "
    "device re-enroll through the group: use `disable` there."
)
SHOW_HELP = (
    "Print the unit's state from the database, its individual enrollment in DPS (status, ETag, IoT "
    "Edge; in group mode only a revocation has one) and its DPS registration state. Changes nothing."
)


def register(sub: Any) -> None:
    """Add the `enrollment` command group."""
    parser = sub.add_parser(
        "enrollment",
        help="show, revoke or restore one unit's DPS enrollment",
        description="Per-unit DPS enrollment administration. Needs the database, the master key and the "
        "DPS connection string. Every change is written to the audit log.",
    )
    enrollment_sub = parser.add_subparsers(dest="enrollment_command", metavar="SUBCOMMAND", required=True)
    commands: tuple[tuple[str, str, str], ...] = (
        ("show", "show a unit's enrollment, state and registration", SHOW_HELP),
        ("disable", "revoke: the device can no longer provision", DISABLE_HELP),
        ("enable", "undo a revocation (the unit must then be rescanned)", ENABLE_HELP),
        ("delete", "delete the individual enrollment (individual mode only)", DELETE_HELP),
    )
    for name, summary, description in commands:
        command = enrollment_sub.add_parser(name, help=summary, description=description)
        command.add_argument(
            "registration_id", metavar="REGISTRATION_ID", help="the unit's DPS registration ID"
        )
        if name in ("disable", "delete"):
            command.add_argument("--reason", default="", help="why (kept in the audit log), e.g. 'RMA 1234'")
        command.set_defaults(func=f"{RUN}:{name}")
