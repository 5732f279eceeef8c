"""The runners of `edgeline group` (arguments: pipeline.cli.group_cmd); imported only when one runs.

Prints key fingerprints only, never keys.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.admin import admin_session
from pipeline.cli.main import EXIT_OK
from pipeline.service.groups import GroupView, create_group, rotate_group_key, show_group


def create(args: argparse.Namespace) -> int:
    """Create the group keys and the DPS group (idempotent)."""
    with admin_session(args, key_store=args.key_store) as session:
        view = create_group(session.ctx, session.group_history)
        store = session.ctx.group_key_store().name
    print(f"enrollment group {view.group_id} is in DPS with the keys in the {store} key store")
    _print_view(view)
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
    """Show the group in DPS and the database."""
    with admin_session(args) as session:
        view = show_group(session.ctx, session.group_history)
    _print_view(view)
    return EXIT_OK


def rotate(args: argparse.Namespace) -> int:
    """Rotate the group key."""
    with admin_session(args) as session:
        rotation = rotate_group_key(session.ctx, session.group_history, force=args.force)
    if rotation.units_on_dropped_key:
        print(
            f"warning: {rotation.units_on_dropped_key} unit(s) were configured with the dropped key "
            f"sha256:{rotation.dropped_fingerprint}; they cannot provision until re-flashed",
            file=sys.stderr,
        )
    print(f"rotated the key of enrollment group {rotation.group_id}")
    print(f"  primary:   sha256:{rotation.primary_fingerprint} (new; units configured from now on)")
    print(f"  secondary: sha256:{rotation.secondary_fingerprint} (previous primary; flashed units)")
    print(f"  dropped:   sha256:{rotation.dropped_fingerprint}")
    return EXIT_OK


def _print_view(view: GroupView) -> None:
    dps = view.dps
    rows = [
        ("group", view.group_id),
        ("product", view.product),
        ("in DPS", "yes" if dps else "no (run `edgeline group create`)"),
        ("provisioning status", (dps.provisioning_status or "enabled") if dps else "-"),
        ("etag", (dps.etag or "-") if dps else "-"),
        ("iot edge", ("yes" if dps.iot_edge else "no") if dps else "-"),
        ("allocation policy", view.allocation_policy or "(the DPS default)"),
        ("iot hubs", ", ".join(view.iot_hubs) or "(all linked hubs)"),
        ("primary key", f"sha256:{view.primary_fingerprint}"),
        ("secondary key", f"sha256:{view.secondary_fingerprint}"),
        ("last rotated", view.last_rotated_at.isoformat() if view.last_rotated_at else "never"),
    ]
    for name, value in rows:
        print(f"{name + ':':21}{value}")
