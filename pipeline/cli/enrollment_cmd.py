"""`edgeline enrollment show|disable|enable|delete REGISTRATION_ID`: revoke or restore one unit.

Responsible for: arguments, help texts that state the consequences, and printing results.
Not responsible for: the DPS and database changes (pipeline.service.revocation) or wiring
(pipeline.bootstrap).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pipeline.cli.admin import admin_session
from pipeline.cli.main import EXIT_FAILURE, EXIT_OK
from pipeline.service import revocation
from pipeline.service.context import Context
from pipeline.service.revocation import EnrollmentView, Outcome

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
    commands: tuple[tuple[str, str, str, Callable[[argparse.Namespace], int]], ...] = (
        ("show", "show a unit's enrollment, state and registration", SHOW_HELP, _show),
        ("disable", "revoke: the device can no longer provision", DISABLE_HELP, _disable),
        ("enable", "undo a revocation (the unit must then be rescanned)", ENABLE_HELP, _enable),
        ("delete", "delete the individual enrollment (individual mode only)", DELETE_HELP, _delete),
    )
    for name, summary, description, func in commands:
        command = enrollment_sub.add_parser(name, help=summary, description=description)
        command.add_argument(
            "registration_id", metavar="REGISTRATION_ID", help="the unit's DPS registration ID"
        )
        if name in ("disable", "delete"):
            command.add_argument("--reason", default="", help="why (kept in the audit log), e.g. 'RMA 1234'")
        command.set_defaults(func=func)


def _show(args: argparse.Namespace) -> int:
    with admin_session(args) as session:
        view = revocation.show_enrollment(session.ctx, args.registration_id)
    _print_view(view)
    return EXIT_OK


def _disable(args: argparse.Namespace) -> int:
    return _change(args, lambda ctx, rid: revocation.disable_enrollment(ctx, rid, args.reason))


def _enable(args: argparse.Namespace) -> int:
    return _change(args, revocation.enable_enrollment)


def _delete(args: argparse.Namespace) -> int:
    return _change(args, lambda ctx, rid: revocation.delete_enrollment(ctx, rid, args.reason))


def _change(args: argparse.Namespace, action: Callable[[Context, str], Outcome]) -> int:
    with admin_session(args) as session:
        outcome = action(session.ctx, args.registration_id)
    hub = "" if outcome.hub is None else f"; IoT hub: {outcome.hub}"
    print(f"{outcome.registration_id}: DPS: {outcome.dps}{hub}; unit is {outcome.unit_state}")
    if outcome.hub_failed:
        # The DPS and database changes stand; the command is idempotent, so re-running retries the hub.
        print(
            f"edgeline enrollment: the IoT hub step failed ({outcome.hub}); DPS and the database are "
            "already changed: re-run the same command to retry, or change the device in the hub",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _print_view(view: EnrollmentView) -> None:
    unit, enrollment, registration = view.unit, view.enrollment, view.registration
    mode = f"group {view.group_id}" if view.group_id else "individual"
    if enrollment is None:
        dps = "none" + (" (the group decides)" if view.group_id else "")
    else:
        dps = (
            f"{enrollment.provisioning_status or 'enabled'}, etag {enrollment.etag or '-'}, "
            f"iot edge {'yes' if enrollment.iot_edge else 'no'}"
            + (" (overrides the group)" if view.revoked_in_group else "")
        )
    if registration is None:
        registered = "never registered"
    else:
        registered = registration.status
        if registration.assigned_hub:
            registered += f" to {registration.assigned_hub} as {registration.device_id}"
        if registration.error_code:
            registered += f" (error {registration.error_code}: {registration.error_message})"
    rows = [
        ("registration id", unit.registration_id),
        ("unit state", unit.state.value + (f" ({unit.failure.reason})" if unit.failure else "")),
        ("mode", mode),
        ("serial / mac", f"{unit.serial} / {unit.mac}"),
        ("enrollment", dps),
        ("registration", registered),
    ]
    for name, value in rows:
        print(f"{name + ':':18}{value}")
