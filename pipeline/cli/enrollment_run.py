"""The runners of `edgeline enrollment` (arguments: pipeline.cli.enrollment_cmd); imported on use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pipeline.cli.admin import admin_session
from pipeline.cli.main import EXIT_FAILURE, EXIT_OK
from pipeline.service import revocation
from pipeline.service.context import Context
from pipeline.service.revocation import EnrollmentView, Outcome


def show(args: argparse.Namespace) -> int:
    """Show a unit's enrollment, state and registration."""
    with admin_session(args) as session:
        view = revocation.show_enrollment(session.ctx, args.registration_id)
    _print_view(view)
    return EXIT_OK


def disable(args: argparse.Namespace) -> int:
    """Revoke a unit."""
    return _change(args, lambda ctx, rid: revocation.disable_enrollment(ctx, rid, args.reason))


def enable(args: argparse.Namespace) -> int:
    """Undo a revocation."""
    return _change(args, revocation.enable_enrollment)


def delete(args: argparse.Namespace) -> int:
    """Delete a unit's individual enrollment."""
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
